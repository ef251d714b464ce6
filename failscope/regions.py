"""A slice's region of embedding space, and what the training labels inside it say.

A slice's **region** is the examples of any label that its rule takes in when they are
scored as the slice's class (:func:`inside`); its **confusions** are the classes the
audited model predicts for its errors (:func:`confusions`). The relabelling fix
(:mod:`failscope.retrain.relabel`) looks for wrong labels there; :func:`label_shift`
asks, without any annotation, whether the training labels in the region moved to a
confusion, as a noisy slice's do and a rare slice's do not. ``failscope retrain``
leaves such slices out of the slice-aware training, and ``failscope review`` suggests
*noisy labels* for them.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["CONFUSION_SHARE", "MOVED_SHARE", "MOVED_Z", "LabelShift", "confusions", "inside",
           "label_shift", "moved_label_slices"]  # fmt: skip

#: A class is a confusion of a noisy slice when the audited model predicts it for at
#: least this share of the slice's misclassified fit-split examples.
CONFUSION_SHARE = 0.1
#: A slice is likely noisy (:func:`label_shift`) when at least this share of the training
#: examples its region lacks reappear labelled a confusion ...
MOVED_SHARE = 0.5
#: ... and the class's share inside the region is this many standard errors below the
#: fitting split's, and a confusion's this many above.
MOVED_Z = 3.0


def inside(run: Any, slice_id: str, rows: np.ndarray) -> np.ndarray:
    """Which ``rows`` the slice's rule takes in when scored as the slice's class."""
    entry = run.slice(slice_id)
    x = np.asarray(run.embeddings()[rows], dtype=np.float32)
    scores = run.slicer().score(x, np.full(len(rows), entry.class_index, dtype=np.int64))
    return entry.rule.passes(scores[:, entry.column])


def confusions(run: Any, slice_id: str) -> np.ndarray:
    """Classes the audited model predicts for >= ``CONFUSION_SHARE`` of the slice's
    misclassified fit-split examples (the slice's own class excluded)."""
    ex = run.examples
    c = run.slice(slice_id).class_index
    fit = np.flatnonzero(
        (ex["split"].to_numpy() == run.config.fit_split) & (ex["label"].to_numpy() == c)
    )
    fit = fit[inside(run, slice_id, fit)]
    wrong = fit[~ex["correct"].to_numpy(bool)[fit]]
    counts = np.bincount(ex["pred"].to_numpy()[wrong], minlength=len(run.class_names))
    counts[c] = 0
    return np.flatnonzero(counts >= max(1.0, CONFUSION_SHARE * len(wrong)))


@dataclass(frozen=True)
class LabelShift:
    """How far a slice's training labels moved away from its class (:func:`label_shift`).

    Attributes
    ----------
    slice_id : str
    confusions : tuple of int
        The classes its errors are predicted as (:func:`confusions`).
    missing : float
        Training examples of the slice's class that the region lacks, against the
        fitting split's share of the class inside the region.
    extra : float
        Training examples labelled a confusion that the region holds beyond the fitting
        split's share.
    moved : float
        ``extra / missing`` (0 when nothing is missing): the part of the missing examples
        that reappear under a confusion's label.
    z_missing : float
        One-sided two-proportion z statistic of the class's share inside the region, the
        fitting split above train.
    z_extra : float
        The largest such statistic of a confusion's share inside the region, train above
        the fitting split.
    """

    slice_id: str
    confusions: tuple[int, ...]
    missing: float
    extra: float
    moved: float
    z_missing: float
    z_extra: float

    @property
    def likely_noisy(self) -> bool:
        """At least :data:`MOVED_SHARE` moved, both shifts at least :data:`MOVED_Z`."""
        return self.moved >= MOVED_SHARE and min(self.z_missing, self.z_extra) >= MOVED_Z

    def to_json(self) -> dict[str, Any]:
        return {
            "confusions": list(self.confusions),
            "missing": round(self.missing, 1),
            "extra": round(self.extra, 1),
            "moved": round(self.moved, 3),
            "z_missing": round(self.z_missing, 2),
            "z_extra": round(self.z_extra, 2),
            "likely_noisy": self.likely_noisy,
        }


def label_shift(run: Any, slice_id: str) -> LabelShift:
    """Whether the slice's training examples carry another class's label.

    A slice whose training labels are wrong (``noisy:3:color=yellow:0.9``: 90% of the
    yellow 3s labelled 8) and a slice that is rare in training (``rare:3:size=small``)
    both leave the slice's region of embedding space with few training examples of the
    class. They differ in where those examples went: a rare slice's are missing from
    the training set, a noisy slice's are still there, labelled a confusion (a class
    the audited model predicts for the slice's errors). Per class ``k`` the share
    ``r(k)`` of its examples inside the region is measured on the training split and on
    the fitting split (the split discovery fitted on, whose labels it trusts);
    ``missing = (r_fit(c) - r_train(c)) * n_train(c)`` and ``extra = sum over the
    confusions j of (r_train(j) - r_fit(j)) * n_train(j)``.
    """
    ex = run.examples
    split = ex["split"].to_numpy().astype(str)
    labels = ex["label"].to_numpy(dtype=np.int64)
    c = run.slice(slice_id).class_index
    conf = confusions(run, slice_id)
    counts = {}
    for name in ("train", run.config.fit_split):
        rows = np.flatnonzero(split == name)
        n = np.bincount(labels[rows], minlength=len(run.class_names)).astype(np.float64)
        rows = rows[np.isin(labels[rows], [c, *conf])]  # only these classes are counted
        within = inside(run, slice_id, rows)
        k = np.bincount(labels[rows][within], minlength=len(run.class_names)).astype(np.float64)
        counts[name] = (n, k)
    (n_t, k_t), (n_f, k_f) = counts["train"], counts[run.config.fit_split]
    r_t, r_f = k_t / np.maximum(n_t, 1), k_f / np.maximum(n_f, 1)
    missing = max(0.0, float((r_f[c] - r_t[c]) * n_t[c]))
    extra = float(((r_t[conf] - r_f[conf]) * n_t[conf]).sum()) if len(conf) else 0.0
    z_extra = max((_z(k_t[j], n_t[j], k_f[j], n_f[j]) for j in conf), default=0.0)
    moved = extra / missing if missing > 0 else 0.0
    z_missing = _z(k_f[c], n_f[c], k_t[c], n_t[c])
    return LabelShift(slice_id, tuple(int(j) for j in conf), missing, extra, moved,
                      z_missing, z_extra)  # fmt: skip


def moved_label_slices(run: Any, *, skip: Collection[str] = ()) -> dict[str, LabelShift]:
    """The slices (with members, not in ``skip``) whose training labels moved.

    Empty when the run has no train split (nothing to compare).
    """
    if not (run.examples["split"].to_numpy().astype(str) == "train").any():
        return {}
    shifts = (label_shift(run, e.id) for e in run.slices if e.size > 0 and e.id not in skip)
    return {shift.slice_id: shift for shift in shifts if shift.likely_noisy}


def _z(k1: float, n1: float, k2: float, n2: float) -> float:
    """One-sided two-proportion z statistic of ``k1 / n1`` above ``k2 / n2``."""
    if not n1 or not n2:
        return 0.0
    pooled = (k1 + k2) / (n1 + n2)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return float((k1 / n1 - k2 / n2) / se) if se > 0 else 0.0
