import pytest

from failscope.caption.templates import (
    GENERIC_TEMPLATE,
    MODIFIER_TEMPLATE,
    caption_key,
    check_phrase,
    check_template,
    fill,
    fix_articles,
    indefinite_article,
    phrase_template,
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
    assert check_template("a photo of a {word}") is None  # no class slot: a sub-type
    assert "class slot" in check_template("a {cls} and a {class}")
    assert "no slot" in check_template("a photo of a bird")
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


def test_template_without_class_slot_names_a_sub_type():
    vocab = Vocabulary("t", (Family("kind", ("sparrow", "robin"), ("a photo of a {word}",)),))
    c = build_candidates(vocab, "bird", synonyms=["songbird"])
    assert c.texts == ("a photo of a sparrow", "a photo of a robin")
    assert c.dropped["duplicate"] == 2  # the synonym gives the same captions


@pytest.mark.parametrize(
    ("phrase", "template"),
    [
        ("tiny", MODIFIER_TEMPLATE),
        ("dark red", MODIFIER_TEMPLATE),
        ("black and white", MODIFIER_TEMPLATE),
        ("sleeping", MODIFIER_TEMPLATE),
        ("red and white", MODIFIER_TEMPLATE),
        ("in the snow", GENERIC_TEMPLATE),
        ("with a red collar", GENERIC_TEMPLATE),
        ("On the beach", GENERIC_TEMPLATE),
        ("outdoors", GENERIC_TEMPLATE),
        ("alone", GENERIC_TEMPLATE),
        ("lying down", GENERIC_TEMPLATE),
        ("covered in snow", GENERIC_TEMPLATE),
    ],
)
def test_phrase_placement(phrase, template):
    assert phrase_template(phrase) == template


def test_plain_phrases_read_as_captions():
    vocab = Vocabulary("t", (Family("txt", ("tiny", "in the snow", "orange")),))
    assert build_candidates(vocab, "0").texts == (
        "a photo of a tiny 0",
        "a photo of a 0 in the snow",
        "a photo of an orange 0",
    )


def test_phrase_with_an_article_is_refused():
    assert check_phrase("tiny") is None and check_phrase("in the snow") is None
    why = check_phrase("a red one")
    assert "article 'a'" in why and "a photo of a dog a red one" in why
    assert "article 'The'" in check_phrase("The snow")


def test_text_file_phrases_are_placed_or_refused(tmp_path):
    from failscope import InputError
    from failscope.caption.vocabulary import load_vocabulary_file

    good = tmp_path / "sizes.txt"
    good.write_text("tiny\noutdoors\n", encoding="utf-8")
    assert build_candidates(load_vocabulary_file(good), "0").texts == (
        "a photo of a tiny 0",
        "a photo of a 0 outdoors",
    )
    line = tmp_path / "line.txt"
    line.write_text("a photo of a {word}\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"has a word slot.*\.yaml family"):
        load_vocabulary_file(line)
    bad = tmp_path / "bad.yaml"
    bad.write_text("size: [tiny, a red one]\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.yaml: phrase 'a red one' in family 'size'"):
        load_vocabulary_file(bad)
