"""torch's intra-op threads for the predict and embed passes.

torch starts one intra-op thread per physical core. On a machine that is busy, or
while image-decoding workers run beside the model, those threads spin against each
other: a cold ``discover`` on 26,080 images took 236 s with torch's default and 79 s
with one thread on a busy 2-core machine. :func:`default_threads` leaves room for the
decoding workers and the rest of the machine (``benchmarks/threads.py`` measures it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from failscope._validation import check_int

__all__ = ["MAX_DEFAULT_THREADS", "default_threads", "torch_threads", "usable_cores"]

#: The default never asks for more threads than this (the passes scale poorly beyond).
MAX_DEFAULT_THREADS = 4


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def default_threads(num_workers: int = 0) -> int:
    """Half the usable cores, less one per decoding worker; between 1 and
    :data:`MAX_DEFAULT_THREADS`."""
    return max(1, min(MAX_DEFAULT_THREADS, usable_cores() // 2 - num_workers))


@contextmanager
def torch_threads(threads: int | None = None, *, num_workers: int = 0) -> Iterator[int]:
    """Run the block with ``threads`` torch intra-op threads (None: :func:`default_threads`).

    Yields the number used; the previous setting is restored on exit.
    """
    import torch

    n = (
        default_threads(num_workers)
        if threads is None
        else check_int(threads, name="threads", low=1)
    )
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(old)
