"""The retraining section: accuracy table and per-slice before/after plots."""

from __future__ import annotations

from typing import Any

from failscope.run.metrics import BASELINE, MethodAccuracy, RetrainMetrics

from ._html import Markup, fmt_pct, tag
from ._images import slice_file_id
from ._pieces import badge, img_tag, plot_uri
from ._views import Context, SliceView

__all__ = ["retrain_section"]

_MAX_PLOTTED = 20


def retrain_section(ctx: Context, metrics: RetrainMetrics, slices: list[SliceView]) -> Markup:
    """The retraining table (best value per column marked) and per-slice plots."""
    from . import plots

    if not metrics.methods:
        msg = metrics.message or "retrain/metrics.json holds no per-method accuracies."
        return tag("section", tag("h2", "Retraining"), tag("p", msg, class_="empty"), id="retrain")
    methods = metrics.methods
    order = list(methods)
    groups = list(dict.fromkeys(g for m in order for g in methods[m].groups))
    names_by_id = {v.entry.id: f"{v.entry.class_name} · {v.entry.id}" for v in slices}

    def slice_name(group: str, sid: str) -> str:
        return names_by_id.get(sid, sid) if group == "discovered" else sid

    def group_stat(g: str, stat: str) -> Any:
        def get(d: MethodAccuracy) -> float | None:
            acc = d.groups.get(g)
            return None if acc is None else getattr(acc, stat)

        return get

    # numeric columns: (group, header, getter); two header rows, grouped
    cols: list[tuple[str, str, Any]] = [("", "overall accuracy", lambda d: d.overall)]
    for g in groups:
        cols.append((f"{g} slices", "mean", group_stat(g, "mean")))
        cols.append((f"{g} slices", "worst", group_stat(g, "worst")))
    if len(groups) != 1:
        cols.append(("all slices", "worst", lambda d: d.worst))
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
    for m in order:
        d = methods[m]
        worst_at = None
        for g, acc in d.groups.items():
            for sid, a in acc.slices.items():
                if a is not None and (worst_at is None or a < worst_at[0]):
                    worst_at = (a, slice_name(g, sid))
        cells = []
        for (_, _, get), b in zip(cols, best, strict=True):
            v = get(d)
            top = len(order) > 1 and v is not None and b is not None and abs(v - b) < 1e-12
            cells.append(tag("td", fmt_pct(v), class_="num best" if top else "num"))
        before = badge("before", "info") if m == BASELINE and len(order) > 1 else ""
        rows.append(
            tag(
                "tr",
                tag("td", m, " ", before, class_="nowrap"),
                cells,
                tag("td", worst_at[1] if worst_at else "–"),
            )
        )
    table = tag("div", tag("table", tag("thead", head), tag("tbody", rows)), class_="tablewrap")
    figs = []
    for g in groups:
        base = methods[BASELINE].groups.get(g)
        known = {s: a for s, a in (base.slices if base else {}).items() if a is not None}
        if not known:
            continue
        sids = sorted(known, key=known.__getitem__)[:_MAX_PLOTTED]
        rel = f"plots/retrain-{slice_file_id(g)[:40]}.png"
        png = plots.retrain_plot(
            [slice_name(g, s) for s in sids],
            {
                m: [
                    methods[m].groups[g].slices.get(s) if g in methods[m].groups else None
                    for s in sids
                ]
                for m in order
            },
            path=ctx.output(rel),
        )
        figs.append(
            tag(
                "div",
                tag("h3", f"Per-slice accuracy before and after: {g} slices"),
                tag(
                    "p",
                    f"The {len(sids)} {g} slices where {BASELINE} does worst (test split); "
                    "one bar per method.",
                    class_="note",
                ),
                img_tag(plot_uri(png), f"per-slice accuracy before and after retraining, {g}"),
            )
        )
    note = tag(
        "p",
        f"From retrain/metrics.json. The {BASELINE} row is the model before slice-aware "
        "retraining; the best value in each column is highlighted in green.",
        class_="note",
    )
    return tag("section", tag("h2", "Retraining"), note, table, figs, id="retrain")
