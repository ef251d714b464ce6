"""What every slicer is: an estimator that turns features and predictions into slices.

A slicer is fitted on one split (the *fitting split*) of per-example features
(CLIP embeddings, or attribution-weighted features), labels and the audited
model's predictions. It finds 0..K slices per class, each with a per-example
score (higher = more inside) and a membership rule (score above a cutoff), and it
records how strongly the data supports each slice.

Contract (``fit`` / ``score``)::

    slicer.fit(X, labels, predictions, rows=None, reference_rows=None, reference=None,
               n_classes=None) -> slicer
    slicer.slices_        list of FittedSlice, in (class, rank) order
    slicer.skip_reasons_  {class: why it got no slice}
    slicer.n_columns_     max slices in one class
    slicer.score(X, labels) -> (n, n_columns_) float32; column k = the example's
                             class's rank-k slice, NaN where the class has fewer

``X`` may be a memory map; slicers read it class by class. ``rows`` (the fitting
split) and ``reference_rows`` (the rows whose statistics standardise the space)
index ``X``, ``labels`` and ``predictions`` without copying them; ``reference`` is
an array of its own instead.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator

from failscope._validation import fail
from failscope.run.schema import Support, passes_cutoff

__all__ = [
    "FittedSlice",
    "Slicer",
    "class_rows",
    "enrichment_p",
    "rank_order",
    "rank_slices",
    "slice_stats",
]


@dataclass(frozen=True)
class FittedSlice:
    """One slice as a slicer found it, with its statistics on the fitting split.

    Attributes
    ----------
    class_index, rank : int
        Its class and its rank there (0 = most severe; weak slices rank last).
    cutoff : float
        Members have ``score > cutoff`` (``strict``) or ``score >= cutoff``.
    strict : bool
    threshold : str
        The rule that set the cutoff, for the record (``"zero"``, ``"topk:50"``...).
    support : Support
        Its significance test; ``significant`` compares the p-value with ``support.alpha``.
    size, n_errors_in : int
        Members and the audited model's errors among them (fitting split).
    n_class, n_errors_class : int
        Examples and errors of its class (fitting split).
    confusion : dict of int to int
        Wrong predicted class -> count among the members.
    direction : ndarray of shape (d,) or None
        Unit direction in the slicer's standardised space, for direction-based slices.
    metrics : dict of str to float
        Slicer-specific numbers shown beside the slice.
    """

    class_index: int
    rank: int
    cutoff: float
    strict: bool
    threshold: str
    support: Support
    size: int
    n_errors_in: int
    n_class: int
    n_errors_class: int
    confusion: dict[int, int]
    direction: np.ndarray | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)

    @property
    def significant(self) -> bool:
        """Whether its test rejects "no failure mode" at ``support.alpha``."""
        p = self.support.p_value
        return p is not None and p < self.support.alpha

    def members(self, scores: np.ndarray) -> np.ndarray:
        """Which of the class's ``scores`` pass the rule (NaN never does)."""
        return passes_cutoff(scores, self.cutoff, strict=self.strict)


def enrichment_p(n_errors_in: int, size: int, n_errors_class: int, n_class: int) -> float:
    """One-sided Fisher exact test: is the error rate inside higher than outside?"""
    from scipy.stats import fisher_exact

    out_err = n_errors_class - n_errors_in
    out_ok = (n_class - size) - out_err
    table = [[n_errors_in, size - n_errors_in], [out_err, out_ok]]
    return float(fisher_exact(table, alternative="greater")[1])


def class_rows(labels: np.ndarray, rows: np.ndarray | None, n_classes: int) -> list[np.ndarray]:
    """For each class, its positions among ``rows`` of ``labels`` (all rows if None), ascending
    (so that reading them from a memory map goes front to back)."""
    rows = np.arange(len(labels)) if rows is None else np.asarray(rows, dtype=np.int64)
    y = np.asarray(labels)[rows]
    order = np.argsort(y, kind="stable")
    ends = np.cumsum(np.bincount(y, minlength=n_classes))
    return [np.sort(rows[order[e - n : e]]) for e, n in zip(ends, np.diff(ends, prepend=0),
                                                              strict=True)]  # fmt: skip


def slice_stats(member: np.ndarray, wrong: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """Size, errors and confusion of one slice among its class's fitting examples."""
    errs = member & wrong
    wrong_preds, counts = np.unique(pred[errs], return_counts=True)
    return {
        "size": int(member.sum()),
        "n_errors_in": int(errs.sum()),
        "n_class": len(member),
        "n_errors_class": int(wrong.sum()),
        "confusion": {int(k): int(v) for k, v in zip(wrong_preds, counts, strict=True)},
    }


def rank_order(slices: list[FittedSlice]) -> list[int]:
    """The positions of one class's slices in rank order: significant first, then most errors."""
    return sorted(
        range(len(slices)),
        key=lambda i: (not slices[i].significant, -slices[i].n_errors_in, slices[i].rank),
    )


def rank_slices(slices: list[FittedSlice]) -> list[FittedSlice]:
    """One class's slices in rank order, with ``rank`` set (see :func:`rank_order`)."""
    return [_with_rank(slices[i], r) for r, i in enumerate(rank_order(slices))]


def _with_rank(s: FittedSlice, rank: int) -> FittedSlice:
    from dataclasses import replace

    return s if s.rank == rank else replace(s, rank=rank)


class Slicer(BaseEstimator):
    """Base class of slicers; see the module docstring for the contract.

    Subclasses set ``name`` (the registry name) and ``score_description`` (what the
    per-example score means), implement ``fit`` and ``score``, and say what to save
    with ``_state`` / ``_restore``.
    """

    name: ClassVar[str] = ""
    score_description: ClassVar[str] = ""

    def fit(
        self,
        X: Any,
        labels: Any,
        predictions: Any,
        *,
        rows: Any | None = None,
        reference_rows: Any | None = None,
        reference: Any | None = None,
        n_classes: int | None = None,
    ) -> Slicer:  # pragma: no cover - abstract
        raise NotImplementedError

    def score(self, X: Any, labels: Any) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- fitted state
    def _check_fitted(self) -> None:
        if not hasattr(self, "slices_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError(f"{type(self).__name__} is not fitted yet; call fit() first")

    def slices_of(self, class_index: int) -> list[FittedSlice]:
        """The fitted slices of one class, by rank."""
        self._check_fitted()
        return [s for s in self.slices_ if s.class_index == class_index]

    # -- persistence: arrays plus JSON, never pickle
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:  # pragma: no cover
        raise NotImplementedError

    def _restore(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        raise NotImplementedError  # pragma: no cover

    def save(self, path: str | os.PathLike[str]) -> None:
        """Save the fitted slicer as ``.npz`` (arrays and JSON; no pickle)."""
        from failscope.run import atomic_write

        self._check_fitted()
        meta, arrays = self._state()
        params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.get_params().items()}
        head = {"slicer": self.name, "params": params, "state": meta}

        def write(tmp: Any) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, meta=np.array(json.dumps(head)), **arrays)

        atomic_write(path, write)


def load_state(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header and arrays of a saved slicer file."""
    try:
        with np.load(path, allow_pickle=False) as data:
            head = json.loads(str(data["meta"]))
            arrays = {k: data[k] for k in data.files if k != "meta"}
    except (OSError, ValueError, KeyError) as exc:
        raise fail(
            f"slicer file {path} cannot be read ({exc}); re-run `failscope discover`"
        ) from None
    return head, arrays
