"""``failscope caption``: --clip for a run built from --embeddings; help with examples."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.bad_inputs.harness import assert_one_line_error, run_cli


@pytest.mark.parametrize(
    ("command", "parts"),
    [
        ("caption", ("examples:", "--vocab my_phrases.txt", "vocabulary files:", ".txt",
                     ".yaml", "templates:", "{cls}", "{word}", "a photo of a sparrow", "--clip")),
        ("evaluate", ("examples:", "failscope evaluate runs/demo", "--json")),
        ("report", ("examples:", "failscope report runs/audit", "--out audit.html")),
    ],
)  # fmt: skip
def test_help_has_examples(command, parts):
    res = run_cli(command, "--help")
    assert res.rc == 0
    for part in parts:
        assert part in res.out, part


def embeddings_run(dataset_writer, tmp_path, dim=32):
    rows = dataset_writer(tmp_path / "data", n_per_class=12, size=8)
    labels = np.array([["ant", "bee", "cat"].index(r["label"]) for r in rows])
    planted = np.array([r["planted"] for r in rows])
    pd.DataFrame({"pred": np.where(planted, (labels + 1) % 3, labels)}).to_csv(
        tmp_path / "preds.csv", index=False
    )
    emb = np.random.default_rng(0).normal(size=(len(rows), dim)).astype(np.float32)
    emb[:, 1] += 4.0 * planted
    np.save(tmp_path / "emb.npy", emb)
    out = tmp_path / "run"
    res = run_cli(
        "discover", "--data", tmp_path / "data" / "manifest.csv", "--predictions",
        tmp_path / "preds.csv", "--embeddings", tmp_path / "emb.npy", "--no-report",
        "--min-examples", "4", "--out", out,
    )  # fmt: skip
    assert res.rc == 0, res.err
    return out


def test_caption_a_run_built_from_embeddings_with_clip(dataset_writer, tiny_clip, tmp_path):
    run = embeddings_run(dataset_writer, tmp_path)
    res = run_cli("caption", run)
    assert_one_line_error(res, "caption", "records no CLIP", "--clip NAME")
    vocab = tmp_path / "words.txt"
    vocab.write_text("tiny\nin the snow\nwith a stripe\nred\n", encoding="utf-8")
    res = run_cli("caption", run, "--clip", tiny_clip.config, "--clip-checkpoint",
                  tiny_clip.checkpoint, "--vocab", vocab, "--top-k", "2")  # fmt: skip
    assert res.rc == 0, res.err
    slices = json.loads((run / "slices.json").read_text())["slices"]
    texts = {c["text"] for s in slices for c in s["captions"]["failure"]}
    assert texts and texts <= {
        f"a photo of {a} {t}"
        for a, t in [
            ("a", "tiny ant"), ("a", "tiny bee"), ("a", "tiny cat"), ("a", "red ant"),
            ("a", "red bee"), ("a", "red cat"), ("an", "ant in the snow"),
            ("a", "bee in the snow"), ("a", "cat in the snow"), ("an", "ant with a stripe"),
            ("a", "bee with a stripe"), ("a", "cat with a stripe"),
        ]
    }  # fmt: skip
    assert "Failure captions" in res.out


def test_clip_options_need_clip(synthetic_run):
    res = run_cli("caption", synthetic_run(), "--clip-checkpoint", "x.pt")
    assert_one_line_error(res, "caption", "--clip-checkpoint", "--clip NAME")
