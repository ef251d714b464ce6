"""failscope evaluate: planted slices against discovered ones, matched by average precision."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from failscope import InputError, load_run
from failscope.evaluate import caption_names_value, evaluate_run
from failscope.run import FORMAT_VERSION, write_json


def write_run(path, *, captions=True, truth=True, two_plants=False):
    """A run whose class 0 has a planted slice along embedding axis 0 (and one along axis 1).

    The audited model is wrong on the planted members; a few other errors are noise.
    Returns the run, the planted members and the fitted scores on the test split.
    """
    from runbuilder import build_run

    from failscope.run.schema import Caption, Captions, Plant, Truth

    rng = np.random.default_rng(0)
    n = 600
    labels = np.repeat([0, 1], n // 2)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    small = (labels == 0) & (rng.random(n) < 0.3)
    red = (labels == 0) & ~small & (rng.random(n) < 0.3)
    x[small, 0] += 3.0
    x[red, 1] += 3.0
    wrong = small | (red & two_plants) | (rng.random(n) < 0.05)
    preds = np.where(wrong, 1 - labels, labels)
    split = np.array(["train", "val", "test"] * (n // 3))
    run = build_run(
        path, embeddings=x, labels=labels, predictions=preds, splits=split,
        class_names=["0", "1"], metadata={"planted_small": small, "planted_red": red},
    )  # fmt: skip
    if captions:
        caps = Captions(
            failure=(Caption("a small 0", 1.0, "size", "small", None),
                     Caption("a red 0", 0.5, "color", "red", None)),
            success=(Caption("a large 0", -1.0, "size", "large", None),),
            method="centroid", vocabulary="test", n_candidates=3, reference="a photo of a 0",
            rerank=None,
        )  # fmt: skip
        run.save_slices([s.replace(captions=caps) for s in run.slices])
    plants = [("small", "size", small)] + ([("red", "color", red)] if two_plants else [])
    if truth:
        entries = tuple(
            Plant(
                name=f"rare_0_{fam}_{v}", spec=f"rare:0:{fam}={v}:0.02", kind="rare",
                class_index=0, class_name="0", family=fam, value=v, rate=0.02,
                polarity="present", column=f"planted_{v}", members=f"{fam} == {v!r}",
                noisy_target=None, n_members={"test": int((m & (split == "test")).sum())},
            )
            for v, fam, m in plants
        )  # fmt: skip
        write_json(
            path / "truth.json", Truth(format=FORMAT_VERSION, seed=0, plants=entries).to_json()
        )
        run.add_files("truth.json")
    test0 = (split == "test") & (labels == 0)
    ex = run.examples
    scores = ex["failure_score"].to_numpy()[test0]
    return load_run(path), small[test0], scores


def test_numbers_match_hand_computation(tmp_path):
    from sklearn.metrics import average_precision_score

    run, members, scores = write_run(tmp_path / "run")
    result = evaluate_run(run)
    row = result.plants[0]
    top10 = np.argsort(-scores, kind="stable")[:10]
    assert row.precision_at["10"] == pytest.approx(members[top10].mean())
    assert row.precision_at["10"] >= 0.9
    assert row.average_precision == pytest.approx(average_precision_score(members, scores))
    assert row.average_precision > 0.8 and row.matched_slice == "0/0" and row.distinct
    assert row.acc_in_slice == 0.0
    assert row.top1_hit is True and row.top5_hit is True
    flagged = scores > 0
    assert row.slice_size == flagged.sum()
    assert row.slice_recall == pytest.approx(flagged[members].mean())
    saved = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    assert saved["summary"]["mean_precision_at_10"] == pytest.approx(row.precision_at["10"])
    assert load_run(tmp_path / "run").evaluation == result


def test_two_plants_matched_by_one_slice_are_not_distinct(tmp_path):
    run, _, _ = write_run(tmp_path / "run", two_plants=True)
    result = evaluate_run(run, write=False)
    assert [r.matched_slice for r in result.plants] == ["0/0", "0/0"]
    assert [r.distinct for r in result.plants] == [False, False]
    assert result.summary["distinct_rate"] == 0.0


def test_absent_polarity_checks_success_end(tmp_path):
    run, _, _ = write_run(tmp_path / "run")
    truth = json.loads((run.path / "truth.json").read_text())
    truth["plants"][0].update(polarity="absent", value="large")
    write_json(run.path / "truth.json", truth)
    row = evaluate_run(load_run(run.path), write=False).plants[0]
    assert row.caption_end == "success" and row.top1_hit is True


def test_without_captions_hits_are_none(tmp_path):
    run, _, _ = write_run(tmp_path / "run", captions=False)
    row = evaluate_run(run, write=False).plants[0]
    assert row.top1_hit is None and row.average_precision is not None


def test_caption_word_match_is_whole_word():
    assert caption_names_value("a photo of a Red 7", "red")
    assert not caption_names_value("a photo of a reddish 7", "red")


def test_errors_without_truth_or_split(tmp_path):
    run, _, _ = write_run(tmp_path / "a", truth=False)
    with pytest.raises(InputError, match=r"has no truth\.json"):
        evaluate_run(run)
    run, _, _ = write_run(tmp_path / "b")
    with pytest.raises(InputError, match="split 'nope' is not in"):
        evaluate_run(run, split="nope")
    truth = json.loads((run.path / "truth.json").read_text())
    truth["plants"][0]["class_index"] = "zero"
    write_json(run.path / "truth.json", truth)
    with pytest.raises(InputError, match=r"plants\[0\]\.class_index must be an integer"):
        evaluate_run(load_run(run.path))


def test_cli_prints_table_and_one_line_error(tmp_path):
    run, _, _ = write_run(tmp_path / "run")
    env = {**os.environ, "COLUMNS": "200"}
    ok = subprocess.run([sys.executable, "-m", "failscope", "evaluate", str(run.path)],
                        capture_output=True, text=True, env=env)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "rare_0_size_small" in ok.stdout and "0/0" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "failscope", "evaluate", str(tmp_path / "x")],
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "run directory not found" in bad.stderr
