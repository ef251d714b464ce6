"""retrain_run and `failscope retrain` on a synthetic discover run."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from synthetic import make_problem, make_run

from failscope import InputError, load_retrained, load_run, retrain_run
from failscope.cli import main
from failscope.retrain.pipeline import expand_methods


@pytest.fixture(scope="module")
def all_methods(synthetic_run, tmp_path_factory):
    path, feats = synthetic_run
    out = tmp_path_factory.mktemp("retrain")
    metrics = retrain_run(
        path, methods="all", epochs=40, seed=0, features=feats, out=out, membership="hard"
    )
    return metrics, out


def test_slice_aware_models_beat_erm_on_the_slice(all_methods):
    metrics, _ = all_methods
    m = metrics["methods"]
    planted = {k: v["mean_planted_accuracy"] for k, v in m.items()}
    for method in ("sbl", "moa", "oracle"):
        assert planted[method] >= planted["erm"] + 0.10, planted
        assert planted[method] >= planted["audited"] + 0.10, planted
        assert m[method]["test_accuracy"] >= m["erm"]["test_accuracy"] - 0.01


def test_outputs_load_back_with_identical_predictions(all_methods, problem):
    metrics, out = all_methods
    names = ["erm", "upweight-hard", "upweight-balanced", "upweight-soft", "sbl", "moa", "oracle"]
    assert list(metrics["methods"]) == ["audited", *names]
    preds = pd.read_parquet(out / "predictions.parquet")
    assert list(preds.columns) == ["id", "method", "pred"]
    assert set(preds["method"]) == {"audited", *names}
    test = problem["split"] == "test"
    x = torch.from_numpy(problem["features"][test].astype(np.float32))
    for name in names:
        model = load_retrained(out / "models" / f"{name}.safetensors")
        mine = preds[preds["method"] == name]
        with torch.no_grad():
            again = model.forward_features(x)["logits"].argmax(1).numpy()
        np.testing.assert_array_equal(again, mine["pred"].to_numpy())
        acc = float((again == problem["label"][test]).mean())
        assert acc == pytest.approx(metrics["methods"][name]["test_accuracy"])
        assert model.retrain_info["method"] == name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["status"] == "ok"
    assert saved["methods"]["sbl"]["parameters_per_slice"] > 0
    for key in ("test_accuracy", "worst_slice_accuracy", "slice_accuracy", "parameters"):
        assert key in saved["methods"]["moa"]
    assert set(saved["methods"]["audited"]["slice_accuracy"]) == {"discovered", "planted"}


def test_retraining_is_deterministic_for_a_seed(synthetic_run):
    path, feats = synthetic_run
    kw = dict(methods="sbl,upweight-soft", epochs=5, features=feats, write=False)
    a = retrain_run(path, seed=3, **kw)
    b = retrain_run(path, seed=3, **kw)
    for m in ("sbl", "upweight-soft"):
        assert a["methods"][m]["final_loss"] == b["methods"][m]["final_loss"]
        assert a["methods"][m]["test_accuracy"] == b["methods"][m]["test_accuracy"]


def test_hybrid_methods_weight_the_master_loss(synthetic_run):
    path, feats = synthetic_run
    m = retrain_run(path, methods="sbl-balanced,moa-balanced", epochs=3, features=feats,
                    write=False)  # fmt: skip
    assert m["methods"]["sbl-balanced"]["master_weighting"] == "balanced"
    assert m["methods"]["moa-balanced"]["parameters"] > m["methods"]["sbl-balanced"]["parameters"]


def test_master_weighting_default_and_choices(synthetic_run):
    from failscope.retrain.pipeline import RetrainConfig

    path, feats = synthetic_run
    kw = dict(methods="sbl,oracle", epochs=3, features=feats, write=False)
    default = retrain_run(path, **kw)
    assert default["config"]["heads"]["master_weighting"] == "balanced"
    assert default["config"]["heads"]["membership"] == "hard"
    assert {default["methods"][k]["master_weighting"] for k in ("sbl", "oracle")} == {"balanced"}
    losses = {}
    for weighting in ("none", "balanced", "balanced-soft"):
        cfg = RetrainConfig(master_weighting=weighting)
        m = retrain_run(path, config=cfg, membership="soft", **kw)
        assert m["methods"]["sbl"]["master_weighting"] == weighting
        losses[weighting] = m["methods"]["sbl"]["final_loss"]
    assert len(set(losses.values())) == 3  # the weights change the training
    with pytest.raises(InputError, match="master_weighting"):
        RetrainConfig(master_weighting="heavy")


def test_slice_columns_replace_discovered_slices(synthetic_run):
    path, feats = synthetic_run
    m = retrain_run(
        path, methods="sbl", epochs=3, features=feats, write=False,
        slice_columns=["planted_rare_zero"],
    )  # fmt: skip
    assert m["slices"]["training"]["source"] == "column"
    assert m["slices"]["training"]["names"] == ["planted_rare_zero"]
    assert set(m["methods"]["sbl"]["slice_accuracy"]["user"]) == {"planted_rare_zero"}
    with pytest.raises(InputError, match="not in examples"):
        retrain_run(path, methods="sbl", features=feats, write=False, slice_columns=["nope"])


def test_method_names_expand_and_are_checked():
    assert expand_methods("upweight,sbl") == [
        "upweight-hard", "upweight-balanced", "upweight-soft", "sbl"
    ]  # fmt: skip
    assert expand_methods(["erm", "erm"]) == ["erm"]
    with pytest.raises(InputError, match="method"):
        expand_methods("boost")


def test_zero_discovered_slices_exit_cleanly_and_write_nothing(tmp_path, capsys):
    path = make_run(tmp_path / "run", make_problem(seed=1, n_train=300, n_val=200, n_test=200),
                    with_slices=False)  # fmt: skip
    stale = tmp_path / "run" / "retrain" / "metrics.json"
    stale.parent.mkdir()
    stale.write_text("{}")  # from an earlier run: would be misleading now
    code = main(["retrain", str(path), "--backbone", "clip"])
    assert code == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert len(lines) == 1 and "no discovered slice" in lines[0]
    assert not stale.exists()
    assert not any((tmp_path / "run" / "retrain").rglob("*.*"))
    res = retrain_run(load_run(path), backbone="clip")
    assert res["status"] == "no-slices"


def test_cli_writes_table_and_outputs(synthetic_run, tmp_path, capsys):
    path, _ = synthetic_run
    run_copy = tmp_path / "run"
    shutil.copytree(path, run_copy)
    code = main(["retrain", str(run_copy), "--method", "erm,sbl", "--epochs", "3",
                 "--backbone", "clip"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "audited" in out and "sbl" in out
    metrics = json.loads((run_copy / "retrain" / "metrics.json").read_text())
    assert list(metrics["methods"]) == ["audited", "erm", "sbl"]
    assert metrics["features"]["source"] == "clip"
    assert (run_copy / "retrain" / "models" / "sbl.safetensors").is_file()
    assert main(["retrain", str(run_copy), "--method", "nope"]) == 2


def test_soft_membership_trains_and_keeps_hard_flags_for_upweighting(synthetic_run):
    from failscope.retrain.pipeline import RetrainConfig, _training_slices

    path, feats = synthetic_run
    run = load_run(path)
    rows = np.flatnonzero(run.examples["split"].to_numpy() == "train")
    soft, flagged, _ = _training_slices(
        run, rows, cfg=RetrainConfig(membership="soft"), slice_columns=None, slice_mask=None
    )
    hard, flagged_hard, _ = _training_slices(
        run, rows, cfg=RetrainConfig(membership="hard"), slice_columns=None, slice_mask=None
    )
    np.testing.assert_array_equal(flagged, flagged_hard)
    np.testing.assert_array_equal(flagged, hard.hard().any(axis=1))
    assert np.any((soft.membership > 0) & (soft.membership < 1))
    m = retrain_run(path, methods="sbl", epochs=3, features=feats, membership="soft", write=False)
    assert m["config"]["heads"]["membership"] == "soft"
