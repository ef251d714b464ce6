"""failscope evaluate: planted slices against discovered ones, on a hand-made run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from failscope import InputError, load_run
from failscope.evaluate import caption_names_value, evaluate_run
from failscope.run import FORMAT_VERSION, write_json, write_parquet


def write_run(path, *, captions=True, truth=True):
    """Class 0 has 40 test examples; the 10 planted members score highest but one."""
    n = 40
    scores = np.linspace(1.0, -1.0, n)
    members = np.zeros(n, bool)
    members[[0, 1, 2, 3, 4, 5, 6, 7, 8, 12]] = True  # 9 of the top 10, plus rank 13
    frame = pd.DataFrame(
        {
            "id": np.arange(n),
            "path": [f"{i}.png" for i in range(n)],
            "split": "test",
            "label": 0,
            "pred": np.where(members, 1, 0),
            "correct": ~members,
            "failure_score": scores.astype(np.float32),
            "slice": scores > 0,
            "planted_rare_0_size_small": members,
        }
    )
    write_parquet(path / "examples.parquet", frame)
    write_json(path / "run.json", {"format": FORMAT_VERSION, "classes": ["0", "1"]})
    caps = {
        "failure": [{"text": "a small 0", "score": 1.0}, {"text": "a red 0", "score": 0.5}],
        "success": [{"text": "a large 0", "score": -1.0}],
    }
    slices = [
        {"class_index": 0, "status": "ok", "captions": caps if captions else None},
        {"class_index": 1, "status": "skipped", "captions": None},
    ]
    write_json(path / "slices.json", {"format": FORMAT_VERSION, "slices": slices})
    if truth:
        plant = {
            "name": "rare_0_size_small", "kind": "rare", "class": 0, "family": "size",
            "value": "small", "rate": 0.02, "polarity": "present",
            "column": "planted_rare_0_size_small",
        }  # fmt: skip
        write_json(path / "truth.json", {"format": FORMAT_VERSION, "plants": [plant]})
    return members, scores


def test_numbers_match_hand_computation(tmp_path):
    from sklearn.metrics import average_precision_score

    members, scores = write_run(tmp_path)
    result = evaluate_run(load_run(tmp_path))
    row = result["plants"][0]
    assert row["precision_at_10"] == pytest.approx(0.9)
    assert row["precision_at_25"] == pytest.approx(10 / 25)
    assert row["average_precision"] == pytest.approx(average_precision_score(members, scores))
    assert row["acc_in_slice"] == 0.0 and row["acc_overall"] == pytest.approx(30 / 40)
    assert row["top1_hit"] is True and row["top5_hit"] is True
    assert row["slice_size"] == 20 and row["slice_recall"] == pytest.approx(1.0)
    saved = json.loads((tmp_path / "evaluation.json").read_text())
    assert saved["summary"]["mean_precision_at_10"] == pytest.approx(0.9)


def test_absent_polarity_checks_success_end(tmp_path):
    write_run(tmp_path)
    truth = json.loads((tmp_path / "truth.json").read_text())
    truth["plants"][0].update(polarity="absent", value="large")
    write_json(tmp_path / "truth.json", truth)
    row = evaluate_run(load_run(tmp_path), write=False)["plants"][0]
    assert row["caption_end"] == "success" and row["top1_hit"] is True


def test_without_captions_hits_are_none(tmp_path):
    write_run(tmp_path, captions=False)
    row = evaluate_run(load_run(tmp_path), write=False)["plants"][0]
    assert row["top1_hit"] is None and row["average_precision"] is not None


def test_caption_word_match_is_whole_word():
    assert caption_names_value("a photo of a Red 7", "red")
    assert not caption_names_value("a photo of a reddish 7", "red")


def test_errors_without_truth_or_split(tmp_path):
    write_run(tmp_path, truth=False)
    with pytest.raises(InputError, match=r"has no truth\.json"):
        evaluate_run(load_run(tmp_path))
    write_run(tmp_path)
    with pytest.raises(InputError, match="split 'val' is not in"):
        evaluate_run(load_run(tmp_path), split="val")


def test_cli_prints_table_and_one_line_error(tmp_path):
    write_run(tmp_path)
    env = {**os.environ, "COLUMNS": "200"}
    ok = subprocess.run([sys.executable, "-m", "failscope", "evaluate", str(tmp_path)],
                        capture_output=True, text=True, env=env)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "rare_0_size_small" in ok.stdout and "0.90" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "failscope", "evaluate", str(tmp_path / "x")],
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "run directory not found" in bad.stderr
