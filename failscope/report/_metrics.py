"""Reading ``retrain/metrics.json``: per-method overall and per-slice accuracies."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["baseline_first", "parse_retrain_metrics"]


_OVERALL_KEYS = ("test_accuracy", "overall", "overall_accuracy", "accuracy", "acc")
_SLICES_KEYS = ("slice_accuracy", "slices", "per_slice", "slice_accuracies", "per_slice_accuracy")
_BASELINES = ("audited", "erm", "baseline", "original", "before")


def _number(v: Any) -> float | None:
    if isinstance(v, Mapping):
        v = v.get("accuracy", v.get("acc"))
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v)):
        return float(v)
    return None


def _accs(v: Any) -> dict[str, float | None]:
    """``{slice: accuracy}`` from a mapping or a list of ``{"slice"/"id"/"name", "accuracy"}``."""
    if isinstance(v, Mapping):
        return {str(k): _number(a) for k, a in v.items()}
    out: dict[str, float | None] = {}
    for item in v if isinstance(v, list) else []:
        if isinstance(item, Mapping):
            name = item.get("slice", item.get("id", item.get("name")))
            if name is not None:
                out[str(name)] = _number(item)
    return out


def _slice_groups(d: Mapping[str, Any]) -> dict[str, dict[str, float | None]]:
    for key in _SLICES_KEYS:
        v = d.get(key)
        if isinstance(v, Mapping) and v and all(isinstance(x, Mapping) for x in v.values()):
            if all(_number(x) is None for x in v.values()):  # {group: {slice: acc}}
                return {str(g): _accs(x) for g, x in v.items()}
        if isinstance(v, (Mapping, list)) and v:
            return {"slices": _accs(v)}
    return {}


def parse_retrain_metrics(metrics: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Normalise ``retrain/metrics.json`` for the report.

    Reads ``{"methods": {name: {...}}}`` (as written by ``failscope retrain``) or a bare
    ``{name: {...}}``. Each method has an overall accuracy (``test_accuracy``, or
    ``overall``/``accuracy``) and per-slice accuracies under ``slice_accuracy``: either
    ``{group: {slice: acc}}`` (groups such as ``"discovered"`` and ``"planted"``) or a
    flat ``{slice: acc}``. ``mean_<group>_accuracy``/``worst_<group>_accuracy`` and
    ``worst_slice_accuracy`` are used when present, else computed.

    Returns
    -------
    dict
        ``{method: {"overall": float|None, "worst": float|None,
        "groups": {group: {"mean", "worst", "slices": {slice: acc}}}}}``, in file order.
    """
    methods = metrics.get("methods", metrics)
    if isinstance(methods, list):
        methods = {
            str(m.get("method", m.get("name", i))): m
            for i, m in enumerate(methods)
            if isinstance(m, Mapping)
        }
    out: dict[str, dict[str, Any]] = {}
    if not isinstance(methods, Mapping):
        return out
    for name, d in methods.items():
        if not isinstance(d, Mapping):
            continue
        overall = next(
            (_number(d.get(k)) for k in _OVERALL_KEYS if _number(d.get(k)) is not None), None
        )
        groups = {}
        for g, accs in _slice_groups(d).items():
            vals = [a for a in accs.values() if a is not None]
            mean = _number(d.get(f"mean_{g}_accuracy"))
            worst = _number(d.get(f"worst_{g}_accuracy"))
            groups[g] = {
                "mean": mean if mean is not None else (float(np.mean(vals)) if vals else None),
                "worst": worst if worst is not None else (min(vals) if vals else None),
                "slices": accs,
            }
        worst = _number(d.get("worst_slice_accuracy", d.get("worst_slice")))
        if worst is None:
            ws = [g["worst"] for g in groups.values() if g["worst"] is not None]
            worst = min(ws) if ws else None
        if overall is None and worst is None and not groups:
            continue
        out[str(name)] = {"overall": overall, "worst": worst, "groups": groups}
    return out


def baseline_first(methods: dict[str, dict[str, Any]], preferred: Any) -> list[str]:
    """Method names with the baseline (``preferred``, else a usual name) first."""
    names = list(methods)
    for cand in [preferred, *_BASELINES]:
        if isinstance(cand, str) and cand in methods:
            names.remove(cand)
            return [cand, *names]
    return names
