"""The ``directions`` slicer: failure directions (Jain et al., ICLR 2023), 1..K per class.

Per class, :class:`~failscope.directions.ErrorDirections` fits a linear classifier
of "the audited model gets this wrong" on standardised, L2-normalised embeddings;
its unit normal is the class's failure direction and the slice is the examples on
its failure side (``threshold``). The per-example score is the signed distance to
that hyperplane. A slice whose direction does not beat chance on held-out folds
(the permutation test behind ``ErrorDirections.p_values_``, at ``alpha``) is kept
but marked weak.

With ``max_slices`` > 1 a class may get further slices, found one after the other:

* ``mode="residual"``: the next direction is fitted on the class's examples that
  no slice holds yet (the errors the found directions miss, against the successes
  they miss), so a second way of failing that the first direction cannot separate
  gets a direction of its own;
* ``mode="project"``: the next direction is fitted on all the class's examples with
  the found directions projected out of the embeddings;
* ``mode="split"``: one direction can blend two ways of failing (it points between
  them), so the class's errors are split first: along the axis where the errors
  spread most relative to the class's successes (the top generalised eigenvector of
  the errors' covariance against the successes', in the class's 16 top principal
  components), if a two-component Gaussian mixture beats one by BIC, each group of
  errors gets its own direction against all of the class's successes (errors
  re-assigned to the direction that scores them highest, twice); the group with the
  most errors is split again while ``max_slices`` allows. Then, as ``residual``,
  further directions are fitted on what the slices do not cover.

The stopping rule: a further slice is emitted only if its direction is significant
on held-out folds, and (``residual``, ``project``) it adds at least ``min_size``
members no slice held whose error rate is significantly above the rest of the
uncovered class (one-sided Fisher test at ``alpha``), or (``split``) every group
has at least ``min_size`` errors; all on the fitting split. A class with one
failure mode keeps one slice.
"""

from __future__ import annotations

from functools import partial
from typing import Any, ClassVar, NamedTuple

import numpy as np

from failscope._parallel import map_batched
from failscope._validation import check_choice, check_fraction, check_int
from failscope.directions import DEFAULT_CS, ErrorDirections, blas_controller
from failscope.run.schema import Support, passes_cutoff
from failscope.slicers.base import (
    FittedSlice,
    Slicer,
    class_rows,
    enrichment_p,
    rank_order,
    rank_slices,
    slice_stats,
)
from failscope.slices import SliceThreshold

__all__ = ["SIGNIFICANCE_TEST", "DirectionSlicer"]

MODES = ("residual", "project", "split")
SPLIT_AXES = ("contrast", "errors")
#: Principal components of a class in which the split mode looks for its errors' extra spread.
SPLIT_DIMS = 16
#: How ``ErrorDirections.p_values_`` are computed (recorded with every slice).
SIGNIFICANCE_TEST = "held-out permutation test of the CV error AUROC (max over the C grid)"


def _slice_batch(
    slicer: DirectionSlicer,
    batch: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]],
    thr: SliceThreshold,
) -> list[tuple[int, list[tuple[FittedSlice, tuple[np.ndarray, float]]]]]:
    """The slices of a batch of classes ``(c, z, wrong, pred)`` (in a worker process)."""
    with blas_controller().limit(limits=1, user_api="blas"):
        return [(c, slicer._class_slices(c, z, wrong, pred, thr)) for c, z, wrong, pred in batch]


class DirectionSlicer(Slicer):
    """Failure directions per class, and their failure sides as slices.

    Parameters
    ----------
    threshold : str, default="zero"
        Membership: ``"zero"`` (failure side), ``"quantile:Q"`` or ``"topk:K"`` of the
        class's fitting scores.
    max_slices : int, default=3
        Most slices per class (1: one failure direction per class, Jain et al.'s method,
        exactly).
    mode : {"residual", "project", "split"}, default="split"
        How further directions are found (see the module docstring).
    split_axis : {"contrast", "errors"}, default="contrast"
        ``split`` mode: the axis searched for two groups of errors, the one where they
        spread most relative to the successes, or simply their own main axis.
    min_size : int, default=10
        New members a further slice must add.
    Cs, cv, scoring, solver, selection, min_examples, n_jobs
        :class:`~failscope.directions.ErrorDirections` hyperparameters.
    alpha : float, default=0.05
        Significance level of the direction test (a rank-0 slice above it is weak)
        and of the stopping rule.
    random_state : int, default=0
        Seeds the CV folds and the permutations.

    Attributes
    ----------
    estimator_ : ErrorDirections
        The fitted directions of rank 0 and the standardisation.
    slices_ : list of FittedSlice
        In (class, rank) order.
    skip_reasons_ : dict of int to str
    n_columns_ : int
        The most slices a class got.
    directions_by_rank_ : ndarray of shape (n_columns_, n_classes, d)
        The direction of each class's rank-k slice (NaN where it has none).
    intercepts_by_rank_ : ndarray of shape (n_columns_, n_classes)
    """

    name: ClassVar[str] = "directions"
    score_description: ClassVar[str] = "signed distance to the slice's failure hyperplane"

    def __init__(
        self,
        *,
        threshold: str = "zero",
        max_slices: int = 3,
        mode: str = "split",
        split_axis: str = "contrast",
        min_size: int = 10,
        Cs: tuple[float, ...] = DEFAULT_CS,
        cv: int = 2,
        scoring: str = "balanced_accuracy",
        solver: str = "lssvm",
        selection: str = "best",
        min_examples: int = 10,
        alpha: float = 0.05,
        n_jobs: int | None = None,
        random_state: int = 0,
    ) -> None:
        self.threshold = threshold
        self.max_slices = max_slices
        self.mode = mode
        self.split_axis = split_axis
        self.min_size = min_size
        self.Cs = Cs
        self.cv = cv
        self.scoring = scoring
        self.solver = solver
        self.selection = selection
        self.min_examples = min_examples
        self.alpha = alpha
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _estimator(self) -> ErrorDirections:
        return ErrorDirections(
            Cs=tuple(self.Cs), cv=self.cv, scoring=self.scoring, solver=self.solver,
            selection=self.selection, min_examples=self.min_examples, alpha=self.alpha,
            n_jobs=self.n_jobs, random_state=self.random_state,
        )  # fmt: skip

    def _validate_params(self) -> SliceThreshold:
        check_fraction(self.alpha, name="alpha")
        check_int(self.random_state, name="random_state", low=0)
        check_int(self.max_slices, name="max_slices", low=1, high=32)
        check_int(self.min_size, name="min_size", low=1)
        check_choice(self.mode, MODES, name="mode")
        check_choice(self.split_axis, SPLIT_AXES, name="split_axis")
        self._estimator()._validate_params()
        return SliceThreshold.parse(self.threshold)

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
    ) -> DirectionSlicer:
        """Fit the directions of every class and cut their slices (see the module docstring)."""
        thr = self._validate_params()
        est = self._estimator()
        est.fit(
            X, labels, predictions, rows=rows, reference_rows=reference_rows,
            reference=reference, n_classes=n_classes,
        )  # fmt: skip
        y = np.asarray(labels, dtype=np.int64)
        pred = np.asarray(predictions)
        pred = pred.argmax(axis=1) if pred.ndim == 2 else pred.astype(np.int64)
        self.estimator_ = est
        self.n_classes_ = est.n_classes_
        self.skip_reasons_ = dict(est.skip_reasons_)
        self.slices_ = []
        tasks = (
            (c, est.transform(np.asarray(X[sel])), y[sel] != pred[sel], pred[sel])
            for c, sel in enumerate(class_rows(y, rows, est.n_classes_))
            if c not in est.skip_reasons_
        )
        # per-class solves are small: BLAS threads only spin (as in ErrorDirections.fit)
        with blas_controller().limit(limits=1, user_api="blas"):
            results = map_batched(
                partial(_slice_batch, self, thr=thr), tasks, n_jobs=self.n_jobs,
                nbytes=lambda t: t[1].nbytes,
            )  # fmt: skip
        per_class: dict[int, list[tuple[np.ndarray, float]]] = {}
        for c, found in results:
            order = rank_order([f for f, _ in found])
            self.slices_ += rank_slices([f for f, _ in found])
            per_class[c] = [found[i][1] for i in order]
        self.n_columns_ = max([len(v) for v in per_class.values()], default=1)
        d = est.directions_.shape[1]
        self.directions_by_rank_ = np.full(
            (self.n_columns_, self.n_classes_, d), np.nan, np.float32
        )
        self.intercepts_by_rank_ = np.full((self.n_columns_, self.n_classes_), np.nan, np.float32)
        for c, hyperplanes in per_class.items():
            for r, (w, b) in enumerate(hyperplanes):
                self.directions_by_rank_[r, c] = w
                self.intercepts_by_rank_[r, c] = b
        return self

    def _class_slices(
        self, c: int, z: np.ndarray, wrong: np.ndarray, pred: np.ndarray, thr: SliceThreshold
    ) -> list[tuple[FittedSlice, tuple[np.ndarray, float]]]:
        """The class's slices in the order found, each with its hyperplane ``(w, b)``."""
        est = self.estimator_
        w0, b0 = est.directions_[c], float(est.intercepts_[c])
        first = _Fit(w0, b0, float(est.p_values_[c]), float(est.cv_scores_[c]),
                     float(est.best_C_[c]), bool(est.C_at_edge_[c]))  # fmt: skip
        fits = [first]
        if self.mode == "split":
            fits = self._split(c, z, wrong, [first, None])[: self.max_slices]
        out = [self._slice(c, z, wrong, pred, thr, f) for f in fits]
        covered = np.zeros(len(z), dtype=bool)
        for (entry, _), f in zip(out, fits, strict=True):
            covered |= entry.members(z @ f.w + f.b)
        basis = np.stack([f.w for f in fits]).astype(np.float64)
        for _ in range(self.max_slices - len(fits)):
            fit = self._next(c, z, wrong, covered, basis)
            if fit is None:
                break
            entry = self._slice(c, z, wrong, pred, thr, fit)
            member = entry[0].members(z @ fit.w + fit.b)
            new = member & ~covered
            rest = ~covered
            p_new = enrichment_p(
                int((new & wrong).sum()), int(new.sum()), int(wrong[rest].sum()), int(rest.sum())
            )
            if new.sum() < self.min_size or not p_new < self.alpha:
                break
            out.append(entry)
            covered |= member
            basis = np.vstack([basis, fit.w[None]])
        return out

    def _split(self, c: int, z: np.ndarray, wrong: np.ndarray, parent: list[Any]) -> list[_Fit]:
        """Split the errors of ``parent = [fit, error rows or None (all)]`` while they form
        two groups with significant directions of their own; return the leaves' fits."""
        leaves = [parent]
        while len(leaves) < self.max_slices:
            leaves.sort(key=lambda leaf: -_n_errors(leaf[1], wrong))
            for i, (_, rows) in enumerate(leaves):
                children = self._split_once(c, z, wrong, rows)
                if children is not None:
                    leaves[i : i + 1] = children
                    break
            else:
                break
        return [fit for fit, _ in leaves]

    def _split_once(
        self, c: int, z: np.ndarray, wrong: np.ndarray, rows: np.ndarray | None
    ) -> list[list[Any]] | None:
        """Two children ``[fit, error rows]`` of one group of errors, or None (one mode)."""
        from scipy.linalg import eigh
        from sklearn.mixture import GaussianMixture

        errors = np.flatnonzero(wrong) if rows is None else rows
        correct = np.flatnonzero(~wrong)
        if len(errors) < 2 * self.min_size or len(correct) < SPLIT_DIMS + 2:
            return None
        # the axis along which these errors spread most, relative to the class's successes:
        # a second way of failing adds spread there (in the class's top principal components)
        if self.split_axis == "errors":  # the errors' own main axis of variation
            ze = z[errors].astype(np.float64)
            ze -= ze.mean(axis=0)
            p = ze @ np.linalg.svd(ze, full_matrices=False)[2][0]
        else:
            mean = z.mean(axis=0)
            _, _, vt = np.linalg.svd(z - mean, full_matrices=False)
            basis = vt[: min(SPLIT_DIMS, len(vt))].T.astype(np.float64)
            pe, pc = (z[errors] - mean) @ basis, (z[correct] - mean) @ basis
            spread_c = np.cov(pc.T)
            spread_c += np.eye(len(spread_c)) * 1e-3 * np.trace(spread_c) / len(spread_c)
            p = pe @ eigh(np.cov(pe.T), spread_c)[1][:, -1]
        p = p[:, None]
        seed = self.random_state + c
        one = GaussianMixture(1, random_state=seed).fit(p)
        two = GaussianMixture(2, random_state=seed, n_init=3).fit(p)
        if two.bic(p) >= one.bic(p):
            return None
        group = two.predict(p)
        fits: list[_Fit | None] = [None, None]
        for _ in range(3):  # fit a direction per group, then re-assign the errors to them
            parts = [errors[group == j] for j in (0, 1)]
            if min(len(part) for part in parts) < self.min_size:
                return None
            for j, part in enumerate(parts):
                both = np.concatenate([part, correct])
                fits[j] = _as_fit(self.estimator_.fit_class(c, z[both], wrong[both]))
            if any(f is None for f in fits):
                return None
            scores = np.stack([z[errors] @ f.w + f.b for f in fits], axis=1)
            group = scores.argmax(axis=1)
        if not all(f.p_value < self.alpha for f in fits):
            return None
        return [[fits[j], errors[group == j]] for j in (0, 1)]

    def _next(
        self, c: int, z: np.ndarray, wrong: np.ndarray, covered: np.ndarray, basis: np.ndarray
    ) -> _Fit | None:
        """The next direction of the class (``mode``), or None if it is not significant."""
        if self.mode in ("residual", "split"):
            rows = np.flatnonzero(~covered)
            f = self.estimator_.fit_class(c, z[rows], wrong[rows])
        else:
            q, _ = np.linalg.qr(basis.T)  # orthonormal basis of the found directions
            f = self.estimator_.fit_class(c, z - (z @ q) @ q.T, wrong)
        fit = _as_fit(f)
        return fit if fit is not None and fit.p_value < self.alpha else None

    def _slice(
        self,
        c: int,
        z: np.ndarray,
        wrong: np.ndarray,
        pred: np.ndarray,
        thr: SliceThreshold,
        fit: _Fit,
    ) -> tuple[FittedSlice, tuple[np.ndarray, float]]:
        scores = (z @ fit.w + fit.b).astype(np.float32)
        cutoff = thr.cutoff(scores)
        strict = thr.mode == "zero"
        member = passes_cutoff(scores, cutoff, strict=strict)
        stats = slice_stats(member, wrong, pred)
        support = Support(
            test=SIGNIFICANCE_TEST,
            p_value=fit.p_value,
            alpha=float(self.alpha),
            cv_metric=self.estimator_.scoring,
            cv_score=fit.cv_score,
            C=fit.C,
            enrichment_p=enrichment_p(
                stats["n_errors_in"], stats["size"], stats["n_errors_class"], stats["n_class"]
            ),
        )
        entry = FittedSlice(
            class_index=c, rank=0, cutoff=float(cutoff), strict=strict,
            threshold=_threshold_text(thr), support=support, direction=fit.w.copy(),
            metrics={"C_at_edge": float(fit.at_edge)}, **stats,
        )  # fmt: skip
        return entry, (fit.w, fit.b)

    def score(self, X: Any, labels: Any, *, chunk: int = 65536) -> np.ndarray:
        """Signed distance of each example to its class's slices' hyperplanes, (n, n_columns_).

        Column 0 is :meth:`ErrorDirections.failure_score` when every class's top slice is
        its first direction (always with ``max_slices=1``).
        """
        self._check_fitted()
        y = np.asarray(labels, dtype=np.int64)
        out = np.empty((len(y), self.n_columns_), dtype=np.float32)
        for s in range(0, len(y), chunk):
            z = self.estimator_.transform(np.asarray(X[s : s + chunk]))
            yy = y[s : s + chunk]
            for r in range(self.n_columns_):
                w, b = self.directions_by_rank_[r], self.intercepts_by_rank_[r]
                out[s : s + chunk, r] = np.einsum("nd,nd->n", z, w[yy]) + b[yy]
        return out

    # -- persistence
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        est = self.estimator_
        arrays = {f"est_{k}": getattr(est, k) for k in est._ARRAYS}
        arrays["directions_by_rank"] = self.directions_by_rank_
        arrays["intercepts_by_rank"] = self.intercepts_by_rank_
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
        self.directions_by_rank_ = arrays["directions_by_rank"]
        self.intercepts_by_rank_ = arrays["intercepts_by_rank"]
        self.slices_ = [
            _slice_from_meta(m, self.directions_by_rank_[m["rank"], m["class_index"]])
            for m in meta["slices"]
        ]
        self.n_columns_ = int(meta["n_columns"])


class _Fit(NamedTuple):
    """A fitted hyperplane of one slice and its evidence."""

    w: np.ndarray
    b: float
    p_value: float
    cv_score: float
    C: float
    at_edge: bool


def _as_fit(f: Any) -> _Fit | None:
    """A :meth:`ErrorDirections.fit_class` result as a hyperplane, or None if it has none."""
    if f.direction is None:
        return None
    return _Fit(f.direction.astype(np.float32), float(f.intercept), float(f.p_value),
                float(f.cv_score), float(f.best_C), bool(f.at_edge))  # fmt: skip


def _n_errors(rows: np.ndarray | None, wrong: np.ndarray) -> int:
    return int(wrong.sum()) if rows is None else len(rows)


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
