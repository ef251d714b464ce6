"""The run details section: the slicer and its parameters, the discover config,
warnings, skipped inputs, and the rest of ``run.json`` (all typed fields)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from failscope.run import Run
from failscope.run._record import Record

from ._html import Markup, tag
from ._runinfo import when

__all__ = ["run_details_section", "skipped_inputs"]


def _value(v: Any) -> str:
    """A setting as short text: lists joined, objects as ``key=value``, None as a dash."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, Record):
        return _value({f.name: getattr(v, f.name) for f in dataclasses.fields(v)})
    if isinstance(v, dict):
        return ", ".join(f"{k}={_value(x)}" for k, x in v.items()) or "–"
    if isinstance(v, (list, tuple)):
        return ", ".join(_value(x) for x in v) or "–"
    return str(v)


def _table(pairs: Iterable[tuple[str, Any]], *, tall: bool = False) -> Markup:
    rows = [
        tag("tr", tag("td", k, class_="mono key"), tag("td", _value(v), class_="mono"))
        for k, v in pairs
    ]
    return tag(
        "div", tag("table", tag("tbody", rows)), class_="tablewrap tall" if tall else "tablewrap"
    )


def _fields(record: Record, *, skip: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    return [
        (f.name, getattr(record, f.name)) for f in dataclasses.fields(record) if f.name not in skip
    ]


def _panel(summary: str, body: Any) -> Markup:
    return tag("details", tag("summary", summary), body, class_="panel")


def skipped_inputs(run: Run, *, limit: int = 1000) -> Markup:
    """The inputs skipped as unreadable (at most ``limit`` rows)."""
    skipped = run.info.skipped
    if not skipped:
        return tag("p", "No inputs were skipped: every input could be used.", class_="note")
    rows = [
        tag("tr", tag("td", s.id, class_="num"), tag("td", s.path, class_="mono"),
            tag("td", s.reason))
        for s in skipped[:limit]
    ]  # fmt: skip
    more = len(skipped) - limit
    if more > 0:
        rows.append(tag("tr", tag("td", f"… and {more:,} more", colspan="3", class_="empty")))
    table = tag(
        "div",
        tag(
            "table",
            tag(
                "thead",
                tag("tr", tag("th", "id", class_="num"), tag("th", "path"), tag("th", "reason")),
            ),
            tag("tbody", rows),
        ),
        class_="tablewrap tall",
    )
    n = len(skipped)
    summary = f"{n:,} input{'s' if n != 1 else ''} skipped (no row in examples.parquet)"
    if n <= 10:
        return tag("p", summary, class_="note") + table
    return _panel(summary + " (click to list)", table)


def run_details_section(run: Run) -> Markup:
    """How the run was made: slicer, config, warnings, skipped inputs, run.json's fields."""
    info = run.info
    slicer = info.slicer
    params = dict(slicer["params"])
    parts: list[Any] = [
        tag("h3", "Slicer: ", tag("code", slicer["name"])),
        _table(sorted(params.items())) if params else tag("p", "no parameters", class_="note"),
        tag("h3", "Warnings"),
        tag("ul", [tag("li", w) for w in info.warnings])
        if info.warnings
        else tag("p", "The run recorded no warnings.", class_="note"),
        tag("h3", "Skipped inputs", id="skipped-inputs"),
        skipped_inputs(run),
        tag("h3", "Discover settings"),
        _panel(
            "run.json config (every setting of `failscope discover`)",
            _table(_fields(run.config), tall=True),
        ),
    ]
    run_facts = [
        ("command", info.command),
        ("format", info.format),
        ("created", when(info.created)),
        ("seed", info.seed),
        ("examples", f"{info.n_scored:,} scored of {info.n_examples:,}"),
        ("splits", info.splits),
        ("fit split", info.fit_split),
        ("reference split", f"{info.reference_split} ({info.reference_rows:,} rows)"
         if info.reference_split else None),
        ("timings (s)", info.timings),
        ("versions", info.versions),
        ("dataset", info.data),
    ]  # fmt: skip
    parts.append(tag("h3", "Run"))
    parts.append(_panel("run.json (dataset, versions, timings)", _table(run_facts)))
    parts.append(_panel("audited model", _table(_fields(info.model))))
    emb = info.embeddings
    parts.append(_panel("embeddings", _table(_fields(emb, skip=("clip",)))))
    if emb.clip is not None:
        parts.append(_panel("CLIP", _table(_fields(emb.clip))))
    if info.world is not None:
        parts.append(_panel("built-in world", _table(_fields(info.world))))
    if info.captions is not None:
        parts.append(_panel("caption settings", _table(info.captions.items())))
    return tag("section", tag("h2", "Run details"), parts, id="run")
