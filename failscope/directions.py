"""Failure directions: one linear "is this a mistake?" classifier per class.

Jain et al. (ICLR 2023) fit, for each class, a linear SVM on CLIP embeddings that
separates the audited model's errors from its correct predictions. The unit normal
of that hyperplane is the class's *failure direction*.

The default solver here is a class-balanced least-squares SVM (ridge on +/-1
targets). With fewer examples than dimensions it works in the dual: one float32
kernel matrix per class serves every fold and every C, each (fold, C) pair costs one
float32 Cholesky factorisation, and the final refit is refined to float64 accuracy.
With more examples than dimensions it works in the primal: one eigendecomposition
of the d x d Gram matrix per fold gives every C.
Either way, choosing C costs a handful of dense linear-algebra calls per class
instead of ``|grid| * k + 1`` iterative SVM fits. ``benchmarks/directions_speed.py``
compares it with the original libsvm recipe on the same features (speed, AUROC).

When the best C lies at an end of the grid, the grid is widened by decades (up to
``C_LIMITS``). Every direction gets a p-value from a permutation test on its own
out-of-fold scores (:mod:`failscope.evidence`), which costs no refit. Classes are
fitted one at a time, each from its own rows (gathered from a memory map and
standardised on the fly), optionally in parallel worker processes (``n_jobs``).
"""

from __future__ import annotations

import json
import logging
import math
import os
from functools import partial
from typing import Any, NamedTuple

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import TransformerTags
from threadpoolctl import ThreadpoolController

from failscope._parallel import map_batched
from failscope._validation import (
    check_choice,
    check_embeddings,
    check_fraction,
    check_int,
    check_labels,
    check_n_jobs,
    check_rows,
    check_same_length,
    fail,
)
from failscope.evidence import (
    CORRECTIONS,
    fold_test,
    significant,
    warn_bh_resolution,
)

logger = logging.getLogger(__name__)

__all__ = ["ErrorDirections"]

SOLVERS = ("lssvm", "logistic", "svc")
SCORINGS = ("balanced_accuracy", "roc_auc")
DEFAULT_CS = tuple(float(c) for c in np.logspace(-3, 3, 7))
C_LIMITS = (1e-6, 1e6)  # how far widening may take C (upwards only: see _search_C)

# Reasons recorded for classes that get no direction.
REASON_FEW = "only {n} examples of this class (need at least {k})"
REASON_NO_ERRORS = "the model makes no errors on this class"
REASON_NO_CORRECT = "the model gets no example of this class right"
REASON_FEW_GROUP = "only {n} {group} examples (need at least {k} for {k}-fold CV)"


def _as_predictions(predictions: Any, n: int) -> np.ndarray:
    arr = np.asarray(predictions)
    if arr.ndim == 2:  # class probabilities or logits
        if arr.shape[0] != n:
            raise fail(f"predictions have {arr.shape[0]} rows but there are {n} examples")
        return arr.argmax(axis=1).astype(np.int64)
    return check_labels(arr, name="predictions", n_samples=n)


def _balanced_weights(y: np.ndarray) -> np.ndarray:
    """Per-example weights ``n / (2 * n_group)``, as sklearn's ``class_weight='balanced'``."""
    pos = y > 0
    n, n_pos = len(y), int(pos.sum())
    return np.where(pos, n / (2.0 * n_pos), n / (2.0 * (n - n_pos)))


class _Factor(NamedTuple):
    """One eigendecomposition of a weighted, centred LS-SVM problem (see :func:`_lssvm_factor`)."""

    evals: np.ndarray
    evecs: np.ndarray
    proj: np.ndarray
    xm: np.ndarray
    ym: float
    xc: np.ndarray | None  # the weighted, centred examples in the dual (n <= d), else None


def _lssvm_factor(x: np.ndarray, y: np.ndarray, sw: np.ndarray) -> _Factor:
    """Eigendecompose the smaller Gram matrix (n x n when n <= d, else d x d) once."""
    wsum = sw.sum()
    xm = sw @ x / wsum
    ym = float(sw @ y / wsum)
    root = np.sqrt(sw)
    xc = (x - xm) * root[:, None]
    yc = (y - ym) * root
    n, d = xc.shape
    if n <= d:  # dual: w = Xc^T (Xc Xc^T + lambda I)^-1 yc
        evals, evecs = np.linalg.eigh(xc @ xc.T)
        return _Factor(evals, evecs, evecs.T @ yc, xm, ym, xc)
    evals, evecs = np.linalg.eigh(xc.T @ xc)  # primal: w = (Xc^T Xc + lambda I)^-1 Xc^T yc
    return _Factor(evals, evecs, evecs.T @ (xc.T @ yc), xm, ym, None)


def _lssvm_solve(f: _Factor, lambdas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``W`` (n_lambdas, d) and intercepts ``b`` (n_lambdas,) from one :class:`_Factor`."""
    filtered = f.proj / (np.maximum(f.evals, 0.0) + lambdas[:, None])
    w = filtered @ f.evecs.T
    if f.xc is not None:
        w = w @ f.xc
    return w, f.ym - w @ f.xm


def _lssvm_path(
    x: np.ndarray, y: np.ndarray, sw: np.ndarray, lambdas: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted ridge on +/-1 targets for every lambda at once.

    One symmetric eigendecomposition of the smaller Gram matrix (n x n when n <= d,
    else d x d) serves the whole grid. Returns ``W`` of shape (n_lambdas, d) and
    intercepts ``b`` of shape (n_lambdas,).
    """
    return _lssvm_solve(_lssvm_factor(x, y, sw), lambdas)


_BIAS = 10.0  # constant feature that carries the intercept (penalty on it is 1/_BIAS**2)


def _lambdas(cs: np.ndarray, n: int) -> np.ndarray:
    """Ridge penalties for the LS-SVM at SVM-style ``cs`` on ``n`` examples.

    ``lambda = n / (2 C)``: the squared loss charges every example (not only margin
    violators), so the penalty grows with n. Without the factor, the upper half of
    the grid interpolates the +/-1 targets when n < d, and noisy 2-fold CV picks it
    (measured: held-out AUROC 0.02 below libsvm's; with it, on par).
    """
    return n / (2.0 * np.asarray(cs, dtype=np.float64))


def _class_kernel(z: np.ndarray) -> np.ndarray:
    """``Z Z^T + _BIAS^2`` in float32 (one GEMM; beats SYRK plus mirroring here)."""
    kernel = z @ z.T
    kernel += np.float32(_BIAS**2)
    return kernel


def _solve_shifted(
    kernel: np.ndarray, shift: np.ndarray, y: np.ndarray, *, refine: int = 0
) -> np.ndarray:
    """Solve ``(kernel + diag(shift)) alpha = y`` by a float32 Cholesky, straight through LAPACK.

    ``refine`` steps of iterative refinement (residual in float64, correction from
    the same factor) bring the answer to float64 accuracy at the cost of a
    matrix-vector product each; CV fold fits, which only rank C values, skip them.
    Falls back to float64 least squares if the matrix is not numerically positive
    definite in float32.
    """
    from scipy.linalg import lapack

    # Fortran order: LAPACK factorises it in place, with no hidden copy.
    a = np.array(kernel, dtype=np.float32, order="F")
    a.flat[:: len(a) + 1] += shift.astype(np.float32)
    chol, info = lapack.spotrf(a, lower=1, clean=0, overwrite_a=1)
    if info == 0:
        alpha = lapack.spotrs(chol, y.astype(np.float32), lower=1)[0].astype(np.float64)
        for _ in range(refine):
            residual = y - (kernel @ alpha + shift * alpha)
            alpha += lapack.spotrs(chol, residual.astype(np.float32), lower=1)[0]
        if np.isfinite(alpha).all():
            return alpha
    k64 = kernel.astype(np.float64) + np.diag(shift)
    return np.linalg.lstsq(k64, y, rcond=None)[0]


def _dual_decisions(
    kernel: np.ndarray, y: np.ndarray, tr: np.ndarray, te: np.ndarray, cs: np.ndarray
) -> np.ndarray:
    """Out-of-fold decision values of the class-balanced LS-SVM in the dual, for n <= d.

    The fold's fit uses a submatrix of the class's ``kernel`` (see
    :func:`_class_kernel`): ``alpha = (K_TT + diag(lambda / s_T))^-1 y_T`` with
    balanced weights ``s``, one float32 Cholesky factorisation per C.

    Returns
    -------
    ndarray of shape (len(cs), len(te)), float32
    """
    k_tt = _block(kernel, tr, tr)
    inv_w = 1.0 / _balanced_weights(y[tr])
    lambdas = _lambdas(cs, len(tr))
    alpha = np.stack([_solve_shifted(k_tt, lam * inv_w, y[tr]) for lam in lambdas])
    return alpha.astype(np.float32) @ _block(kernel, te, tr).T


def _lssvm_dual_fit(
    kernel: np.ndarray, z: np.ndarray, y: np.ndarray, c: float
) -> tuple[np.ndarray, float]:
    """Refit the dual LS-SVM on all of the class's examples at one C (refined to float64)."""
    shift = _lambdas(np.array([c]), len(y))[0] / _balanced_weights(y)
    alpha = _solve_shifted(kernel.astype(np.float64), shift, y, refine=2)
    return alpha @ z, float(_BIAS**2 * alpha.sum())


def _stratified_folds(y: np.ndarray, k: int, *, seed: int) -> np.ndarray:
    """Shuffled stratified k-fold assignment (fold index per example) for +/-1 targets.

    Each group (errors, successes) is shuffled and dealt round-robin into ``k``
    folds, so fold sizes differ by at most one, per group and in total. Same as scikit-learn's
    ``StratifiedKFold(shuffle=True)`` in spirit, at a fraction of its per-call cost.
    """
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=np.int64)
    start = 0  # the second group's deal continues the first's, so fold sizes stay level
    for group in (y > 0, y <= 0):
        idx = np.flatnonzero(group)
        fold[rng.permutation(idx)] = (start + np.arange(len(idx))) % k
        start = (start + len(idx)) % k
    return fold


def _block(a: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``a[np.ix_(rows, cols)]``, as a cheap view when both index runs are contiguous."""

    def run(i: np.ndarray) -> slice | None:
        return slice(int(i[0]), int(i[-1]) + 1) if int(i[-1]) - int(i[0]) + 1 == len(i) else None

    r, c = run(rows), run(cols)
    return a[r, c] if r is not None and c is not None else a[np.ix_(rows, cols)]


def _select(fold_scores: np.ndarray, rule: str) -> int:
    """Index of the chosen C (``cs`` ascending, so lower index = stronger regularisation).

    ``"best"`` takes the first maximum of the mean score. ``"one_se"`` takes the
    strongest regularisation whose mean is within one standard error of the best
    (Hastie, Tibshirani and Friedman's one-standard-error rule).
    """
    mean = fold_scores.mean(axis=0)
    best = int(np.argmax(mean))
    if rule == "best" or len(fold_scores) < 2:
        return best
    se = fold_scores[:, best].std(ddof=1) / np.sqrt(len(fold_scores))
    return int(np.flatnonzero(mean >= mean[best] - se)[0])


def _path(
    solver: str, x: np.ndarray, y: np.ndarray, cs: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Fit one balanced linear classifier per C; return (W, b) over the grid."""
    if solver == "lssvm":
        return _lssvm_path(x, y, _balanced_weights(y), _lambdas(cs, len(y)))
    if solver == "logistic":
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(class_weight="balanced", max_iter=2000, warm_start=True)
        ws, bs = [], []
        for c in cs:  # warm-started along the path
            model.set_params(C=float(c)).fit(x, y)
            ws.append(model.coef_[0].copy())
            bs.append(float(model.intercept_[0]))
        return np.asarray(ws), np.asarray(bs)
    from sklearn.svm import SVC

    ws, bs = [], []
    for c in cs:
        model = SVC(kernel="linear", C=float(c), class_weight="balanced").fit(x, y)
        ws.append(np.asarray(model.coef_).ravel())
        bs.append(float(model.intercept_[0]))
    return np.asarray(ws), np.asarray(bs)


def _score(metric: str, scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Score each row of ``scores`` (n_models, n) against +/-1 targets ``y``."""
    pos = y > 0
    if metric == "balanced_accuracy":
        flagged = scores > 0
        tpr = flagged[:, pos].mean(axis=1)
        tnr = (~flagged[:, ~pos]).mean(axis=1)
        return (tpr + tnr) / 2.0
    from scipy.stats import rankdata

    ranks = rankdata(scores, axis=1)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    return (ranks[:, pos].sum(axis=1) - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


class _CVFolds:
    """One class's CV folds: out-of-fold decision values at any C.

    In the primal LS-SVM each fold's eigendecomposition is cached, so C values
    added when the grid is widened cost a matrix product each.
    """

    def __init__(
        self,
        solver: str,
        z: np.ndarray,
        y: np.ndarray,
        splits: list[tuple[np.ndarray, np.ndarray]],
        kernel: np.ndarray | None,
        seed: int,
    ) -> None:
        self.solver, self.z, self.y, self.splits, self.kernel, self.seed = (
            solver, z, y, splits, kernel, seed,
        )  # fmt: skip
        self._factors: dict[int, _Factor] = {}

    def decisions(self, cs: np.ndarray) -> list[np.ndarray]:
        """One array of shape (len(cs), n_test) per fold."""
        out = []
        for f, (tr, te) in enumerate(self.splits):
            if self.kernel is not None:
                out.append(_dual_decisions(self.kernel, self.y, tr, te, cs))
                continue
            if self.solver == "lssvm":
                if f not in self._factors:
                    y_tr = self.y[tr]
                    self._factors[f] = _lssvm_factor(self.z[tr], y_tr, _balanced_weights(y_tr))
                ws, bs = _lssvm_solve(self._factors[f], _lambdas(cs, len(tr)))
            else:
                ws, bs = _path(self.solver, self.z[tr], self.y[tr], cs, self.seed)
            out.append(ws @ self.z[te].T + bs[:, None])
        return out


class _Search(NamedTuple):
    """The C search of one class (see :func:`_search_C`)."""

    grid: np.ndarray  # every C tried, ascending
    scores: np.ndarray  # (n_folds, len(grid)) CV score per fold and C
    decisions: list[np.ndarray]  # per fold, (len(grid), n_test) out-of-fold decision values
    best: int  # index into grid of the chosen C
    user: slice  # where the user's grid lies in grid
    at_edge: bool


def _search_C(
    folds: _CVFolds, cs: np.ndarray, *, scoring: str, selection: str, widen: bool
) -> _Search:
    """Score ``cs`` by CV; widen upwards by decades while the best mean score is at the
    largest C.

    A decade above is kept as a candidate only if its mean score is strictly higher
    than the best so far (a plateau stops the search); it is recorded either way.
    Widening stops at ``C_LIMITS``. The smallest C is not widened: below it the
    direction no longer changes (measured: cosine 1.000000), only the intercept
    shrinks, which would move the zero-threshold slices without finding anything.
    """
    held_out = [folds.y[te] for _, te in folds.splits]

    def run(c_values: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        dec = folds.decisions(c_values)
        return dec, np.stack([_score(scoring, d, t) for d, t in zip(dec, held_out, strict=True)])

    decisions, scores = run(cs)
    grid, candidate = cs.copy(), np.ones(len(cs), dtype=bool)
    mean = scores.mean(axis=0)
    top = int(np.argmax(mean))  # the first maximum: a tie with the next C is a plateau
    edge = len(cs) > 1 and top == len(cs) - 1
    limited = edge and not widen
    while edge and widen:
        c_new = grid[-1] * 10.0
        if c_new > C_LIMITS[1] * (1 + 1e-9):
            limited = True
            break
        dec, sc = run(np.array([c_new]))
        better = bool(sc.mean() > scores[:, top].mean())
        at = len(grid)
        grid = np.insert(grid, at, c_new)
        scores = np.insert(scores, at, sc[:, 0], axis=1)
        decisions = [np.insert(d, at, e[0], axis=0) for d, e in zip(decisions, dec, strict=True)]
        candidate = np.insert(candidate, at, better)
        top = at if better else top
        edge = better
    keep = np.flatnonzero(candidate)
    best = int(keep[_select(scores[:, keep], selection)])
    return _Search(grid, scores, decisions, best, slice(0, len(cs)), bool(limited))


class _ClassFit(NamedTuple):
    """What one class's fit hands back to :meth:`ErrorDirections.fit`."""

    direction: np.ndarray | None
    intercept: float = math.nan
    grid: np.ndarray = np.empty(0)  # every C whose CV score was computed, ascending
    grid_scores: np.ndarray = np.empty(0)  # mean CV score at each
    best_C: float = math.nan
    cv_score: float = math.nan
    cv_auroc: float = math.nan
    p_value: float = math.nan
    at_edge: bool = False
    skip: str | None = None


class _Task(NamedTuple):
    """One class to fit: its standardised embeddings and +/-1 targets, or why it is skipped."""

    c: int
    z: np.ndarray | None
    y_or_reason: np.ndarray | str


def _run_task(est: ErrorDirections, task: _Task, cs: np.ndarray) -> _ClassFit:
    if task.z is None:
        return _ClassFit(None, skip=str(task.y_or_reason))
    return est._fit_class(task.c, task.z, np.asarray(task.y_or_reason), cs)


def _run_batch(est: ErrorDirections, batch: list[_Task], cs: np.ndarray) -> list[_ClassFit]:
    """Fit a batch of classes in a worker process (one BLAS thread, as in the parent)."""
    with blas_controller().limit(limits=1, user_api="blas"):
        return [_run_task(est, t, cs) for t in batch]


class ErrorDirections(BaseEstimator):
    """Per-class linear classifiers that separate a model's errors from its successes.

    Embeddings are standardised (mean and scale from ``reference`` if given, else
    from the fitting embeddings) and L2-normalised. For each class, C is chosen by
    stratified k-fold CV over ``Cs`` (widened by decades while the best C is at an
    end of the grid), the classifier is refit once at the chosen C, and a
    permutation test on the out-of-fold scores gives a p-value for the direction
    (:func:`failscope.evidence.fold_test`).

    Parameters
    ----------
    Cs : sequence of float, default=7 values in logspace(-3, 3)
        Grid of inverse regularisation strengths (SVM convention).
    cv : int, default=2
        Number of stratified folds used to choose C.
    scoring : {"balanced_accuracy", "roc_auc"}, default="balanced_accuracy"
        CV metric used to choose C.
    solver : {"lssvm", "logistic", "svc"}, default="lssvm"
        ``"lssvm"`` is a class-balanced least-squares SVM solved in closed form for
        the whole C grid at once; ``"svc"`` is the original libsvm recipe.
    selection : {"best", "one_se"}, default="best"
        How C is chosen from the CV scores: the best mean, or the strongest
        regularisation within one standard error of it (steadier with 2 folds).
    widen_Cs : bool, default=True
        While the best mean CV score is at the largest C of a grid of two or more
        values, try the next decade up, to at most ``C_LIMITS[1]`` = 1e6, and keep it
        if it scores strictly higher.
    n_permutations : int, default=199
        Label shuffles in the significance test; the smallest p-value it can give
        is ``1 / (n_permutations + 1)``. 0 skips the test
        (``p_values_`` NaN, ``significant_`` False).
    alpha : float, default=0.05
        Level at which ``significant_`` is decided.
    correction : {"none", "bh"}, default="none"
        ``"bh"``: Benjamini-Hochberg across the fitted classes (false discovery
        rate ``alpha``) instead of a per-class test at level ``alpha``.
    min_examples : int, default=10
        Classes with fewer examples than this get no direction.
    n_jobs : int or None, default=None
        Worker processes that fit classes in parallel (joblib, each single-threaded).
        None is 1 (no workers), -1 is every core. Results do not depend on it.
    random_state : int, default=0
        Seed of the CV fold assignment and of the permutations.

    Attributes
    ----------
    n_classes_ : int
    mean_, scale_ : ndarray of shape (d,)
        Standardisation statistics.
    directions_ : ndarray of shape (n_classes, d)
        Unit failure directions; NaN rows for skipped classes.
    intercepts_ : ndarray of shape (n_classes,)
        Offsets so that ``failure_score = directions_[y] @ z + intercepts_[y]`` is the
        signed distance to the hyperplane (positive: failure side).
    Cs_ : ndarray
        Every C whose CV score was computed for some class: ``Cs`` and the decades
        added by widening, ascending.
    cv_results_ : ndarray of shape (n_classes, len(Cs_))
        Mean CV score for every C; NaN where it was not computed for that class.
    cv_scores_ : ndarray of shape (n_classes,)
        Mean CV score at the chosen C; NaN for skipped classes.
    cv_auroc_ : ndarray of shape (n_classes,)
        Mean over folds of the out-of-fold AUROC (errors vs successes) at the chosen C.
    best_C_ : ndarray of shape (n_classes,)
    C_at_edge_ : ndarray of shape (n_classes,), bool
        The chosen C is at an end of the searched grid and the CV score was still
        rising there (widening hit ``C_LIMITS``, or was off).
    p_values_ : ndarray of shape (n_classes,)
        Permutation p-value of H0 "the embeddings carry no information about this
        class's errors" (one-sided, on the first fold's held-out examples, over the
        ``Cs`` grid; see :mod:`failscope.evidence`); NaN for skipped classes.
    significant_ : ndarray of shape (n_classes,), bool
        ``p_values_`` judged at ``alpha`` with ``correction``
        (:func:`failscope.evidence.significant`).
    skip_reasons_ : dict of int to str
        Why each skipped class got no direction.
    n_fit_, n_errors_ : ndarray of shape (n_classes,)
        Examples and errors per class in the fitting data.
    """

    def __init__(
        self,
        *,
        Cs: tuple[float, ...] = DEFAULT_CS,
        cv: int = 2,
        scoring: str = "balanced_accuracy",
        solver: str = "lssvm",
        selection: str = "best",
        widen_Cs: bool = True,
        n_permutations: int = 199,
        alpha: float = 0.05,
        correction: str = "none",
        min_examples: int = 10,
        n_jobs: int | None = None,
        random_state: int = 0,
    ) -> None:
        self.Cs = Cs
        self.cv = cv
        self.scoring = scoring
        self.solver = solver
        self.selection = selection
        self.widen_Cs = widen_Cs
        self.n_permutations = n_permutations
        self.alpha = alpha
        self.correction = correction
        self.min_examples = min_examples
        self.n_jobs = n_jobs
        self.random_state = random_state

    # ------------------------------------------------------------------ fitting
    def _validate_params(self) -> np.ndarray:
        check_choice(self.scoring, SCORINGS, name="scoring")
        check_choice(self.solver, SOLVERS, name="solver")
        check_choice(self.selection, ("one_se", "best"), name="selection")
        check_choice(self.correction, CORRECTIONS, name="correction")
        check_int(self.cv, name="cv", low=2)
        check_int(self.min_examples, name="min_examples", low=2)
        check_int(self.n_permutations, name="n_permutations", low=0)
        check_fraction(self.alpha, name="alpha")
        check_n_jobs(self.n_jobs)
        cs = np.asarray(self.Cs, dtype=np.float64).ravel()
        if cs.size == 0 or not np.all(np.isfinite(cs)) or np.any(cs <= 0):
            raise fail(f"Cs must be a non-empty list of positive numbers, got {self.Cs!r}")
        return np.sort(cs)

    def __sklearn_tags__(self) -> Any:
        # transform() makes scikit-learn treat this as a transformer, which needs the tag;
        # the output (standardised float32 embeddings) does not keep the input's dtype
        tags = super().__sklearn_tags__()
        tags.transformer_tags = TransformerTags(preserves_dtype=[])
        return tags

    def fit(
        self,
        embeddings: Any,
        labels: Any,
        predictions: Any,
        *,
        reference: Any | None = None,
        n_classes: int | None = None,
        rows: Any | None = None,
        reference_rows: Any | None = None,
    ) -> ErrorDirections:
        """Fit one failure direction per class.

        Memory stays bounded for memory-mapped ``embeddings``: each class's rows are
        gathered and standardised when that class is fitted.

        Parameters
        ----------
        embeddings : array-like of shape (n, d)
            Image embeddings (usually of the validation split); may be a memory map.
        labels : array-like of shape (n,)
            True class indices.
        predictions : array-like of shape (n,) or (n, n_classes)
            The audited model's predicted indices, or its class scores (argmax is taken).
        reference : array-like of shape (m, d), optional
            Embeddings whose statistics standardise the space (e.g. the train split).
        n_classes : int, optional
            Number of classes; inferred from ``labels`` and ``predictions`` if omitted.
        rows : array-like of int, optional
            Fit on these rows of ``embeddings``, ``labels`` and ``predictions`` only
            (the same result as passing ``embeddings[rows]`` etc., without the copy).
        reference_rows : array-like of int, optional
            Rows of ``embeddings`` to use as ``reference`` (without the copy).

        Returns
        -------
        self
        """
        cs = self._validate_params()
        x = check_embeddings(embeddings)
        n, d = x.shape
        y = check_labels(labels, name="labels", n_samples=n, n_classes=n_classes)
        pred = _as_predictions(predictions, n)
        check_same_length(embeddings=x, labels=y, predictions=pred)
        k = int(max(y.max(), pred.max()) + 1) if n_classes is None else int(n_classes)
        if pred.max() >= k:
            raise fail(f"predictions hold class index {int(pred.max())} but n_classes={k}")
        rows = np.arange(n) if rows is None else check_rows(rows, n)
        if reference is not None and reference_rows is not None:
            raise fail("pass reference or reference_rows, not both")
        if reference_rows is not None:
            ref_rows = check_rows(reference_rows, n, name="reference_rows")
            self.mean_, self.scale_ = _moments(x, rows=ref_rows)
        elif reference is None:
            self.mean_, self.scale_ = _moments(x, rows=None if len(rows) == n else rows)
        else:
            ref = check_embeddings(reference, name="reference")
            if ref.shape[1] != d:
                raise fail(f"reference has {ref.shape[1]} dimensions but embeddings have {d}")
            self.mean_, self.scale_ = _moments(ref)
        y, pred = y[rows], pred[rows]
        wrong = pred != y

        self.n_classes_ = k
        self.n_features_in_ = d
        self.n_fit_ = np.bincount(y, minlength=k)
        self.n_errors_ = np.bincount(y[wrong], minlength=k)
        # Per-class problems are small: BLAS threads only spin against each other
        # (measured 10x slower with 2 threads on a busy 2-core machine).
        with blas_controller().limit(limits=1, user_api="blas"):
            fits = self._fit_classes(x, rows, y, wrong, cs)
        self._collect(fits, cs, d)
        return self

    def _fit_classes(
        self, x: np.ndarray, rows: np.ndarray, y: np.ndarray, wrong: np.ndarray, cs: np.ndarray
    ) -> list[_ClassFit]:
        """Fit every class; in worker processes when ``n_jobs`` asks for them.

        This process gathers and standardises one class's rows at a time and hands
        them out in batches (:func:`failscope._parallel.map_batched`), so memory stays
        bounded.
        """
        order = np.argsort(y, kind="stable")  # each class's rows, in input order
        ends = np.cumsum(self.n_fit_)

        def task(c: int) -> _Task:
            at = order[ends[c] - self.n_fit_[c] : ends[c]]
            reason = self._skip_reason(len(at), int(wrong[at].sum()))
            if reason:
                return _Task(c, None, reason)
            return _Task(c, self._standardise(x[rows[at]]), np.where(wrong[at], 1.0, -1.0))

        return map_batched(
            partial(_run_batch, self, cs=cs),
            (task(c) for c in range(self.n_classes_)),
            n_jobs=self.n_jobs,
            nbytes=lambda t: 0 if t.z is None else t.z.nbytes,
        )

    def _collect(self, fits: list[_ClassFit], cs: np.ndarray, d: int) -> None:
        """Gather the per-class results into the fitted attributes."""
        k = self.n_classes_
        grid = np.unique(np.concatenate([cs, *(f.grid for f in fits)]))
        self.Cs_ = grid
        self.directions_ = np.full((k, d), np.nan, dtype=np.float32)
        self.intercepts_ = np.full(k, np.nan, dtype=np.float32)
        self.cv_results_ = np.full((k, len(grid)), np.nan)
        for name in ("cv_scores_", "cv_auroc_", "best_C_", "p_values_"):
            setattr(self, name, np.full(k, np.nan))
        self.C_at_edge_ = np.zeros(k, dtype=bool)
        self.skip_reasons_: dict[int, str] = {}
        for c, f in enumerate(fits):
            if f.skip is not None:
                self.skip_reasons_[c] = f.skip
                logger.info("class %d skipped: %s", c, f.skip)
                continue
            self.directions_[c] = f.direction
            self.intercepts_[c] = f.intercept
            self.cv_results_[c, np.searchsorted(grid, f.grid)] = f.grid_scores
            self.cv_scores_[c], self.cv_auroc_[c] = f.cv_score, f.cv_auroc
            self.best_C_[c], self.p_values_[c] = f.best_C, f.p_value
            self.C_at_edge_[c] = f.at_edge
        self.significant_ = significant(
            self.p_values_, alpha=self.alpha, correction=self.correction
        )
        self._warn_edges(cs)
        if self.correction == "bh":
            warn_bh_resolution(
                int(np.isfinite(self.p_values_).sum()),
                n_permutations=self.n_permutations, alpha=self.alpha,
            )  # fmt: skip

    def _warn_edges(self, cs: np.ndarray) -> None:
        edge = np.flatnonzero(self.C_at_edge_)
        if not len(edge):
            return
        lo, hi = C_LIMITS if self.widen_Cs else (cs[0], cs[-1])
        logger.warning(
            "%d of %d fitted classes chose C at an end of %s [%g, %g] with the CV score still "
            "rising there (classes %s%s); %s",
            len(edge), self.n_classes_ - len(self.skip_reasons_),
            "the widened grid, limited to" if self.widen_Cs else "Cs", lo, hi,
            ", ".join(map(str, edge[:10])), " ..." if len(edge) > 10 else "",
            "their directions may be under- or over-regularised"
            if self.widen_Cs
            else "pass widen_Cs=True or a wider Cs grid",
        )  # fmt: skip

    def _skip_reason(self, n: int, n_err: int) -> str | None:
        if n < self.min_examples:
            return REASON_FEW.format(n=n, k=self.min_examples)
        if n_err == 0:
            return REASON_NO_ERRORS
        if n_err == n:
            return REASON_NO_CORRECT
        for group, m in (("error", n_err), ("correct", n - n_err)):
            if m < self.cv:
                return REASON_FEW_GROUP.format(n=m, group=group, k=self.cv)
        return None

    def _fit_class(self, c: int, z: np.ndarray, y: np.ndarray, cs: np.ndarray) -> _ClassFit:
        # Sort the class's examples by fold so that, with 2 folds, every kernel block
        # a fold needs is a view rather than a gathered copy.
        fold = _stratified_folds(y, self.cv, seed=self.random_state + c)
        order = np.argsort(fold, kind="stable")
        z, y, fold = z[order], y[order], fold[order]
        splits = [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(self.cv)]
        dual = self.solver == "lssvm" and len(z) <= z.shape[1]
        kernel = _class_kernel(z) if dual else None
        if not dual:
            z = z.astype(np.float64)
        folds = _CVFolds(self.solver, z, y, splits, kernel, self.random_state)
        search = _search_C(
            folds, cs, scoring=self.scoring, selection=self.selection, widen=self.widen_Cs
        )
        c_best = float(search.grid[search.best])
        if dual:
            w, b = _lssvm_dual_fit(kernel, z, y, c_best)
        else:
            ws, bs = _path(self.solver, z, y, np.array([c_best]), self.random_state)
            w, b = ws[0], float(bs[0])
        norm = float(np.linalg.norm(w))
        if norm == 0.0:
            return _ClassFit(None, skip="the fitted direction is zero (errors not separable)")
        held_out = [y[te] for _, te in splits]
        rng = np.random.default_rng([self.random_state, c])
        tests = [  # over the user's grid only: fixed before the labels were seen
            fold_test(d[search.user], t, rng=rng, n_permutations=self.n_permutations * (f == 0))
            for f, (d, t) in enumerate(zip(search.decisions, held_out, strict=True))
        ]
        user = range(search.user.start, search.user.stop)
        aurocs = [
            a[search.best - user.start]
            if search.best in user
            else _score("roc_auc", d[search.best][None], t)[0]
            for (_, a), d, t in zip(tests, search.decisions, held_out, strict=True)
        ]
        return _ClassFit(
            direction=w / norm,
            intercept=b / norm,
            grid=search.grid,
            grid_scores=search.scores.mean(axis=0),
            best_C=c_best,
            cv_score=float(search.scores[:, search.best].mean()),
            cv_auroc=float(np.mean(aurocs)),
            p_value=tests[0][0],  # the first fold carries the test (see failscope.evidence)
            at_edge=search.at_edge,
        )

    def fit_class(self, c: int, z: np.ndarray, wrong: np.ndarray) -> _ClassFit:
        """Fit one more direction for class ``c`` on rows already in the fitted space.

        Used by slicers that look for further failure modes of a class (on a subset of
        its rows, or with found directions projected out). The fitted attributes are
        not changed.

        Parameters
        ----------
        c : int
            The class (seeds its CV folds and permutations, as in :meth:`fit`).
        z : ndarray of shape (m, d)
            Rows of the class, standardised by :meth:`transform` (or projected after it).
        wrong : ndarray of bool, shape (m,)
            Whether the audited model got each row wrong.

        Returns
        -------
        ClassFit
            ``direction`` (unit, or None with ``skip`` saying why), ``intercept``,
            ``best_C``, ``cv_score``, ``cv_auroc``, ``p_value``, ``at_edge``.
        """
        self._check_fitted()
        wrong = np.asarray(wrong, dtype=bool)
        reason = self._skip_reason(len(z), int(wrong.sum()))
        if reason:
            return _ClassFit(None, skip=reason)
        with blas_controller().limit(limits=1, user_api="blas"):
            y = np.where(wrong, 1.0, -1.0)
            return self._fit_class(c, np.asarray(z, dtype=np.float32), y, self._validate_params())

    # ------------------------------------------------------------------ using
    def _check_fitted(self) -> None:
        if not hasattr(self, "directions_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("ErrorDirections is not fitted yet; call fit() first")

    def transform(self, embeddings: Any, *, chunk: int = 65536) -> np.ndarray:
        """Standardise then L2-normalise ``embeddings``; returns float32 (n, d)."""
        if not hasattr(self, "mean_"):
            self._check_fitted()
        x = check_embeddings(embeddings)
        if x.shape[1] != len(self.mean_):
            raise fail(f"embeddings have {x.shape[1]} dimensions, expected {len(self.mean_)}")
        return self._standardise(x, chunk=chunk)

    def _standardise(self, x: np.ndarray, *, chunk: int = 65536) -> np.ndarray:
        """:meth:`transform` on already-checked embeddings, in float32, chunk by chunk."""
        out = np.empty(x.shape, dtype=np.float32)
        inv_scale = (1.0 / self.scale_).astype(np.float32)
        for s in range(0, len(x), chunk):
            block = out[s : s + chunk]
            np.subtract(x[s : s + chunk], self.mean_, out=block, casting="unsafe")
            block *= inv_scale
            norms = np.sqrt(np.einsum("nd,nd->n", block, block))
            block /= np.maximum(norms, 1e-12)[:, None]
        return out

    def decision_function(self, embeddings: Any, *, chunk: int = 65536) -> np.ndarray:
        """Signed distance of every example to every class's hyperplane, (n, n_classes)."""
        self._check_fitted()
        z = self.transform(embeddings, chunk=chunk)
        return z @ self.directions_.T + self.intercepts_

    def failure_score(self, embeddings: Any, labels: Any, *, chunk: int = 65536) -> np.ndarray:
        """Score each example against its labelled class's direction.

        Parameters
        ----------
        embeddings : array-like of shape (n, d)
            May be a memory map; it is processed in chunks of ``chunk`` rows.
        labels : array-like of shape (n,)

        Returns
        -------
        ndarray of shape (n,), float32
            Signed distance to the class's hyperplane; higher is more failure-like.
            NaN for classes without a direction.
        """
        self._check_fitted()
        x = check_embeddings(embeddings)
        y = check_labels(labels, name="labels", n_samples=len(x), n_classes=self.n_classes_)
        out = np.empty(len(x), dtype=np.float32)
        for s in range(0, len(x), chunk):
            z = self.transform(x[s : s + chunk])
            yy = y[s : s + chunk]
            out[s : s + chunk] = (
                np.einsum("nd,nd->n", z, self.directions_[yy]) + self.intercepts_[yy]
            )
        return out

    # ------------------------------------------------------------------ persistence
    _ARRAYS = (
        "mean_", "scale_", "directions_", "intercepts_", "cv_scores_", "cv_results_",
        "best_C_", "n_fit_", "n_errors_", "Cs_", "cv_auroc_", "C_at_edge_", "p_values_",
        "significant_",
    )  # fmt: skip

    def state_meta(self) -> dict[str, Any]:
        """The JSON part of the fitted state (hyperparameters, class count, skip reasons)."""
        self._check_fitted()
        return {
            "params": {
                k: (list(v) if isinstance(v, tuple) else v) for k, v in self.get_params().items()
            },
            "n_classes": self.n_classes_,
            "skip_reasons": {str(k): v for k, v in self.skip_reasons_.items()},
        }

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> ErrorDirections:
        """Rebuild a fitted estimator from :meth:`state_meta` and its ``_ARRAYS``."""
        missing = [k for k in cls._ARRAYS if k not in arrays]
        if missing:
            raise fail(
                f"the saved estimator lacks {', '.join(missing)}: it was written by another "
                "failscope version; run discover again"
            )
        params = dict(meta["params"])
        params["Cs"] = tuple(params["Cs"])
        est = cls(**params)
        for k in cls._ARRAYS:
            setattr(est, k, arrays[k])
        est.n_classes_ = int(meta["n_classes"])
        est.n_features_in_ = int(est.mean_.shape[0])
        est.skip_reasons_ = {int(k): v for k, v in meta["skip_reasons"].items()}
        est.significant_ = significant(est.p_values_, alpha=est.alpha, correction=est.correction)
        return est

    def save(self, path: str | os.PathLike[str]) -> None:
        """Save the fitted estimator as ``.npz`` (arrays plus JSON; no pickle)."""
        from failscope.run import atomic_write

        meta = self.state_meta()
        arrays = {k: getattr(self, k) for k in self._ARRAYS}

        def write(tmp: Any) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, meta=np.array(json.dumps(meta)), **arrays)

        atomic_write(path, write)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ErrorDirections:
        """Load an estimator written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            arrays = {k: data[k] for k in cls._ARRAYS if k in data.files}
        return cls.from_state(meta, arrays)


_CONTROLLER: list[ThreadpoolController] = []


def blas_controller() -> ThreadpoolController:
    """One threadpoolctl controller per process (building one scans the loaded libraries,
    measured 5-19 ms, as long as fitting a few classes)."""
    if not _CONTROLLER:
        import scipy.linalg  # noqa: F401  (load scipy's BLAS before the scan)

        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0]


def _moments(
    x: np.ndarray, *, rows: np.ndarray | None = None, chunk: int = 16384
) -> tuple[np.ndarray, np.ndarray]:
    """Column mean and std of ``x`` (or of its ``rows``), streamed in chunks (memory maps welcome).

    Each chunk is centred on its own float64 mean before its float32 sum of squares,
    and chunks are merged with Chan et al.'s pairwise update in float64, so the
    result stays accurate when the mean is large next to the spread.
    """
    n, d = x.shape if rows is None else (len(rows), x.shape[1])
    count, mean, m2 = 0, np.zeros(d), np.zeros(d)
    for s in range(0, n, chunk):
        part = x[s : s + chunk] if rows is None else x[rows[s : s + chunk]]
        block = np.asarray(part, dtype=np.float32)
        k = len(block)
        block_mean = block.mean(axis=0, dtype=np.float64)
        centred = block - block_mean.astype(np.float32)
        block_m2 = np.einsum("nd,nd->d", centred, centred).astype(np.float64)
        delta = block_mean - mean
        total = count + k
        mean += delta * (k / total)
        m2 += block_m2 + delta**2 * (count * k / total)
        count = total
    std = np.sqrt(m2 / n)
    std[std < 1e-8] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)
