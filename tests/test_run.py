"""The run directory: atomic writes, format checks, load_run."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from failscope import InputError, load_run
from failscope.run import FORMAT_VERSION, atomic_open, write_json, write_npy, write_parquet


def test_atomic_open_leaves_old_file_on_failure(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(p, "w") as fh:
        fh.write("half")
        raise RuntimeError("killed")
    assert p.read_text() == "old"
    assert os.listdir(tmp_path) == ["x.json"]  # no temporary left behind


def test_write_json_nan_becomes_null(tmp_path):
    write_json(tmp_path / "a.json", {"x": float("nan"), "y": np.float32(1.5), "z": [np.inf]})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": None, "y": 1.5, "z": [None]}


def make_run(path):
    write_json(path / "run.json", {"format": FORMAT_VERSION, "classes": ["a", "b"], "skipped": []})
    write_json(path / "slices.json", {"format": FORMAT_VERSION, "slices": [{"id": "class-0"}]})
    write_npy(path / "directions.npy", np.ones((2, 4), np.float32))
    write_parquet(path / "examples.parquet", pd.DataFrame({"id": [0, 1], "label": [0, 1]}))


def test_load_run_roundtrip(tmp_path):
    make_run(tmp_path)
    run = load_run(tmp_path)
    assert run.class_names == ["a", "b"]
    assert run.directions.shape == (2, 4)
    assert list(run.examples["label"]) == [0, 1]
    assert run.truth is None and run.evaluation is None and run.retrain_metrics is None
    run.save_slices([{"id": "class-0", "captions": {"failure": []}}])
    assert load_run(tmp_path).slices[0]["captions"] == {"failure": []}
    run.update_info(extra=1)
    assert load_run(tmp_path).info["extra"] == 1


def test_load_run_errors(tmp_path):
    with pytest.raises(InputError, match="run directory not found"):
        load_run(tmp_path / "nope")
    with pytest.raises(InputError, match=r"has no run\.json"):
        load_run(tmp_path)
    write_json(tmp_path / "run.json", {"format": 99})
    with pytest.raises(InputError, match="format 99"):
        load_run(tmp_path)
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_run(tmp_path)


def test_atomic_files_get_the_usual_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {})
        write_npy(tmp_path / "b.npy", np.zeros(2))
    finally:
        os.umask(mask)
    for name in ("a.json", "b.npy"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644
