"""What slicers that model each class on its own share: the fitting loop and the saved state.

The ``mixture`` and ``attribution`` slicers standardise the features as the failure
directions do (the reference rows' mean and scale, then L2 normalisation), skip the
classes that cannot be fitted (too few examples, no errors, no correct ones), and
fit one model per remaining class with their own ``_fit_class(c, z, wrong, pred)``,
which returns the class's ranked :class:`~failscope.slicers.base.FittedSlice` list and
the class's fitted model (kept in ``models_[c]``); in ``n_jobs`` worker processes when
the slicer asks for them.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from failscope._parallel import map_batched
from failscope.slicers.base import class_rows

__all__ = ["MIN_CLASS", "fit_per_class", "restore_per_class", "skip_reason", "state_per_class"]

#: Below this many fitting examples a class is not modelled.
MIN_CLASS = 20


def skip_reason(n: int, n_err: int, min_examples: int) -> str | None:
    """Why a class of ``n`` fitting examples with ``n_err`` errors gets no model, or None."""
    from failscope.directions import REASON_FEW, REASON_NO_CORRECT, REASON_NO_ERRORS

    if n < max(min_examples, MIN_CLASS):
        return REASON_FEW.format(n=n, k=max(min_examples, MIN_CLASS))
    if n_err == 0:
        return REASON_NO_ERRORS
    if n_err == n:
        return REASON_NO_CORRECT
    return None


def _fit_batch(slicer: Any, batch: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]) -> list:
    """``(c, slices, model)`` of a batch of classes ``(c, z, wrong, pred)`` (in a worker)."""
    from failscope.directions import blas_controller

    with blas_controller().limit(limits=1, user_api="blas"):
        return [(c, *slicer._fit_class(c, z, wrong, pred)) for c, z, wrong, pred in batch]


def fit_per_class(
    slicer: Any,
    X: Any,
    labels: Any,
    predictions: Any,
    *,
    rows: Any | None,
    reference_rows: Any | None,
    reference: Any | None,
    n_classes: int | None,
) -> None:
    """Standardise, then call ``slicer._fit_class`` for every class that can be fitted.

    Sets ``standardiser_``, ``n_classes_``, ``skip_reasons_``, ``slices_``, ``models_``
    and ``n_columns_`` (the slicer's ``min_examples`` decides which classes are skipped).
    Arguments as for :meth:`~failscope.slicers.base.Slicer.fit`.
    """
    from failscope.directions import ErrorDirections, _moments, blas_controller

    y = np.asarray(labels, dtype=np.int64)
    pred = np.asarray(predictions)
    pred = pred.argmax(axis=1) if pred.ndim == 2 else pred.astype(np.int64)
    fit_rows = np.arange(len(y)) if rows is None else np.asarray(rows, dtype=np.int64)
    k = (int(max(y[fit_rows].max(), pred[fit_rows].max()) + 1) if n_classes is None
         else int(n_classes))  # fmt: skip
    std = ErrorDirections(min_examples=slicer.min_examples)  # its standardisation only
    if reference is not None:
        std.mean_, std.scale_ = _moments(np.asarray(reference, dtype=np.float32))
    else:
        std.mean_, std.scale_ = _moments(X, rows=fit_rows if reference_rows is None
                                         else np.asarray(reference_rows))  # fmt: skip
    slicer.standardiser_ = std
    slicer.n_classes_ = k
    slicer.skip_reasons_ = {}
    slicer.slices_ = []

    def tasks() -> Any:
        for c, sel in enumerate(class_rows(y, fit_rows, k)):
            wrong = pred[sel] != y[sel]
            reason = skip_reason(len(sel), int(wrong.sum()), slicer.min_examples)
            if reason:
                slicer.skip_reasons_[c] = reason
                continue
            yield c, std._standardise(np.asarray(X[sel], dtype=np.float32)), wrong, pred[sel]

    with blas_controller().limit(limits=1, user_api="blas"):  # small per-class problems
        found = map_batched(
            partial(_fit_batch, slicer), tasks(), n_jobs=slicer.n_jobs,
            nbytes=lambda t: t[1].nbytes,
        )  # fmt: skip
    slicer.slices_ = [s for _, class_slices, _ in found for s in class_slices]
    slicer.models_ = {c: model for c, _, model in found}
    slicer.n_columns_ = max([s.rank + 1 for s in slicer.slices_], default=1)


def state_per_class(
    slicer: Any, classes: dict[str, Any], arrays: dict[str, np.ndarray]
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A fitted per-class slicer's saved state: its ``classes`` meta and ``arrays``, plus the
    standardisation and the fitted slices."""
    from failscope.slicers.directions import _slice_meta

    std = slicer.standardiser_
    meta = {
        "classes": classes,
        "n_classes": slicer.n_classes_,
        "skip_reasons": {str(k): v for k, v in slicer.skip_reasons_.items()},
        "slices": [_slice_meta(s) for s in slicer.slices_],
        "n_columns": slicer.n_columns_,
    }
    return meta, {"std_mean": std.mean_, "std_scale": std.scale_, **arrays}


def restore_per_class(slicer: Any, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Restore what :func:`state_per_class` saved (the per-class models are the slicer's)."""
    from failscope.directions import ErrorDirections
    from failscope.slicers.directions import _slice_from_meta

    std = ErrorDirections(min_examples=slicer.min_examples)
    std.mean_, std.scale_ = arrays["std_mean"], arrays["std_scale"]
    slicer.standardiser_ = std
    slicer.n_classes_ = int(meta["n_classes"])
    slicer.skip_reasons_ = {int(k): v for k, v in meta["skip_reasons"].items()}
    slicer.slices_ = [_slice_from_meta(m, None) for m in meta["slices"]]
    slicer.n_columns_ = int(meta["n_columns"])
