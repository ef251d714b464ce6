"""map_batched: the same results in the same order, serial or in worker processes."""

from __future__ import annotations

import os
from functools import partial

import numpy as np
import pytest

from failscope._parallel import map_batched


def _sums(offset: int, batch: list[np.ndarray]) -> list[tuple[int, float]]:
    return [(os.getpid(), float(a.sum()) + offset) for a in batch]


@pytest.mark.parametrize("batch_bytes", [1, 800, 1 << 20])
def test_results_keep_the_items_order(batch_bytes):
    items = [np.full(25, i, dtype=np.float64) for i in range(12)]  # 200 bytes each
    got = map_batched(partial(_sums, 1), iter(items), n_jobs=2, nbytes=lambda a: a.nbytes,
                      batch_bytes=batch_bytes)  # fmt: skip
    assert [s for _, s in got] == [25.0 * i + 1 for i in range(12)]
    assert os.getpid() not in {pid for pid, _ in got}  # computed in worker processes
    serial = map_batched(partial(_sums, 1), iter(items), n_jobs=None, nbytes=len)
    assert [s for _, s in serial] == [s for _, s in got]
    assert {pid for pid, _ in serial} == {os.getpid()}
