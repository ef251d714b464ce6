"""The bottom of the run package: atomic writes, JSON, arrays, tables and hashes.

Every file failscope writes goes through here. A write lands in a temporary
sibling first and ``os.replace`` moves it into place, so a killed process leaves
either the old file or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from failscope._validation import fail

__all__ = [
    "TMP_SUFFIX",
    "atomic_open",
    "atomic_write",
    "file_sha256",
    "read_json",
    "write_json",
    "write_npy",
    "write_parquet",
]

#: Every temporary file's name holds this, just before the target's suffix
#: (``.examples.k3j2.fstmp.parquet``); a later run removes stale ones it finds.
TMP_SUFFIX = ".fstmp"


def _umask_mode() -> int:
    """The mode a plain ``open()`` would give a new file (mkstemp alone gives 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _tmp_sibling(path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix=f"{TMP_SUFFIX}{path.suffix}", dir=path.parent
    )
    os.close(fd)
    return Path(tmp)


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; move it into place on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path)
    try:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike[str], writer: Callable[[Path], Any]) -> Path:
    """Call ``writer(tmp_path)`` and move the file it wrote onto ``path``.

    For libraries that want a file name rather than a handle (pandas, numpy,
    matplotlib). The temporary name ends in ``path``'s suffix, so writers that pick
    the format from the name (or append a suffix when it is missing) do the right thing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path)
    try:
        writer(tmp)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj


def dumps(data: Any) -> str:
    """Indented JSON text of ``data`` (NaN and inf become null)."""
    return json.dumps(_nan_to_none(data), indent=2, default=_json_default, allow_nan=False)


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Atomically write ``data`` as indented UTF-8 JSON (NaN/inf become null)."""
    text = dumps(data)
    with atomic_open(path, "w") as fh:
        fh.write(text + "\n")
    return Path(path)


def read_json(path: str | os.PathLike[str], *, what: str) -> Any:
    """Read a JSON file, raising a one-line error naming the file if it is missing or bad."""
    path = Path(path)
    if not path.is_file():
        raise fail(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise fail(
            f"{what} {path} is not valid JSON ({exc}); re-run the stage that wrote it"
        ) from None


def write_npy(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Atomically save ``array`` as ``.npy`` (no pickle)."""

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # a handle: np.save would append ".npy" to the name
            np.save(fh, np.asarray(array), allow_pickle=False)

    return atomic_write(path, save)


def write_parquet(path: str | os.PathLike[str], frame: Any) -> Path:
    """Atomically write a pandas DataFrame as Parquet."""
    return atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False, engine="pyarrow"))


_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike[str], *, memo: bool = True) -> str:
    """sha256 of a file's bytes, memoised per path, size and mtime unless ``memo=False``.

    Pass ``memo=False`` to verify a file (a replacement that keeps the size and the
    mtime would otherwise get the old hash).
    """
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _FILE_HASHES or not memo:
        with open(p, "rb") as fh:
            _FILE_HASHES[key] = hashlib.file_digest(fh, "sha256").hexdigest()
    return _FILE_HASHES[key]
