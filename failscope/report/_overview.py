"""The run-level sections: header and cards, skipped inputs, overview table, run details."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from failscope.run import Run

from ._html import Markup, escape, fmt_num, fmt_pct, join, tag
from ._pieces import badge, confirmed_badge, rate_bars
from ._runinfo import clip_desc, dataset_desc, describe, lookup, model_desc, when
from ._views import ClassView, Context, check_for, top_caption

__all__ = ["overview_section", "page_header", "run_details_section", "skipped_inputs"]


#: run.json timing keys of the stages after discovery (left out of "Discovery took").
_LATER_STAGES = frozenset({"report", "caption", "captions", "evaluate", "retrain", "total"})


def page_header(
    run: Run, views: list[ClassView], examples: Any, *, n_expanded: int
) -> tuple[Markup, Markup]:
    """The page's top bar (title, subtitle, navigation) and its summary cards."""
    info = run.info
    dataset, model, clip = dataset_desc(info), model_desc(info), clip_desc(info)
    n_examples = len(examples) if examples is not None else lookup(info, "n_examples")
    n_ok = sum(not v.skipped for v in views)
    n_skipped = len(views) - n_ok
    created = lookup(info, "created", "created_at", "finished", "finished_at", "time", "date")
    timings = info.get("timings")
    total = None
    if isinstance(timings, Mapping):
        secs = [
            float(v)
            for k, v in timings.items()
            if k not in _LATER_STAGES and isinstance(v, (int, float)) and not isinstance(v, bool)
        ]
        total = timings.get("total", sum(secs) if secs else None)
    n_text = fmt_num(n_examples) if isinstance(n_examples, int) else describe(n_examples)
    cards = [
        ("Dataset", *dataset),
        ("Audited model", *model),
        ("CLIP", *clip),
        ("Examples", n_text, None),
        ("Classes", f"{len(run.class_names or views):,}", None),
        ("Slices fit", f"{n_ok:,}" + (f" ({n_skipped:,} skipped)" if n_skipped else ""), None),
        ("Created", when(created) if created else "–", None),
    ]
    if total is not None:
        cards.append(("Discovery took", f"{float(total):.1f} s", None))
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
    nav = [("#overview", "Overview"), ("#classes", "Classes")]
    if run.retrain_metrics is not None:
        nav.append(("#retrain", "Retraining"))
    if run.evaluation is not None:
        nav.append(("#evaluation", "Planted slices"))
    nav.append(("#run", "Run details"))
    title = f"failscope report: {dataset[0]}" if dataset[0] != "–" else "failscope report"
    sub = (
        f"{run.path.name} · {len(views):,} classes · heavy parts (thumbnails, plots) "
        f"for the top {n_expanded:,} by severity"
    )
    return tag(
        "header",
        tag(
            "div",
            tag("h1", title),
            tag("div", sub, class_="sub"),
            tag("nav", join(tag("a", label, href=href) for href, label in nav)),
            class_="inner",
        ),
        class_="top",
    ), tag("div", card_html, class_="cards")


def skipped_inputs(run: Run, *, limit: int = 1000) -> Markup:
    """The inputs skipped as missing or corrupt (at most ``limit`` rows)."""
    skipped = [s for s in run.skipped if isinstance(s, Mapping)]
    if not skipped:
        return tag("p", "No inputs were skipped: every image could be read.", class_="note")
    rows = [
        tag("tr", tag("td", s.get("path", ""), class_="mono"), tag("td", s.get("reason", "")))
        for s in skipped[:limit]
    ]
    more = len(skipped) - limit
    if more > 0:
        rows.append(tag("tr", tag("td", f"… and {more:,} more", colspan="2", class_="empty")))
    table = tag(
        "div",
        tag(
            "table",
            tag("thead", tag("tr", tag("th", "path"), tag("th", "reason"))),
            tag("tbody", rows),
        ),
        class_="tablewrap tall",
    )
    summary = (
        f"{len(skipped):,} input{'s' if len(skipped) != 1 else ''} skipped as missing or corrupt"
    )
    if len(skipped) <= 10:
        return tag("p", summary, class_="note") + table
    return tag("details", tag("summary", summary + " (click to list)"), table, class_="panel")


def overview_section(views: list[ClassView], ctx: Context, plot: Markup) -> Markup:
    """The overview: a sortable, filterable table of every class, most severe first."""
    fit = f" (split {ctx.fit_split!r})" if ctx.fit_split else ""
    intro = tag(
        "p",
        Markup(
            "Every class, most severe first. <b>Severity</b> = error rate inside the slice "
            "&times; slice size, i.e. the number of the audited model's mistakes that fall "
            f"inside the class's slice on the fitting split{escape(fit)}. Ties are broken by "
            "CV score. The <b>slice</b> is the class's examples on the failure side of its "
            "failure direction; <b>CV score</b> says how well that direction separates errors "
            "from correct predictions on held-out folds. Classes skipped by the fit are listed "
            "last with the reason. Click a class to open its section."
        ),
        class_="note",
    )
    head = tag(
        "tr",
        tag("th", "#", class_="num", data_sort="num"),
        tag("th", "class", data_sort="text"),
        tag("th", "top failure caption", data_sort="text"),
        tag("th", "severity", class_="num", data_sort="num"),
        tag("th", "slice size", class_="num", data_sort="num"),
        tag("th", "error in slice vs outside", class_="num", data_sort="num"),
        tag("th", "CV score", class_="num", data_sort="num"),
    )
    rows = []
    for v in views:
        e = v.entry
        link = tag("a", v.name, href=f"#{v.anchor}")
        if v.skipped:
            rows.append(
                tag(
                    "tr",
                    tag("td", v.rank, class_="num rank", data_v=v.rank),
                    tag("td", link),
                    tag(
                        "td",
                        badge("skipped", "skip"),
                        " ",
                        e.get("reason") or "no reason recorded",
                        class_="cap",
                        colspan="5",
                    ),
                    class_="skipped",
                    data_name=v.name.lower(),
                )
            )
            continue
        top = top_caption(e)
        check = check_for(e, top)
        cap = (
            [top, " ", confirmed_badge(check)]
            if top
            else [tag("span", "not captioned", class_="empty")]
        )
        size, n_fit = e.get("size"), e.get("n_fit")
        size_txt = fmt_num(size) + (f" / {n_fit:,}" if isinstance(n_fit, int) else "")
        rin, rout = e.get("error_rate_in"), e.get("error_rate_out")
        cv = e.get("cv_score")
        rows.append(
            tag(
                "tr",
                tag("td", v.rank, class_="num rank", data_v=v.rank),
                tag("td", link),
                tag("td", cap, class_="cap"),
                tag("td", fmt_num(v.severity, 1), class_="num", data_v=f"{v.severity:.6g}"),
                tag("td", size_txt, class_="num", data_v=size if size is not None else ""),
                tag(
                    "td",
                    f"{fmt_pct(rin)} vs {fmt_pct(rout)}",
                    rate_bars(rin, rout),
                    class_="num",
                    data_v="" if rin is None else f"{float(rin):.6g}",
                ),
                tag(
                    "td",
                    fmt_num(cv),
                    class_="num",
                    title=str(e.get("cv_metric") or ""),
                    data_v="" if cv is None else f"{float(cv):.6g}",
                ),
                data_name=v.name.lower(),
            )
        )
    toolbar = tag(
        "div",
        tag(
            "input",
            type="search",
            id="class-filter",
            placeholder="Filter classes…",
            aria_label="Filter classes",
        ),
        tag("span", f"{len(views):,} classes", class_="note"),
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
        class_="tablewrap tall" if len(views) > 25 else "tablewrap",
    )
    return tag("section", tag("h2", "Overview"), intro, plot, toolbar, table, id="overview")


def _flatten(d: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out += _flatten(v, key + ".")
        elif isinstance(v, list) and len(v) > 12:
            out.append((key, f"[{len(v)} items]"))
        else:
            out.append((key, v))
    return out


def run_details_section(run: Run) -> Markup:
    """run.json, flattened into a collapsed key/value table."""
    info = run.info
    shown = {k: v for k, v in info.items() if k not in ("classes", "skipped")}
    items = _flatten(shown)[:400]
    rows = [
        tag(
            "tr",
            tag("td", k, class_="mono"),
            tag("td", describe(v) if not isinstance(v, str) else v, class_="mono"),
        )
        for k, v in items
    ]
    table = tag("div", tag("table", tag("tbody", rows)), class_="tablewrap tall")
    return tag(
        "section",
        tag("h2", "Run details"),
        tag(
            "details",
            tag("summary", "run.json (configuration, versions, timings)"),
            table,
            class_="panel",
        ),
        id="run",
    )
