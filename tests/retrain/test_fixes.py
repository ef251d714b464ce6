"""The fix of each annotation in retrain_run: core, noisy labels, not a failure."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from synthetic import audited_head, make_noisy_problem, make_problem, make_run

import failscope
from failscope import InputError, load_run, retrain_run
from failscope.regions import confusions, label_shift
from failscope.retrain.features import BackboneFeatures
from failscope.retrain.pipeline import RetrainConfig
from failscope.retrain.relabel import find_label_errors, suspects
from tests.bad_inputs.harness import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def noisy_run(tmp_path_factory):
    problem = make_noisy_problem(seed=0)
    path = make_run(tmp_path_factory.mktemp("noisy") / "run", problem, seed=0)
    w, b = audited_head(problem)
    feats = BackboneFeatures(problem["features"].astype(np.float32), w, b, "synthetic")
    return load_run(path), feats, problem


def test_the_noisy_slice_is_found(noisy_run):
    run, _, problem = noisy_run
    entry = run.slices_of(0)[0]
    members = run.members(entry)
    test = run.examples["split"].to_numpy() == "test"
    attr = problem["attr"]
    assert (members & attr & test).sum() / (attr & test).sum() > 0.8


def test_noisy_relabel_repairs_the_slice_and_lists_its_changes(noisy_run, tmp_path):
    run, feats, _ = noisy_run
    sid = run.slices_of(0)[0].id
    failscope.annotate(run, sid, "noisy")
    out = tmp_path / "out"
    m = retrain_run(
        run, methods="erm,sbl,noisy-relabel", features=feats, out=out, epochs=40, noisy_model="head"
    )
    acc = {k: v["mean_planted_accuracy"] for k, v in m["methods"].items()}
    overall = {k: v["test_accuracy"] for k, v in m["methods"].items()}
    assert acc["noisy-relabel"] >= acc["audited"] + 0.30, acc
    assert acc["noisy-relabel"] >= max(acc["erm"], acc["sbl"]) + 0.20, acc
    assert overall["noisy-relabel"] >= overall["audited"], overall
    changes = pd.read_parquet(out / "relabelled.parquet")
    assert list(changes.columns) == [
        "id", "path", "slice_id", "action", "old_label", "new_label", "model_probability",
    ]  # fmt: skip
    ex = run.examples.set_index("id")
    rows = ex.loc[changes["id"]]
    wrong = (rows["label"] != rows["true_label"]).to_numpy()
    n_wrong = int(((ex["split"] == "train") & (ex["label"] != ex["true_label"])).sum())
    assert wrong.mean() >= 0.9  # what it changes was wrong
    assert wrong.sum() >= 0.8 * n_wrong  # and it finds most of what was wrong
    assert (changes["new_label"].astype(int) == rows["true_label"].to_numpy()).mean() >= 0.9
    info = m["methods"]["noisy-relabel"]
    assert info["changed"] == len(changes) and info["slices"] == [sid]
    assert m["annotations"]["slices"] == {"noisy": [sid]}


def test_suspects_are_the_region_with_the_class_or_its_confusions(noisy_run):
    run, _, _ = noisy_run
    sid = run.slices_of(0)[0].id
    assert confusions(run, sid).tolist() == [1]  # the noise's label: the model predicts it
    ex = run.examples
    labels = ex["label"].to_numpy()
    rows = np.flatnonzero(ex["split"].to_numpy() == "train")
    region, mask, owner = suspects(run, [sid], rows, labels)
    assert mask.sum() > 50 and not (mask & ~region).any()
    assert set(labels[rows[mask]].tolist()) == {0, 1} and (owner[mask] == sid).all()
    assert set(labels[rows[region & ~mask]].tolist()) <= {2, 3, 4, 5}  # the rest of the region


@pytest.mark.parametrize("right", ["suspects", "region"])
def test_the_heldout_model_that_knows_the_spared_labels_is_kept(noisy_run, right):
    """Two held-out models (without the suspects, without the region); per slice the one
    that calls the suspects labelled with the slice's class that class is kept, and only
    labels towards that class change."""
    run, _, _ = noisy_run
    sid = run.slices_of(0)[0].id
    ex = run.examples
    labels = ex["label"].to_numpy()
    rows = np.flatnonzero(ex["split"].to_numpy() == "train")
    calls = []

    def heldout(keep, sus):
        calls.append(len(keep))
        prob = np.zeros((len(sus), len(run.class_names)))
        name = ("suspects", "region")[len(calls) - 1]
        prob[:, 0 if name == right else 2] = 1.0  # the right model says 0 for the suspects
        spared = np.flatnonzero(labels[sus] == 0)[0]
        prob[spared] = np.eye(len(run.class_names))[3]  # but one labelled 0: left as it is
        return prob

    relab = find_label_errors(run, [sid], labels=labels, train_rows=rows, heldout=heldout)
    assert calls[0] > calls[1]  # the region is larger than the suspects
    assert relab.heldout[sid]["kept"] == right
    assert 0.9 < relab.heldout[sid][f"agreement_{right}"] < 1.0
    assert (relab.old == 1).all() and (relab.new == 0).all()  # towards class 0 only
    _, mask, _ = suspects(run, [sid], rows, labels)
    assert len(relab.rows) == int((labels[rows[mask]] == 1).sum())


def test_noisy_drop_removes_the_disputed_examples(noisy_run, tmp_path):
    run, feats, _ = noisy_run
    failscope.annotate(run, run.slices_of(0)[0].id, "noisy")
    m = retrain_run(
        run, methods="noisy-relabel", features=feats, out=tmp_path, noisy="drop", noisy_model="head"
    )
    changes = pd.read_parquet(tmp_path / "relabelled.parquet")
    assert len(changes) > 50 and set(changes["action"]) == {"drop"}
    assert changes["new_label"].isna().all()
    assert m["methods"]["noisy-relabel"]["noisy"] == "drop"


def test_core_slices_get_sbl_and_moa_and_not_a_failure_is_left_out(noisy_run, tmp_path):
    run, feats, _ = noisy_run
    sid = run.slices_of(0)[0].id
    failscope.annotate(run, sid, "core")
    m = retrain_run(run, methods="all", features=feats, out=tmp_path, epochs=5)
    methods = m["methods"]
    assert "core-sbl" in methods and "core-moa" in methods  # "all" adds the usable fixes
    assert "noisy-relabel" not in methods and "spurious-crm" not in methods
    assert methods["core-sbl"]["slices"] == [sid] and methods["core-moa"]["fix"] == "core"
    assert methods["sbl"]["slices"] == [sid]
    failscope.annotate(run, sid, "not-a-failure")
    m = retrain_run(run, methods="all", features=feats, out=tmp_path, epochs=5)
    assert m["status"] == "no-slices" and "not-a-failure" in m["message"]
    assert not (tmp_path / "metrics.json").exists()  # no result that no longer holds


def test_fixes_need_annotations(noisy_run, tmp_path):
    run, feats, _ = noisy_run
    (run.path / "annotations.json").unlink(missing_ok=True)
    with pytest.raises(InputError, match="annotated 'noisy'"):
        retrain_run(run, methods="noisy-relabel", features=feats, out=tmp_path)
    with pytest.raises(InputError, match="--method fixes needs"):
        retrain_run(run, methods="fixes", features=feats, out=tmp_path)
    m = retrain_run(run, methods="erm", features=feats, out=tmp_path, epochs=2)
    assert m["annotations"] == {"source": None, "version": 0, "slices": {}}


def test_an_annotation_file_of_another_run_is_refused(noisy_run, tmp_path):
    run, _, _ = noisy_run
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": 2, "run_id": "f" * 32, "version": 1,
                                 "annotations": []}))  # fmt: skip
    res = run_cli("retrain", run.path, "--annotations", other, "--method", "erm")
    assert_one_line_error(res, "retrain", str(other), "another run")
    other.write_text(json.dumps({"format": 2, "run_id": run.info.run_id, "version": 1,
                                 "annotations": [{"slice_id": "3/9", "label": "core",
                                                  "note": None, "updated": "x"}]}))  # fmt: skip
    res = run_cli("retrain", run.path, "--annotations", other, "--method", "erm")
    assert_one_line_error(res, "retrain", "'3/9' is not a slice")


@pytest.fixture(scope="module")
def moved_run(tmp_path_factory):
    """A noisy-label problem with enough examples for the label-shift test to have power."""
    problem = make_noisy_problem(seed=0, n=6000)
    path = make_run(tmp_path_factory.mktemp("moved") / "run", problem, seed=0)
    w, b = audited_head(problem)
    feats = BackboneFeatures(problem["features"].astype(np.float32), w, b, "synthetic")
    run = load_run(path)
    attr_members = [(run.members(e) & problem["attr"]).sum() for e in run.slices_of(0)]
    return run, feats, run.slices_of(0)[int(np.argmax(attr_members))].id


def test_label_shift_tells_a_noisy_slice_from_a_rare_one(moved_run, tmp_path):
    run, _, sid = moved_run
    noisy = label_shift(run, sid)
    assert noisy.confusions == (1,)  # the noise's label
    assert noisy.likely_noisy and noisy.moved > 0.8, noisy
    assert noisy.z_missing > 5 and noisy.z_extra > 5, noisy
    rare_run = load_run(make_run(tmp_path / "rare", make_problem(seed=0, n_train=5000,
                                                                 n_val=2000)))  # fmt: skip
    rare = label_shift(rare_run, rare_run.slices_of(0)[0].id)
    assert rare.z_missing > 5  # the rare slice is just as scarce in training ...
    assert abs(rare.moved) < 0.2 and not rare.likely_noisy, rare  # ... but nothing moved


def test_slice_aware_training_leaves_out_unannotated_slices_with_moved_labels(moved_run):
    run, feats, sid = moved_run
    (run.path / "annotations.json").unlink(missing_ok=True)
    kept = [e.id for e in run.slices if e.id != sid]

    def training(**kw):
        m = retrain_run(run, methods="sbl", features=feats, epochs=1, write=False, **kw)
        return m["slices"]["training"]

    tr = training()
    assert tr["names"] == kept and list(tr["moved_labels"]) == [sid]
    assert tr["moved_labels"][sid]["likely_noisy"] and tr["moved_labels"][sid]["confusions"] == [1]
    tr = training(config=RetrainConfig(skip_moved_labels=False))
    assert sid in tr["names"] and tr["moved_labels"] == {}
    failscope.annotate(run, sid, "core")  # a person's verdict wins
    tr = training()
    assert sid in tr["names"] and tr["moved_labels"] == {}
    (run.path / "annotations.json").unlink()


def test_the_cli_says_which_slices_it_left_out(moved_run, tmp_path):
    run, _, sid = moved_run
    res = run_cli("retrain", run.path, "--method", "erm", "--epochs", "1", "--backbone", "clip",
                  "--out", tmp_path / "out")  # fmt: skip
    assert res.rc == 0, res.err
    words = " ".join(res.out.split())
    assert f"slice {sid} left out as likely noisy labels" in words
    assert "labelled 1 than the fitting split predicts" in words
    res = run_cli("retrain", run.path, "--method", "erm", "--epochs", "1", "--backbone", "clip",
                  "--out", tmp_path / "out", "--keep-moved-labels")  # fmt: skip
    assert res.rc == 0 and "left out" not in res.out
