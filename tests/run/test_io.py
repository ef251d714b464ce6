"""The bottom of the run package: atomic writes, JSON, permissions."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from failscope.run import atomic_open, atomic_write, write_json, write_npy


def test_atomic_open_leaves_old_file_on_failure(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(p, "w") as fh:
        fh.write("half")
        raise RuntimeError("killed")
    assert p.read_text() == "old"
    assert os.listdir(tmp_path) == ["x.json"]  # no temporary left behind


def test_atomic_write_failure_keeps_old_file_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "a.npy"
    write_npy(p, np.arange(3))

    def broken(tmp):
        tmp.write_bytes(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(p, broken)
    assert np.load(p).tolist() == [0, 1, 2]
    assert os.listdir(tmp_path) == ["a.npy"]


def test_write_json_nan_becomes_null(tmp_path):
    write_json(tmp_path / "a.json", {"x": float("nan"), "y": np.float32(1.5), "z": [np.inf]})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": None, "y": 1.5, "z": [None]}


def test_write_npy_keeps_the_name_and_refuses_pickle(tmp_path):
    write_npy(tmp_path / "b.npy", np.ones((2, 3), np.float32))
    assert sorted(os.listdir(tmp_path)) == ["b.npy"]
    assert np.load(tmp_path / "b.npy", allow_pickle=False).shape == (2, 3)
    with pytest.raises(ValueError):
        write_npy(tmp_path / "c.npy", np.array([{"a": 1}], dtype=object))


def test_atomic_files_get_the_usual_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {})
        write_npy(tmp_path / "b.npy", np.zeros(2))
    finally:
        os.umask(mask)
    for name in ("a.json", "b.npy"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644
