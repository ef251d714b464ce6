"""Every check of user input, in one place.

Public entry points call these first. Each failure raises :class:`InputError`
(a ``ValueError``) or ``TypeError`` whose one-line message names the bad value
and what to do; the CLI prints that line and exits with status 2. Messages are
squeezed onto one line and capped at :data:`MAX_MESSAGE_CHARS` characters (the
middle is cut, with an ellipsis), so a huge value can never flood the terminal.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Collection, Iterable
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "MAX_MESSAGE_CHARS",
    "MAX_SEED",
    "InputError",
    "check_array_2d",
    "check_choice",
    "check_embeddings",
    "check_file",
    "check_fraction",
    "check_int",
    "check_labels",
    "check_same_length",
    "check_seed",
    "open_npy",
]

#: Longest error message (characters); longer ones keep their start and end.
MAX_MESSAGE_CHARS = 500
#: Largest seed: torch seeds are 64-bit unsigned integers.
MAX_SEED = 2**64 - 1


class InputError(ValueError):
    """Bad user input. The message is one line: what is wrong and how to fix it."""


def _one_line(message: str) -> str:
    text = " ".join(str(message).split())
    if len(text) <= MAX_MESSAGE_CHARS:
        return text
    head = (MAX_MESSAGE_CHARS * 2) // 3
    tail = MAX_MESSAGE_CHARS - head - 3
    return f"{text[:head]} … {text[-tail:]}"


def fail(message: str) -> InputError:
    """Return an :class:`InputError` whose message is one line, capped in length.

    A message longer than :data:`MAX_MESSAGE_CHARS` keeps its start and its end
    (what is wrong, and what to do) around an ellipsis.
    """
    return InputError(_one_line(message))


def check_choice(value: Any, allowed: Collection[Any], *, name: str) -> Any:
    """Return ``value`` if it is one of ``allowed``, else raise naming the allowed set."""
    if value not in allowed:
        shown = ", ".join(repr(a) for a in allowed)
        raise fail(f"{name}={value!r} is not one of {{{shown}}}")
    return value


def check_int(value: Any, *, name: str, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` as an int within ``[low, high]`` (bounds optional)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(_one_line(f"{name} must be an integer, got {value!r}"))
    value = int(value)
    if low is not None and value < low:
        raise fail(f"{name}={value} must be >= {low}")
    if high is not None and value > high:
        raise fail(f"{name}={value} must be <= {high}")
    return value


def check_n_jobs(value: Any) -> int | None:
    """A worker-process count: None or 1 (this process), N, or -1 (every core)."""
    if value is not None and check_int(value, name="n_jobs") == 0:
        raise fail("n_jobs=0 is not allowed; use None or 1 (serial), N cores, or -1 (all)")
    return value


def check_seed(value: Any, *, name: str = "seed") -> int:
    """Return ``value`` as an int seed in ``[0, MAX_SEED]`` (64 bits, what torch accepts)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(_one_line(f"{name} must be an integer, got {value!r}"))
    if not 0 <= int(value) <= MAX_SEED:
        raise fail(f"{name}={value} must be an integer from 0 to 2**64 - 1 ({MAX_SEED})")
    return int(value)


def check_fraction(
    value: Any, *, name: str, inclusive_low: bool = False, inclusive_high: bool = False
) -> float:
    """Return ``value`` as a float strictly (or inclusively) inside (0, 1)."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise fail(f"{name}={value!r} is not a number; pass a fraction between 0 and 1") from None
    lo_ok = out >= 0 if inclusive_low else out > 0
    hi_ok = out <= 1 if inclusive_high else out < 1
    if not (math.isfinite(out) and lo_ok and hi_ok):
        lo = "[0" if inclusive_low else "(0"
        hi = "1]" if inclusive_high else "1)"
        raise fail(f"{name}={value!r} must lie in {lo}, {hi}")
    return out


def check_array_2d(x: Any, *, name: str, dtype: Any = np.float32) -> np.ndarray:
    """Return ``x`` as a 2-D array of ``dtype`` (memory maps are kept, not copied)."""
    arr = x if isinstance(x, np.ndarray) and x.dtype == dtype else np.asarray(x, dtype=dtype)
    if arr.ndim != 2:
        raise fail(f"{name} must be 2-D (n_samples, n_features), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise fail(f"{name} is empty (shape {arr.shape})")
    return arr


def check_embeddings(x: Any, *, name: str = "embeddings", chunk: int = 65536) -> np.ndarray:
    """Return ``x`` as float32 (n, d); raise if it holds NaN or inf (row named)."""
    arr = check_array_2d(x, name=name)
    for start in range(0, arr.shape[0], chunk):
        block = np.asarray(arr[start : start + chunk])
        finite = np.isfinite(block).all(axis=1)
        if not finite.all():
            row = start + int(np.flatnonzero(~finite)[0])
            n_bad = int((~finite).sum())
            raise fail(
                f"{name} contains NaN or inf (row {row}, {n_bad} bad rows in rows "
                f"{start}..{start + len(block) - 1}); recompute the embeddings or drop those rows"
            )
    return arr


def check_labels(
    y: Any, *, name: str, n_samples: int | None = None, n_classes: int | None = None
) -> np.ndarray:
    """Return integer class indices as int64 1-D, checked against ``n_classes``."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise fail(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise fail(f"{name} must hold integer class indices, got non-integer floats")
    elif arr.dtype.kind not in "iub":
        raise TypeError(_one_line(f"{name} must hold integer class indices, got dtype {arr.dtype}"))
    arr = arr.astype(np.int64)
    if n_samples is not None and len(arr) != n_samples:
        raise fail(f"{name} has {len(arr)} entries but there are {n_samples} examples")
    if len(arr) and arr.min() < 0:
        raise fail(f"{name} holds a negative class index ({int(arr.min())})")
    if n_classes is not None and len(arr) and arr.max() >= n_classes:
        raise fail(
            f"{name} holds class index {int(arr.max())} but there are only {n_classes} classes"
        )
    return arr


def check_same_length(**arrays: Any) -> int:
    """Return the common length of the keyword arrays, or raise naming each length."""
    lengths = {k: len(v) for k, v in arrays.items() if v is not None}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{k}={n}" for k, n in lengths.items())
        raise fail(f"inputs disagree in length ({shown}); they must describe the same examples")
    return next(iter(lengths.values()))


def check_file(path: str | PathLike[str], *, what: str, suffixes: Iterable[str] = ()) -> Path:
    """Return ``path`` as a Path if it is an existing file with one of ``suffixes``."""
    p = Path(path)
    if not p.exists():
        raise fail(f"{what} not found: {p}")
    if not p.is_file():
        raise fail(f"{what} is not a file: {p}")
    suffixes = tuple(suffixes)
    if suffixes and not p.name.lower().endswith(suffixes):
        raise fail(f"{what} {p} must end with one of {', '.join(suffixes)}")
    return p


def open_npy(path: str | PathLike[str], *, what: str) -> np.ndarray:
    """Memory-map the ``.npy`` file at ``path`` (never unpickling), at least 1-D.

    Raises
    ------
    InputError
        One line naming the file when it is missing, empty (0 bytes), truncated, not
        a ``.npy`` array, or a 0-d array (a single value).
    """
    p = check_file(path, what=what, suffixes=(".npy",))
    if p.stat().st_size == 0:
        raise fail(f"{what} {p} is empty (0 bytes); write it again with numpy.save")
    try:
        arr = np.load(p, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise fail(
            f"{what} {p} cannot be read as a .npy array ({exc}); it may be truncated or "
            "hold Python objects: write it again with numpy.save"
        ) from None
    if arr.ndim == 0:
        raise fail(f"{what} {p} holds a single value (a 0-d array), not one row per example")
    return arr


def check_rows(rows: Any, n: int, *, name: str = "rows") -> np.ndarray:
    """Return row indices into an array of ``n`` rows as int64 1-D; raise if out of range."""
    arr = np.asarray(rows)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise fail(f"{name} must be a 1-D array of integer row indices, got shape {arr.shape}")
    arr = arr.astype(np.int64)
    if arr.size == 0:
        raise fail(f"{name} is empty; pass at least one row to fit on")
    if arr.min() < 0 or arr.max() >= n:
        bad = int(arr.min()) if arr.min() < 0 else int(arr.max())
        raise fail(f"{name} holds row {bad} but there are only {n} rows")
    return arr
