import pytest

from failscope.caption.templates import (
    caption_key,
    check_template,
    fill,
    fix_articles,
    indefinite_article,
    restates_class,
)
from failscope.caption.vocabulary import Family, Vocabulary, build_candidates


@pytest.mark.parametrize(
    ("word", "article"),
    [
        ("old", "an"),
        ("orange", "an"),
        ("8", "an"),
        ("11", "an"),
        ("18", "an"),
        ("80", "an"),
        ("800", "an"),
        ("8000", "an"),
        ("11,000", "an"),
        ("7", "a"),
        ("1", "a"),
        ("110", "a"),
        ("0", "a"),
        ("one-eyed", "a"),
        ("one", "a"),
        ("university", "a"),
        ("unicorn", "a"),
        ("unidentified", "an"),
        ("umbrella", "an"),
        ("european", "a"),
        ("hour", "an"),
        ("honest", "an"),
        ("house", "a"),
        ("MRI", "an"),
        ("ATM", "an"),
        ("X-ray", "an"),
        ("UFO", "a"),
        ("FBI", "an"),
        ("USB", "a"),
        ("RED", "a"),
        ("NASA", "a"),
        ("used", "a"),
        ("red", "a"),
    ],
)
def test_indefinite_article(word, article):
    assert indefinite_article(word) == article


def test_fix_articles_whole_caption():
    assert fix_articles("a photo of a old man") == "a photo of an old man"
    assert fix_articles("a photo of a 8 on a orange background") == (
        "a photo of an 8 on an orange background"
    )
    assert fix_articles("an photo of an 7") == "a photo of a 7"
    assert fix_articles("A orange 7") == "An orange 7"
    assert fix_articles("a photo of an one-eyed cat") == "a photo of a one-eyed cat"
    # words merely ending in "a" are not articles
    assert fix_articles("a photo of a banana in a orange box") == (
        "a photo of a banana in an orange box"
    )


def test_fill_fixes_articles_and_space():
    assert fill("a photo of a {adj} {cls}", cls="7", word="orange") == "a photo of an orange 7"
    assert fill("a photo of a {cls}  on a {noun} background", cls="8", word=" gray ") == (
        "a photo of an 8 on a gray background"
    )
    assert fill("a {value} photo of a {class}", cls="11", word="blurry") == (
        "a blurry photo of an 11"
    )


def test_fill_never_emits_empty_slots():
    assert fill("a photo of a {cls} on a {noun} background", cls="7", word="  ") is None
    assert fill("a photo of a {cls} on a {noun} background", cls="", word="red") is None


def test_check_template():
    assert check_template("a photo of a {adj} {cls}") is None
    assert "class slot" in check_template("a photo of a {adj}")
    assert "at most one" in check_template("a photo of a {adj} {cls} {noun}")
    assert check_template("a sketch of a {cls}") is None
    assert "unknown slot" in check_template("a photo of a {colour} {cls}")
    assert "braces" in check_template("a photo of a {adj {cls}")


def test_restates_class():
    assert restates_class("dog", ["dog", "puppy"])
    assert restates_class("Puppy", ["dog", "puppy"])
    assert restates_class("golden", ["golden retriever"])
    assert not restates_class("gold", ["golden retriever"])
    assert not restates_class("red", ["7"])


def test_candidates_dedup_restate_and_empty():
    vocab = Vocabulary(
        "t",
        (
            Family(
                "color", ("red", "Red", " red ", "orange", "", "dog"), ("a photo of a {adj} {cls}",)
            ),
            # a second template that yields the same captions as the first
            Family("color2", ("RED",), ("A  photo of a {adj} {cls}",)),
            # a phrase that equals the reference caption once filled
            Family("kind", ("photo",), ("a {noun} of a {cls}",)),
            Family("scene", ("forest",), ("a photo of a {cls} in a {noun}",)),
        ),
    )
    c = build_candidates(vocab, "dog", synonyms=["puppy"])
    assert c.reference == "a photo of a dog"
    keys = [caption_key(t) for t in c.texts]
    assert len(keys) == len(set(keys))
    assert c.texts == (
        "a photo of a red dog",
        "a photo of a red puppy",
        "a photo of an orange dog",
        "a photo of an orange puppy",
        "a photo of a dog in a forest",
        "a photo of a puppy in a forest",
    )
    assert c.families[2] == "color" and c.words[2] == "orange"
    assert c.dropped["duplicate"] == 6  # "Red", " red " (x2 names each) and "RED" (x2)
    assert c.dropped["restates_class"] == 4  # "dog" (x2 names) and "a photo of a dog/puppy"
    assert not any("  " in t or t.endswith(" ") for t in c.texts)
    assert not any(t in ("a photo of a dog", "a photo of a puppy") for t in c.texts)


def test_candidates_underscore_class_names_and_digits():
    vocab = Vocabulary("t", (Family("c", ("old",), ("a photo of a {adj} {cls}",)),))
    assert build_candidates(vocab, "golden_retriever").texts == (
        "a photo of an old golden retriever",
    )
    assert build_candidates(vocab, "8").reference == "a photo of an 8"
    assert build_candidates(vocab, "18").texts == ("a photo of an old 18",)


def test_prompts_can_keep_the_trained_articles():
    fam = Family("c", ("orange",), ("a photo of a {adj} {cls}",))
    v = Vocabulary("t", (fam,), prompt_articles=False)
    c = build_candidates(v, "8")
    assert c.prompts == ("a photo of a orange 8",) and c.reference_prompt == "a photo of a 8"
    assert c.texts == ("a photo of an orange 8",) and c.reference == "a photo of an 8"
    c2 = build_candidates(Vocabulary("t", (fam,)), "8")
    assert c2.prompts == c2.texts == ("a photo of an orange 8",)
    assert fill("a {adj} {cls}", cls="8", word="old", articles=False) == "a old 8"
