"""Slices as the run records them: membership thresholds, entries, per-example ids.

:class:`SliceThreshold` sets where a direction-based slice starts along its score;
:func:`slice_entries` turns a fitted slicer's slices into ``slices.json``'s typed
entries; :func:`top_membership` gives each example its top slice and slice id.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from failscope._validation import check_fraction, fail
from failscope.run.schema import ClassEntry, MembershipRule, SliceEntry

__all__ = ["SliceThreshold", "slice_entries", "slice_id", "top_membership"]

_SPEC = re.compile(r"^(?:(zero|0)|(?:quantile|q):(.+)|(?:top|topk|top-k):(.+))$", re.I)


@dataclass(frozen=True)
class SliceThreshold:
    """Where a class's slice starts along its failure score.

    Parameters
    ----------
    mode : {"zero", "quantile", "topk"}
        ``"zero"``: score > 0 (the hyperplane's failure side). ``"quantile"``: score at
        or above the class's ``value`` quantile on the fitting split. ``"topk"``: the
        ``value`` highest-scoring examples of the class on the fitting split.
    value : float
        Quantile in (0, 1) or k >= 1; ignored for ``"zero"``.
    """

    mode: str = "zero"
    value: float = 0.0

    @classmethod
    def parse(cls, spec: str) -> SliceThreshold:
        """Parse ``"zero"``, ``"quantile:0.9"`` or ``"topk:50"``."""
        m = _SPEC.match(str(spec).strip())
        if not m:
            raise fail(
                f"slice threshold {spec!r} is not understood; use 'zero', 'quantile:Q' "
                "with 0<Q<1, or 'topk:K' with K>=1"
            )
        if m.group(1):
            return cls("zero", 0.0)
        if m.group(2) is not None:
            return cls("quantile", check_fraction(m.group(2), name="slice quantile"))
        try:
            k = int(m.group(3))
        except ValueError:
            raise fail(f"slice top-k {m.group(3)!r} is not an integer") from None
        if k < 1:
            raise fail(f"slice top-k must be >= 1, got {k}")
        return cls("topk", float(k))

    def cutoff(self, fit_scores: np.ndarray) -> float:
        """The score at or above which a class's example is in its slice."""
        s = fit_scores[np.isfinite(fit_scores)]
        if self.mode == "zero" or s.size == 0:
            return 0.0 if self.mode == "zero" else math.inf
        if self.mode == "quantile":
            return float(np.quantile(s, self.value))
        k = min(int(self.value), s.size)
        return float(np.sort(s)[::-1][k - 1])

    def __str__(self) -> str:
        return "zero" if self.mode == "zero" else f"{self.mode}:{self.value:g}"


def slice_id(class_index: int, rank: int) -> str:
    """The id of a class's rank-``rank`` slice, e.g. ``"8/0"``."""
    return f"{class_index}/{rank}"


def slice_entries(
    slicer: Any, class_names: list[str], *, labels: np.ndarray, wrong: np.ndarray
) -> tuple[tuple[ClassEntry, ...], tuple[SliceEntry, ...]]:
    """``slices.json``'s entries from a fitted slicer (see :mod:`failscope.slicers`).

    Parameters
    ----------
    slicer : Slicer
        Fitted on the fitting split.
    class_names : list of str
    labels, wrong : ndarray of shape (n_fit,)
        The fitting split's labels and whether the audited model got each wrong.
    """
    direction_rows: dict[tuple[int, int], int] = {}
    slices = []
    for s in slicer.slices_:
        if s.direction is not None:
            direction_rows[(s.class_index, s.rank)] = len(direction_rows)
        slices.append(
            SliceEntry(
                id=slice_id(s.class_index, s.rank),
                class_index=s.class_index,
                class_name=class_names[s.class_index],
                rank=s.rank,
                slicer=slicer.name,
                status="ok" if s.significant else "weak",
                column=s.rank,
                size=s.size,
                n_errors_in=s.n_errors_in,
                error_rate_in=_rate(s.n_errors_in, s.size),
                error_rate_out=_rate(s.n_errors_class - s.n_errors_in, s.n_class - s.size),
                support=s.support,
                rule=MembershipRule(
                    score=slicer.score_description,
                    cutoff=s.cutoff,
                    strict=s.strict,
                    threshold=s.threshold,
                    direction=direction_rows.get((s.class_index, s.rank)),
                ),
                confusion={class_names[k]: v for k, v in s.confusion.items()},
                metrics=dict(s.metrics),
            )
        )
    classes = []
    for c, name in enumerate(class_names):
        sel = labels == c
        n, n_err = int(sel.sum()), int(wrong[sel].sum())
        reason = slicer.skip_reasons_.get(c)
        classes.append(
            ClassEntry(
                class_index=c,
                class_name=name,
                status="skipped" if reason else "ok",
                reason=reason,
                n_fit=n,
                n_errors_fit=n_err,
                error_rate=_rate(n_err, n),
                n_slices=sum(1 for s in slices if s.class_index == c),
            )
        )
    return tuple(classes), tuple(slices)


def direction_matrix(slicer: Any, dim: int) -> np.ndarray:
    """The directions of direction-based slices in entry order, shape (n_directions, dim)."""
    rows = [s.direction for s in slicer.slices_ if s.direction is not None]
    return np.asarray(rows, dtype=np.float32).reshape(len(rows), dim)


def top_membership(
    scores: np.ndarray, labels: np.ndarray, slices: tuple[SliceEntry, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Each example's membership in its class's top slice, and its highest-ranked slice.

    Parameters
    ----------
    scores : ndarray of shape (n, K)
        Slice scores (``slice_scores.npy`` rows), column k = the class's rank-k slice.
    labels : ndarray of shape (n,)
    slices : tuple of SliceEntry

    Returns
    -------
    in_top : ndarray of bool, shape (n,)
    slice_ids : ndarray of object, shape (n,)
        The id of the highest-ranked slice the example belongs to, else None.
    """
    n = len(labels)
    in_top = np.zeros(n, dtype=bool)
    ids = np.full(n, None, dtype=object)
    for s in sorted(slices, key=lambda e: -e.rank):  # lower ranks overwrite higher ones
        sel = np.flatnonzero(labels == s.class_index)
        hit = s.rule.passes(scores[sel, s.column])
        ids[sel[hit]] = s.id
        if s.rank == 0:
            in_top[sel[hit]] = True
    return in_top, ids


def _rate(k: int, n: int) -> float | None:
    return k / n if n else None
