"""``--json``: one JSON document on stdout and nothing else there; ``--threads``."""

from __future__ import annotations

import json

from tests.bad_inputs.harness import run_cli, small_discover_args


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
