"""Per-class work in worker processes, in batches of bounded size."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

__all__ = ["BATCH_BYTES", "map_batched"]

T = TypeVar("T")
R = TypeVar("R")

#: About how many bytes of input one batch hands to a worker process.
BATCH_BYTES = 16 << 20


def map_batched(
    fn: Callable[[list[T]], list[R]],
    items: Iterable[T],
    *,
    n_jobs: int | None,
    nbytes: Callable[[T], int],
    batch_bytes: int = BATCH_BYTES,
) -> list[R]:
    """``fn`` over ``items`` in batches; the results, in the items' order.

    With ``n_jobs`` None or 1, each item is its own batch, in this process. Otherwise
    items are grouped until they hold about ``batch_bytes`` (``nbytes`` of each) and
    the batches go to joblib worker processes, at most two per worker in flight, so
    a generator of items is consumed as the workers need it and memory stays bounded.
    Processes, not threads: numpy's OpenBLAS serialises concurrent calls from threads
    (measured: no speed-up with 2 threads). ``fn`` must be picklable (a module-level
    function, or a ``functools.partial`` of one).
    """
    if n_jobs in (None, 1):
        return [r for item in items for r in fn([item])]
    from joblib import Parallel, delayed

    def batches() -> Any:
        batch: list[T] = []
        size = 0
        for item in items:
            batch.append(item)
            size += nbytes(item)
            if size >= batch_bytes:
                yield batch
                batch, size = [], 0
        if batch:
            yield batch

    # max_nbytes=None: batches are pickled to the workers, not dumped to disk
    done = Parallel(n_jobs=n_jobs, max_nbytes=None, pre_dispatch="2*n_jobs")(
        delayed(fn)(b) for b in batches()
    )
    return [r for results in done for r in results]
