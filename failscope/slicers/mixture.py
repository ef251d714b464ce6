"""The ``mixture`` slicer: an error-aware Gaussian mixture per class (Domino- and FACTS-style).

Per class, the standardised, L2-normalised embeddings are reduced by PCA and
modelled by a mixture of ``n_components`` diagonal Gaussians in which every
component also has its own error rate: the responsibilities of an example
combine the Gaussian likelihood of its embedding with ``error_weight`` times the
Bernoulli log-likelihood of "the audited model got it wrong", so components
form around groups that share both appearance and errors (Eyuboglu et al.'s
Domino; FACTS' bias-conditioned mixtures). Written here because Domino pins
scikit-learn 0.24.2, which does not install on today's Python.

Honest support: the fitting split's examples of a class are halved (seeded,
stratified by error). The mixture is fitted on one half; the other half is
assigned to components by the embedding alone (``p(component | x)``, no error
term) and each component's error rate there is compared with the rest of the
class by a one-sided Fisher exact test, Bonferroni-corrected over the
components. Components that pass at ``alpha`` with at least ``min_size``
held-out members become slices, ranked by their errors on the fitting split;
the per-example score is ``p(component | x)`` and a member has score >= 0.5.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from failscope._validation import check_fraction, check_int, check_n_jobs
from failscope.run.schema import Support, passes_cutoff
from failscope.slicers._perclass import fit_per_class, restore_per_class, state_per_class
from failscope.slicers.base import (
    FittedSlice,
    Slicer,
    enrichment_p,
    rank_order,
    rank_slices,
    slice_stats,
)

__all__ = ["MixtureSlicer"]

TEST_NAME = "held-out half: one-sided Fisher test of the component's error rate, Bonferroni"


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    m = a.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(axis=axis, keepdims=True))).squeeze(axis)


class _ErrorAwareGMM:
    """EM for a diagonal Gaussian mixture whose components carry an error rate."""

    def __init__(self, k: int, *, error_weight: float, n_iter: int, reg: float, seed: int):
        self.k, self.error_weight, self.n_iter, self.reg, self.seed = (
            k, error_weight, n_iter, reg, seed,
        )  # fmt: skip

    def _log_gauss(self, x: np.ndarray) -> np.ndarray:
        var = self.var_
        return -0.5 * (
            ((x[:, None, :] - self.mean_[None]) ** 2 / var[None]).sum(axis=2)
            + np.log(2 * np.pi * var).sum(axis=1)[None]
        )

    def _log_error(self, e: np.ndarray) -> np.ndarray:
        rho = np.clip(self.rho_, 1e-4, 1 - 1e-4)
        return e[:, None] * np.log(rho)[None] + (1 - e[:, None]) * np.log(1 - rho)[None]

    def fit(self, x: np.ndarray, e: np.ndarray) -> _ErrorAwareGMM:
        rng = np.random.default_rng(self.seed)
        n, _ = x.shape
        resp = rng.dirichlet(np.ones(self.k), size=n)
        for _ in range(self.n_iter):
            nk = resp.sum(axis=0) + 1e-9
            self.weights_ = nk / n
            self.mean_ = resp.T @ x / nk[:, None]
            sq = resp.T @ (x * x) / nk[:, None] - self.mean_**2
            self.var_ = np.maximum(sq, 0) + self.reg
            self.rho_ = (resp * e[:, None]).sum(axis=0) / nk
            log = np.log(self.weights_)[None] + self._log_gauss(x)
            log = log + self.error_weight * self._log_error(e)
            new = np.exp(log - _logsumexp(log, axis=1)[:, None])
            if np.abs(new - resp).max() < 1e-5:
                resp = new
                break
            resp = new
        return self

    def posterior(self, x: np.ndarray) -> np.ndarray:
        """``p(component | x)`` from the embedding alone, shape (n, k)."""
        log = np.log(self.weights_)[None] + self._log_gauss(x)
        return np.exp(log - _logsumexp(log, axis=1)[:, None])


class MixtureSlicer(Slicer):
    """Error-aware Gaussian mixture slices (see the module docstring).

    Parameters
    ----------
    n_components : int, default=6
        Mixture components per class (the most slices a class can get).
    n_pca : int, default=32
        PCA dimensions of the class's standardised embeddings (fewer if the class
        has fewer examples).
    error_weight : float, default=5.0
        Weight of the error log-likelihood in the responsibilities (Domino's
        ``y_log_likelihood_weight``); 0 gives a plain mixture.
    min_size : int, default=10
        Held-out members a component needs to become a slice.
    alpha : float, default=0.05
        Family-wise level of the held-out enrichment tests of one class.
    min_examples : int, default=10
        Classes with fewer fitting examples get no slice.
    n_jobs : int or None, default=None
        Worker processes for the per-class fits (None or 1: this process; -1: every core).
    n_iter : int, default=200
        EM iterations at most.
    random_state : int, default=0

    Attributes
    ----------
    slices_ : list of FittedSlice
    skip_reasons_ : dict of int to str
    n_columns_ : int
    """

    name: ClassVar[str] = "mixture"
    score_description: ClassVar[str] = "posterior probability of the mixture component"

    def __init__(
        self,
        *,
        n_components: int = 6,
        n_pca: int = 32,
        error_weight: float = 5.0,
        min_size: int = 10,
        alpha: float = 0.05,
        min_examples: int = 10,
        n_jobs: int | None = None,
        n_iter: int = 200,
        random_state: int = 0,
    ) -> None:
        self.n_components = n_components
        self.n_pca = n_pca
        self.error_weight = error_weight
        self.min_size = min_size
        self.alpha = alpha
        self.min_examples = min_examples
        self.n_jobs = n_jobs
        self.n_iter = n_iter
        self.random_state = random_state

    def _validate_params(self) -> None:
        check_int(self.n_components, name="n_components", low=1, high=64)
        check_int(self.n_pca, name="n_pca", low=1)
        check_int(self.min_size, name="min_size", low=1)
        check_int(self.min_examples, name="min_examples", low=2)
        check_n_jobs(self.n_jobs)
        check_int(self.n_iter, name="n_iter", low=1)
        check_int(self.random_state, name="random_state", low=0)
        check_fraction(self.alpha, name="alpha")
        if not self.error_weight >= 0:
            from failscope._validation import fail

            raise fail(f"error_weight must be >= 0, got {self.error_weight!r}")

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
    ) -> MixtureSlicer:
        """Fit one error-aware mixture per class; keep the components that fail (see above)."""
        self._validate_params()
        fit_per_class(
            self, X, labels, predictions, rows=rows, reference_rows=reference_rows,
            reference=reference, n_classes=n_classes,
        )  # fmt: skip
        return self

    def _fit_class(
        self, c: int, z: np.ndarray, wrong: np.ndarray, pred: np.ndarray
    ) -> tuple[list[FittedSlice], tuple[Any, ...]]:
        rng = np.random.default_rng([self.random_state, c])
        half = np.zeros(len(z), dtype=bool)
        for group in (wrong, ~wrong):  # stratified halves
            idx = rng.permutation(np.flatnonzero(group))
            half[idx[: len(idx) // 2]] = True
        mean = z[half].mean(axis=0)
        n_pca = min(self.n_pca, int(half.sum()) - 1, z.shape[1])
        _, _, vt = np.linalg.svd(z[half] - mean, full_matrices=False)
        basis = vt[:n_pca].astype(np.float32)
        p = (z - mean) @ basis.T
        gmm = _ErrorAwareGMM(
            min(self.n_components, int(half.sum()) // 2), error_weight=self.error_weight,
            n_iter=self.n_iter, reg=1e-3, seed=self.random_state + c,
        ).fit(p[half], wrong[half].astype(np.float64))  # fmt: skip
        post = gmm.posterior(p)
        member = post.argmax(axis=1)[:, None] == np.arange(gmm.k)[None]
        candidates = []
        for j in range(gmm.k):
            held = member[~half, j]
            if held.sum() < self.min_size:
                continue
            test = wrong[~half]
            p_j = enrichment_p(
                int((held & test).sum()), int(held.sum()), int(test.sum()), len(test)
            )
            p_adj = min(1.0, p_j * gmm.k)
            if p_adj >= self.alpha:
                continue
            in_slice = passes_cutoff(post[:, j], 0.5, strict=False)
            stats = slice_stats(in_slice, wrong, pred)
            support = Support(
                test=TEST_NAME, p_value=p_adj, alpha=float(self.alpha),
                enrichment_p=enrichment_p(stats["n_errors_in"], stats["size"],
                                          stats["n_errors_class"], stats["n_class"]),
            )  # fmt: skip
            candidates.append((j, FittedSlice(
                class_index=c, rank=len(candidates), cutoff=0.5, strict=False,
                threshold="posterior:0.5", support=support,
                metrics={"component_error_rate": float(gmm.rho_[j]),
                         "held_out_error_rate": float(test[held].mean())},
                **stats,
            )))  # fmt: skip
        found = [s for _, s in candidates]
        return rank_slices(found), (mean, basis, gmm, [candidates[i][0] for i in rank_order(found)])

    def score(self, X: Any, labels: Any, *, chunk: int = 65536) -> np.ndarray:
        """``p(component | x)`` of each example's class's slices, (n, n_columns_), by rank."""
        self._check_fitted()
        x = np.asarray(X)
        y = np.asarray(labels, dtype=np.int64)
        out = np.full((len(x), self.n_columns_), np.nan, dtype=np.float32)
        for c, (mean, basis, gmm, order) in self.models_.items():
            if not order:
                continue
            for s in range(0, len(x), chunk):
                sel = np.flatnonzero(y[s : s + chunk] == c) + s
                if not len(sel):
                    continue
                z = self.standardiser_._standardise(np.asarray(x[sel]))
                post = gmm.posterior((z - mean) @ basis.T)
                out[sel, : len(order)] = post[:, order]
        return out

    # -- persistence
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays, classes = {}, {}
        for c, (mean, basis, gmm, order) in self.models_.items():
            parts = {"mean": mean, "basis": basis, "w": gmm.weights_, "mu": gmm.mean_,
                     "var": gmm.var_, "rho": gmm.rho_}  # fmt: skip
            arrays.update({f"c{c}_{name}": value for name, value in parts.items()})
            classes[str(c)] = order
        return state_per_class(self, classes, arrays)

    def _restore(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        restore_per_class(self, meta, arrays)
        self.models_ = {}
        for key, order in meta["classes"].items():
            c = int(key)
            gmm = _ErrorAwareGMM(len(arrays[f"c{c}_w"]), error_weight=self.error_weight,
                                 n_iter=self.n_iter, reg=1e-3, seed=0)  # fmt: skip
            gmm.weights_, gmm.mean_ = arrays[f"c{c}_w"], arrays[f"c{c}_mu"]
            gmm.var_, gmm.rho_ = arrays[f"c{c}_var"], arrays[f"c{c}_rho"]
            self.models_[c] = (arrays[f"c{c}_mean"], arrays[f"c{c}_basis"], gmm, list(order))
