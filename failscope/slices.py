"""Slices: each class's examples on the failure side of its hyperplane."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from failscope._validation import check_fraction, fail

__all__ = ["SliceThreshold", "assign_slices", "summarize_slices"]

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

    def to_dict(self, cutoff: float) -> dict[str, Any]:
        return {"mode": self.mode, "value": self.value, "cutoff": cutoff}


def assign_slices(
    scores: np.ndarray,
    labels: np.ndarray,
    fit_mask: np.ndarray,
    n_classes: int,
    threshold: SliceThreshold = SliceThreshold(),
) -> tuple[np.ndarray, np.ndarray]:
    """Flag slice members among all scored examples.

    Cutoffs are computed per class on the fitting split (``fit_mask``) and applied
    to every split. With the default ``"zero"`` threshold a member must lie strictly
    on the failure side (score > 0); otherwise score >= cutoff.

    Returns
    -------
    in_slice : ndarray of bool, shape (n,)
    cutoffs : ndarray of float, shape (n_classes,)
    """
    cutoffs = np.full(n_classes, np.inf)
    for c in range(n_classes):
        sel = fit_mask & (labels == c)
        if np.isfinite(scores[sel]).any():
            cutoffs[c] = threshold.cutoff(scores[sel])
    with np.errstate(invalid="ignore"):
        if threshold.mode == "zero":
            in_slice = scores > cutoffs[labels]
        else:
            in_slice = scores >= cutoffs[labels]
    return in_slice & np.isfinite(scores), cutoffs


def _rate(x: np.ndarray) -> float | None:
    return float(x.mean()) if x.size else None


def summarize_slices(
    estimator: Any,
    *,
    labels: np.ndarray,
    correct: np.ndarray,
    in_slice: np.ndarray,
    fit_mask: np.ndarray,
    cutoffs: np.ndarray,
    threshold: SliceThreshold,
    class_names: list[str],
) -> list[dict[str, Any]]:
    """One ``slices.json`` entry per class (see ``failscope.run.SLICE_KEYS``)."""
    out = []
    for c, name in enumerate(class_names):
        sel = fit_mask & (labels == c)
        wrong = ~correct[sel]
        members = in_slice[sel]
        skipped = c in estimator.skip_reasons_
        out.append(
            {
                "id": f"class-{c}",
                "class_index": c,
                "class_name": name,
                "status": "skipped" if skipped else "ok",
                "reason": estimator.skip_reasons_.get(c),
                "n_fit": int(sel.sum()),
                "n_errors_fit": int(wrong.sum()),
                "error_rate": _rate(wrong),
                "cv_score": None if skipped else float(estimator.cv_scores_[c]),
                "cv_metric": estimator.scoring,
                "C": None if skipped else float(estimator.best_C_[c]),
                "threshold": threshold.to_dict(float(cutoffs[c])),
                "size": int(members.sum()),
                "error_rate_in": _rate(wrong[members]),
                "error_rate_out": _rate(wrong[~members]),
                "captions": None,
                "caption_checks": None,
            }
        )
    return out
