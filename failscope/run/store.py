"""Reading a run directory: :class:`Run` and :func:`load_run`.

Parts are read lazily and typed: ``run.info`` is a :class:`~failscope.run.schema.RunInfo`,
``run.slices`` a tuple of :class:`~failscope.run.schema.SliceEntry`. Large arrays
(embeddings, slice scores) are memory-mapped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from failscope._validation import fail
from failscope.run import _journal
from failscope.run._io import file_sha256, read_json, write_json
from failscope.run.config import DiscoverConfig
from failscope.run.metrics import RetrainMetrics, parse_retrain_metrics
from failscope.run.schema import (
    FORMAT_VERSION,
    Annotations,
    ClassEntry,
    Evaluation,
    Plant,
    RunInfo,
    SkippedInput,
    SliceEntry,
    SlicesFile,
    Truth,
)

__all__ = [
    "ANNOTATIONS_JSON",
    "CACHE_DIR",
    "DIRECTIONS",
    "EVALUATION_JSON",
    "EXAMPLES",
    "PLOTS_DIR",
    "REPORT_HTML",
    "RETRAIN_DIR",
    "RUN_JSON",
    "SLICER_STATE",
    "SLICES_JSON",
    "SLICE_SCORES",
    "TRUTH_JSON",
    "Run",
    "load_run",
]

RUN_JSON = "run.json"
ANNOTATIONS_JSON = "annotations.json"
EXAMPLES = "examples.parquet"
SLICES_JSON = "slices.json"
SLICE_SCORES = "slice_scores.npy"
DIRECTIONS = "directions.npy"
SLICER_STATE = "slicer.npz"
TRUTH_JSON = "truth.json"
EVALUATION_JSON = "evaluation.json"
REPORT_HTML = "report.html"
PLOTS_DIR = "plots"
RETRAIN_DIR = "retrain"
CACHE_DIR = "cache"


def check_format(data: Any, path: Path) -> None:
    """Refuse a file of another format version with a one-line message."""
    fmt = data.get("format") if isinstance(data, dict) else None
    if fmt == FORMAT_VERSION:
        return
    if fmt == 1:
        raise fail(
            f"{path} is run format 1 (failscope 0.1); this failscope reads format "
            f"{FORMAT_VERSION}: re-run `failscope discover` (or `failscope demo`) to rebuild it"
        )
    raise fail(
        f"{path} has format {fmt!r}, this failscope reads format {FORMAT_VERSION}; "
        "re-run `failscope discover` with this version"
    )


def _read_record(path: Path, cls: type, what: str) -> Any:
    data = read_json(path, what=what)
    check_format(data, path)
    return cls.from_json(data, where=f"{path}")


@dataclass
class Run:
    """Typed access to a run directory; parts are read lazily.

    Parameters
    ----------
    path : Path
        The run directory.
    """

    path: Path
    _memo: dict[str, Any] = field(default_factory=dict, repr=False)

    # -- run.json
    @cached_property
    def info(self) -> RunInfo:
        """``run.json``: config, versions, timings, classes, skipped inputs, files."""
        return _read_record(self.path / RUN_JSON, RunInfo, "run.json")

    @property
    def config(self) -> DiscoverConfig:
        """The discover stage's settings."""
        return DiscoverConfig.from_json(self.info.config, where=f"{self.path / RUN_JSON}: config")

    @property
    def fit_split(self) -> str:
        """The split the slicer was fitted on."""
        return self.info.fit_split

    @property
    def class_names(self) -> list[str]:
        """Class names in class-index order."""
        return list(self.info.classes)

    @property
    def skipped(self) -> tuple[SkippedInput, ...]:
        """Inputs skipped as missing or corrupt."""
        return self.info.skipped

    @property
    def is_world(self) -> bool:
        """True for runs of the built-in world (``failscope demo``)."""
        return self.info.world is not None

    # -- slices
    @cached_property
    def _slices_file(self) -> SlicesFile:
        return _read_record(self.path / SLICES_JSON, SlicesFile, "slices.json")

    @property
    def slices(self) -> tuple[SliceEntry, ...]:
        """Every slice, in (class, rank) order."""
        return self._slices_file.slices

    @property
    def classes(self) -> tuple[ClassEntry, ...]:
        """One summary per class, in class-index order."""
        return self._slices_file.classes

    def slice(self, slice_id: str) -> SliceEntry:
        """The slice with id ``slice_id`` (e.g. ``"8/0"``)."""
        for s in self.slices:
            if s.id == slice_id:
                return s
        shown = ", ".join(s.id for s in self.slices[:10])
        raise fail(f"{self.path} has no slice {slice_id!r} (slices: {shown or 'none'})")

    def slices_of(self, class_index: int) -> tuple[SliceEntry, ...]:
        """The slices of one class, by rank."""
        return tuple(s for s in self.slices if s.class_index == class_index)

    def slice_score_matrix(self, *, mmap: bool = True) -> np.ndarray:
        """``slice_scores.npy``: (n_examples, max slices per class), float32.

        Row j is ``examples`` row j; column k holds the score of the rank-k slice of
        the example's labelled class (NaN where its class has fewer slices).
        Memory-mapped by default.
        """
        return np.load(self.path / SLICE_SCORES, mmap_mode="r" if mmap else None)

    def slice_scores(self, slice_ids: list[str] | None = None) -> Any:
        """Per-example scores of every slice (or of ``slice_ids``), as a DataFrame.

        Returns
        -------
        pandas.DataFrame
            Indexed by example ``id``, one float32 column per slice id, higher = more
            inside that slice, NaN for examples of other classes. For very large runs
            read :meth:`slice_score_matrix` instead (it stays memory-mapped).
        """
        import pandas as pd

        entries = self.slices if slice_ids is None else [self.slice(i) for i in slice_ids]
        scores = self.slice_score_matrix()
        labels = self.examples["label"].to_numpy()
        columns = {}
        for s in entries:
            col = np.full(len(labels), np.nan, dtype=np.float32)
            sel = labels == s.class_index
            col[sel] = scores[sel, s.column]
            columns[s.id] = col
        index = pd.Index(self.examples["id"].to_numpy(), name="id")
        return pd.DataFrame(columns, index=index)

    def members(self, entry: SliceEntry, scores: np.ndarray | None = None) -> np.ndarray:
        """Boolean membership of every ``examples`` row in slice ``entry`` (its rule)."""
        col = (self.slice_score_matrix() if scores is None else scores)[:, entry.column]
        labels = self.examples["label"].to_numpy()
        return (labels == entry.class_index) & entry.rule.passes(col)

    @cached_property
    def directions(self) -> np.ndarray:
        """Directions of direction-based slices, (n_directions, d) float32, in the
        standardised embedding space (``SliceEntry.rule.direction`` indexes the rows)."""
        return np.load(self.path / DIRECTIONS, allow_pickle=False)

    def slicer(self) -> Any:
        """The fitted slicer (:mod:`failscope.slicers`), to score new examples."""
        from failscope.slicers import load_slicer

        return load_slicer(self.path / SLICER_STATE)

    # -- examples and embeddings
    @cached_property
    def examples(self) -> Any:
        """``examples.parquet`` as a pandas DataFrame."""
        import pandas as pd

        p = self.path / EXAMPLES
        if not p.is_file():
            raise fail(f"examples.parquet not found in {self.path}; is this a failscope run?")
        return pd.read_parquet(p)

    def embeddings(self, *, mmap: bool = True) -> np.ndarray:
        """Image embeddings aligned with ``examples`` rows, shape (n_examples, d).

        Memory-mapped by default, so a million rows never sit in RAM at once.
        """
        meta = self.info.embeddings
        p = Path(meta.path)
        p = p if p.is_absolute() else self.path / p
        if not p.is_file():
            raise fail(f"embeddings file {p} is missing; re-run `failscope discover`")
        if meta.keys_sha256:  # read in place from a shared cache: still this run's rows?
            keys = Path(meta.keys_path or "")
            if not keys.is_file() or file_sha256(keys) != meta.keys_sha256:
                raise fail(
                    f"the shared embedding cache {p.parent} has changed since this run was "
                    "written (another run re-used it); re-run `failscope discover`"
                )
        return np.load(p, mmap_mode="r" if mmap else None, allow_pickle=False)

    # -- parts written by later stages
    @property
    def truth(self) -> tuple[Plant, ...] | None:
        """Planted slices (world runs only), else None."""
        p = self.path / TRUTH_JSON
        return _read_record(p, Truth, "truth.json").plants if p.is_file() else None

    @property
    def evaluation(self) -> Evaluation | None:
        """``evaluation.json`` if ``failscope evaluate`` has run, else None."""
        p = self.path / EVALUATION_JSON
        return _read_record(p, Evaluation, "evaluation.json") if p.is_file() else None

    @property
    def annotations(self) -> Annotations | None:
        """``annotations.json`` (a person's verdicts per slice), else None.

        Raises
        ------
        InputError
            The file belongs to another run (its ``run_id`` differs).
        """
        p = self.path / ANNOTATIONS_JSON
        return self.read_annotations(p) if p.is_file() else None

    def read_annotations(self, path: str | os.PathLike[str]) -> Annotations:
        """An annotation file of this run at ``path`` (e.g. ``retrain --annotations FILE``).

        Raises
        ------
        InputError
            Missing, malformed, of another format, or written for another run.
        """
        p = Path(path)
        ann = _read_record(p, Annotations, "annotations file")
        if ann.run_id != self.info.run_id:
            raise fail(
                f"{p} was written for another run (run_id {ann.run_id[:12]}, this run is "
                f"{self.info.run_id[:12]}); move it away, or annotate this run again"
            )
        return ann

    @property
    def retrain_metrics(self) -> RetrainMetrics | None:
        """``retrain/metrics.json``, typed, if ``failscope retrain`` has run, else None."""
        p = self.path / RETRAIN_DIR / "metrics.json"
        if not p.is_file():
            return None
        data = read_json(p, what="retrain/metrics.json")
        check_format(data, p)
        return parse_retrain_metrics(data)

    # -- writing back (atomic; run.json lists every file failscope wrote)
    def save_slices(self, slices: tuple[SliceEntry, ...] | list[SliceEntry]) -> None:
        """Atomically rewrite ``slices.json`` with new slice entries (e.g. captions)."""
        new = self._slices_file.replace(slices=tuple(slices))
        write_json(self.path / SLICES_JSON, new.to_json())
        self.__dict__["_slices_file"] = new

    def update_info(self, **changes: Any) -> RunInfo:
        """Apply ``changes`` to ``run.json``'s fields and rewrite it atomically."""
        info = self.info.replace(**changes)
        write_json(self.path / RUN_JSON, info.to_json())
        self.__dict__["info"] = info
        return info

    def add_files(self, *relpaths: str | os.PathLike[str]) -> None:
        """Record files a later stage wrote, so that failscope may replace them later."""
        new = [Path(p).as_posix() for p in relpaths]
        files = tuple(dict.fromkeys((*self.info.files, *new)))
        if files != self.info.files:
            self.update_info(files=files)

    def owns(self, relpath: str | os.PathLike[str]) -> bool:
        """Whether failscope wrote ``relpath`` (relative to the run) for this run."""
        return Path(relpath).as_posix() in self.info.files

    def target(
        self, out: str | os.PathLike[str] | None, default: str, *, what: str
    ) -> tuple[Path, str | None]:
        """Where a stage writes ``out``, and its run-relative path when it is a run file.

        ``None`` is ``default`` in the run. A path inside the run goes through
        :meth:`output` (only a free name or failscope's own file); a path elsewhere is
        returned as it is, with ``None``, for the caller to check; a folder is refused
        (``what`` names the file to give instead).
        """
        if out is None:
            return self.output(default), default
        target = Path(out)
        try:
            rel = target.resolve().relative_to(self.path.resolve()).as_posix()
        except ValueError:
            rel = None
        if rel is not None:
            return self.output(rel), rel
        if target.is_dir():
            raise fail(f"--out {target} is a folder; give {what}")
        return target, None

    def output(self, relpath: str | os.PathLike[str]) -> Path:
        """The path a later stage may write ``relpath`` to: free, or failscope's own.

        Raises
        ------
        InputError
            A file of that name exists that failscope did not write (it is never
            overwritten).
        """
        p = self.path / relpath
        if p.exists() and not self.owns(relpath):
            raise fail(
                f"{p} exists and failscope did not write it; move it away (failscope "
                "never overwrites files it did not write)"
            )
        return p


def load_run(path: str | os.PathLike[str]) -> Run:
    """Open the run directory at ``path``.

    A discover run interrupted while it swapped its files in is completed first
    (the swap is journalled), so the run read is always a whole one.

    Raises
    ------
    InputError
        If ``path`` is not a run directory of a format this version reads.
    """
    path = Path(path)
    if not path.is_dir():
        raise fail(f"run directory not found: {path}")
    _journal.recover(path)
    if not (path / RUN_JSON).is_file():
        raise fail(f"{path} has no run.json; is it a run written by `failscope discover`?")
    run = Run(path)
    _ = run.info  # validate the format at the door
    return run
