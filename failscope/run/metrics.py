"""Reading ``retrain/metrics.json`` (written by :func:`failscope.retrain_run`).

``Run.retrain_metrics`` reads it through :func:`parse_retrain_metrics`, which accepts
exactly the layout retrain writes (anything else is a one-line error)::

    {"format": ..., "status": "ok" | "no-slices", "message": str (no-slices only),
     "methods": {NAME: {"test_accuracy": float | null,
                        "slice_accuracy": {GROUP: {SLICE: float | null}},
                        "mean_<GROUP>_accuracy": float | null,
                        "worst_<GROUP>_accuracy": float | null,
                        "worst_slice_accuracy": float | null, ...}}}

``GROUP`` is ``"discovered"`` (slice ids), ``"planted"`` (plant names) or
``"user"``; method ``"audited"`` is the model before retraining.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from failscope._validation import fail

__all__ = ["BASELINE", "GroupAccuracy", "MethodAccuracy", "RetrainMetrics", "parse_retrain_metrics"]

#: The method name retrain gives the audited model before retraining.
BASELINE = "audited"
_WHERE = "retrain/metrics.json"


@dataclass(frozen=True)
class GroupAccuracy:
    """Test accuracy on one group of slices: mean, worst and per slice."""

    mean: float | None
    worst: float | None
    slices: dict[str, float | None]


@dataclass(frozen=True)
class MethodAccuracy:
    """One method's test accuracy overall, on its worst slice and per slice group."""

    overall: float | None
    worst: float | None
    groups: dict[str, GroupAccuracy]


@dataclass(frozen=True)
class RetrainMetrics:
    """What the report shows of ``retrain/metrics.json``; methods in file order."""

    status: str
    message: str | None
    methods: dict[str, MethodAccuracy]


def _number(d: Mapping[str, Any], key: str, where: str) -> float | None:
    if key not in d:
        raise fail(f"{_WHERE}: {where} has no key {key!r}; re-run `failscope retrain`")
    v = d[key]
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise fail(f"{_WHERE}: {where}.{key} must be a number or null, got {v!r}")
    return float(v)


def _mapping(v: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(v, Mapping):
        raise fail(f"{_WHERE}: {where} must be an object, got {type(v).__name__}")
    return v


def parse_retrain_metrics(metrics: Mapping[str, Any]) -> RetrainMetrics:
    """Read ``retrain/metrics.json`` (as parsed JSON) into typed accuracies.

    Raises
    ------
    InputError
        The file does not have the layout in the module docstring.
    """
    metrics = _mapping(metrics, "the file")
    status = metrics.get("status")
    if status == "no-slices":
        return RetrainMetrics(str(status), str(metrics.get("message") or ""), {})
    if status != "ok":
        raise fail(f"{_WHERE}: status must be 'ok' or 'no-slices', got {status!r}")
    methods = {}
    for name, d in _mapping(metrics.get("methods"), "methods").items():
        where = f"methods.{name}"
        d = _mapping(d, where)
        groups = {}
        slice_acc = _mapping(d.get("slice_accuracy"), f"{where}.slice_accuracy")
        for g, accs in slice_acc.items():
            accs = _mapping(accs, f"{where}.slice_accuracy.{g}")
            groups[str(g)] = GroupAccuracy(
                mean=_number(d, f"mean_{g}_accuracy", where),
                worst=_number(d, f"worst_{g}_accuracy", where),
                slices={str(k): _number(accs, k, f"{where}.slice_accuracy.{g}") for k in accs},
            )
        methods[str(name)] = MethodAccuracy(
            overall=_number(d, "test_accuracy", where),
            worst=_number(d, "worst_slice_accuracy", where),
            groups=groups,
        )
    if BASELINE not in methods:
        raise fail(f"{_WHERE}: methods has no {BASELINE!r} entry; re-run `failscope retrain`")
    return RetrainMetrics("ok", None, methods)
