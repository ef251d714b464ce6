"""Score a run's discovery against planted ground truth (``truth.json``).

Each planted slice is matched to the discovered slice of its class that ranks
its members best: on the evaluation split (default ``test``), every slice of the
class scores the class's examples, and the slice with the highest average
precision for the planted members is the match (as Domino's benchmark does).
For it we report AP, precision@k, the slice's precision and recall as a set,
and whether its captions name the planted value. When two plants of one class
match the same slice, both are marked ``distinct: false``: one slice cannot be
two failure modes. Plants with ``polarity == "absent"`` (a spurious plant: the
7s that are *not* red) are checked at the success end of the captions, where
the value word belongs.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from typing import Any

import numpy as np

from failscope._validation import fail
from failscope.run import EVALUATION_JSON, FORMAT_VERSION, Run, run_lock, write_json
from failscope.run.schema import Evaluation, EvaluationRow, Plant, SliceEntry

logger = logging.getLogger(__name__)

__all__ = ["caption_names_value", "evaluate_run", "match_plant"]

DEFAULT_KS = (10, 25)


def caption_names_value(text: str, value: str) -> bool:
    """True if ``value`` appears in ``text`` as a whole word (case-insensitive)."""
    return re.search(rf"\b{re.escape(value)}\b", text, flags=re.IGNORECASE) is not None


def _precision_at(members: np.ndarray, scores: np.ndarray, k: int) -> float | None:
    if len(scores) < k:
        return None
    top = np.argsort(-scores, kind="stable")[:k]
    return float(members[top].mean())


def _average_precision(members: np.ndarray, scores: np.ndarray) -> float | None:
    from sklearn.metrics import average_precision_score

    ok = len(scores) and np.isfinite(scores).all() and 0 < members.sum() < len(members)
    return float(average_precision_score(members, scores)) if ok else None


def match_plant(
    members: np.ndarray, scores: np.ndarray, slices: tuple[SliceEntry, ...]
) -> tuple[SliceEntry | None, float | None]:
    """The slice whose scores rank ``members`` best (highest AP), and that AP.

    Parameters
    ----------
    members : ndarray of bool, shape (m,)
        Planted membership of the class's examples on the evaluation split.
    scores : ndarray of shape (m, K)
        Their slice scores (``slice_scores.npy`` rows).
    slices : tuple of SliceEntry
        The class's slices.
    """
    best, best_ap = None, None
    for s in slices:
        ap = _average_precision(members, scores[:, s.column].astype(np.float64))
        if ap is not None and (best_ap is None or ap > best_ap):
            best, best_ap = s, ap
    return best, best_ap


def _caption_hits(plant: Plant, s: SliceEntry | None) -> dict[str, Any]:
    end = "success" if plant.polarity == "absent" else "failure"
    captions = None if s is None or s.captions is None else getattr(s.captions, end)
    if not captions:
        return {"caption_end": end, "top1_hit": None, "top5_hit": None, "top_captions": ()}
    texts = tuple(c.text for c in captions[:5])
    hits = [caption_names_value(t, plant.value) for t in texts]
    return {"caption_end": end, "top1_hit": hits[0], "top5_hit": any(hits), "top_captions": texts}


def _evaluate_plant(
    plant: Plant, run: Run, ex: Any, scores: np.ndarray, split: str, ks: tuple[int, ...]
) -> EvaluationRow:
    if plant.column not in ex.columns:
        raise fail(f"examples.parquet has no column {plant.column!r} for plant {plant.name!r}")
    c = plant.class_index
    in_split = (ex["split"] == split).to_numpy()
    in_class = in_split & (ex["label"] == c).to_numpy()
    members = ex.loc[in_class, plant.column].to_numpy(bool)
    correct = ex["correct"].to_numpy(bool)
    class_scores = scores[in_class]
    matched, ap = match_plant(members, class_scores, run.slices_of(c))
    flagged = (
        matched.rule.passes(class_scores[:, matched.column])
        if matched is not None
        else np.zeros(len(members), dtype=bool)
    )
    precision_at = {}
    for k in ks:
        col = None if matched is None else class_scores[:, matched.column].astype(np.float64)
        precision_at[str(k)] = None if ap is None else _precision_at(members, col, k)
    return EvaluationRow(
        plant=plant.name,
        kind=plant.kind,
        class_index=c,
        family=plant.family,
        value=plant.value,
        polarity=plant.polarity,
        n_class=int(in_class.sum()),
        n_members=int(members.sum()),
        base_rate=float(members.mean()) if len(members) else None,
        acc_overall=float(correct[in_split].mean()) if in_split.any() else None,
        acc_in_slice=float(correct[in_class][members].mean()) if members.any() else None,
        matched_slice=None if matched is None else matched.id,
        matched_status=None if matched is None else matched.status,
        distinct=None,
        average_precision=ap,
        precision_at=precision_at,
        slice_size=int(flagged.sum()),
        slice_precision=float(members[flagged].mean()) if flagged.any() else None,
        slice_recall=float(flagged[members].mean()) if members.any() else None,
        **_caption_hits(plant, matched),
    )


def _mean(values: list[Any]) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _with_distinct(rows: list[EvaluationRow]) -> list[EvaluationRow]:
    """Mark rows whose matched slice also matched another plant (of the same class)."""
    used = Counter(r.matched_slice for r in rows if r.matched_slice is not None)
    return [
        r.replace(distinct=None if r.matched_slice is None else used[r.matched_slice] == 1)
        for r in rows
    ]


def evaluate_run(
    run: Run, *, split: str = "test", ks: tuple[int, ...] = DEFAULT_KS, write: bool = True
) -> Evaluation:
    """Evaluate a run against its planted slices.

    Parameters
    ----------
    run : Run
        A run with ``truth.json`` (written by ``failscope demo``).
    split : str, default="test"
        Split to evaluate on; must be present in ``examples.parquet``.
    ks : tuple of int, default=(10, 25)
        Cut-offs for precision@k.
    write : bool, default=True
        Write ``RUN/evaluation.json`` (atomically).

    Returns
    -------
    Evaluation
        One row per planted slice and a summary: ``mean_average_precision``,
        ``mean_precision_at_K``, ``top1/top5_caption_hit_rate`` and
        ``distinct_rate`` (share of plants matched by a slice of their own).
    """
    truth = run.truth
    if truth is None:
        raise fail(
            f"{run.path} has no truth.json; `failscope evaluate` needs a run with planted "
            "slices, such as one written by `failscope demo`"
        )
    ex = run.examples
    if split not in set(ex["split"]):
        raise fail(f"split {split!r} is not in {run.path}/examples.parquet "
                   f"(splits: {sorted(set(ex['split']))})")  # fmt: skip
    scores = np.asarray(run.slice_score_matrix())
    rows = _with_distinct([_evaluate_plant(p, run, ex, scores, split, ks) for p in truth])
    summary: dict[str, float | None] = {
        "n_plants": float(len(rows)),
        "mean_average_precision": _mean([r.average_precision for r in rows]),
    }
    for k in ks:
        summary[f"mean_precision_at_{k}"] = _mean([r.precision_at[str(k)] for r in rows])
    summary["top1_caption_hit_rate"] = _mean([r.top1_hit for r in rows])
    summary["top5_caption_hit_rate"] = _mean([r.top5_hit for r in rows])
    summary["distinct_rate"] = _mean([r.distinct for r in rows])
    result = Evaluation(
        format=FORMAT_VERSION, split=split, ks=tuple(ks), plants=tuple(rows), summary=summary
    )
    if write:
        with run_lock(run.path):
            write_json(run.output(EVALUATION_JSON), result.to_json())
            run.add_files(EVALUATION_JSON)
        logger.info("wrote %s", run.path / EVALUATION_JSON)
    return result
