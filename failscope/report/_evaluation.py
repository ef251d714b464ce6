"""The planted-slices section: ``failscope evaluate``'s results against the truth."""

from __future__ import annotations

from typing import Any

from failscope.run.schema import Evaluation, EvaluationRow

from ._html import Markup, fmt_num, fmt_pct, tag
from ._pieces import WEAK_TEXT, badge
from ._views import ClassView, SliceView

__all__ = ["evaluation_section"]

_SUMMARY_LABELS = {
    "n_plants": "planted slices",
    "mean_average_precision": "mean AP",
    "top1_caption_hit_rate": "top-1 caption hit rate",
    "top5_caption_hit_rate": "top-5 caption hit rate",
    "distinct_rate": "plants with a slice of their own",
}


def _summary_label(key: str) -> str:
    if key in _SUMMARY_LABELS:
        return _SUMMARY_LABELS[key]
    if key.startswith("mean_precision_at_"):
        return f"mean P@{key.removeprefix('mean_precision_at_')}"
    return key.replace("_", " ")


def _yes_no(value: bool | None, *, bad: str = "bad") -> Markup:
    if value is None:
        return tag("span", "–", class_="empty")
    return badge("yes", "ok") if value else badge("no", bad)


def _matched(r: EvaluationRow, slices: dict[str, SliceView]) -> Any:
    if r.matched_slice is None:
        return tag("span", "no slice in this class", class_="empty")
    view = slices.get(r.matched_slice)
    link = tag("a", r.matched_slice, href=f"#{view.anchor}") if view else r.matched_slice
    weak = badge("weak", "weak") if r.matched_status == "weak" else ""
    return [link, " ", weak]


def _plant_row(
    r: EvaluationRow, ks: tuple[int, ...], classes: dict[int, ClassView], slices: dict[str, Any]
) -> Markup:
    view = classes.get(r.class_index)
    cls = tag("a", view.name, href=f"#{view.anchor}") if view else str(r.class_index)
    absent = " (absent)" if r.polarity == "absent" else ""
    plant = [
        tag("div", r.plant),
        tag("div", f"{r.kind} · {r.family}={r.value}{absent}", class_="note"),
    ]
    caps = r.top_captions
    hits = tag("div", _yes_no(r.top1_hit), " ", _yes_no(r.top5_hit), class_="nowrap")
    top = (
        tag("div", caps[0], tag("span", f" ({r.caption_end} end)", class_="note"))
        if caps
        else tag("div", "not captioned", class_="empty")
    )
    return tag(
        "tr",
        tag("td", plant),
        tag("td", cls, class_="name"),
        tag("td", f"{fmt_num(r.n_members)} / {fmt_num(r.n_class)}", class_="num"),
        tag("td", f"{fmt_pct(r.acc_in_slice)} vs {fmt_pct(r.acc_overall)}", class_="num"),
        tag("td", _matched(r, slices)),
        tag("td", fmt_num(r.average_precision), class_="num"),
        [tag("td", fmt_num(r.precision_at[str(k)]), class_="num") for k in ks],
        tag("td", _yes_no(r.distinct)),
        tag("td", f"{fmt_pct(r.slice_precision)} / {fmt_pct(r.slice_recall)}", class_="num"),
        tag("td", hits, top, class_="cap"),
    )


def evaluation_section(
    evaluation: Evaluation, classes: list[ClassView], slices: list[SliceView]
) -> Markup:
    """The planted-slices section of ``evaluation.json``: one row per planted slice."""
    ks = evaluation.ks
    by_class = {c.index: c for c in classes}
    by_id = {v.entry.id: v for v in slices}
    intro = tag(
        "p",
        f"The world's planted failure modes against what failscope discovered (on the "
        f"{evaluation.split!r} split). Each planted slice is matched to the slice of its class "
        "whose scores rank the plant's examples best (highest average precision, AP); P@k "
        "is the share of plant members among that slice's k highest-scored examples. "
        f"A matched slice marked “weak” is {WEAK_TEXT}. "
        "“Own slice” says whether no other plant matched the same slice. Slice precision / "
        "recall treat the matched slice as a set; a caption hit means its top caption "
        "(top-1) or one of its top five names the planted value.",
        class_="note",
    )
    cards = [
        tag(
            "div",
            tag("div", _summary_label(k), class_="k"),
            tag(
                "div",
                fmt_num(int(v)) if k == "n_plants" and v is not None else fmt_num(v),
                class_="v",
            ),
            class_="card",
        )
        for k, v in evaluation.summary.items()
    ]
    head = tag(
        "tr",
        tag("th", "planted slice"),
        tag("th", "class"),
        tag("th", "members", class_="num"),
        tag("th", "acc. on plant vs all", class_="num"),
        tag("th", "matched slice"),
        tag("th", "AP", class_="num"),
        [tag("th", f"P@{k}", class_="num") for k in ks],
        tag("th", "own slice"),
        tag("th", "precision / recall", class_="num"),
        tag("th", "caption hits (top-1 / top-5)"),
    )
    rows = [_plant_row(r, ks, by_class, by_id) for r in evaluation.plants]
    table = (
        tag("div", tag("table", tag("thead", head), tag("tbody", rows)), class_="tablewrap")
        if rows
        else tag("p", "evaluation.json lists no planted slice.", class_="empty")
    )
    return tag(
        "section",
        tag("h2", "Planted slices"),
        intro,
        tag("div", cards, class_="cards") if cards else "",
        tag("h3", "Planted slices vs discovered"),
        table,
        id="evaluation",
    )
