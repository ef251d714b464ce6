"""The planted-slices section: ``failscope evaluate``'s results against the truth."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ._html import Markup, fmt_num, fmt_pct, tag
from ._pieces import badge
from ._views import ClassView

__all__ = ["evaluation_section"]


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def _generic_table(rows: list[Mapping[str, Any]]) -> Markup:
    cols: list[str] = []
    for r in rows:
        for k, v in r.items():
            if k not in cols and _scalar(v):
                cols.append(k)
    head = tag(
        "tr",
        [
            tag("th", c.replace("_", " "), class_="num" if _numeric_col(rows, c) else None)
            for c in cols
        ],
    )
    body = []
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            num = isinstance(v, (int, float)) and not isinstance(v, bool)
            cells.append(
                tag(
                    "td",
                    fmt_num(v) if (num or isinstance(v, bool)) else (v if v is not None else "–"),
                    class_="num" if num else None,
                )
            )
        body.append(tag("tr", cells))
    return tag("div", tag("table", tag("thead", head), tag("tbody", body)), class_="tablewrap")


def _numeric_col(rows: list[Mapping[str, Any]], col: str) -> bool:
    vals = [r.get(col) for r in rows if r.get(col) is not None]
    return bool(vals) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals)


_SUMMARY_LABELS = {
    "n_plants": "planted slices",
    "mean_average_precision": "mean AP",
    "top1_caption_hit_rate": "top-1 caption hit rate",
    "top5_caption_hit_rate": "top-5 caption hit rate",
}


def _summary_label(key: str) -> str:
    if key in _SUMMARY_LABELS:
        return _SUMMARY_LABELS[key]
    m = re.fullmatch(r"mean_precision_at_(\d+)", key)
    return f"mean precision@{m.group(1)}" if m else key.replace("_", " ")


def _hit(value: Any) -> Markup:
    if value is None:
        return tag("span", "–", class_="empty")
    return badge("yes", "ok") if value else badge("no", "bad")


def _plants_table(rows: list[Mapping[str, Any]], ks: list[int], views: list[ClassView]) -> Markup:
    """The planted-slice table of ``failscope evaluate``'s rows."""
    by_index = {v.index: v for v in views}
    head = tag(
        "tr",
        tag("th", "planted slice"),
        tag("th", "class"),
        tag("th", "members", class_="num"),
        tag("th", "acc. on plant vs all", class_="num"),
        tag("th", "AP", class_="num"),
        [tag("th", f"P@{k}", class_="num") for k in ks],
        tag("th", "slice precision / recall", class_="num"),
        tag("th", "caption hit (top-1 / top-5)"),
        tag("th", "top caption"),
    )
    body = []
    for r in rows:
        c = r.get("class")
        view = by_index.get(int(c)) if isinstance(c, int) else None
        cls = tag("a", view.name, href=f"#{view.anchor}") if view else (c if c is not None else "–")
        plant = [tag("div", r.get("name", "–"))]
        if r.get("family") is not None:
            plant.append(
                tag(
                    "div",
                    f"{r.get('kind', '')} · {r['family']}={r.get('value', '')}"
                    + (" (absent)" if r.get("polarity") == "absent" else ""),
                    class_="note",
                )
            )
        caps = r.get("top_captions") or []
        body.append(
            tag(
                "tr",
                tag("td", plant),
                tag("td", cls),
                tag(
                    "td",
                    f"{fmt_num(r.get('n_members'))} / {fmt_num(r.get('n_class'))}",
                    class_="num",
                ),
                tag(
                    "td",
                    f"{fmt_pct(r.get('acc_in_slice'))} vs {fmt_pct(r.get('acc_overall'))}",
                    class_="num",
                ),
                tag("td", fmt_num(r.get("average_precision")), class_="num"),
                [tag("td", fmt_num(r.get(f"precision_at_{k}")), class_="num") for k in ks],
                tag(
                    "td",
                    f"{fmt_pct(r.get('slice_precision'))} / {fmt_pct(r.get('slice_recall'))}",
                    class_="num",
                ),
                tag("td", _hit(r.get("top1_hit")), " ", _hit(r.get("top5_hit")), class_="nowrap"),
                tag(
                    "td",
                    caps[0] if caps else tag("span", "not captioned", class_="empty"),
                    tag("div", f"{r.get('caption_end')} end", class_="note")
                    if caps and r.get("caption_end")
                    else "",
                    class_="cap",
                ),
            )
        )
    return tag("div", tag("table", tag("thead", head), tag("tbody", body)), class_="tablewrap")


def evaluation_section(evaluation: Mapping[str, Any], views: list[ClassView]) -> Markup:
    """The planted-slices section of ``evaluation.json``."""
    rows: list[Mapping[str, Any]] = []
    for key in ("plants", "planted", "slices", "results", "per_plant"):
        v = evaluation.get(key)
        if isinstance(v, list) and v and all(isinstance(r, Mapping) for r in v):
            rows = v
            break
        if isinstance(v, Mapping) and v and all(isinstance(r, Mapping) for r in v.values()):
            rows = [{"plant": k, **r} for k, r in v.items()]
            break
    summary = evaluation.get("summary")
    if not isinstance(summary, Mapping):
        summary = {}
    summary = {
        **{k: v for k, v in evaluation.items() if _scalar(v) and k not in ("format", "split")},
        **{k: v for k, v in summary.items() if _scalar(v)},
    }
    split = evaluation.get("split")
    parts: list[Any] = [
        tag(
            "p",
            "The world's planted failure modes against what failscope discovered"
            + (f" (on the {split!r} split)" if split else "")
            + ": the average precision (AP) and precision@k of the class's failure score at "
            "ranking the plant's examples first, the precision and recall of the discovered "
            "slice, and whether the top caption (top-1) or one of the top five names the "
            "planted value.",
            class_="note",
        )
    ]
    if summary:
        cards = [
            tag(
                "div",
                tag("div", _summary_label(k), class_="k"),
                tag("div", fmt_num(v) if not isinstance(v, str) else v, class_="v"),
                class_="card",
            )
            for k, v in summary.items()
        ]
        parts.append(tag("div", cards, class_="cards"))
    if rows:
        parts.append(tag("h3", "Planted slices vs discovered"))
        if any("average_precision" in r for r in rows):
            ks = [int(k) for k in evaluation.get("ks") or []] or sorted(
                {
                    int(m.group(1))
                    for r in rows
                    for k in r
                    if (m := re.fullmatch(r"precision_at_(\d+)", k))
                }
            )
            parts.append(_plants_table(list(rows), ks, views))
        else:
            parts.append(_generic_table(list(rows)))
    if not summary and not rows:
        parts.append(tag("p", "evaluation.json holds nothing to show.", class_="empty"))
    return tag("section", tag("h2", "Planted slices"), parts, id="evaluation")
