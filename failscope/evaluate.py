"""Score a run's discovery against planted ground truth (``truth.json``).

For each planted slice, the discovered slice of its class is the match. Within that
class on the evaluation split (default ``test``) we report how well
``failure_score`` ranks the planted members first (average precision, precision@k),
and whether the class's captions name the planted value. Slices with
``polarity == "absent"`` (e.g. a spurious plant: the 7s that are *not* red) are
checked at the success end of the captions, where the value word belongs.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import numpy as np

from failscope._validation import fail
from failscope.run import EVALUATION_JSON, FORMAT_VERSION, Run, write_json

logger = logging.getLogger(__name__)

__all__ = ["caption_names_value", "evaluate_run"]

DEFAULT_KS = (10, 25)


def caption_names_value(text: str, value: str) -> bool:
    """True if ``value`` appears in ``text`` as a whole word (case-insensitive)."""
    return re.search(rf"\b{re.escape(value)}\b", text, flags=re.IGNORECASE) is not None


def _precision_at(members: np.ndarray, scores: np.ndarray, k: int) -> float | None:
    if len(scores) < k:
        return None
    top = np.argsort(-scores, kind="stable")[:k]
    return float(members[top].mean())


def _caption_hits(entry: dict[str, Any], slice_info: dict[str, Any]) -> dict[str, Any]:
    captions = slice_info.get("captions") or {}
    end = "success" if entry.get("polarity") == "absent" else "failure"
    texts = [c["text"] for c in captions.get(end) or []]
    if not texts:
        return {"caption_end": end, "top1_hit": None, "top5_hit": None, "top_captions": []}
    hits = [caption_names_value(t, str(entry["value"])) for t in texts[:5]]
    return {
        "caption_end": end,
        "top1_hit": hits[0],
        "top5_hit": any(hits),
        "top_captions": texts[:5],
    }


def _evaluate_plant(
    entry: dict[str, Any], ex: Any, split: str, slice_info: dict[str, Any], ks: tuple[int, ...]
) -> dict[str, Any]:
    from sklearn.metrics import average_precision_score

    col, c = entry["column"], int(entry["class"])
    if col not in ex.columns:
        raise fail(f"examples.parquet has no column {col!r} for planted slice {entry['name']!r}")
    in_split = (ex["split"] == split).to_numpy()
    in_class = in_split & (ex["label"] == c).to_numpy()
    members = ex.loc[in_class, col].to_numpy(bool)
    scores = ex.loc[in_class, "failure_score"].to_numpy(float)
    correct = ex["correct"].to_numpy(bool)
    row: dict[str, Any] = {
        "name": entry["name"],
        "kind": entry["kind"],
        "class": c,
        "family": entry["family"],
        "value": entry["value"],
        "polarity": entry.get("polarity", "present"),
        "n_class": int(in_class.sum()),
        "n_members": int(members.sum()),
        "base_rate": float(members.mean()) if len(members) else None,
        "acc_overall": float(correct[in_split].mean()) if in_split.any() else None,
        "acc_in_slice": float(correct[in_class][members].mean()) if members.any() else None,
        "discovered_status": slice_info.get("status"),
    }
    ok = len(scores) and np.isfinite(scores).all() and 0 < members.sum() < len(members)
    row["average_precision"] = float(average_precision_score(members, scores)) if ok else None
    for k in ks:
        row[f"precision_at_{k}"] = _precision_at(members, scores, k) if ok else None
    flagged = ex.loc[in_class, "slice"].to_numpy(bool)
    row["slice_size"] = int(flagged.sum())
    row["slice_precision"] = float(members[flagged].mean()) if flagged.any() else None
    row["slice_recall"] = float(flagged[members].mean()) if members.any() else None
    row.update(_caption_hits(entry, slice_info))
    return row


def _mean(rows: list[dict[str, Any]], key: str) -> float | None:
    vals = [float(r[key]) for r in rows if r.get(key) is not None]
    return float(np.mean(vals)) if vals else None


def evaluate_run(
    run: Run, *, split: str = "test", ks: tuple[int, ...] = DEFAULT_KS, write: bool = True
) -> dict[str, Any]:
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
    dict
        ``{"format", "split", "plants": [one row per planted slice], "summary": {...}}``.
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
    slices = {s["class_index"]: s for s in run.slices}
    rows = [_evaluate_plant(e, ex, split, slices.get(int(e["class"]), {}), ks) for e in truth]
    summary = {"n_plants": len(rows), "mean_average_precision": _mean(rows, "average_precision")}
    for k in ks:
        summary[f"mean_precision_at_{k}"] = _mean(rows, f"precision_at_{k}")
    summary["top1_caption_hit_rate"] = _mean(rows, "top1_hit")
    summary["top5_caption_hit_rate"] = _mean(rows, "top5_hit")
    result = {"format": FORMAT_VERSION, "split": split, "ks": list(ks), "plants": rows,
              "summary": summary}  # fmt: skip
    if write:
        write_json(run.path / EVALUATION_JSON, result)
        logger.info("wrote %s", run.path / EVALUATION_JSON)
    return result
