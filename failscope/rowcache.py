"""Resumable per-example row caches: one fixed-shape float row per example, on disk.

A cache folder holds one producer's rows (a CLIP's embeddings, an audited model's
predictions, attribution maps), keyed by the producer's identity and, row by row,
by the file version each row was computed from:

* ``DATA.npy`` (e.g. ``embeddings.npy``): shape ``(n, *row_shape)``, a floating
  ``dtype``, memory-mapped; row i = example i;
* ``keys.npy``: uint64 ``(n,)``, the file key
  (:meth:`failscope.data.ImageDataset.file_keys`) of the file version row i was
  computed from; 0 means "not done";
* ``meta.json``: ``{"format", "identity", "dtype", "row_shape", ...}``, written atomically.

A row is marked done (its key written) only after its data has been flushed, so a
process killed at any point (even with SIGKILL) leaves only finished rows marked
done and a re-run computes the rest. A folder of another format, identity, dtype or
row shape is rebuilt, never read. Rows computed from the same file version are
reused when the dataset is re-laid out (rows reordered, added or removed).

:func:`fill_rows` is the local engine's loop: it computes the missing rows of an
image dataset in batches. The Ray engine (:mod:`failscope.engines.ray_data`) writes
into the same caches through :class:`RowWriter`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["RowCache", "RowWriter", "fill_rows"]

KEYS_FILE = "keys.npy"
META_FILE = "meta.json"
_COPY_CHUNK = 65536


def _match_rows(old_keys: np.ndarray, new_keys: np.ndarray) -> np.ndarray:
    """For each new row, a row of the old arrays computed from the same file version, or -1."""
    n = len(new_keys)
    src = np.full(n, -1, dtype=np.int64)
    if len(old_keys) == 0 or n == 0:
        return src
    order = np.argsort(old_keys, kind="stable")
    sorted_keys = old_keys[order]
    pos = np.clip(np.searchsorted(sorted_keys, new_keys), 0, len(old_keys) - 1)
    hit = (sorted_keys[pos] == new_keys) & (new_keys != 0)
    src[hit] = order[pos[hit]]
    m = min(n, len(old_keys))
    same = (old_keys[:m] == new_keys[:m]) & (new_keys[:m] != 0)
    src[:m][same] = np.flatnonzero(same)  # prefer the row in place
    return src


class RowCache:
    """One producer's rows in one folder (see the module docstring).

    Parameters
    ----------
    folder : path
    identity : str
        The producer's identity (e.g. a sha256 hex); rows of another identity are
        never reused.
    row_shape : tuple of int
        Shape of one example's row, e.g. ``(d,)`` or ``(7, 7)``.
    dtype : floating dtype, default=float32
        Skipped examples get NaN rows, so the dtype must be floating.
    data_file : str, default="rows.npy"
        Name of the data array inside ``folder``.
    format : int, default=1
        Layout version of this kind of cache; a folder of another format is rebuilt.
    meta : dict, optional
        JSON-able extra fields for ``meta.json`` (e.g. the producer's spec).
    what : str, default="row cache"
        Name used in log lines.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        identity: str,
        row_shape: tuple[int, ...],
        dtype: Any = np.float32,
        data_file: str = "rows.npy",
        format: int = 1,
        meta: dict[str, Any] | None = None,
        what: str = "row cache",
    ) -> None:
        self.folder = Path(folder)
        self.identity = str(identity)
        self.row_shape = tuple(int(s) for s in row_shape)
        self.dtype = np.dtype(dtype)
        if self.dtype.kind != "f":
            raise TypeError(
                f"row cache dtype must be floating (NaN marks skipped rows), got {dtype}"
            )
        self.format = int(format)
        self.meta = dict(meta or {})
        self.what = what
        self.data_path = self.folder / data_file
        self.keys_path = self.folder / KEYS_FILE
        self.meta_path = self.folder / META_FILE

    def read_meta(self) -> dict[str, Any]:
        """``meta.json`` as written (empty dict if missing or unreadable)."""
        try:
            return json.loads(self.meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def update_meta(self, **fields: Any) -> None:
        """Add or replace JSON-able fields of ``meta.json`` (atomically)."""
        from failscope.run import write_json

        meta = self.read_meta()
        meta.update(fields)
        write_json(self.meta_path, meta)

    def _existing(self) -> tuple[np.ndarray, np.ndarray] | None:
        meta = self.read_meta()
        try:
            data = np.load(self.data_path, mmap_mode="r", allow_pickle=False)
            keys = np.load(self.keys_path, allow_pickle=False)
        except (OSError, ValueError):
            return None
        ok = (
            meta.get("format") == self.format
            and meta.get("identity") == self.identity
            and data.dtype == self.dtype
            and keys.dtype == np.uint64
            and keys.ndim == 1
            and data.shape == (len(keys), *self.row_shape)
        )
        return (data, keys) if ok else None

    def open(self, keys: np.ndarray, *, flush_seconds: float = 5.0) -> RowWriter:
        """Lay the cache out for a dataset whose file keys are ``keys``; return a writer.

        Rows already computed from the same file version are kept (moved if the
        dataset's order changed); the others are marked not done.
        """
        from numpy.lib.format import open_memmap

        new_keys = np.asarray(keys, dtype=np.uint64)
        self.folder.mkdir(parents=True, exist_ok=True)
        n = len(new_keys)
        existing = self._existing()
        src = np.full(n, -1, dtype=np.int64)
        if existing is not None:
            old_data, old_keys = existing
            src = _match_rows(old_keys, new_keys)
            in_place = len(old_keys) == n and bool(np.all((src == np.arange(n)) | (src < 0)))
            if in_place:
                del old_data
                data = open_memmap(self.data_path, mode="r+")
                done = open_memmap(self.keys_path, mode="r+")
                stale = done[:] != new_keys
                if stale.any():
                    done[stale] = 0  # not done until recomputed
                    done.flush()
                logger.info("%s %s: %d of %d rows reused", self.what, self.folder,
                            int((~stale).sum()), n)  # fmt: skip
                return RowWriter(self, data, done, new_keys, flush_seconds)
        data, done = self._rebuild(new_keys, src, existing)
        return RowWriter(self, data, done, new_keys, flush_seconds)

    def _rebuild(
        self, new_keys: np.ndarray, src: np.ndarray, existing: tuple[np.ndarray, np.ndarray] | None
    ) -> tuple[np.memmap, np.memmap]:
        """Copy reusable rows into fresh arrays, then swap them in (keys "not done" first)."""
        from numpy.lib.format import open_memmap

        from failscope.run import write_json

        n = len(new_keys)
        tmp_data = self.data_path.with_suffix(".tmp.npy")
        tmp_keys = self.keys_path.with_suffix(".tmp.npy")
        data = open_memmap(tmp_data, mode="w+", dtype=self.dtype, shape=(n, *self.row_shape))
        copied = np.flatnonzero(src >= 0)
        if existing is not None and len(copied):
            old_data = existing[0]
            for s in range(0, len(copied), _COPY_CHUNK):
                rows = copied[s : s + _COPY_CHUNK]
                data[rows] = old_data[src[rows]]
            del old_data
        data.flush()
        del data
        done = open_memmap(tmp_keys, mode="w+", dtype=np.uint64, shape=(n,))
        done.flush()
        del done
        os.replace(tmp_keys, self.keys_path)  # all rows "not done" first ...
        os.replace(tmp_data, self.data_path)  # ... then the data
        meta = {
            "format": self.format,
            "identity": self.identity,
            "dtype": self.dtype.name,
            "row_shape": list(self.row_shape),
            **self.meta,
        }
        write_json(self.meta_path, meta)
        data = open_memmap(self.data_path, mode="r+")
        done = open_memmap(self.keys_path, mode="r+")
        if len(copied):
            done[copied] = new_keys[copied]
            done.flush()
        logger.info("%s %s: new arrays (%d x %s), %d rows reused", self.what, self.folder, n,
                    "x".join(map(str, self.row_shape)), len(copied))  # fmt: skip
        return data, done


class RowWriter:
    """Writable rows of an opened :class:`RowCache`; a context manager that commits on exit.

    Attributes
    ----------
    rows : numpy.memmap of shape (n, *row_shape)
    n : int
    """

    def __init__(
        self,
        cache: RowCache,
        rows: np.memmap,
        done: np.memmap,
        new_keys: np.ndarray,
        flush_seconds: float,
    ) -> None:
        self.cache = cache
        self.rows = rows
        self._done = done
        self._new_keys = new_keys
        self._pending: list[np.ndarray] = []
        self._flush_seconds = float(flush_seconds)
        self._last_flush = time.monotonic()
        self.n = len(new_keys)

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.commit()  # also on an exception: finished rows are kept

    def todo(self) -> np.ndarray:
        """Ids of the rows not done (never computed, stale, skipped, or the file is missing)."""
        return np.flatnonzero((self._done[:] != self._new_keys) | (self._new_keys == 0))

    def write(self, ids: np.ndarray, values: np.ndarray) -> None:
        """Store ``values`` (len(ids), *row_shape) as rows ``ids``, done at the next commit."""
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return
        self.rows[ids] = values
        self._pending.append(ids)
        if time.monotonic() - self._last_flush >= self._flush_seconds:
            self.commit()

    def skip(self, ids: Iterable[int]) -> None:
        """NaN rows for examples that could not be read; they stay not done (retried later)."""
        ids = np.fromiter(ids, dtype=np.int64)
        if len(ids):
            self.rows[ids] = np.nan

    def commit(self) -> None:
        """Flush the data, then mark the written rows done."""
        self._last_flush = time.monotonic()
        if not self._pending:
            return
        self.rows.flush()  # data first ...
        ids = np.concatenate(self._pending)
        self._done[ids] = self._new_keys[ids]  # ... then "done"
        self._done.flush()
        self._pending.clear()

    def read(self) -> np.memmap:
        """The rows as a read-only memory map (commit first)."""
        self.commit()
        return np.load(self.cache.data_path, mmap_mode="r", allow_pickle=False)


def fill_rows(
    writer: RowWriter,
    dataset: Any,
    transform: Callable[[Any], Any],
    compute: Callable[[Any, np.ndarray], np.ndarray],
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Compute the rows ``writer`` is missing, in batches of decoded images (the local engine).

    Parameters
    ----------
    writer : RowWriter
    dataset : failscope.data.ImageDataset
    transform : callable
        PIL RGB image -> tensor (C, H, W).
    compute : callable
        ``compute(pixels, ids)``: a batch of transformed images (b, C, H, W) and their
        example ids (for error messages) -> rows (b, *row_shape).
    batch_size : int, default=64
    num_workers : int, default=0
        DataLoader workers decoding images.
    progress : callable(done, total), optional
        Called with the number of finished rows (cached ones included).

    Returns
    -------
    list of dict
        ``{"id", "path", "reason"}`` of every image that could not be read.
    """
    from failscope.data.datasets import iter_image_batches
    from failscope.data.models import _skip

    todo = writer.todo()
    done = writer.n - len(todo)
    logger.info("%s: computing %d of %d rows (%d cached)", writer.cache.what, len(todo),
                writer.n, done)  # fmt: skip
    if progress is not None:
        progress(done, writer.n)
    skipped: list[dict[str, Any]] = []
    for batch in iter_image_batches(
        dataset, transform, ids=todo, batch_size=batch_size, num_workers=num_workers
    ):
        if batch.pixels is not None:
            writer.write(batch.ids, compute(batch.pixels, batch.ids))
        writer.skip(i for i, _ in batch.skipped)
        skipped += [_skip(dataset, i, r) for i, r in batch.skipped]
        done += len(batch.ids) + len(batch.skipped)
        if progress is not None:
            progress(done, writer.n)
    return skipped
