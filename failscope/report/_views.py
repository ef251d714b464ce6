"""The per-class view of a run: severity order, shown rows, caption readers.

What the sections render comes from here: a :class:`ClassView` per ``slices.json``
entry (ranked by :func:`severity`), the build's shared :class:`Context`, and
readers of an entry's captions and caption checks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from failscope.run import Run

__all__ = [
    "ClassView",
    "Context",
    "acc_at",
    "check_for",
    "class_frame",
    "entry_captions",
    "entry_checks",
    "order_classes",
    "severity",
    "top_caption",
]


def severity(entry: Mapping[str, Any]) -> float | None:
    """Severity of one ``slices.json`` entry: ``error_rate_in * size``.

    That is the number of the audited model's errors that fall inside the class's
    slice on the fitting split. None for skipped classes; 0 when the slice is empty
    or its error rate is unknown.
    """
    if entry.get("status", "ok") != "ok":
        return None
    rate, size = entry.get("error_rate_in"), entry.get("size")
    if rate is None or size is None or not math.isfinite(float(rate)):
        return 0.0
    return float(rate) * float(size)


@dataclass
class ClassView:
    """One class's ``slices.json`` entry as the report shows it: rank, anchor, expanded."""

    entry: dict[str, Any]
    index: int
    name: str
    severity: float | None
    rank: int = 0
    expanded: bool = False
    anchor: str = ""

    @property
    def skipped(self) -> bool:
        return self.severity is None


@dataclass
class Context:
    """What the sections share while one report is built.

    ``plots_written`` collects the PNGs this build wrote (the rest are stale);
    ``painter`` and ``rows_by_class`` are caches filled on first use.
    """

    run: Run
    plots_dir: Path
    thumbs_per_mosaic: int
    thumb_size: int
    class_names: list[str]
    examples: Any  # DataFrame or None
    view_split: str | None
    view_note: str
    fit_split: str | None
    image_roots: list[Path]
    meta_columns: list[str]
    plots_written: set[Path] = field(default_factory=set)
    painter: Any = None
    rows_by_class: dict[int, np.ndarray] | None = None


def order_classes(slices: Sequence[Mapping[str, Any]], class_names: list[str]) -> list[ClassView]:
    """Views of ``slices``, most severe first (ties by CV score), skipped classes last."""
    views = []
    for pos, entry in enumerate(slices):
        idx = int(entry.get("class_index", pos))
        name = entry.get("class_name")
        if name is None:
            name = class_names[idx] if idx < len(class_names) else str(idx)
        views.append(ClassView(dict(entry), idx, str(name), severity(entry)))

    def key(v: ClassView) -> tuple[Any, ...]:
        if v.skipped:
            return (1, 0.0, 0.0, v.index)
        cv = v.entry.get("cv_score")
        cv = float(cv) if cv is not None and math.isfinite(float(cv)) else -math.inf
        return (0, -float(v.severity or 0.0), -cv, v.index)

    views.sort(key=key)
    for rank, v in enumerate(views, start=1):
        v.rank = rank
        v.anchor = f"class-{v.index}"
    return views


def class_frame(ctx: Context, index: int) -> Any:
    """The examples of class ``index`` in the shown split (rows located once, then cached)."""
    df = ctx.examples
    if df is None or "label" not in df.columns:
        return None
    if ctx.rows_by_class is None:
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
    return df.iloc[ctx.rows_by_class.get(index, np.zeros(0, np.int64))]


def entry_captions(entry: Mapping[str, Any], kind: str) -> list[dict[str, Any]]:
    """The ``kind`` (``"failure"`` or ``"success"``) captions of an entry that have text."""
    caps = entry.get("captions")
    if not isinstance(caps, Mapping):
        return []
    out = caps.get(kind) or []
    return [c for c in out if isinstance(c, Mapping) and c.get("text") is not None]


def top_caption(entry: Mapping[str, Any]) -> str | None:
    """The entry's first failure caption, or None."""
    caps = entry_captions(entry, "failure")
    return str(caps[0]["text"]) if caps else None


def entry_checks(entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The entry's caption checks (``caption_checks``), mappings only."""
    checks = entry.get("caption_checks")
    if not isinstance(checks, list):
        return []
    return [c for c in checks if isinstance(c, Mapping)]


def acc_at(check: Mapping[str, Any]) -> dict[int, float | None]:
    """``{K: accuracy of the K images nearest the caption}`` from a caption check."""
    out: dict[int, float | None] = {}
    k, acc = check.get("k"), check.get("acc_at_k")
    if isinstance(acc, Mapping):
        for kk, v in acc.items():
            try:
                out[int(kk)] = None if v is None else float(v)
            except (TypeError, ValueError):
                continue
    elif isinstance(k, list) and isinstance(acc, list) and len(k) == len(acc):
        out.update(
            {int(kk): (None if v is None else float(v)) for kk, v in zip(k, acc, strict=True)}
        )
    elif isinstance(k, (int, float)) and isinstance(acc, (int, float)):
        out[int(k)] = float(acc)
    curve = check.get("curve")
    if isinstance(curve, Mapping):
        ck, ca = curve.get("k") or [], curve.get("acc") or []
        for kk, v in zip(ck, ca, strict=False):
            if int(kk) in (25, 50, 100) and int(kk) not in out:
                out[int(kk)] = None if v is None else float(v)
    return out


def check_for(entry: Mapping[str, Any], text: str | None) -> dict[str, Any] | None:
    """The caption check of caption ``text``, or None."""
    for check in entry_checks(entry):
        if text is not None and check.get("text") == text:
            return check
    return None
