"""Hostile inputs: a YAML alias bomb, a checkpoint swapped after discover, carried trust."""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import pytest

from bad_inputs.harness import assert_one_line_error, assert_untouched, run_cli, snapshot
from failscope import InputError

#: 9 levels of 9 aliases: about 387 million strings once expanded (the issue's 276-byte bomb).
BOMB = "\n".join(
    ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [
        f"{c}: &{c} [{','.join([f'*{p}'] * 9)}]"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    ]
)


@pytest.mark.parametrize("loader", ["vocabulary", "synonyms"])
def test_yaml_alias_bomb_is_refused_fast_in_one_short_line(tmp_path, loader):
    from failscope.caption.vocabulary import load_synonyms, load_vocabulary_file

    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    start = time.perf_counter()
    with pytest.raises(InputError) as err:
        if loader == "vocabulary":
            load_vocabulary_file(path)
        else:
            load_synonyms(path, ["a", "b"])
    assert time.perf_counter() - start < 1.0
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < 300
    assert str(path) in msg and "line 1" in msg and "anchors and aliases" in msg


def test_yaml_without_aliases_still_loads(tmp_path):
    from failscope.caption.vocabulary import load_vocabulary_file

    path = tmp_path / "ok.yaml"
    path.write_text(
        "weather: [snowy, rainy]\nplaces:\n  words: [beach]\n  templates: ['{cls} on a {word}']\n"
    )
    vocab = load_vocabulary_file(path)
    assert vocab.n_words == 3 and [f.name for f in vocab.families] == ["weather", "places"]


# --------------------------------------------------------------------------- retrain checkpoints

MODEL_PY = """\
import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(3, 3)

    def forward(self, x):
        return self.fc(self.pool(x).flatten(1))


def make():
    return Net()
"""


def _state(scale: float) -> dict:
    import torch

    return {"fc.weight": scale * torch.eye(3), "fc.bias": torch.zeros(3)}


@pytest.fixture
def audited_run(tmp_path, dataset_writer, monkeypatch):
    """``make(pickled)``: a discover run of a ``module:function`` model with a checkpoint."""
    import importlib

    import torch

    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.chdir(tmp_path)
    rows = dataset_writer(tmp_path / "data", n_per_class=12, splits=("train", "val", "test"))
    (tmp_path / "retrain_model_mod.py").write_text(MODEL_PY)
    planted = np.array([r["planted"] for r in rows], dtype=np.float32)
    emb = np.random.default_rng(0).normal(size=(len(rows), 6)).astype(np.float32)
    emb[:, 0] += 4 * planted  # the audited model's errors lie along axis 0
    np.save(tmp_path / "emb.npy", emb)

    def make(pickled: bool):
        ck = tmp_path / "ck.pt"
        if pickled:
            sys.path.insert(0, str(tmp_path))
            try:
                net = importlib.import_module("retrain_model_mod").make()
            finally:
                sys.path.remove(str(tmp_path))
            net.load_state_dict(_state(10.0))
            torch.save({"model": net, "epoch": 3}, ck)  # needs pickle to load
        else:
            torch.save(_state(10.0), ck)
        args = ["--model", "retrain_model_mod:make", "--checkpoint", ck, "--embeddings", "emb.npy"]
        args += ["--trust-checkpoint"] if pickled else []
        res = run_cli("-q", "discover", "--data", tmp_path / "data" / "manifest.csv",
                      "--out", tmp_path / "run", "--no-report", *args)  # fmt: skip
        assert res.rc == 0, res.err
        return tmp_path / "run", ck

    return make


def _retrain(run, *extra):
    return run_cli("-q", "retrain", run, "--method", "erm", "--epochs", 1, *extra)


def test_retrain_refuses_a_checkpoint_swapped_after_discover(audited_run, tmp_path):
    import torch

    run, ck = audited_run(pickled=False)
    st = ck.stat()
    torch.save(_state(-10.0), ck)  # same size; the mtime is put back
    os.utime(ck, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert ck.stat().st_size == st.st_size
    before = snapshot(tmp_path, exclude=(run,))
    res = _retrain(run)
    assert_one_line_error(res, "retrain", f"checkpoint {ck} changed since discover", "re-run")
    assert_untouched(before, tmp_path, exclude=(run,))
    assert not (run / "retrain").exists()


def test_retrain_runs_on_the_unchanged_checkpoint(audited_run):
    run, _ = audited_run(pickled=False)
    res = _retrain(run)
    assert res.rc == 0, res.err
    assert (run / "retrain" / "metrics.json").is_file()


def test_retrain_never_carries_pickle_trust_from_run_json(audited_run, tmp_path):
    import json

    run, ck = audited_run(pickled=True)
    assert json.loads((run / "run.json").read_text())["model"]["trust_checkpoint"] is True
    before = snapshot(tmp_path, exclude=(run,))
    res = _retrain(run)
    assert_one_line_error(res, "retrain", f"checkpoint {ck} needs pickle", "--trust-checkpoint")
    assert_untouched(before, tmp_path, exclude=(run,))
    res = _retrain(run, "--trust-checkpoint")  # the flag of this command, given again
    assert res.rc == 0, res.err
