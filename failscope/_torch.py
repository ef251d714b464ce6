"""Small torch helpers shared by the stages (imported only where torch is used)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads (``None``: leave as is), then restore.

    Setting the count process-wide and leaving it changed makes every later stage
    spin extra threads; on a busy 2-core machine that multiplies CPU time.
    """
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def quiet_torchscript() -> Iterator[None]:
    """Silence torch's deprecation notices for TorchScript (a format users still ship)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit")
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*torch\.jit")
        yield
