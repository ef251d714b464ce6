"""The per-class sections and, inside each, one block per slice: statistics,
support, confusion, captions, caption checks, plots and mosaics."""

from __future__ import annotations

from typing import Any

import numpy as np

from failscope.run.schema import CaptionCheck, SliceEntry

from ._html import Markup, fmt_num, fmt_pct, tag
from ._images import attribution_mosaic_path, data_uri, resolve_image, slice_file_id, thumbnail_uri
from ._pieces import WEAK_TEXT, badge, confirmed_badge, fmt_p, img_tag, plot_uri, weak_badge
from ._views import ClassView, Context, SliceView, check_for, class_frame, top_caption

__all__ = ["classes_section"]

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- mosaics


def _thumb(ctx: Context, row: dict[str, Any], score: float) -> Markup:
    names = ctx.class_names
    label, pred = names[int(row["label"])], names[int(row["pred"])]
    correct = bool(row["correct"])
    path = str(row["path"])
    uri = thumbnail_uri(resolve_image(path, roots=ctx.image_roots), size=ctx.thumb_size)
    caption = [tag("span", "✓ " if correct else "✗ ", label)]
    if not correct:
        caption.append(tag("span", "→ ", pred))
    tip = [
        path,
        f"label: {label}",
        f"prediction: {pred}",
        f"slice score: {fmt_num(score)}",
        f"confidence: {fmt_num(row['confidence'])}",
    ]
    tip += [f"{c}: {row[c]}" for c in ctx.meta_columns if row[c] is not None]
    img = (
        img_tag(uri, f"{label}, predicted {pred}", css="", width=None)
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
        title="\n".join(tip),
    )


def _members_mosaic(ctx: Context, s: SliceEntry, frame: Any, rows: np.ndarray) -> Markup:
    """The slice's members in the shown split: the audited model's errors first, each
    group by descending slice score."""
    scores = ctx.scores[rows, s.column].astype(np.float64)
    member = s.rule.passes(scores)
    idx = np.flatnonzero(member)
    correct = frame["correct"].to_numpy(dtype=bool)[idx]
    order = idx[np.lexsort((-scores[idx], correct))][: ctx.thumbs_per_mosaic]
    n_wrong = int((~correct).sum())
    where = f" in the {ctx.view_split} split" if ctx.view_split else ""
    head = tag(
        "h4",
        "Members",
        " ",
        badge(f"{n_wrong}/{len(idx)} wrong", "bad" if n_wrong else "skip"),
    )
    if not len(idx):
        return tag("div", head, tag("p", f"No member{where}.", class_="empty"))
    records = frame.iloc[order].to_dict("records")
    tiles = [_thumb(ctx, r, float(scores[i])) for r, i in zip(records, order, strict=True)]
    note = (
        f"{len(idx):,} members{where}; showing {len(order)}: wrong predictions first, "
        "then by descending slice score"
    )
    return tag("div", head, tag("p", note, class_="note"), tag("div", tiles, class_="mosaic"))


def _attribution_mosaic(ctx: Context, s: SliceEntry) -> Markup:
    """The slice's attribution mosaic, if a stage wrote one; else the empty slot."""
    rel = attribution_mosaic_path(s.id)
    path = ctx.run.path / rel
    head = tag("h4", "Where the model looks")
    if path.is_file():
        data = path.read_bytes()
        if data.startswith(_PNG_MAGIC):
            return tag(
                "div",
                head,
                tag("p", f"attribution mosaic of the slice ({rel})", class_="note"),
                img_tag(
                    data_uri(data, "image/png"),
                    f"attribution mosaic of slice {s.id}",
                    css="plot attribution",
                ),
                class_="attr-slot",
            )
        note = f"{rel} is not a PNG file; it is not shown."
    else:
        note = f"No attribution mosaic ({rel} is written by the attribution stage)."
    return tag("div", head, tag("p", note, class_="empty"), class_="attr-slot")


# --------------------------------------------------------------------------- text parts


def _caption_lists(v: SliceView, *, n: int = 5) -> Markup:
    caps = v.entry.captions

    def one(kind: str, title: str) -> Markup:
        items = [] if caps is None else list(getattr(caps, kind))[:n]
        if not items:
            return tag("div", tag("h4", title), tag("p", "not captioned yet", class_="empty"))
        lis = [tag("li", c.text, tag("span", fmt_num(c.score), class_="score")) for c in items]
        return tag("div", tag("h4", title), tag("ol", lis, class_=f"caps {kind}"))

    return tag(
        "div",
        one("failure", "Failure captions (name the slice)"),
        one("success", "Success captions (the rest of the class)"),
        class_="grid2",
    )


def _acc_at(check: CaptionCheck) -> dict[int, float | None]:
    """``{K: accuracy of the K images nearest the caption}``: the check's own depths,
    then 25, 50 and 100 from its curve."""
    out = dict(zip(check.k, check.acc_at_k, strict=True))
    for k, a in zip(check.curve.k, check.curve.acc, strict=True):
        if k in (25, 50, 100) and k not in out:
            out[k] = a
    return out


def _checks_table(v: SliceView) -> Markup:
    checks = v.entry.caption_checks or ()
    if not checks:
        return Markup("")
    accs = [_acc_at(c) for c in checks]
    # depths with at least one value (a small class has fewer than 25 images)
    ks = sorted({k for a in accs for k, x in a.items() if x is not None})[:5]
    decision = any(c.acc_at_decision is not None for c in checks)
    head = tag(
        "tr",
        tag("th", "caption"),
        [tag("th", f"acc@{k}", class_="num") for k in ks],
        tag("th", "acc@K*", class_="num", title="accuracy at the decision depth K*")
        if decision
        else "",
        tag("th", "class acc", class_="num"),
        tag("th", "p", class_="num", title="hypergeometric test of the errors at K*"),
        tag(
            "th", "null p", class_="num", title="rank of the caption's drop among random captions'"
        ),
        tag("th", "verdict"),
    )
    rows = []
    for c, acc in zip(checks, accs, strict=True):
        at = c.acc_at_decision
        k_star = tag("span", f" (K*={c.k_decision})", class_="score") if at is not None else ""
        rows.append(
            tag(
                "tr",
                tag("td", c.text, class_="cap"),
                [tag("td", fmt_pct(acc.get(k)), class_="num") for k in ks],
                tag("td", fmt_pct(at), k_star, class_="num") if decision else "",
                tag("td", fmt_pct(c.class_acc), class_="num"),
                tag("td", fmt_p(c.p_value), class_="num"),
                tag("td", fmt_p(c.null_p_value), class_="num"),
                tag("td", confirmed_badge(c, weak=v.weak) or "–"),
            )
        )
    notes = list(dict.fromkeys(c.note for c in checks if c.note))
    return tag(
        "div",
        tag("h4", "Caption checks", f" ({checks[0].split} split)"),
        [tag("p", n, class_="note") for n in notes],
        tag("div", tag("table", tag("thead", head), tag("tbody", rows)), class_="tablewrap"),
    )


def _slice_stats(v: SliceView, n_fit: int) -> Markup:
    s, sup = v.entry, v.entry.support
    items: list[tuple[str, str, str | None]] = [
        ("severity", _errors(s.n_errors_in), "the audited model's mistakes inside"),
        ("size", f"{s.size:,} of {n_fit:,}", "members of the class in the fitting split"),
        ("error inside", fmt_pct(s.error_rate_in), None),
        ("error in the rest of the class", fmt_pct(s.error_rate_out), None),
        ("p", f"{fmt_p(sup.p_value)} (α = {sup.alpha:g})", sup.test),
    ]
    if sup.enrichment_p is not None:
        items.append(("enrichment p", fmt_p(sup.enrichment_p), "one-sided Fisher test, in > out"))
    if sup.cv_score is not None:
        items.append((f"CV {sup.cv_metric or 'score'}", fmt_num(sup.cv_score), None))
    if sup.C is not None:
        items.append(("C", f"{sup.C:g}", None))
    items.append(("slicer", s.slicer, None))
    rule = s.rule
    items.append(
        ("membership", f"score {'>' if rule.strict else '≥'} {rule.cutoff:.3g} ({rule.threshold})",
         rule.score)
    )  # fmt: skip
    items += [(k, fmt_num(x), None) for k, x in s.metrics.items()]
    return tag(
        "div",
        [tag("div", tag("span", k + ": "), tag("b", val), title=t) for k, val, t in items],
        class_="stats",
    )


def _confusion(s: SliceEntry) -> Markup:
    if not s.confusion:
        return tag("p", "No wrong prediction inside the slice (fitting split).", class_="note")
    pairs = sorted(s.confusion.items(), key=lambda kv: (-kv[1], kv[0]))
    items = [tag("li", tag("span", "→ ", name), tag("b", f" × {n:,}")) for name, n in pairs]
    return tag(
        "div",
        tag("span", "Predicted instead (fitting split): ", class_="note"),
        tag("ul", items, class_="confusion"),
    )


# --------------------------------------------------------------------------- plots


def _slice_plots(ctx: Context, v: SliceView, frame: Any, rows: np.ndarray) -> Markup:
    if ctx.painter is None:
        from .plots import SlicePlots

        ctx.painter = SlicePlots()
    s = v.entry
    fid = slice_file_id(s.id)
    png = ctx.painter.score_histogram(
        ctx.scores[rows, s.column].astype(np.float64),
        frame["correct"].to_numpy(dtype=bool),
        cutoff=s.rule.cutoff,
        path=ctx.output(f"plots/slice-{fid}-scores.png"),
    )
    where = f"{ctx.view_split} split" if ctx.view_split else "every split"
    return tag(
        "div",
        tag("h4", "Slice scores"),
        tag(
            "p",
            f"the class's examples ({where}): correct (teal) vs wrong (red); the dashed "
            "line is the membership cutoff",
            class_="note",
        ),
        img_tag(plot_uri(png), f"slice score histogram of {s.class_name} {s.id}"),
    )


# --------------------------------------------------------------------------- sections


def _errors(n: int) -> str:
    return f"{n:,} error{'s' if n != 1 else ''}"


#: How each annotation label is shown: words and badge kind.
_ANNOTATION_BADGES = {
    "core": ("annotated: core", "info"),
    "spurious": ("annotated: spurious", "bad"),
    "noisy": ("annotated: noisy labels", "no"),
    "not-a-failure": ("annotated: not a failure", "skip"),
}


def _annotation_badge(annotation: Any) -> Markup | str:
    """A person's verdict on the slice (``RUN/annotations.json``), or nothing."""
    if annotation is None:
        return ""
    text, kind = _ANNOTATION_BADGES[annotation.label]
    return badge(text, kind, title=f"failscope review, {annotation.updated}")


def _slice_block(ctx: Context, c: ClassView, v: SliceView, frame: Any, rows: np.ndarray) -> Markup:
    s = v.entry
    head = tag(
        "h3",
        tag("span", f"#{v.rank}", class_="rank"),
        " slice ",
        tag("code", s.id),
        " ",
        weak_badge() if v.weak else badge("supported", "ok"),
        _annotation_badge(ctx.annotations.get(s.id)),
        tag(
            "span",
            f" rank {s.rank} in its class · {_errors(s.n_errors_in)} in {s.size:,} · "
            f"error {fmt_pct(s.error_rate_in)} in vs {fmt_pct(s.error_rate_out)} out · "
            f"p {fmt_p(s.support.p_value)}",
            class_="meta",
        ),
        class_="slice-head",
    )
    css = "slice weak" if v.weak else "slice"
    if not c.expanded:  # compact: one line of captions
        return tag("div", head, _caption_line(v), class_=css, id=v.anchor)
    parts: list[Any] = [head]
    note = ctx.annotations.get(s.id)
    if note is not None and note.note:
        parts.append(tag("p", tag("b", "Reviewer's note"), f" ({note.updated}): {note.note}",
                         class_="note annotation-note"))  # fmt: skip
    if v.weak:
        parts.append(
            tag(
                "p",
                tag("b", WEAK_TEXT),
                f": its test gives p = {fmt_p(s.support.p_value)}, not below α = "
                f"{s.support.alpha:g}. Treat it as a hint, not a finding; its captions are "
                "never confirmed.",
                class_="weak-note",
            )
        )
    plot = (
        _slice_plots(ctx, v, frame, rows)
        if len(rows)
        else tag("p", "No example of this class in the shown split.", class_="empty")
    )
    parts += [
        tag("div", tag("div", _slice_stats(v, c.entry.n_fit), _confusion(s)), plot,
            class_="grid2"),
        _caption_lists(v, n=5),
        _checks_table(v),
        tag("div", _members_mosaic(ctx, s, frame, rows), _attribution_mosaic(ctx, s),
            class_="grid2"),
    ]  # fmt: skip
    return tag("div", parts, class_=css, id=v.anchor)


def _caption_line(v: SliceView) -> Markup:
    """A compact slice's top failure and success captions, on one line."""
    caps = v.entry.captions
    if caps is None:
        return tag("p", "not captioned yet", class_="empty")
    top = top_caption(v.entry)
    ok = caps.success[0].text if caps.success else None
    return tag(
        "p",
        tag("span", "failure: ", class_="note"),
        top or "–",
        " ",
        confirmed_badge(check_for(v.entry, top), weak=v.weak),
        tag("span", " · success: ", class_="note"),
        ok or "–",
        class_="caps-line",
    )


def _class_section(ctx: Context, c: ClassView, *, open_: bool) -> Markup:
    e = c.entry
    rank = tag("span", f"#{c.rank}", class_="rank")
    name = tag("span", c.name, class_="name")
    if c.skipped:
        summary = tag(
            "summary", rank, name, badge("skipped", "skip"), tag("span", e.reason, class_="meta")
        )
        body = tag(
            "p",
            "The slicer could not fit this class: ",
            e.reason or "no reason recorded",
            class_="note",
        )
        return tag(
            "details", summary, tag("div", body, class_="body"), class_="cls skipped", id=c.anchor
        )
    n_weak = sum(v.weak for v in c.slices)
    count = f"{len(c.slices)} slice{'s' if len(c.slices) != 1 else ''}" + (
        f" ({n_weak} weak)" if n_weak else ""
    )
    top = c.slices[0].entry if c.slices else None
    meta = f"{count} · class error {fmt_pct(e.error_rate)} on {e.n_fit:,} fitting examples"
    top_cap = top_caption(top) if top is not None else None
    summary = tag(
        "summary",
        rank,
        name,
        tag("span", meta, class_="meta"),
        tag("span", "“", top_cap, "”", class_="meta") if top_cap else "",
        confirmed_badge(check_for(top, top_cap), weak=top.status == "weak") if top else "",
    )
    parts: list[Any] = []
    if not c.slices:
        parts.append(tag("p", "The slicer found no failure slice in this class.", class_="note"))
    else:
        frame, rows = class_frame(ctx, c.index) if c.expanded else (None, np.zeros(0, np.int64))
        parts += [_slice_block(ctx, c, v, frame, rows) for v in c.slices]
        if not c.expanded:
            parts.append(
                tag("p", "Compact section: see the note above “Expand all”.", class_="note")
            )
    return tag(
        "details", summary, tag("div", parts, class_="body"), class_="cls", id=c.anchor, open=open_
    )


def classes_section(ctx: Context, classes: list[ClassView], *, n_open: int) -> Markup:
    """One collapsible section per class (its slices inside), the first ``n_open`` open."""
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
    sections = [_class_section(ctx, c, open_=c.rank <= n_open and bool(c.slices)) for c in classes]
    n_exp = sum(c.expanded for c in classes)
    n_compact = sum(not c.expanded and bool(c.slices) for c in classes)
    compact = (
        f" The other {n_compact:,} classes with slices have compact sections (statistics and "
        "top captions); rebuild with a larger max_classes_expanded (--max-classes-expanded) "
        "to draw theirs."
        if n_compact
        else ""
    )
    intro = tag(
        "p",
        f"Classes in the order of their most severe slice. Mosaics, histograms and caption "
        f"checks are drawn for the {n_exp:,} most severe classes.{compact} Mosaics and "
        f"histograms show {ctx.view_note}. The failure captions name a slice (its mean "
        "embedding minus the class's), the success captions the class's examples least in "
        "it. A caption check measures the audited model's accuracy on the K images nearest "
        "the caption (acc@K) against its accuracy on the whole class; a confirmed caption "
        "points at images the model gets wrong significantly more often (p), by more than "
        "random captions do (null p).",
        class_="note",
    )
    return tag("section", tag("h2", "Classes"), intro, legend, toolbar, sections, id="classes")
