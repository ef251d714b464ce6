"""The ``attribution`` slicer: clusters of where the audited model looks (AttributionScanner).

After Xuan et al.'s AttributionScanner (IEEE TVCG 2025): per class, the examples'
**attribution-weighted features** (:mod:`failscope.attribute.features`: the model's
own feature map pooled by its Grad-CAM map, or the CLIP embedding of the
attribution-masked image) are standardised, L2-normalised, reduced by PCA and
clustered by faiss k-means; the clusters that are real failures become slices.

Number of clusters: ``n_clusters``, or by default ``round(n_class / cluster_size)``
clipped to ``[2, max_clusters]`` (about ``cluster_size`` fitting examples per
cluster: small enough that a failure mode of a few percent of a class is a
cluster of its own, large enough to test).

Which clusters are slices: k-means never sees the audited model's errors, so the
partition does not depend on them, and each cluster's error rate can be tested
against the rest of its class on the same fitting examples: a one-sided Fisher
exact test, Bonferroni-corrected over the class's clusters. Clusters with at
least ``min_size`` members that pass at ``alpha`` become slices (a class may get
none), ranked by their errors. The per-example score is the cluster's distance
margin, ``min_other ||z - c_o||^2 - ||z - c_j||^2``: positive inside the cluster
(the nearest centroid is its own), larger deeper inside; members have score >= 0.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from failscope._validation import check_choice, check_fraction, check_int, check_n_jobs, fail
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

__all__ = ["FEATURES", "AttributionSlicer"]

TEST_NAME = "one-sided Fisher test of the cluster's error rate vs its class, Bonferroni"
#: ``features`` values: auto = model features where there are any (Grad-CAM), else clip.
FEATURES = ("auto", "model", "clip")


def _distances(p: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Squared distances (n, k) of points (n, d) to centroids (k, d)."""
    return ((p[:, None, :] - centroids[None]) ** 2).sum(axis=2)


def _margins(d2: np.ndarray, clusters: list[int]) -> np.ndarray:
    """Distance margin (n, len(clusters)) of each point for each of ``clusters``."""
    out = np.empty((len(d2), len(clusters)), dtype=np.float32)
    for col, j in enumerate(clusters):
        others = np.delete(d2, j, axis=1).min(axis=1)
        out[:, col] = others - d2[:, j]
    return out


class AttributionSlicer(Slicer):
    """Attribution-feature clusters that fail, as slices (see the module docstring).

    Parameters
    ----------
    features : {"auto", "model", "clip"}, default="auto"
        Which attribution-weighted features to cluster (``discover`` replaces
        ``"auto"`` by the kind it used: ``model`` under Grad-CAM, else ``clip``).
    n_clusters : int, default=0
        Clusters per class; 0: ``round(n_class / cluster_size)`` in ``[2, max_clusters]``.
    cluster_size : int, default=40
        Fitting examples per cluster of the automatic rule.
    max_clusters : int, default=16
    n_pca : int, default=32
        PCA dimensions of a class's standardised features (fewer if it has fewer examples).
    min_size : int, default=10
        Fitting members a cluster needs to become a slice.
    alpha : float, default=0.05
        Family-wise level of one class's cluster tests.
    min_examples : int, default=10
        Classes with fewer fitting examples get no slice.
    n_jobs : int or None, default=None
        Worker processes for the per-class fits (None or 1: this process; -1: every core).
    n_init : int, default=3
        k-means restarts (the best is kept).
    random_state : int, default=0

    Attributes
    ----------
    slices_ : list of FittedSlice
    skip_reasons_ : dict of int to str
    n_columns_ : int
    models_ : dict of int to (mean, basis, centroids, clusters in rank order)
    """

    name: ClassVar[str] = "attribution"
    score_description: ClassVar[str] = (
        "distance margin of the k-means cluster of attribution-weighted features "
        "(nearest other centroid minus its own, squared)"
    )
    #: discover computes attributions for this slicer and fits it on their features.
    needs_attributions: ClassVar[bool] = True

    def __init__(
        self,
        *,
        features: str = "auto",
        n_clusters: int = 0,
        cluster_size: int = 40,
        max_clusters: int = 16,
        n_pca: int = 32,
        min_size: int = 10,
        alpha: float = 0.05,
        min_examples: int = 10,
        n_jobs: int | None = None,
        n_init: int = 3,
        random_state: int = 0,
    ) -> None:
        self.features = features
        self.n_clusters = n_clusters
        self.cluster_size = cluster_size
        self.max_clusters = max_clusters
        self.n_pca = n_pca
        self.min_size = min_size
        self.alpha = alpha
        self.min_examples = min_examples
        self.n_jobs = n_jobs
        self.n_init = n_init
        self.random_state = random_state

    def _validate_params(self) -> None:
        check_choice(self.features, FEATURES, name="features")
        check_int(self.n_clusters, name="n_clusters", low=0, high=256)
        check_int(self.cluster_size, name="cluster_size", low=1)
        check_int(self.max_clusters, name="max_clusters", low=2, high=256)
        check_int(self.n_pca, name="n_pca", low=1)
        check_int(self.min_size, name="min_size", low=1)
        check_int(self.min_examples, name="min_examples", low=2)
        check_n_jobs(self.n_jobs)
        check_int(self.n_init, name="n_init", low=1)
        check_int(self.random_state, name="random_state", low=0)
        check_fraction(self.alpha, name="alpha")

    def feature_kind(self, available: tuple[str, ...]) -> str:
        """The feature kind to fit on, given the kinds a run has."""
        kind = self.features
        if kind == "auto":
            kind = "model" if "model" in available else "clip"
        if kind not in available:
            why = ("model features need Grad-CAM (a model with a hookable Conv2d layer)"
                   if kind == "model" else "clip features need a CLIP (--clip)")  # fmt: skip
            raise fail(
                f"--slicer attribution:features={self.features}: this run has no {kind} "
                f"attribution features ({why}); available: {', '.join(available) or 'none'}"
            )
        return kind

    def _k(self, n: int) -> int:
        k = self.n_clusters or int(np.clip(round(n / self.cluster_size), 2, self.max_clusters))
        return max(2, min(k, n // max(1, self.min_size)))

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
    ) -> AttributionSlicer:
        """Cluster each class's attribution features; keep the clusters that fail."""
        self._validate_params()
        if np.ndim(X) != 2 or not len(X) == len(labels) == len(predictions):
            raise fail(f"features {np.shape(X)}, labels ({len(labels)}) and predictions "
                       f"({len(predictions)}) must be (n, d), (n,) and (n,)")  # fmt: skip
        fit_per_class(
            self, X, labels, predictions, rows=rows, reference_rows=reference_rows,
            reference=reference, n_classes=n_classes,
        )  # fmt: skip
        return self

    def _fit_class(
        self, c: int, z: np.ndarray, wrong: np.ndarray, pred: np.ndarray
    ) -> tuple[list[FittedSlice], tuple[Any, ...]]:
        import faiss

        mean = z.mean(axis=0)
        n_pca = max(1, min(self.n_pca, len(z) - 1, z.shape[1]))
        _, _, vt = np.linalg.svd(z - mean, full_matrices=False)
        basis = vt[:n_pca].astype(np.float32)
        p = np.ascontiguousarray((z - mean) @ basis.T, dtype=np.float32)
        k = self._k(len(z))
        km = faiss.Kmeans(p.shape[1], k, niter=25, nredo=self.n_init,
                          seed=self.random_state + c, verbose=False)  # fmt: skip
        km.train(p)
        centroids = np.asarray(km.centroids, dtype=np.float32)
        d2 = _distances(p, centroids)
        candidates = []
        for j in range(k):
            member = passes_cutoff(_margins(d2, [j])[:, 0], 0.0, strict=False)
            if member.sum() < self.min_size:
                continue
            stats = slice_stats(member, wrong, pred)
            p_j = enrichment_p(stats["n_errors_in"], stats["size"], stats["n_errors_class"],
                               stats["n_class"])  # fmt: skip
            if min(1.0, p_j * k) >= self.alpha:
                continue
            support = Support(test=TEST_NAME, p_value=min(1.0, p_j * k), alpha=float(self.alpha),
                              enrichment_p=p_j)  # fmt: skip
            candidates.append((j, FittedSlice(
                class_index=c, rank=len(candidates), cutoff=0.0, strict=False,
                threshold="nearest centroid", support=support,
                metrics={"n_clusters": float(k)}, **stats,
            )))  # fmt: skip
        found = [s for _, s in candidates]
        order = [candidates[i][0] for i in rank_order(found)]
        return rank_slices(found), (mean.astype(np.float32), basis, centroids, order)

    def score(self, X: Any, labels: Any, *, chunk: int = 65536) -> np.ndarray:
        """Distance margins of each example's class's slices, (n, n_columns_), by rank."""
        self._check_fitted()
        x = np.asarray(X) if not isinstance(X, np.memmap) else X
        y = np.asarray(labels, dtype=np.int64)
        out = np.full((len(x), self.n_columns_), np.nan, dtype=np.float32)
        for c, (mean, basis, centroids, order) in self.models_.items():
            if not order:
                continue
            for s in range(0, len(x), chunk):
                sel = np.flatnonzero(y[s : s + chunk] == c) + s
                if not len(sel):
                    continue
                z = self.standardiser_._standardise(np.asarray(x[sel], dtype=np.float32))
                d2 = _distances((z - mean) @ basis.T, centroids)
                out[sel, : len(order)] = _margins(d2, order)
        return out

    # -- persistence
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays, classes = {}, {}
        for c, (mean, basis, centroids, order) in self.models_.items():
            arrays.update({f"c{c}_mean": mean, f"c{c}_basis": basis, f"c{c}_centroids": centroids})
            classes[str(c)] = order
        return state_per_class(self, classes, arrays)

    def _restore(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        restore_per_class(self, meta, arrays)
        self.models_ = {
            int(c): (arrays[f"c{c}_mean"], arrays[f"c{c}_basis"], arrays[f"c{c}_centroids"],
                     [int(j) for j in order])
            for c, order in meta["classes"].items()
        }  # fmt: skip
