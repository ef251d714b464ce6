"""The ``directions`` slicer: failure directions (Jain et al., ICLR 2023).

Per class, :class:`~failscope.directions.ErrorDirections` fits a linear classifier
of "the audited model gets this wrong" on standardised, L2-normalised embeddings;
its unit normal is the class's failure direction and the slice is the examples on
its failure side (``threshold``). The per-example score is the signed distance to
that hyperplane. A slice whose direction does not beat chance on held-out folds
(``ErrorDirections.p_values_`` at ``alpha``) is kept but marked weak.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from failscope._validation import check_fraction, check_int
from failscope.directions import DEFAULT_CS, ErrorDirections
from failscope.run.schema import Support, passes_cutoff
from failscope.slicers.base import FittedSlice, Slicer, enrichment_p, rank_slices, slice_stats
from failscope.slices import SliceThreshold

__all__ = ["SIGNIFICANCE_TEST", "DirectionSlicer"]

#: How ``ErrorDirections.p_values_`` are computed (recorded with every slice).
SIGNIFICANCE_TEST = "held-out permutation test of the CV error AUROC (max over the C grid)"


class DirectionSlicer(Slicer):
    """One failure direction per class and its failure side as the slice.

    Parameters
    ----------
    threshold : str, default="zero"
        Membership: ``"zero"`` (failure side), ``"quantile:Q"`` or ``"topk:K"`` of the
        class's fitting scores.
    Cs, cv, scoring, solver, selection, min_examples
        :class:`~failscope.directions.ErrorDirections` hyperparameters.
    alpha : float, default=0.05
        A slice whose direction's p-value is not below ``alpha`` is weak.
    random_state : int, default=0
        Seeds the CV folds.

    Attributes
    ----------
    estimator_ : ErrorDirections
        The fitted directions (standardisation, one direction per class).
    slices_ : list of FittedSlice
        One per class that got a direction.
    skip_reasons_ : dict of int to str
    n_columns_ : int
        1.
    """

    name: ClassVar[str] = "directions"
    score_description: ClassVar[str] = "signed distance to the class's failure hyperplane"

    def __init__(
        self,
        *,
        threshold: str = "zero",
        Cs: tuple[float, ...] = DEFAULT_CS,
        cv: int = 2,
        scoring: str = "balanced_accuracy",
        solver: str = "lssvm",
        selection: str = "best",
        min_examples: int = 10,
        alpha: float = 0.05,
        random_state: int = 0,
    ) -> None:
        self.threshold = threshold
        self.Cs = Cs
        self.cv = cv
        self.scoring = scoring
        self.solver = solver
        self.selection = selection
        self.min_examples = min_examples
        self.alpha = alpha
        self.random_state = random_state

    def _estimator(self) -> ErrorDirections:
        return ErrorDirections(
            Cs=tuple(self.Cs), cv=self.cv, scoring=self.scoring, solver=self.solver,
            selection=self.selection, min_examples=self.min_examples,
            random_state=self.random_state,
        )  # fmt: skip

    def _validate_params(self) -> SliceThreshold:
        check_fraction(self.alpha, name="alpha")
        check_int(self.random_state, name="random_state", low=0)
        self._estimator()._validate_params()
        return SliceThreshold.parse(self.threshold)

    def fit(
        self,
        X: Any,
        labels: Any,
        predictions: Any,
        *,
        reference: Any | None = None,
        n_classes: int | None = None,
    ) -> DirectionSlicer:
        """Fit one direction per class and cut its slice (see the class docstring)."""
        thr = self._validate_params()
        est = self._estimator()
        est.fit(X, labels, predictions, reference=reference, n_classes=n_classes)
        y = np.asarray(labels, dtype=np.int64)
        pred = np.asarray(predictions)
        pred = pred.argmax(axis=1) if pred.ndim == 2 else pred.astype(np.int64)
        scores = est.failure_score(X, y)
        self.estimator_ = est
        self.n_classes_ = est.n_classes_
        self.skip_reasons_ = dict(est.skip_reasons_)
        self.slices_ = []
        for c in range(est.n_classes_):
            if c in est.skip_reasons_:
                continue
            sel = y == c
            self.slices_ += rank_slices([self._slice(c, scores[sel], y[sel] != pred[sel],
                                                     pred[sel], thr)])  # fmt: skip
        self.n_columns_ = 1
        return self

    def _slice(
        self, c: int, scores: np.ndarray, wrong: np.ndarray, pred: np.ndarray, thr: SliceThreshold
    ) -> FittedSlice:
        est = self.estimator_
        cutoff = thr.cutoff(scores)
        strict = thr.mode == "zero"
        member = passes_cutoff(scores, cutoff, strict=strict)
        stats = slice_stats(member, wrong, pred)
        support = Support(
            test=SIGNIFICANCE_TEST,
            p_value=float(est.p_values_[c]),
            alpha=float(self.alpha),
            cv_metric=est.scoring,
            cv_score=float(est.cv_scores_[c]),
            C=float(est.best_C_[c]),
            enrichment_p=enrichment_p(
                stats["n_errors_in"], stats["size"], stats["n_errors_class"], stats["n_class"]
            ),
        )
        return FittedSlice(
            class_index=c, rank=0, cutoff=float(cutoff), strict=strict,
            threshold=_threshold_text(thr), support=support,
            direction=est.directions_[c].copy(), **stats,
        )  # fmt: skip

    def score(self, X: Any, labels: Any) -> np.ndarray:
        """Signed distance of each example to its class's hyperplane, shape (n, 1)."""
        self._check_fitted()
        return self.estimator_.failure_score(X, labels)[:, None]

    # -- persistence
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        est = self.estimator_
        arrays = {f"est_{k}": getattr(est, k) for k in est._ARRAYS}
        meta = {
            "estimator": est.state_meta(),
            "slices": [_slice_meta(s) for s in self.slices_],
            "n_columns": self.n_columns_,
        }
        return meta, arrays

    def _restore(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        est_arrays = {k[4:]: v for k, v in arrays.items() if k.startswith("est_")}
        self.estimator_ = ErrorDirections.from_state(meta["estimator"], est_arrays)
        self.n_classes_ = self.estimator_.n_classes_
        self.skip_reasons_ = dict(self.estimator_.skip_reasons_)
        self.slices_ = [
            _slice_from_meta(m, self.estimator_.directions_[m["class_index"]])
            for m in meta["slices"]
        ]
        self.n_columns_ = int(meta["n_columns"])


def _threshold_text(thr: SliceThreshold) -> str:
    return "zero" if thr.mode == "zero" else f"{thr.mode}:{thr.value:g}"


def _slice_meta(s: FittedSlice) -> dict[str, Any]:
    return {
        "class_index": s.class_index, "rank": s.rank, "cutoff": s.cutoff, "strict": s.strict,
        "threshold": s.threshold, "support": s.support.to_json(), "size": s.size,
        "n_errors_in": s.n_errors_in, "n_class": s.n_class, "n_errors_class": s.n_errors_class,
        "confusion": {str(k): v for k, v in s.confusion.items()}, "metrics": s.metrics,
    }  # fmt: skip


def _slice_from_meta(m: dict[str, Any], direction: np.ndarray | None) -> FittedSlice:
    return FittedSlice(
        class_index=int(m["class_index"]), rank=int(m["rank"]), cutoff=float(m["cutoff"]),
        strict=bool(m["strict"]), threshold=str(m["threshold"]),
        support=Support.from_json(m["support"], where="slicer.npz: support"),
        size=int(m["size"]), n_errors_in=int(m["n_errors_in"]), n_class=int(m["n_class"]),
        n_errors_class=int(m["n_errors_class"]),
        confusion={int(k): int(v) for k, v in m["confusion"].items()},
        direction=direction, metrics=dict(m["metrics"]),
    )  # fmt: skip
