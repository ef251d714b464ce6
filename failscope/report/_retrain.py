"""The retraining section: accuracy table and per-slice before/after plots."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._html import Markup, fmt_pct, tag
from ._metrics import baseline_first, parse_retrain_metrics
from ._pieces import badge, img_tag, plot_uri
from ._views import ClassView, Context

__all__ = ["retrain_section"]


def retrain_section(ctx: Context, metrics: Mapping[str, Any], views: list[ClassView]) -> Markup:
    """The retraining table (best value per column marked) and per-slice plots."""
    from . import plots

    methods = parse_retrain_metrics(metrics)
    if not methods:
        msg = metrics.get("message") or "retrain/metrics.json holds no per-method accuracies."
        return tag("section", tag("h2", "Retraining"), tag("p", msg, class_="empty"), id="retrain")
    order = baseline_first(methods, metrics.get("baseline"))
    groups = list(dict.fromkeys(g for m in order for g in methods[m]["groups"]))
    names_by_id = {str(v.entry.get("id", v.anchor)): v.name for v in views}

    def slice_name(group: str, sid: str) -> str:
        return names_by_id.get(sid, sid) if group != "planted" else sid

    # numeric columns: (group, header, getter); two header rows, grouped
    cols: list[tuple[str, str, Any]] = [("", "overall accuracy", lambda d: d["overall"])]
    for g in groups:
        label = "slices" if g == "slices" else f"{g} slices"
        cols.append((label, "mean", lambda d, g=g: d["groups"].get(g, {}).get("mean")))
        cols.append((label, "worst", lambda d, g=g: d["groups"].get(g, {}).get("worst")))
    if len(groups) != 1:
        cols.append(("all slices", "worst", lambda d: d["worst"]))
    best = [
        max((v for m in order if (v := get(methods[m])) is not None), default=None)
        for _, _, get in cols
    ]
    top_row = [tag("th", "method", rowspan="2")]
    sub_row = []
    for group in dict.fromkeys(c[0] for c in cols):
        members = [c for c in cols if c[0] == group]
        if not group:
            top_row += [tag("th", c[1], rowspan="2", class_="num") for c in members]
        else:
            top_row.append(tag("th", group, colspan=str(len(members)), class_="grp"))
            sub_row += [tag("th", c[1], class_="num") for c in members]
    top_row.append(tag("th", "worst slice", rowspan="2"))
    head = [tag("tr", top_row), tag("tr", sub_row)]
    rows = []
    for i, m in enumerate(order):
        d = methods[m]
        worst_at = None
        for g, info in d["groups"].items():
            for sid, acc in info["slices"].items():
                if acc is not None and (worst_at is None or acc < worst_at[0]):
                    worst_at = (acc, slice_name(g, sid))
        cells = []
        for (_, _, get), b in zip(cols, best, strict=True):
            v = get(d)
            top = len(order) > 1 and v is not None and b is not None and abs(v - b) < 1e-12
            cells.append(tag("td", fmt_pct(v), class_="num best" if top else "num"))
        rows.append(
            tag(
                "tr",
                tag(
                    "td",
                    m,
                    " ",
                    badge("before", "info") if i == 0 and len(order) > 1 else "",
                    class_="nowrap",
                ),
                cells,
                tag("td", worst_at[1] if worst_at else "–"),
            )
        )
    table = tag("div", tag("table", tag("thead", head), tag("tbody", rows)), class_="tablewrap")
    figs = []
    for g in groups:
        base = methods[order[0]]["groups"].get(g, {}).get("slices", {})
        known = {s: a for s, a in base.items() if a is not None}
        if not known:
            continue
        sids = sorted(known, key=known.get)[:20]
        safe = "".join(ch if ch.isalnum() else "-" for ch in g)[:40]
        path = ctx.plots_dir / f"retrain-{safe}.png"
        png = plots.retrain_plot(
            [slice_name(g, s) for s in sids],
            {
                m: [methods[m]["groups"].get(g, {}).get("slices", {}).get(s) for s in sids]
                for m in order
            },
            path=path,
        )
        ctx.plots_written.add(path)
        title = "slices" if g == "slices" else f"{g} slices"
        figs.append(
            tag(
                "div",
                tag("h3", f"Per-slice accuracy before and after: {title}"),
                tag(
                    "p",
                    f"The {len(sids)} {title} where {order[0]} does worst (test split); "
                    "one bar per method.",
                    class_="note",
                ),
                img_tag(plot_uri(png), f"per-slice accuracy before and after retraining, {title}"),
            )
        )
    note = tag(
        "p",
        f"From retrain/metrics.json. The first row ({order[0]}) is the model before "
        "slice-aware retraining; the best value in each column is highlighted in green.",
        class_="note",
    )
    return tag(
        "section",
        tag("h2", "Retraining"),
        note,
        table,
        figs,
        id="retrain",
    )
