"""The per-class sections: statistics, captions, caption checks, plots and mosaics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ._html import Markup, fmt_num, fmt_pct, tag
from ._images import resolve_image, thumbnail_uri
from ._pieces import badge, confirmed_badge, img_tag, plot_uri
from ._views import (
    ClassView,
    Context,
    acc_at,
    check_for,
    class_frame,
    entry_captions,
    entry_checks,
    top_caption,
)

__all__ = ["classes_section"]


def _thumb(ctx: Context, row: Mapping[str, Any]) -> Markup:
    names = ctx.class_names

    def cname(i: Any) -> str:
        try:
            i = int(i)
        except (TypeError, ValueError):
            return str(i)
        return names[i] if 0 <= i < len(names) else str(i)

    label, pred = row.get("label"), row.get("pred")
    correct = bool(row.get("correct")) if row.get("correct") is not None else label == pred
    path = str(row.get("path", ""))
    uri = thumbnail_uri(resolve_image(path, roots=ctx.image_roots), size=ctx.thumb_size)
    caption = [tag("span", "✓ " if correct else "✗ ", cname(label))]
    if not correct:
        caption.append(tag("span", "→ ", cname(pred)))
    alt = f"{cname(label)}, predicted {cname(pred)}"
    score = row.get("failure_score")
    tip = [
        path,
        f"label: {cname(label)}",
        f"prediction: {cname(pred)}",
        f"failure score: {fmt_num(score)}",
    ]
    if row.get("confidence") is not None:
        tip.append(f"confidence: {fmt_num(row.get('confidence'))}")
    tip += [f"{c}: {row.get(c)}" for c in ctx.meta_columns if row.get(c) is not None]
    title = "\n".join(tip)
    img = (
        img_tag(uri, alt, css="", width=None)
        if uri
        else tag(
            "div", "image unavailable", class_="missing", role="img", aria_label="image unavailable"
        )
    )
    return tag(
        "figure",
        img,
        tag("figcaption", caption),
        class_=f"th {'ok' if correct else 'bad'}",
        title=title,
    )


def _mosaics(ctx: Context, frame: Any) -> Markup:
    if frame is None or len(frame) == 0 or "failure_score" not in frame.columns:
        return tag("p", "No scored examples of this class in the shown split.", class_="empty")
    scores = frame["failure_score"].to_numpy(dtype=float)
    ok = np.isfinite(scores)
    frame, scores = frame.loc[ok], scores[ok]
    if len(frame) == 0:
        return tag("p", "No scored examples of this class in the shown split.", class_="empty")
    order = np.argsort(-scores, kind="stable")
    t = ctx.thumbs_per_mosaic
    n_fail = min(t, (len(order) + 1) // 2) if len(order) < 2 * t else t
    fail_idx = order[:n_fail]
    succ_idx = order[::-1][: min(t, len(order) - n_fail)]

    def mosaic(idx: np.ndarray, title: str, note: str) -> Markup:
        records = frame.iloc[idx].to_dict("records")
        tiles = [_thumb(ctx, r) for r in records]
        n_bad = sum(not bool(r.get("correct", True)) for r in records)
        head = tag("h3", title, " ", badge(f"{n_bad}/{len(idx)} wrong", "bad" if n_bad else "skip"))
        body = tag("div", tiles, class_="mosaic") if tiles else tag("p", "none", class_="empty")
        return tag("div", head, tag("p", note, class_="note"), body)

    where = f" · {ctx.view_split} split" if ctx.view_split else ""
    return tag(
        "div",
        mosaic(fail_idx, "Most failure-aligned images", f"highest failure score first{where}"),
        mosaic(succ_idx, "Most success-aligned images", f"lowest failure score first{where}"),
        class_="grid2",
    )


def _caption_lists(entry: Mapping[str, Any], *, n: int = 5) -> Markup:
    def one(kind: str, title: str) -> Markup:
        caps = entry_captions(entry, kind)[:n]
        if not caps:
            return tag("div", tag("h3", title), tag("p", "not captioned yet", class_="empty"))
        items = [
            tag(
                "li",
                c["text"],
                tag("span", fmt_num(c.get("score")), class_="score"),
            )
            for c in caps
        ]
        return tag("div", tag("h3", title), tag("ol", items, class_=f"caps {kind}"))

    return tag(
        "div",
        one("failure", "Failure captions"),
        one("success", "Success captions"),
        class_="grid2",
    )


def _checks_table(entry: Mapping[str, Any]) -> Markup:
    checks = entry_checks(entry)
    if not checks:
        return Markup("")
    accs = [acc_at(c) for c in checks]
    # depths with at least one value (a small class has fewer than 25 images)
    ks = sorted({k for a in accs for k, v in a.items() if v is not None})[:5]
    decision = any(c.get("acc_at_decision") is not None for c in checks)
    p_values = any(c.get("p_value") is not None for c in checks)
    head = tag(
        "tr",
        tag("th", "caption"),
        [tag("th", f"acc@{k}", class_="num") for k in ks],
        tag("th", "acc@K*", class_="num", title="accuracy at the decision depth K*")
        if decision
        else "",
        tag("th", "class acc", class_="num"),
        tag("th", "p", class_="num", title="hypergeometric test of the drop") if p_values else "",
        tag("th", "verdict"),
    )
    rows = []
    for c, acc in zip(checks, accs, strict=True):
        at = c.get("acc_at_decision")
        rows.append(
            tag(
                "tr",
                tag("td", c.get("text", ""), class_="cap"),
                [tag("td", fmt_pct(acc.get(k)), class_="num") for k in ks],
                tag(
                    "td",
                    fmt_pct(at),
                    tag("span", f" (K*={c['k_decision']})", class_="score")
                    if at is not None and c.get("k_decision")
                    else "",
                    class_="num",
                )
                if decision
                else "",
                tag("td", fmt_pct(c.get("class_acc")), class_="num"),
                tag("td", _fmt_p(c.get("p_value")), class_="num") if p_values else "",
                tag("td", confirmed_badge(c) or "–"),
            )
        )
    split = next((c.get("split") for c in checks if c.get("split")), None)
    note = next((c.get("note") for c in checks if c.get("note")), None)
    return tag(
        "div",
        tag("h3", "Caption checks", f" ({split!s} split)" if split else ""),
        tag("p", note, class_="note") if note else "",
        tag("div", tag("table", tag("thead", head), tag("tbody", rows)), class_="tablewrap"),
    )


def _fmt_p(p: Any) -> str:
    if p is None:
        return "–"
    p = float(p)
    return f"{p:.2g}" if p >= 0.001 else "<0.001"


def _class_plots(ctx: Context, v: ClassView, frame: Any) -> Markup:
    if ctx.painter is None:
        from .plots import ClassPlots

        ctx.painter = ClassPlots()
    parts = []
    if frame is not None and len(frame) and "failure_score" in frame.columns:
        cutoff = (v.entry.get("threshold") or {}).get("cutoff")
        path = ctx.plots_dir / f"class-{v.index:04d}-scores.png"
        png = ctx.painter.score_histogram(
            frame["failure_score"].to_numpy(dtype=float),
            frame["correct"].to_numpy(dtype=bool)
            if "correct" in frame.columns
            else np.ones(len(frame), bool),
            cutoff=None if cutoff is None else float(cutoff),
            path=path,
        )
        ctx.plots_written.add(path)
        parts.append(
            tag(
                "div",
                tag("h3", "Failure scores"),
                tag(
                    "p",
                    "correct (teal) vs wrong (red); the dashed line is the slice cutoff",
                    class_="note",
                ),
                img_tag(plot_uri(png), f"failure score histogram for {v.name}"),
            )
        )
    checks = [c for c in entry_checks(v.entry) if isinstance(c.get("curve"), Mapping)]
    if checks:
        path = ctx.plots_dir / f"class-{v.index:04d}-captions.png"
        png = ctx.painter.accuracy_curves(checks, path=path)
        ctx.plots_written.add(path)
        parts.append(
            tag(
                "div",
                tag("h3", "Accuracy near the captions"),
                tag("p", "accuracy of the top-K images nearest each caption, vs K", class_="note"),
                img_tag(plot_uri(png), f"caption accuracy curve for {v.name}"),
            )
        )
    return tag("div", parts, class_="grid2") if parts else Markup("")


def _class_stats(v: ClassView) -> Markup:
    e = v.entry
    items = [
        ("severity", fmt_num(v.severity, 1)),
        ("slice size", f"{fmt_num(e.get('size'))} of {fmt_num(e.get('n_fit'))}"),
        ("error in slice", fmt_pct(e.get("error_rate_in"))),
        ("error outside", fmt_pct(e.get("error_rate_out"))),
        ("class error rate", fmt_pct(e.get("error_rate"))),
        (f"CV {e.get('cv_metric') or 'score'}", fmt_num(e.get("cv_score"))),
    ]
    if e.get("C") is not None:
        items.append(("C", fmt_num(e.get("C"), 3)))
    return tag(
        "div",
        [tag("div", tag("span", k + ": "), tag("b", val)) for k, val in items],
        class_="stats",
    )


def _class_section(ctx: Context, v: ClassView, *, open_: bool) -> Markup:
    e = v.entry
    if v.skipped:
        summary = tag(
            "summary",
            tag("span", f"#{v.rank}", class_="rank"),
            tag("span", v.name, class_="name"),
            badge("skipped", "skip"),
            tag("span", e.get("reason") or "", class_="meta"),
        )
        body = tag(
            "div",
            tag(
                "p",
                "No failure direction was fit for this class: ",
                e.get("reason") or "no reason recorded",
                class_="note",
            ),
            class_="body",
        )
        return tag("details", summary, body, class_="cls skipped", id=v.anchor)
    top = top_caption(e)
    meta = (
        f"severity {fmt_num(v.severity, 1)} · slice {fmt_num(e.get('size'))} · "
        f"error {fmt_pct(e.get('error_rate_in'))} in vs {fmt_pct(e.get('error_rate_out'))} out"
    )
    summary = tag(
        "summary",
        tag("span", f"#{v.rank}", class_="rank"),
        tag("span", v.name, class_="name"),
        tag("span", meta, class_="meta"),
        tag("span", "“", top, "”", class_="meta") if top else "",
        confirmed_badge(check_for(e, top)),
    )
    parts: list[Any] = [_class_stats(v), _caption_lists(e, n=5 if v.expanded else 3)]
    if v.expanded:
        parts.append(_checks_table(e))
        frame = class_frame(ctx, v.index)
        parts.append(_class_plots(ctx, v, frame))
        parts.append(_mosaics(ctx, frame))
    else:
        parts.append(tag("p", "Compact section: see the note above “Expand all”.", class_="note"))
    return tag(
        "details", summary, tag("div", parts, class_="body"), class_="cls", id=v.anchor, open=open_
    )


def classes_section(ctx: Context, views: list[ClassView], *, n_open: int) -> Markup:
    """One collapsible section per class, the first ``n_open`` open."""
    legend = tag(
        "div",
        tag("span", tag("span", class_="swatch ok"), "correct prediction"),
        tag("span", tag("span", class_="swatch bad"), "wrong prediction (label → prediction)"),
        class_="legend",
    )
    toolbar = tag(
        "div",
        tag("button", "Expand all", type="button", id="expand-all"),
        tag("button", "Collapse all", type="button", id="collapse-all"),
        class_="toolbar",
    )
    sections = [_class_section(ctx, v, open_=v.rank <= n_open and not v.skipped) for v in views]
    n_exp = sum(v.expanded for v in views)
    n_compact = sum(not v.expanded and not v.skipped for v in views)
    compact = (
        f" The other {n_compact:,} classes have compact sections (statistics and top "
        "captions); rebuild with a larger max_classes_expanded (--max-classes-expanded) "
        "to draw theirs."
        if n_compact
        else ""
    )
    intro = tag(
        "p",
        f"Thumbnails, histograms and caption checks are drawn for the {n_exp:,} most "
        f"severe classes.{compact} Thumbnails and histograms show {ctx.view_note}. "
        "Caption scores are the caption's similarity along the failure direction. A caption "
        "check measures the audited model's accuracy on the K images nearest the caption "
        "(acc@K) against its accuracy on the whole class; a confirmed caption points at "
        "images the model gets wrong significantly more often.",
        class_="note",
    )
    return tag(
        "section",
        tag("h2", "Classes"),
        intro,
        legend,
        toolbar,
        sections,
        id="classes",
    )
