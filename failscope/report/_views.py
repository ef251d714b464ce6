"""The report's view of a run: slices ranked by severity, classes in that order.

What the sections render comes from here: a :class:`SliceView` per slice of
``slices.json`` (ranked by :func:`slice_order`), a :class:`ClassView` per class
(ordered by its most severe slice, classes without a slice and skipped classes
last), and the build's shared :class:`Context`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from failscope.run import Run
from failscope.run.schema import CaptionCheck, ClassEntry, SliceEntry

from ._images import slice_file_id

__all__ = [
    "ClassView",
    "Context",
    "SliceView",
    "check_for",
    "class_frame",
    "order_views",
    "slice_order",
    "top_caption",
]


def slice_order(s: SliceEntry) -> tuple[Any, ...]:
    """Sort key of the overview: supported slices before weak ones, then most severe
    (``n_errors_in``, the audited model's mistakes inside the slice on the fitting
    split) first; ties by error rate inside, then by id."""
    rate = s.error_rate_in if s.error_rate_in is not None else -1.0
    return (s.status == "weak", -s.n_errors_in, -rate, s.class_index, s.rank)


@dataclass
class SliceView:
    """One slice as the report shows it: its entry and its place in the overview."""

    entry: SliceEntry
    rank: int  # 1-based position in the overview

    @property
    def weak(self) -> bool:
        """Not statistically supported: shown last, its captions never confirmed."""
        return self.entry.status == "weak"

    @property
    def anchor(self) -> str:
        """HTML id of the slice's block, e.g. ``slice-8-1``."""
        return f"slice-{slice_file_id(self.entry.id)}"


@dataclass
class ClassView:
    """One class: its summary, its slices (by rank), its place and whether it is drawn."""

    entry: ClassEntry
    slices: list[SliceView]
    rank: int = 0
    expanded: bool = False

    @property
    def index(self) -> int:
        return self.entry.class_index

    @property
    def name(self) -> str:
        return self.entry.class_name

    @property
    def skipped(self) -> bool:
        """The slicer could not fit this class (``entry.reason`` says why)."""
        return self.entry.status == "skipped"

    @property
    def anchor(self) -> str:
        return f"class-{self.index}"


def order_views(
    classes: tuple[ClassEntry, ...], slices: tuple[SliceEntry, ...]
) -> tuple[list[SliceView], list[ClassView]]:
    """Slices in overview order, and classes in the order of their most severe slice.

    Classes whose slices are all weak follow the others (their best slice is weak);
    classes without a slice come next and skipped classes last, each by index.
    """
    ranked = sorted(slices, key=slice_order)
    views = [SliceView(s, r) for r, s in enumerate(ranked, start=1)]
    by_class: dict[int, list[SliceView]] = {}
    for v in sorted(views, key=lambda v: v.entry.rank):
        by_class.setdefault(v.entry.class_index, []).append(v)
    cls = [ClassView(c, by_class.get(c.class_index, [])) for c in classes]

    def key(c: ClassView) -> tuple[Any, ...]:
        if c.slices:
            return (0, min(v.rank for v in c.slices), c.index)
        return (2 if c.skipped else 1, 0, c.index)

    cls.sort(key=key)
    for r, c in enumerate(cls, start=1):
        c.rank = r
    return views, cls


@dataclass
class Context:
    """What the sections share while one report is built.

    ``output(relpath)`` gives the path a plot may be written to (a file of the run
    that failscope owns, or a new one) and records it as written by this build.
    ``painter`` and ``rows_by_class`` are caches filled on first use.
    """

    run: Run
    thumbs_per_mosaic: int
    thumb_size: int
    class_names: list[str]
    examples: Any  # DataFrame
    scores: np.ndarray  # slice_scores.npy, (n_examples, K)
    view_split: str | None
    view_note: str
    image_roots: list[Path]
    meta_columns: list[str]
    written: list[str] = field(default_factory=list)
    annotations: dict[str, Any] = field(default_factory=dict)  # slice id -> Annotation
    painter: Any = None
    rows_by_class: dict[int, np.ndarray] | None = None

    def output(self, relpath: str) -> Path:
        """Where to write the run file ``relpath`` (refuses files failscope did not write)."""
        path = self.run.output(relpath)
        if relpath not in self.written:
            self.written.append(relpath)
        return path


def class_frame(ctx: Context, index: int) -> tuple[Any, np.ndarray]:
    """Class ``index``'s examples in the shown split, and their row numbers.

    Rows of every class are located once, then cached.
    """
    if ctx.rows_by_class is None:
        df = ctx.examples
        labels = df["label"].to_numpy()
        keep = np.ones(len(df), bool)
        if ctx.view_split is not None:
            keep = df["split"].astype(str).to_numpy() == ctx.view_split
        rows = np.flatnonzero(keep)
        order = np.argsort(labels[rows], kind="stable")
        rows, sorted_labels = rows[order], labels[rows][order]
        uniq, starts = np.unique(sorted_labels, return_index=True)
        bounds = [*starts[1:], len(rows)]
        ctx.rows_by_class = {
            int(c): rows[a:b] for c, a, b in zip(uniq, starts, bounds, strict=True)
        }
    rows = ctx.rows_by_class.get(index, np.zeros(0, np.int64))
    return ctx.examples.iloc[rows], rows


def top_caption(s: SliceEntry) -> str | None:
    """The slice's first failure caption, or None."""
    if s.captions is None or not s.captions.failure:
        return None
    return s.captions.failure[0].text


def check_for(s: SliceEntry, text: str | None) -> CaptionCheck | None:
    """The caption check of caption ``text`` on slice ``s``, or None."""
    for check in s.caption_checks or ():
        if text is not None and check.text == text:
            return check
    return None
