"""Upweighting baselines: per-example weights for the flagged training examples.

All three variants weight the master cross-entropy as a weighted mean
(``sum_i w_i CE_i / sum_i w_i``), so only the relative weights matter.

``hard``
    ``w_i = factor`` if example ``i`` is flagged (in any slice), else 1.
``balanced``
    Within each class ``c`` with ``N_c`` examples, ``n_f`` flagged and ``n_u`` not:
    flagged examples get ``N_c / (2 n_f)`` and the others ``N_c / (2 n_u)``, so both
    groups carry half of the class's weight (scikit-learn's ``"balanced"`` rule per
    class). A class with no flagged (or no unflagged) example keeps weight 1.
``soft``
    ``w_i = 1 + relu(s_i - cutoff_i) / scale`` where ``s_i`` is the example's failure
    score and ``cutoff_i`` its class's slice cutoff: the further past the hyperplane,
    the heavier. ``scale`` defaults to ``median(relu(s - cutoff) | flagged) / (factor - 1)``
    so that the median flagged example gets the same weight as in ``hard``.
"""

from __future__ import annotations

import numpy as np

from failscope._validation import check_choice, fail

__all__ = ["UPWEIGHT_VARIANTS", "membership_balanced_weights", "upweight_weights"]

UPWEIGHT_VARIANTS = ("hard", "balanced", "soft")


def upweight_weights(
    variant: str,
    *,
    flagged: np.ndarray,
    labels: np.ndarray,
    margin: np.ndarray | None = None,
    factor: float = 5.0,
    scale: float | None = None,
) -> np.ndarray:
    """Per-example training weights for one upweighting variant.

    Parameters
    ----------
    variant : {"hard", "balanced", "soft"}
    flagged : ndarray of bool, shape (n,)
        Examples in a discovered slice.
    labels : ndarray of int, shape (n,)
    margin : ndarray of float, shape (n,), optional
        ``score - cutoff`` of each example (required for ``"soft"``); NaN counts as 0.
    factor : float, default=5.0
        Weight of a flagged example (``hard``) and of the median flagged one (``soft``).
    scale : float, optional
        ``soft`` only; see the module docstring for the default.

    Returns
    -------
    ndarray of float32, shape (n,)
    """
    check_choice(variant, UPWEIGHT_VARIANTS, name="upweight variant")
    flagged = np.asarray(flagged, dtype=bool)
    labels = np.asarray(labels)
    if flagged.shape != labels.shape:
        raise fail(f"flagged has shape {flagged.shape} but labels have {labels.shape}")
    if not float(factor) >= 1.0:
        raise fail(f"upweight factor={factor!r} must be >= 1")
    w = np.ones(len(flagged), dtype=np.float64)
    if variant == "hard":
        w[flagged] = float(factor)
    elif variant == "balanced":
        for c in np.unique(labels):
            sel = labels == c
            n_c, n_f = int(sel.sum()), int((sel & flagged).sum())
            if 0 < n_f < n_c:
                w[sel & flagged] = n_c / (2.0 * n_f)
                w[sel & ~flagged] = n_c / (2.0 * (n_c - n_f))
    else:
        if margin is None:
            raise fail("the soft upweighting variant needs failure-score margins")
        past = np.maximum(np.nan_to_num(np.asarray(margin, dtype=np.float64)), 0.0)
        if scale is None:
            pos = past[flagged & (past > 0)]
            med = float(np.median(pos)) if pos.size else 0.0
            scale = med / (float(factor) - 1.0) if med > 0 and factor > 1 else 1.0
        if not float(scale) > 0:
            raise fail(f"soft upweighting scale={scale!r} must be positive")
        w = 1.0 + past / float(scale)
    return w.astype(np.float32)


def membership_balanced_weights(membership: np.ndarray, *, labels: np.ndarray) -> np.ndarray:
    """The ``balanced`` rule for soft membership: members and non-members halve each class.

    Within class ``c`` (``N_c`` examples), example ``i`` with membership ``m_i`` in
    [0, 1] gets ``N_c / 2 * (m_i / sum_c m + (1 - m_i) / sum_c (1 - m))``. For boolean
    membership this is exactly :func:`upweight_weights` ``("balanced")``; a class whose
    members (or non-members) have zero total membership keeps weight 1.

    Parameters
    ----------
    membership : ndarray of float, shape (n,)
        How much each example belongs to its class's slice.
    labels : ndarray of int, shape (n,)

    Returns
    -------
    ndarray of float32, shape (n,)
    """
    m = np.clip(np.asarray(membership, dtype=np.float64), 0.0, 1.0)
    labels = np.asarray(labels)
    if m.shape != labels.shape:
        raise fail(f"membership has shape {m.shape} but labels have {labels.shape}")
    w = np.ones(len(m), dtype=np.float64)
    for c in np.unique(labels):
        sel = labels == c
        n_c, s_in = int(sel.sum()), float(m[sel].sum())
        s_out = n_c - s_in
        if s_in > 1e-9 and s_out > 1e-9:
            w[sel] = n_c / 2.0 * (m[sel] / s_in + (1.0 - m[sel]) / s_out)
    return w.astype(np.float32)
