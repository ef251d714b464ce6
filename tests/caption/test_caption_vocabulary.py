import pytest

from failscope import InputError
from failscope.caption.vocabulary import (
    Family,
    Vocabulary,
    add_vocabulary,
    build_candidates,
    get_vocabulary,
    list_vocabularies,
    load_synonyms,
    load_vocabulary_file,
    resolve_vocabulary,
)


def test_text_vocabulary_file(tmp_path):
    p = tmp_path / "mine.txt"
    p.write_text(
        "# my phrases\nin the snow\n\n  with a red   collar \nin the snow\na sketch of a {cls}\n",
        encoding="utf-8",
    )
    v = load_vocabulary_file(p)
    assert v.name == "mine"
    c = build_candidates(v, "dog")
    assert c.texts == (
        "a photo of a dog in the snow",
        "a photo of a dog with a red collar",
        "a sketch of a dog",
    )


def test_yaml_vocabulary_file(tmp_path):
    p = tmp_path / "fam.yaml"
    p.write_text(
        "color:\n"
        "  templates: ['a photo of a {adj} {cls}', 'a {adj} {cls}']\n"
        "  words: [orange, green]\n"
        "weather: [in the rain]\n",
        encoding="utf-8",
    )
    v = load_vocabulary_file(p)
    assert [f.name for f in v.families] == ["color", "weather"]
    c = build_candidates(v, "8")
    assert c.texts == (
        "a photo of an orange 8",
        "an orange 8",
        "a photo of a green 8",
        "a green 8",
        "a photo of an 8 in the rain",
    )
    assert c.families == ("color", "color", "color", "color", "weather")


def test_yaml_list_and_families_wrapper(tmp_path):
    p = tmp_path / "l.yml"
    p.write_text("- in the rain\n- at night\n", encoding="utf-8")
    assert load_vocabulary_file(p).words() == ["in the rain", "at night"]
    p2 = tmp_path / "w.yaml"
    p2.write_text("families:\n  size: {words: [small]}\n", encoding="utf-8")
    assert load_vocabulary_file(p2).families[0] == Family("size", ("small",))


def _one_line_error(path):
    with pytest.raises(InputError) as info:
        load_vocabulary_file(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(path) in msg
    return msg


def test_bad_vocabulary_files(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n\n", encoding="utf-8")
    assert "empty" in _one_line_error(empty)

    comments = tmp_path / "comments.txt"
    comments.write_text("# nothing\n", encoding="utf-8")
    assert "no phrases" in _one_line_error(comments)

    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    assert "not UTF-8" in _one_line_error(latin)

    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("color: [red, green\nsize: small\n", encoding="utf-8")
    assert "not valid YAML" in _one_line_error(bad_yaml)

    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n", encoding="utf-8")
    assert "mapping of family" in _one_line_error(scalar)

    nested = tmp_path / "nested.yaml"
    nested.write_text("color:\n  words: [[red]]\n", encoding="utf-8")
    assert "not a string" in _one_line_error(nested)

    no_words = tmp_path / "nowords.yaml"
    no_words.write_text("color:\n  templates: ['a {adj} {cls}']\n", encoding="utf-8")
    assert "no 'words'" in _one_line_error(no_words)

    unknown_key = tmp_path / "unknown.yaml"
    unknown_key.write_text("color:\n  word: [red]\n", encoding="utf-8")
    assert "unknown key 'word'" in _one_line_error(unknown_key)

    bad_template = tmp_path / "tpl.yaml"
    bad_template.write_text("color:\n  words: [red]\n  templates: ['a {adj} {cls} {noun}']\n")
    assert "at most one" in _one_line_error(bad_template)

    suffix = tmp_path / "vocab.csv"
    suffix.write_text("red\n", encoding="utf-8")
    assert ".txt" in _one_line_error(suffix)

    assert "not found" in _one_line_error(tmp_path / "missing.txt")


def test_synonyms(tmp_path):
    p = tmp_path / "syn.yaml"
    p.write_text("7: [seven]\ncat: kitten\n", encoding="utf-8")
    assert load_synonyms(p, ["cat", "7"]) == {"7": ("seven",), "cat": ("kitten",)}
    with pytest.raises(InputError, match="class 'dog' is not a class"):
        p.write_text("dog: [puppy]\n", encoding="utf-8")
        load_synonyms(p, ["cat", "7"])
    p.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(InputError, match="mapping of class name"):
        load_synonyms(p, ["cat"])


def test_registry_general_and_world():
    assert {"general", "world"} <= set(list_vocabularies())
    general = get_vocabulary("general")
    assert 250 <= general.n_words <= 1000
    names = {f.name for f in general.families}
    for fam in (
        "color",
        "background",
        "scene",
        "texture",
        "size",
        "viewpoint",
        "lighting",
        "quality",
        "weather",
        "count",
        "material",
        "age",
        "people",
    ):
        assert fam in names
    from failscope.world import FAMILIES

    world = get_vocabulary("world")
    assert {f.name: f.words for f in world.families} == {k: tuple(v) for k, v in FAMILIES.items()}
    assert sorted(world.words()) == sorted(w for v in FAMILIES.values() for w in v)
    cands = build_candidates(world, "8")
    texts = cands.texts
    assert "a photo of an 8 on an orange background" in texts
    import failscope.world as w

    if not getattr(w, "CLIP_TRAINED_WITH_AN", False):  # prompted as the world CLIP was trained
        assert "a photo of a 8 on a orange background" in cands.prompts
        assert cands.reference_prompt == "a photo of a 8"
    assert len(texts) == sum(len(v) for v in FAMILIES.values())


def test_add_vocabulary_and_resolve(tmp_path):
    v = Vocabulary("tiny", (Family("c", ("red",), ("a {adj} {cls}",)),))
    add_vocabulary("tiny-test", lambda: v, overwrite=True)
    assert "tiny-test" in list_vocabularies()
    assert resolve_vocabulary("tiny-test") is v
    with pytest.raises(InputError, match="already registered"):
        add_vocabulary("tiny-test", lambda: v)
    with pytest.raises(InputError, match="unknown vocabulary 'nope'"):
        resolve_vocabulary("nope")
    p = tmp_path / "x.txt"
    p.write_text("at night\n", encoding="utf-8")
    merged = resolve_vocabulary(["tiny-test", p])
    assert merged.words() == ["red", "at night"]
