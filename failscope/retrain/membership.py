"""Slices become training signal: per-example slice membership.

A :class:`SliceSet` holds ``K`` named slices and an ``(n, K)`` membership matrix in
``[0, 1]``. The order of ``names`` is the order of the slice experts in
:class:`~failscope.retrain.sbl.SliceAwareClassifier` (expert ``k + 1``; index 0 is the
base slice that covers every example). Nothing here sorts names: Snorkel collects its
indicator and predictor heads by sorted task name, which silently pairs the wrong
indicator with the wrong expert as soon as two name lists sort differently. Here the
pairing is by position only.

Sources of membership
---------------------
``discovered``
    Every slice of the discover run (0..K per class), read from its per-example
    scores (``slice_scores.npy``, computed for every split with each example's
    **true** label). ``hard``: an example of class ``c`` is in slice ``s`` of that
    class when its score passes the slice's rule from ``slices.json``
    (:meth:`~failscope.run.schema.MembershipRule.passes`). ``soft``: Platt scaling.
    For each slice, a 1-D logistic regression ``P(error | s) = sigmoid(a * (s -
    cutoff) + b)`` is fitted on the fitting split's examples of its class (target:
    the audited model got it wrong). The membership of an example of the class is
    that calibrated probability (0 for other classes). If a slice cannot be
    calibrated (fewer than 2 errors or 2 successes in the fitting split),
    ``sigmoid((s - cutoff) / temperature)`` is used instead.
``planted``
    The world's boolean ``planted_<name>`` columns (the oracle).
``column``
    Any boolean metadata columns of ``examples.parquet`` (``--slice-column``).
``mask``
    A user ``.npy`` array aligned with ``examples.parquet`` rows, shape ``(n,)`` or
    ``(n, K)``, boolean or in ``[0, 1]`` (``--slice-mask``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from failscope._validation import check_choice, check_file, fail

logger = logging.getLogger(__name__)

__all__ = [
    "MEMBERSHIP_MODES",
    "PLANTED_PREFIX",
    "SliceSet",
    "column_slices",
    "discovered_slice_entries",
    "discovered_slices",
    "mask_slices",
    "planted_columns",
    "planted_slices",
]

MEMBERSHIP_MODES = ("hard", "soft")
PLANTED_PREFIX = "planted_"


@dataclass(frozen=True)
class SliceSet:
    """Named slices and per-example membership.

    Parameters
    ----------
    names : tuple of str
        One name per slice, in expert order (slice ``k`` is expert ``k + 1``).
    membership : ndarray of shape (n, K), float32 in [0, 1]
        Row ``i`` column ``k``: how much example ``i`` belongs to slice ``k``.
    source : str
        ``"discovered"``, ``"planted"``, ``"column"`` or ``"mask"``.
    classes : tuple of int or None
        The class each slice belongs to (``None`` when a slice spans classes).
    """

    names: tuple[str, ...]
    membership: np.ndarray
    source: str
    classes: tuple[int | None, ...] = field(default=())

    def __post_init__(self) -> None:
        m = np.asarray(self.membership, dtype=np.float32)
        if m.ndim != 2 or m.shape[1] != len(self.names):
            raise fail(
                f"slice membership has shape {m.shape}, expected (n, {len(self.names)}) "
                "with one column per slice name"
            )
        if not np.all(np.isfinite(m)) or (m.size and (m.min() < 0 or m.max() > 1)):
            raise fail("slice membership must lie in [0, 1] (booleans or probabilities)")
        if len(set(self.names)) != len(self.names):
            raise fail(f"slice names must be unique, got {list(self.names)}")
        object.__setattr__(self, "membership", m)
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        if not self.classes:
            object.__setattr__(self, "classes", (None,) * len(self.names))

    @property
    def n_slices(self) -> int:
        """Number of slices ``K`` (the base slice not counted)."""
        return len(self.names)

    def rows(self, index: np.ndarray) -> SliceSet:
        """The same slices restricted to the rows ``index`` (mask or integer index)."""
        return SliceSet(self.names, self.membership[index], self.source, self.classes)

    def hard(self, threshold: float = 0.5) -> np.ndarray:
        """Boolean membership, shape (n, K): ``membership >= threshold`` (1.0 for hard sets)."""
        return self.membership >= threshold


# --------------------------------------------------------------------------- discovered


def discovered_slice_entries(
    run: Any, *, only: Collection[str] | None = None, exclude: Collection[str] = ()
) -> list[Any]:
    """The run's usable slices: at least one member, in (class, rank) order.

    ``only`` keeps just those slice ids; ``exclude`` drops slice ids (e.g. the slices
    a person annotated as not a failure).
    """
    return [
        s
        for s in run.slices
        if s.size > 0 and (only is None or s.id in only) and s.id not in exclude
    ]


def _platt(scores: np.ndarray, wrong: np.ndarray) -> tuple[float, float] | None:
    """Fit ``P(wrong | s) = sigmoid(a * s + b)``; None if a group has < 2 examples."""
    n_wrong = int(wrong.sum())
    if n_wrong < 2 or len(wrong) - n_wrong < 2:
        return None
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1.0).fit(scores.reshape(-1, 1).astype(np.float64), wrong)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def discovered_slices(
    run: Any,
    rows: np.ndarray,
    *,
    mode: str = "hard",
    temperature: float = 0.1,
    only: Collection[str] | None = None,
    exclude: Collection[str] = (),
) -> SliceSet:
    """Membership of ``rows`` in the run's discovered slices.

    Parameters
    ----------
    run : Run
        A discover run (``failscope.load_run``).
    rows : ndarray of int
        Positions in ``run.examples`` to compute membership for (e.g. the train split).
    mode : {"hard", "soft"}, default="hard"
        See the module docstring; ``"soft"`` is calibrated on the run's fitting split.
    temperature : float, default=0.1
        Fallback soft membership ``sigmoid((score - cutoff) / temperature)``.
    only, exclude : collections of slice ids, optional
        See :func:`discovered_slice_entries`.

    Returns
    -------
    SliceSet
        One slice per usable discovered slice, in (class, rank) order; names are
        slice ids (``"8/0"``).
    """
    check_choice(mode, MEMBERSHIP_MODES, name="membership")
    rows = np.asarray(rows, dtype=np.int64)
    entries = discovered_slice_entries(run, only=only, exclude=exclude)
    ex = run.examples
    labels_all = ex["label"].to_numpy(dtype=np.int64)
    labels = labels_all[rows]
    names = tuple(e.id for e in entries)
    classes = tuple(e.class_index for e in entries)
    member = np.zeros((len(rows), len(entries)), dtype=np.float32)
    if not entries:
        return SliceSet(names, member, "discovered", classes)
    scores_all = run.slice_score_matrix()
    scores = np.asarray(scores_all[rows])
    fit_rows = np.flatnonzero(ex["split"].to_numpy() == run.fit_split)
    fit_wrong = ~ex["correct"].to_numpy(dtype=bool)[fit_rows]
    for k, e in enumerate(entries):
        sel = labels == e.class_index
        s = scores[sel, e.column]
        if mode == "hard":
            member[sel, k] = e.rule.passes(s).astype(np.float32)
            continue
        cut = e.rule.cutoff
        in_class = labels_all[fit_rows] == e.class_index
        fit_s = np.asarray(scores_all[fit_rows[in_class], e.column], dtype=np.float64)
        finite = np.isfinite(fit_s)
        ab = _platt(fit_s[finite] - cut, fit_wrong[in_class][finite])
        if ab is None:
            logger.info("slice %s: too few errors to calibrate; sigmoid fallback", e.id)
        z = (s - cut) / temperature if ab is None else ab[0] * (s - cut) + ab[1]
        member[sel, k] = np.where(np.isfinite(s), _sigmoid(np.nan_to_num(z)), 0.0)
    return SliceSet(names, member, "discovered", classes)


# --------------------------------------------------------------------------- user / oracle


def planted_columns(examples: Any) -> list[str]:
    """The boolean ``planted_<name>`` columns of ``examples``, in column order."""
    return [c for c in examples.columns if str(c).startswith(PLANTED_PREFIX)]


def _bool_column(examples: Any, col: str) -> np.ndarray:
    if col not in examples.columns:
        shown = ", ".join(map(str, examples.columns))
        raise fail(f"slice column {col!r} is not in examples.parquet (columns: {shown})")
    values = examples[col]
    if values.isna().any():
        raise fail(f"slice column {col!r} has missing values; it must be boolean")
    arr = values.to_numpy()
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind in "iuf" and set(np.unique(arr).tolist()) <= {0, 1}:
        return arr.astype(bool)
    raise fail(f"slice column {col!r} has dtype {arr.dtype}; it must be boolean (or 0/1)")


def _classes_of(member: np.ndarray, labels: np.ndarray | None) -> tuple[int | None, ...]:
    if labels is None:
        return (None,) * member.shape[1]
    out: list[int | None] = []
    for k in range(member.shape[1]):
        cls = np.unique(labels[member[:, k] > 0])
        out.append(int(cls[0]) if len(cls) == 1 else None)
    return tuple(out)


def column_slices(
    examples: Any, columns: list[str], *, source: str = "column", prefix: str = ""
) -> SliceSet:
    """Slices from boolean columns of ``examples`` (all rows), in the order given.

    ``prefix`` is stripped from the names (``"planted_"`` for the world's columns).
    """
    if not columns:
        raise fail("no slice columns given")
    member = np.stack([_bool_column(examples, c) for c in columns], axis=1).astype(np.float32)
    names = tuple(c[len(prefix) :] if prefix and c.startswith(prefix) else c for c in columns)
    labels = examples["label"].to_numpy() if "label" in examples.columns else None
    return SliceSet(names, member, source, _classes_of(member, labels))


def planted_slices(examples: Any) -> SliceSet | None:
    """The world's planted slices (``planted_*`` columns), or None if there are none."""
    cols = planted_columns(examples)
    if not cols:
        return None
    return column_slices(examples, cols, source="planted", prefix=PLANTED_PREFIX)


def mask_slices(
    mask: np.ndarray | str | os.PathLike[str], *, n_examples: int, labels: np.ndarray | None = None
) -> SliceSet:
    """Slices from a user mask aligned with ``examples.parquet`` rows.

    Parameters
    ----------
    mask : ndarray or path to ``.npy``
        Shape ``(n_examples,)`` or ``(n_examples, K)``; bool, 0/1, or floats in [0, 1].
    n_examples : int
        Rows in ``examples.parquet``.
    labels : ndarray, optional
        True labels, used to record each slice's class when it has one.
    """
    if not isinstance(mask, np.ndarray):
        path = check_file(mask, what="slice mask", suffixes=(".npy",))
        try:
            mask = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise fail(f"slice mask {path} is not a plain .npy array ({exc})") from None
    arr = np.asarray(mask)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] != n_examples:
        raise fail(
            f"slice mask has shape {np.asarray(mask).shape}; expected ({n_examples},) or "
            f"({n_examples}, K), one row per row of examples.parquet"
        )
    if arr.dtype.kind not in "biuf":
        raise fail(f"slice mask has dtype {arr.dtype}; use bool or floats in [0, 1]")
    member = arr.astype(np.float32)
    names = tuple(f"mask-{k}" for k in range(member.shape[1]))
    return SliceSet(names, member, "mask", _classes_of(member, labels))
