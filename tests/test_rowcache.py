"""The generic resumable row cache: layout, done-marking, reuse, format and dtype checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from failscope.rowcache import RowCache

KEYS = np.arange(1, 11, dtype=np.uint64) * 7919  # ten file versions (0 would mean "missing")


def _maps(ids) -> np.ndarray:
    """Attribution-like rows: (len(ids), 7, 7) float16, a different map per example."""
    ids = np.asarray(ids, dtype=np.float32)
    return (ids[:, None, None] + np.linspace(0, 1, 49).reshape(7, 7)).astype(np.float16)


def _cache(folder, **kw) -> RowCache:
    args = dict(identity="model-a", row_shape=(7, 7), dtype=np.float16, data_file="maps.npy")
    args.update(kw)
    return RowCache(folder, **args)


def test_rows_of_any_shape_and_dtype_are_resumable(tmp_path):
    cache = _cache(tmp_path / "c")
    with pytest.raises(RuntimeError, match="stop"):
        with cache.open(KEYS, flush_seconds=3600) as rows:
            assert rows.rows.shape == (10, 7, 7) and rows.rows.dtype == np.float16
            assert rows.todo().tolist() == list(range(10))
            rows.write(np.array([0, 1, 2]), _maps([0, 1, 2]))
            rows.skip([3])
            raise RuntimeError("stop")  # an exception still commits the finished rows
    meta = json.loads(cache.meta_path.read_text())
    assert meta["format"] == 1 and meta["identity"] == "model-a"
    assert meta["dtype"] == "float16" and meta["row_shape"] == [7, 7]
    with cache.open(KEYS) as rows:
        assert rows.todo().tolist() == list(range(3, 10))  # the skipped row is retried
        assert np.array_equal(rows.rows[:3], _maps([0, 1, 2]))
        assert np.isnan(rows.rows[3]).all()
        rows.write(rows.todo(), _maps(range(3, 10)))
        out = rows.read()
    assert isinstance(out, np.memmap) and not out.flags.writeable
    assert np.array_equal(out, _maps(range(10)))


def test_rows_follow_their_files_when_the_dataset_is_re_laid_out(tmp_path):
    cache = _cache(tmp_path / "c")
    with cache.open(KEYS) as rows:
        rows.write(np.arange(10), _maps(range(10)))
    changed = KEYS[::-1].copy()  # reversed order, one file changed, two new ones
    changed[0] = 5
    changed = np.concatenate([changed, [11, 13]]).astype(np.uint64)
    with cache.open(changed) as rows:
        assert rows.todo().tolist() == [0, 10, 11]
        assert np.array_equal(rows.rows[1:10], _maps(range(8, -1, -1)))


@pytest.mark.parametrize(
    "other",
    [
        {"identity": "model-b"},
        {"format": 2},
        {"row_shape": (8, 8)},
        {"dtype": np.float32},
    ],
)
def test_another_identity_format_shape_or_dtype_is_rebuilt_not_read(tmp_path, other):
    with _cache(tmp_path / "c").open(KEYS) as rows:
        rows.write(np.arange(10), _maps(range(10)))
    with _cache(tmp_path / "c", **other).open(KEYS) as rows:
        assert rows.todo().tolist() == list(range(10))
        assert rows.rows.shape[1:] == other.get("row_shape", (7, 7))
        assert not np.any(rows.rows[:])  # fresh zeros, nothing of the old rows


def test_update_meta_keeps_the_layout_fields(tmp_path):
    cache = _cache(tmp_path / "c", meta={"model": {"kind": "x"}})
    with cache.open(KEYS):
        cache.update_meta(n_outputs=10)
    meta = cache.read_meta()
    assert meta["n_outputs"] == 10 and meta["model"] == {"kind": "x"}
    with cache.open(KEYS) as rows:  # still valid: not rebuilt
        assert cache.read_meta()["n_outputs"] == 10 and len(rows.todo()) == 10


def test_integer_rows_are_refused(tmp_path):
    with pytest.raises(TypeError, match="must be floating"):
        RowCache(tmp_path, identity="x", row_shape=(2,), dtype=np.int64)
