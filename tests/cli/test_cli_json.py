"""``--json``: one JSON document on stdout and nothing else there; ``--threads``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from tests.bad_inputs.harness import run_cli


def small_discover_args(dataset_writer, tmp_path):
    """A discover run from predictions + embeddings (no model, no CLIP): fast."""
    rows = dataset_writer(tmp_path / "data", n_per_class=12, size=8)
    labels = np.array([["ant", "bee", "cat"].index(r["label"]) for r in rows])
    planted = np.array([r["planted"] for r in rows])
    pd.DataFrame({"pred": np.where(planted, (labels + 1) % 3, labels)}).to_csv(
        tmp_path / "preds.csv", index=False
    )
    emb = np.random.default_rng(0).normal(size=(len(rows), 4)).astype(np.float32)
    emb[:, 1] += 4.0 * planted
    np.save(tmp_path / "emb.npy", emb)
    return [
        "--data", tmp_path / "data" / "manifest.csv", "--predictions", tmp_path / "preds.csv",
        "--embeddings", tmp_path / "emb.npy", "--no-report", "--min-examples", "4",
    ]  # fmt: skip


def test_discover_json(dataset_writer, tmp_path):
    out = tmp_path / "run"
    res = run_cli("discover", *small_discover_args(dataset_writer, tmp_path), "--out", out,
                  "--json", "--threads", "1")  # fmt: skip
    assert res.rc == 0, res.err
    doc = json.loads(res.out)  # the whole of stdout is one JSON document
    assert doc["run"] == str(out) and doc["report"] is None and doc["skipped_inputs"] == 0
    assert [s["class_name"] for s in doc["slices"]] == ["ant", "bee", "cat"]
    truth = json.loads((out / "slices.json").read_text())["slices"]
    for got, want in zip(doc["slices"], truth, strict=True):
        for key in ("id", "status", "size", "n_errors_in", "error_rate_in", "error_rate_out"):
            assert got[key] == want[key]
        assert got["p_value"] == want["support"]["p_value"]
        assert got["top_caption"] is None


def test_discover_table_without_json(dataset_writer, tmp_path):
    res = run_cli("discover", *small_discover_args(dataset_writer, tmp_path), "--out",
                  tmp_path / "run")  # fmt: skip
    assert res.rc == 0, res.err
    assert "failure slices on split 'val'" in res.out and "run written to" in res.out


def test_retrain_and_evaluate_parsers_take_json():
    from failscope.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["evaluate", "R", "--json"]).json
    args = parser.parse_args(["retrain", "R", "--json", "--threads", "2"])
    assert args.json and args.threads == 2
    assert parser.parse_args(["demo", "--threads", "3"]).threads == 3
