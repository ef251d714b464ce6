"""Writing a whole run: :class:`RunWriter` stages discover's files and swaps them in.

failscope deletes only what it wrote: ``run.json["files"]`` lists every file of
the run, and replacing a run removes only the old run's listed files. A folder
that is not empty and holds no failscope run is refused unless ``force`` (and even
then nothing in it is deleted).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from failscope._validation import fail
from failscope.run import _journal
from failscope.run._io import read_json, write_json
from failscope.run.schema import EXAMPLE_COLUMNS, RunInfo
from failscope.run.store import (
    DIRECTIONS,
    EVALUATION_JSON,
    EXAMPLES,
    REPORT_HTML,
    RUN_JSON,
    SLICES_JSON,
    TRUTH_JSON,
)

logger = logging.getLogger(__name__)

__all__ = [
    "EMBEDDINGS_COPY",
    "OWN_ENTRIES",
    "RunWriter",
    "check_output_dir",
    "copy_rows",
    "save_npy",
    "write_examples",
]

#: The run's own copy of its scored embeddings (only when some inputs were skipped).
EMBEDDINGS_COPY = "embeddings.npy"
#: Rows per Parquet row group of examples.parquet.
ROW_GROUP = 262_144

#: Files a format-1 run had at its top level (it kept no list of its own files).
_FORMAT1_FILES = (
    RUN_JSON, EXAMPLES, SLICES_JSON, DIRECTIONS, "error_directions.npz", EMBEDDINGS_COPY,
    TRUTH_JSON, EVALUATION_JSON, REPORT_HTML,
)  # fmt: skip
#: Entries a folder may hold and still count as empty for a new run.
#: Entries of a run folder that are failscope's whether or not a run was committed.
OWN_ENTRIES = frozenset({_journal.LOCK_FILE, _journal.STAGING_DIR})


def _old_files(out: Path) -> list[str] | None:
    """The files the run in ``out`` lists as its own; None if ``out`` holds no run."""
    p = out / RUN_JSON
    if not p.is_file():
        return None
    data = read_json(p, what="run.json")
    if isinstance(data, dict) and data.get("format") == 1:
        return [n for n in _FORMAT1_FILES if (out / n).is_file()]
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise fail(f"{p} lists no files of its own; move it away or pick another --out")
    return list(files)


def check_output_dir(
    out: str | os.PathLike[str], *, data_root: str | os.PathLike[str] | None, force: bool
) -> list[str]:
    """Check that a run may be written to ``out``; return the old run's own files.

    Raises
    ------
    InputError
        ``out`` is a file, lies inside the ImageFolder ``data_root`` (its plots would
        become a class next time), or is a non-empty folder without a failscope run
        and ``force`` is off.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise fail(f"--out {out} is an existing file, not a folder; pick a folder for the run")
    if data_root is not None:
        root = Path(data_root).resolve()
        if out.resolve() == root or root in out.resolve().parents:
            raise fail(
                f"--out {out} is inside the image folder {root}; its files would be read as "
                "images next time: put the run outside the data"
            )
    if not out.is_dir():
        return []
    old = _old_files(out)
    if old is None:
        extra = sorted(p.name for p in out.iterdir() if p.name not in OWN_ENTRIES)
        if extra and not force:
            raise fail(
                f"--out {out} is not empty and holds no failscope run (it has {extra[0]!r}); "
                "choose an empty or new folder, or pass --force to write into it (nothing "
                "in it is deleted)"
            )
        return []
    return old


class RunWriter:
    """Build a run in ``OUT/.failscope-staging/`` and swap it in with :meth:`commit`.

    Parameters
    ----------
    out : path
        The run directory.
    old_files : list of str
        The replaced run's own files (from :func:`check_output_dir`); those the new
        run does not write again are deleted at commit.
    """

    def __init__(self, out: str | os.PathLike[str], *, old_files: list[str]) -> None:
        self.out = Path(out)
        self.old_files = list(old_files)
        self.staging = self.out / _journal.STAGING_DIR
        self._names: list[str] = []

    def open(self) -> RunWriter:
        """Create the staging folder (after discarding or completing an earlier one)."""
        self.out.mkdir(parents=True, exist_ok=True)
        _journal.recover(self.out)
        _journal.remove_stale_temporaries(self.out)
        self.staging.mkdir()
        return self

    def path(self, name: str) -> Path:
        """Where to write run file ``name`` now (inside the staging folder)."""
        if name not in self._names:
            self._names.append(name)
        p = self.staging / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def commit(self, info: RunInfo) -> None:
        """Write ``run.json`` (listing every file) and swap the new run in."""
        files = tuple(dict.fromkeys([*self._names, RUN_JSON]))
        info = info.replace(files=files)
        write_json(self.path(RUN_JSON), info.to_json())
        if self.old_files:
            logger.warning("replacing the run in %s", self.out)
        _journal.commit(self.out, self._names, delete=self.old_files)

    def abort(self) -> None:
        """Discard the staged files; the old run stays as it was."""
        import shutil

        shutil.rmtree(self.staging, ignore_errors=True)

    def __enter__(self) -> RunWriter:
        return self.open()

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        # once the journal exists the swap is decided: the next reader completes it
        if exc_type is not None and not (self.staging / _journal.JOURNAL).exists():
            self.abort()


def save_npy(path: Path, array: np.ndarray) -> None:
    """Save ``array`` as ``.npy`` (no pickle) at a staged path."""
    with open(path, "wb") as fh:
        np.save(fh, np.asarray(array), allow_pickle=False)


def copy_rows(src: np.ndarray, ids: np.ndarray, path: Path, *, chunk: int = 65536) -> np.ndarray:
    """Write ``src[ids]`` to the ``.npy`` file ``path`` (atomically), chunk by chunk.

    Returns
    -------
    numpy.memmap
        The new file, read-only; row j = ``src`` row ``ids[j]``.
    """
    from numpy.lib.format import open_memmap

    from failscope.run._io import atomic_write

    def write(tmp: Path) -> None:
        dst = open_memmap(tmp, mode="w+", dtype=src.dtype, shape=(len(ids), *src.shape[1:]))
        for s in range(0, len(ids), chunk):
            dst[s : s + chunk] = src[ids[s : s + chunk]]
        dst.flush()
        del dst

    atomic_write(path, write)
    return np.load(path, mmap_mode="r", allow_pickle=False)


def write_examples(
    path: Path,
    columns: dict[str, np.ndarray],
    *,
    metadata: Any,
    metadata_columns: list[str],
    rows: np.ndarray,
) -> None:
    """Write ``examples.parquet`` in row groups: the core columns, then the dataset's metadata.

    Parameters
    ----------
    path : Path
        A staged path.
    columns : dict of str to ndarray
        Exactly :data:`~failscope.run.schema.EXAMPLE_COLUMNS`, in that order.
    metadata : pandas.DataFrame
        The dataset's frame; ``metadata_columns`` of its ``rows`` follow the core columns.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    if tuple(columns) != EXAMPLE_COLUMNS:
        raise ValueError(f"examples columns must be {EXAMPLE_COLUMNS}, got {tuple(columns)}")
    writer = None
    try:
        for start in range(0, max(len(rows), 1), ROW_GROUP):
            part = slice(start, start + ROW_GROUP)
            frame = pd.DataFrame({name: values[part] for name, values in columns.items()})
            frame["slice_id"] = frame["slice_id"].astype("string")
            meta = metadata.iloc[rows[part]]
            for col in metadata_columns:
                frame[col] = meta[col].to_numpy()
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table.cast(writer.schema))
    finally:
        if writer is not None:
            writer.close()
