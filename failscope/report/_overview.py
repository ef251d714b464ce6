"""The run-level sections: header and cards, warnings, the overview table of slices."""

from __future__ import annotations

from typing import Any

from failscope.run import Run

from ._html import Markup, escape, fmt_num, fmt_pct, join, tag
from ._pieces import WEAK_TEXT, badge, confirmed_badge, fmt_p, rate_bars, weak_badge
from ._runinfo import clip_desc, dataset_desc, model_desc, when
from ._views import ClassView, SliceView, check_for, top_caption

__all__ = ["overview_section", "page_header", "warnings_panel"]

#: run.json timings of the stages after discovery (left out of "Discovery took").
_LATER_STAGES = frozenset({"captions", "report", "evaluate", "retrain"})


def page_header(
    run: Run,
    slices: list[SliceView],
    classes: list[ClassView],
    *,
    n_expanded: int,
    nav: list[tuple[str, str]],
) -> tuple[Markup, Markup]:
    """The page's top bar (title, subtitle, navigation) and its summary cards."""
    info = run.info
    dataset, model, clip = dataset_desc(info), model_desc(info), clip_desc(info)
    n_weak = sum(v.weak for v in slices)
    n_skipped = sum(c.skipped for c in classes)
    discovery = sum(t for k, t in info.timings.items() if k not in _LATER_STAGES)
    examples = f"{info.n_scored:,}"
    if info.n_scored != info.n_examples:
        examples += f" of {info.n_examples:,}"
    cards = [
        ("Dataset", *dataset),
        ("Audited model", *model),
        ("CLIP", *clip),
        ("Examples", examples, None),
        ("Classes", f"{len(classes):,}", None),
        ("Slices", f"{len(slices):,}" + (f" ({n_weak:,} weak)" if n_weak else ""), None),
        ("Classes skipped", f"{n_skipped:,}", None),
        ("Slicer", str(info.slicer["name"]), None),
        ("Created", when(info.created), None),
    ]
    if info.timings:
        cards.append(("Discovery took", f"{discovery:.1f} s", None))
    card_html = join(
        tag(
            "div",
            tag("div", k, class_="k"),
            tag("div", v, class_="v long" if len(str(v)) > 22 else "v"),
            class_="card",
            title=full if full and full != v else None,
        )
        for k, v, full in cards
    )
    sub = (
        f"{run.path.name} · {len(classes):,} classes · {len(slices):,} slices · heavy parts "
        f"(thumbnails, plots) for the top {n_expanded:,} classes by severity"
    )
    return tag(
        "header",
        tag(
            "div",
            tag("h1", f"failscope report: {dataset[0]}"),
            tag("div", sub, class_="sub"),
            tag("nav", join(tag("a", label, href=href) for href, label in nav)),
            class_="inner",
        ),
        class_="top",
    ), tag("div", card_html, class_="cards")


def warnings_panel(run: Run) -> Markup:
    """The run's warnings (``run.info.warnings``) and skipped inputs, at the top of the page."""
    items = [tag("li", w) for w in run.info.warnings]
    n = len(run.info.skipped)
    if n:
        items.append(
            tag(
                "li",
                f"{n:,} input{'s' if n != 1 else ''} skipped as unreadable ",
                tag("a", "(listed in the run details)", href="#skipped-inputs"),
            )
        )
    if not items:
        return Markup("")
    return tag("div", tag("h3", "Warnings"), tag("ul", items), class_="panel warn", id="warnings")


def _slice_row(v: SliceView, classes: dict[int, ClassView]) -> Markup:
    s = v.entry
    c = classes[s.class_index]
    top = top_caption(s)
    cap = (
        [top, " ", confirmed_badge(check_for(s, top), weak=v.weak)]
        if top
        else [tag("span", "not captioned", class_="empty")]
    )
    rin, rout = s.error_rate_in, s.error_rate_out
    p = s.support.p_value
    return tag(
        "tr",
        tag("td", v.rank, class_="num rank", data_v=v.rank),
        tag("td", tag("a", s.id, href=f"#{v.anchor}"), class_="nowrap"),
        tag("td", tag("a", s.class_name, href=f"#{c.anchor}"), class_="name"),
        tag("td", cap, class_="cap"),
        tag("td", fmt_num(s.n_errors_in), class_="num", data_v=s.n_errors_in),
        tag("td", f"{s.size:,} / {c.entry.n_fit:,}", class_="num", data_v=s.size),
        tag(
            "td",
            f"{fmt_pct(rin)} vs {fmt_pct(rout)}",
            rate_bars(rin, rout),
            class_="num",
            data_v="" if rin is None else f"{rin:.6g}",
        ),
        tag("td", fmt_p(p), class_="num", data_v="" if p is None else f"{p:.6g}"),
        tag("td", weak_badge() if v.weak else badge("supported", "ok"), data_v=s.status),
        class_="weak" if v.weak else None,
        data_name=f"{s.class_name} {s.id}".lower(),
    )


def _class_row(c: ClassView) -> Markup:
    if c.skipped:
        note = [badge("skipped", "skip"), " ", c.entry.reason or "no reason recorded"]
    else:
        note = [badge("no slice", "skip"), " the slicer found no failure slice in this class"]
    return tag(
        "tr",
        tag("td", "–", class_="num rank", data_v=""),
        tag("td", "–", data_v=""),
        tag("td", tag("a", c.name, href=f"#{c.anchor}"), class_="name"),
        tag("td", note, class_="cap", colspan="6"),
        class_="skipped",
        data_name=c.name.lower(),
    )


def overview_section(
    slices: list[SliceView], classes: list[ClassView], *, fit_split: str, plot: Markup
) -> Markup:
    """The overview: a sortable, filterable table of every slice, most severe first,
    then the classes without a slice and the skipped classes."""
    intro = tag(
        "p",
        Markup(
            "Every slice, most severe first. <b>Severity</b> = the number of the audited "
            "model's mistakes inside the slice on the fitting split "
            f"{escape(repr(fit_split))} (error rate inside &times; size). A class can have "
            "several slices, one per failure mode (ids <code>class/rank</code>). <b>p</b> is "
            "the p-value of the slice's significance test; slices it does not support are "
            f"marked <b>{escape(WEAK_TEXT)}</b> and listed after the supported ones, and "
            "their captions are never shown as confirmed. Classes without a slice and "
            "classes the slicer skipped are listed last with the reason. Click a slice to "
            "open it."
        ),
        class_="note",
    )
    head = tag(
        "tr",
        tag("th", "#", class_="num", data_sort="num"),
        tag("th", "slice", data_sort="text"),
        tag("th", "class", data_sort="text"),
        tag("th", "top failure caption", data_sort="text"),
        tag("th", "severity", class_="num", data_sort="num"),
        tag("th", "size / class", class_="num", data_sort="num"),
        tag("th", "error in slice vs rest of class", class_="num", data_sort="num"),
        tag("th", "p", class_="num", data_sort="num", title="p-value of the slice's test"),
        tag("th", "support", data_sort="text"),
    )
    by_index = {c.index: c for c in classes}
    rows: list[Any] = [_slice_row(v, by_index) for v in slices]
    rows += [_class_row(c) for c in classes if not c.slices]
    toolbar = tag(
        "div",
        tag(
            "input",
            type="search",
            id="class-filter",
            placeholder="Filter by class or slice id…",
            aria_label="Filter by class or slice id",
        ),
        tag("span", f"{len(slices):,} slices in {len(classes):,} classes", class_="note"),
        class_="toolbar",
    )
    table = tag(
        "div",
        tag(
            "table",
            tag("thead", head),
            tag("tbody", rows),
            id="overview-table",
            class_="sortable",
        ),
        class_="tablewrap tall" if len(rows) > 25 else "tablewrap",
    )
    empty = tag("p", "The run has no slice.", class_="empty") if not slices else ""
    return tag("section", tag("h2", "Overview"), intro, plot, empty, toolbar, table, id="overview")
