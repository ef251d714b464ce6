import json

import numpy as np
import pytest

from failscope import InputError, load_run
from failscope.caption.pipeline import caption_run

FAILS = {"cat": "red", "dog": "striped", "8": "wavy"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, run_factory):
    return run_factory(tmp_path_factory.mktemp("run") / "run", failure_word=FAILS)


@pytest.fixture
def vocab_file(tmp_path):
    p = tmp_path / "v.yaml"
    p.write_text(
        "color:\n  templates: ['a photo of a {adj} {cls}']\n"
        "  words: [red, green, blue, yellow, orange]\n"
        "texture:\n  templates: ['a photo of a {cls} on a {adj} background']\n"
        "  words: [striped, plain, wavy, dotted, checkered]\n",
        encoding="utf-8",
    )
    return p


@pytest.mark.parametrize("method", ["classifier", "centroid"])
def test_caption_run_names_the_planted_word(run_dir, vocab_file, fake_encoder, method):
    slices = caption_run(run_dir, vocab=vocab_file, method=method, top_k=3, clip=fake_encoder)
    assert [s.class_name for s in slices] == ["cat", "dog", "8"]
    for s in slices:
        caps = s.captions
        assert caps.method == method and caps.n_candidates == 10
        top = caps.failure[0]
        assert top.word == FAILS[s.class_name], (method, caps.failure)
        assert len(caps.failure) == 3 and len(caps.success) == 3
        # the top 5 proposals are re-ordered by accuracy on their nearest val images
        ex = load_run(run_dir).examples
        val = ex[(ex["split"] == "val") & (ex["label"] == s.class_index)]
        n_slice = int(val["slice"].sum())
        # nearest images, up to the check's depth (40 of 80) or, at the failure end, the slice
        assert caps.rerank.to_json() == {
            "top": 5,
            "k": {"failure": min(80, max(40, n_slice)), "success": 40},
            "split": "val",
        }
        accs = [c.fit_acc for c in caps.failure]
        assert accs == sorted(accs) and accs[0] < 0.6, accs
        ok_accs = [c.fit_acc for c in caps.success]
        assert ok_accs == sorted(ok_accs, reverse=True) and ok_accs[0] > accs[0]
        assert caps.success[0].score <= caps.failure[-1].score
        assert FAILS[s.class_name] not in {c.word for c in caps.success}
        # the check confirms the top caption on the test split, against random captions too
        chk = s.caption_checks[0]
        assert chk.text == top.text and chk.split == "test"
        assert chk.confirmed is True, chk
        assert chk.null_p_value is not None and chk.null_p_value < 0.05
        assert chk.acc_at_decision < chk.class_acc - 0.1
        assert chk.acc_at_k[0] < chk.class_acc - 0.2
        assert len(s.caption_checks) == 3
    # written to disk atomically and readable by a fresh Run
    on_disk = load_run(run_dir).slices
    assert on_disk[0].captions.failure[0].text == slices[0].captions.failure[0].text
    info = json.loads((run_dir / "run.json").read_text())
    assert info["captions"]["method"] == method
    assert info["timings"]["captions"] >= 0
    assert "8" in slices[2].captions.reference and "an 8" in slices[2].captions.reference


def test_rerank_encodes_nothing_new(run_dir, vocab_file, fake_encoder):
    caption_run(run_dir, vocab=vocab_file, clip=fake_encoder, checks=False)
    n = fake_encoder.n_encoded
    assert n == 0 or n <= 33  # first use on this encoder object: only new captions
    caption_run(
        run_dir, vocab=vocab_file, clip=fake_encoder, method="centroid", top_k=2, checks=False
    )
    assert fake_encoder.n_encoded == n


def test_skipped_class_has_no_slice_to_caption(tmp_path, vocab_file, fake_encoder, run_factory):
    run_dir = run_factory(tmp_path / "r", failure_word=FAILS, clean_classes=("dog",))
    slices = caption_run(run_dir, vocab=vocab_file, clip=fake_encoder)
    dog = load_run(run_dir).classes[1]
    assert dog.status == "skipped" and "no errors" in dog.reason and dog.n_slices == 0
    assert [s.class_name for s in slices] == ["cat", "8"]
    assert slices[0].captions.failure[0].word == "red"
    assert slices[1].captions.failure[0].word == "wavy"


def test_no_test_split_falls_back_to_fitting_split(tmp_path, vocab_file, fake_encoder, run_factory):
    run_dir = run_factory(tmp_path / "r", failure_word=FAILS, splits=("train", "val"))
    slices = caption_run(run_dir, vocab=vocab_file, clip=fake_encoder, top_k=1)
    chk = slices[0].caption_checks[0]
    assert chk.split == "val" and "no test split" in chk.note


def test_world_run_defaults_to_world_vocabulary(tmp_path, fake_encoder, run_factory):
    run_dir = run_factory(tmp_path / "w", failure_word=FAILS, world=True)
    slices = caption_run(run_dir, clip=fake_encoder, checks=False)
    assert slices[0].captions.vocabulary == "world"
    from failscope.world import FAMILIES

    assert slices[0].captions.n_candidates == sum(len(v) for v in FAMILIES.values())


def test_bad_inputs(run_dir, vocab_file, fake_encoder, tmp_path):
    with pytest.raises(InputError, match="method"):
        caption_run(run_dir, vocab=vocab_file, clip=fake_encoder, method="knn")
    with pytest.raises(InputError, match="top_k"):
        caption_run(run_dir, vocab=vocab_file, clip=fake_encoder, top_k=0)
    syn = tmp_path / "syn.yaml"
    syn.write_text("horse: [pony]\n", encoding="utf-8")
    with pytest.raises(InputError, match="class 'horse' is not a class"):
        caption_run(run_dir, vocab=vocab_file, clip=fake_encoder, synonyms=syn)

    class Wrong:
        identity = "wrong-dim"

        def encode_text(self, texts, batch_size=256):
            return np.ones((len(texts), 7), np.float32) / np.sqrt(7)

    with pytest.raises(InputError, match="7-d"):
        caption_run(run_dir, vocab=vocab_file, clip=Wrong())


def test_synonyms_add_captions(run_dir, vocab_file, fake_encoder, tmp_path):
    syn = tmp_path / "syn.yaml"
    syn.write_text("cat: [kitten]\n8: [eight]\n", encoding="utf-8")
    slices = caption_run(
        run_dir, vocab=vocab_file, clip=fake_encoder, synonyms=syn, checks=False, top_k=10
    )
    cat = slices[0].captions
    assert cat.n_candidates == 20
    # distinct: one caption per (family, word) even with two names
    words = [c.word for c in cat.failure]
    assert len(words) == len(set(words)) == 10


def test_cli_caption(run_dir, vocab_file, fake_encoder, monkeypatch, capsys):
    from failscope.cli import caption as caption_cli
    from failscope.cli import main

    # the run was built from embeddings: the CLI is given the (fake) CLIP that made them
    monkeypatch.setattr(caption_cli, "_clip", lambda args, run: fake_encoder)
    monkeypatch.setenv("COLUMNS", "220")
    code = main(["caption", str(run_dir), "--vocab", str(vocab_file), "--top-k", "2"])
    out = capsys.readouterr().out
    assert code == 0
    assert "a photo of a red cat" in out
    assert "a photo of a dog on a striped background" in out
    bad = vocab_file.parent / "empty.txt"
    bad.write_text("", encoding="utf-8")
    code = main(["caption", str(run_dir), "--vocab", str(bad)])
    err = capsys.readouterr().err
    assert code == 2 and "empty" in err and str(bad) in err and err.count("\n") == 1


def test_cli_caption_rerank_option(run_dir, vocab_file, fake_encoder, monkeypatch, capsys):
    from failscope import load_run
    from failscope.cli import caption as caption_cli
    from failscope.cli import main

    # the run was built from embeddings: the CLI is given the (fake) CLIP that made them
    monkeypatch.setattr(caption_cli, "_clip", lambda args, run: fake_encoder)
    reranked = []
    for n in ("0", "3"):
        assert main(["caption", str(run_dir), "--vocab", str(vocab_file), "--rerank", n]) == 0
        run = load_run(run_dir)
        reranked.append([s.captions.rerank for s in run.slices])
        assert run.info.captions["rerank"] == int(n)
    assert all(r is None for r in reranked[0])
    assert any(r is not None and r.top == 3 for r in reranked[1])
    capsys.readouterr()
    assert main(["caption", str(run_dir), "--vocab", str(vocab_file), "--rerank", "-1"]) == 2
    err = capsys.readouterr().err
    assert "rerank" in err and err.count("\n") == 1


@pytest.mark.parametrize("method", ["classifier", "centroid"])
def test_success_end_names_the_easy_word(tmp_path, vocab_file, fake_encoder, run_factory, method):
    # the model fails on 40% of cats, except dotted cats, which it always gets right
    run_dir = run_factory(
        tmp_path / "s", failure_word={}, success_word={"cat": "dotted"}, base_error=0.4
    )
    # the proposal alone (rerank=0); re-ranking is tested on its own below
    slices = caption_run(
        run_dir, vocab=vocab_file, clip=fake_encoder, method=method, checks=False, rerank=0
    )
    cat = slices[0].captions
    assert cat.rerank is None and cat.success[0].fit_acc is None
    assert cat.success[0].word == "dotted", cat.success
    assert "dotted" not in [c.word for c in cat.failure]


def test_rerank_reads_validation_labels_never_test(tmp_path, vocab_file, fake_encoder, run_factory):
    import pandas as pd

    from failscope.run import EXAMPLES, write_parquet

    run_dir = run_factory(tmp_path / "r", failure_word=FAILS)

    def ranked():
        slices = caption_run(run_dir, vocab=vocab_file, clip=fake_encoder, checks=False)
        return [[(c.text, c.fit_acc) for c in s.captions.failure] for s in slices]

    def flip(split):
        ex = pd.read_parquet(run_dir / EXAMPLES)
        rows = ex["split"] == split
        ex.loc[rows, "correct"] = ~ex.loc[rows, "correct"]
        write_parquet(run_dir / EXAMPLES, ex)

    before = ranked()
    assert all(caps[0][1] < 0.6 for caps in before), before
    flip("test")
    assert ranked() == before  # the test split stays unseen until the check
    flip("val")
    after = ranked()
    # flipped validation labels make the planted caption the easiest: it drops from first
    assert all(a[0][0] != b[0][0] for a, b in zip(after, before, strict=True)), after


def test_rerank_depth_follows_the_slice_at_the_failure_end(
    tmp_path, vocab_file, fake_encoder, run_factory
):

    run_dir = run_factory(tmp_path / "r", failure_word=FAILS)
    run = load_run(run_dir)
    ex = run.examples
    cat_val = np.flatnonzero((ex["split"] == "val") & (ex["label"] == 0))
    scores = np.sort(run.slice_score_matrix()[cat_val, 0])[::-1]
    cat, dog = run.slices[0], run.slices[1]
    # move the cat slice's cutoff so that it holds 60 of the 80 validation cats, and the
    # dog slice's so that it holds a few: the failure end's depth is max(40, slice size)
    dog_val = np.flatnonzero((ex["split"] == "val") & (ex["label"] == 1))
    dog_cut = float(np.sort(run.slice_score_matrix()[dog_val, 0])[::-1][4])
    run.save_slices([
        cat.replace(rule=cat.rule.replace(cutoff=float(scores[59]), strict=False)),
        dog.replace(rule=dog.rule.replace(cutoff=dog_cut, strict=False)),
        *run.slices[2:],
    ])  # fmt: skip
    slices = caption_run(run_dir, vocab=vocab_file, clip=fake_encoder, checks=False)
    assert slices[0].captions.rerank.k == {"failure": 60, "success": 40}
    assert slices[1].captions.rerank.k == {"failure": 40, "success": 40}
    none = caption_run(run_dir, vocab=vocab_file, clip=fake_encoder, checks=False, rerank=0)
    assert none[0].captions.rerank is None
    assert all(c.fit_acc is None for c in none[0].captions.failure)
