"""Build the self-contained HTML report of a run directory.

The page has no external resources: thumbnails and plots are base64 data URIs, CSS
and the little JavaScript are inline, and a Content-Security-Policy forbids
anything else (an injected ``<script>`` could not run even if it slipped through
the escaping, which it does not: every user string goes through
:func:`failscope.report._html.escape`).
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import logging
import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from failscope._validation import check_int, fail
from failscope.run import REPORT_HTML, Run, atomic_open, load_run

from ._html import Markup, escape, fmt_num, fmt_pct, join, render, tag
from ._images import data_uri, make_readable, resolve_image, thumbnail_uri

logger = logging.getLogger(__name__)

__all__ = ["PLOTS_DIR", "build_report", "parse_retrain_metrics", "severity"]

#: Sub-folder of the run directory that receives the report's PNG plots.
PLOTS_DIR = "plots"

#: run.json timing keys of the stages after discovery (left out of "Discovery took").
_LATER_STAGES = frozenset({"report", "caption", "captions", "evaluate", "retrain", "total"})

_CORE_COLUMNS = frozenset(
    {"id", "path", "split", "label", "pred", "correct", "failure_score", "slice", "confidence"}
)


def severity(entry: Mapping[str, Any]) -> float | None:
    """Severity of one ``slices.json`` entry: ``error_rate_in * size``.

    That is the number of the audited model's errors that fall inside the class's
    slice on the fitting split. None for skipped classes; 0 when the slice is empty
    or its error rate is unknown.
    """
    if entry.get("status", "ok") != "ok":
        return None
    rate, size = entry.get("error_rate_in"), entry.get("size")
    if rate is None or size is None or not math.isfinite(float(rate)):
        return 0.0
    return float(rate) * float(size)


@dataclass
class _ClassView:
    entry: dict[str, Any]
    index: int
    name: str
    severity: float | None
    rank: int = 0
    expanded: bool = False
    anchor: str = ""

    @property
    def skipped(self) -> bool:
        return self.severity is None


@dataclass
class _Context:
    run: Run
    plots_dir: Path
    thumbs_per_mosaic: int
    thumb_size: int
    class_names: list[str]
    examples: Any  # DataFrame or None
    view_split: str | None
    view_note: str
    fit_split: str | None
    image_roots: list[Path]
    meta_columns: list[str]
    plots_written: set[Path] = field(default_factory=set)
    painter: Any = None
    rows_by_class: dict[int, np.ndarray] | None = None


# --------------------------------------------------------------------------- ordering


def _order_classes(slices: Sequence[Mapping[str, Any]], class_names: list[str]) -> list[_ClassView]:
    views = []
    for pos, entry in enumerate(slices):
        idx = int(entry.get("class_index", pos))
        name = entry.get("class_name")
        if name is None:
            name = class_names[idx] if idx < len(class_names) else str(idx)
        views.append(_ClassView(dict(entry), idx, str(name), severity(entry)))

    def key(v: _ClassView) -> tuple[Any, ...]:
        if v.skipped:
            return (1, 0.0, 0.0, v.index)
        cv = v.entry.get("cv_score")
        cv = float(cv) if cv is not None and math.isfinite(float(cv)) else -math.inf
        return (0, -float(v.severity or 0.0), -cv, v.index)

    views.sort(key=key)
    for rank, v in enumerate(views, start=1):
        v.rank = rank
        v.anchor = f"class-{v.index}"
    return views


# --------------------------------------------------------------------------- run facts


def _config(info: Mapping[str, Any]) -> dict[str, Any]:
    cfg = info.get("config")
    return dict(cfg) if isinstance(cfg, Mapping) else {}


def _lookup(info: Mapping[str, Any], *keys: str) -> Any:
    """First non-empty value among ``keys`` in run.json's config, then its top level."""
    cfg = _config(info)
    for source in (cfg, info):
        for key in keys:
            value = source.get(key)
            if value not in (None, "", {}, []):
                return value
    return None


def _describe(value: Any) -> str:
    """A short human description of a config value (string, or dict with a name)."""
    if value is None:
        return "–"
    if isinstance(value, Mapping):
        for key in ("name", "model", "arch", "kind", "type", "path", "root"):
            if value.get(key) not in (None, ""):
                extra = [
                    f"{k}={value[k]}"
                    for k in ("pretrained", "tag", "split", "n_classes")
                    if value.get(k) not in (None, "") and k != key
                ]
                return f"{value[key]}" + (f" ({', '.join(extra)})" if extra else "")
        items = [f"{k}={v}" for k, v in value.items() if not isinstance(v, (Mapping, list))]
        return ", ".join(items[:4]) or "–"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value[:6])
    return str(value)


def _short(value: Any) -> str:
    """A path's last two components (``data/manifest.csv``); other values as given."""
    text = str(value)
    if "/" not in text and "\\" not in text:
        return text
    parts = Path(text).parts
    return "/".join(parts[-2:]) if len(parts) > 1 else text


def _dataset_desc(info: Mapping[str, Any]) -> tuple[str, str | None]:
    """(short, full) description of the dataset, from run.json's ``data`` spec."""
    data = info.get("data")
    world = info.get("world")
    if isinstance(world, Mapping):  # written by `failscope demo`
        plants = world.get("plants") or []
        short = f"built-in world (seed {world.get('seed', '?')}, {len(plants)} plants)"
        return short, "; ".join(str(p) for p in plants) or None
    if isinstance(data, Mapping) and data:
        source = data.get("manifest") or data.get("root") or _config(info).get("data")
        name = data.get("name") or (_short(source) if source else None) or data.get("kind")
        kind = data.get("kind")
        short = f"{name} ({kind})" if kind and kind != name else str(name or "–")
        return short, None if source is None else str(source)
    value = _lookup(info, "dataset", "data")
    return (_short(_describe(value)), _describe(value)) if value else ("–", None)


def _model_desc(info: Mapping[str, Any]) -> tuple[str, str | None]:
    """(short, full) description of the audited model, from run.json's ``model`` spec."""
    model = info.get("model")
    if isinstance(model, Mapping) and model:
        spec = model.get("name") or model.get("spec") or model.get("path")
        kind = model.get("kind")
        if spec is None:
            return str(kind or "–"), None
        short = Path(str(spec)).name + (f" ({kind})" if kind and kind != spec else "")
        return short, str(spec)
    value = _lookup(info, "model", "audited_model", "classifier")
    return (_short(_describe(value)), _describe(value)) if value else ("–", None)


def _clip_desc(info: Mapping[str, Any]) -> tuple[str, str | None]:
    """(short, full) description of the image embedder (CLIP, or precomputed embeddings)."""
    emb = info.get("embeddings")
    clip = emb.get("clip") if isinstance(emb, Mapping) else None
    if isinstance(clip, Mapping) and clip.get("name"):
        name, pre = str(clip["name"]), clip.get("pretrained")
        return _short(name) + (f" ({pre})" if pre else ""), name
    if isinstance(emb, Mapping) and emb.get("source") not in (None, "clip"):
        src = emb.get("file")
        return f"precomputed ({_short(src)})" if src else "precomputed", src
    value = _lookup(info, "clip", "clip_model", "embedder", "backbone")
    if value is None:
        return "–", None
    pre = _config(info).get("clip_pretrained")
    text = _describe(value)
    return _short(text) + (f" ({pre})" if pre and isinstance(value, str) else ""), text


def _when(value: Any) -> str:
    """An ISO timestamp as ``YYYY-MM-DD HH:MM UTC`` (other values as given)."""
    try:
        t = _dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return _describe(value)
    if t.tzinfo is not None:
        return t.astimezone(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return t.strftime("%Y-%m-%d %H:%M")


def _fit_split(info: Mapping[str, Any]) -> str | None:
    value = _lookup(info, "fit_split", "split", "directions_split")
    if isinstance(value, Mapping):
        value = _lookup(value, "fit_split", "split")
    if isinstance(value, (list, tuple)):
        value = value[0] if len(value) == 1 else None
    return str(value) if isinstance(value, str) and value else None


def _image_roots(run: Run) -> list[Path]:
    roots: list[Path] = []
    data = run.info.get("data")
    root = data.get("root") if isinstance(data, Mapping) else None
    if root:
        r = Path(root)
        roots += [r] if r.is_absolute() else [run.path / r, Path.cwd() / r]
    roots += [run.path, Path.cwd()]
    seen, out = set(), []
    for r in roots:
        key = os.path.abspath(r)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def _choose_view_split(
    examples: Any, requested: str, fit_split: str | None
) -> tuple[str | None, str]:
    """Which split the mosaics and histograms show, and a sentence that says so."""
    if examples is None or "split" not in examples.columns:
        return None, "all scored examples"
    splits = [str(s) for s in examples["split"].dropna().unique()]
    if requested not in ("auto", "all"):
        if requested not in splits:
            raise fail(
                f"split {requested!r} is not in this run's examples; "
                f"choose one of {', '.join(sorted(splits)) or '(none)'}, 'auto' or 'all'"
            )
        chosen = requested
    elif requested == "all" or not splits:
        return None, "all scored examples (every split)"
    else:
        held_out = [s for s in ("test", "holdout", "val", "valid", "validation") if s in splits]
        held_out = [s for s in held_out if s != fit_split]
        chosen = held_out[0] if held_out else (fit_split if fit_split in splits else None)
        if chosen is None:
            return None, "all scored examples (every split)"
    if fit_split is not None and chosen == fit_split:
        return chosen, f"the fitting split ({chosen!r}): the examples the directions were fit on"
    if fit_split is not None:
        return chosen, f"the {chosen!r} split, held out from fitting (fitting split: {fit_split!r})"
    return chosen, f"the {chosen!r} split"


# --------------------------------------------------------------------------- pieces


def _plot_uri(png: bytes) -> str:
    return data_uri(png, "image/png")


def _img(uri: str, alt: str, *, css: str = "plot", width: int | None = None) -> Markup:
    return tag("img", src=uri, alt=alt, class_=css, width=width)


def _badge(text: str, kind: str, title: str | None = None) -> Markup:
    return tag("span", text, class_=f"badge {kind}", title=title)


def _bars(rate_in: Any, rate_out: Any) -> Markup:
    def bar(css: str, v: Any) -> Markup:
        width = 0.0 if v is None else max(0.0, min(100.0, 100 * float(v)))
        return tag("div", tag("span", style=f"width:{width:.1f}%"), class_=f"bar {css}")

    return tag(
        "span",
        bar("in", rate_in),
        bar("out", rate_out),
        class_="bars",
    )


def _captions(entry: Mapping[str, Any], kind: str) -> list[dict[str, Any]]:
    caps = entry.get("captions")
    if not isinstance(caps, Mapping):
        return []
    out = caps.get(kind) or []
    return [c for c in out if isinstance(c, Mapping) and c.get("text") is not None]


def _top_caption(entry: Mapping[str, Any]) -> str | None:
    caps = _captions(entry, "failure")
    return str(caps[0]["text"]) if caps else None


def _checks(entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    checks = entry.get("caption_checks")
    if not isinstance(checks, list):
        return []
    return [c for c in checks if isinstance(c, Mapping)]


def _acc_at(check: Mapping[str, Any]) -> dict[int, float | None]:
    """``{K: accuracy of the K images nearest the caption}`` from a caption check."""
    out: dict[int, float | None] = {}
    k, acc = check.get("k"), check.get("acc_at_k")
    if isinstance(acc, Mapping):
        for kk, v in acc.items():
            try:
                out[int(kk)] = None if v is None else float(v)
            except (TypeError, ValueError):
                continue
    elif isinstance(k, list) and isinstance(acc, list) and len(k) == len(acc):
        out.update(
            {int(kk): (None if v is None else float(v)) for kk, v in zip(k, acc, strict=True)}
        )
    elif isinstance(k, (int, float)) and isinstance(acc, (int, float)):
        out[int(k)] = float(acc)
    curve = check.get("curve")
    if isinstance(curve, Mapping):
        ck, ca = curve.get("k") or [], curve.get("acc") or []
        for kk, v in zip(ck, ca, strict=False):
            if int(kk) in (25, 50, 100) and int(kk) not in out:
                out[int(kk)] = None if v is None else float(v)
    return out


def _check_for(entry: Mapping[str, Any], text: str | None) -> dict[str, Any] | None:
    for check in _checks(entry):
        if text is not None and check.get("text") == text:
            return check
    return None


def _confirmed_badge(check: Mapping[str, Any] | None) -> Markup:
    if check is None or check.get("confirmed") is None:
        return Markup("")
    if check["confirmed"]:
        return _badge(
            "confirmed", "ok", "images nearest the caption are less accurate than the class"
        )
    return _badge("unconfirmed", "no", "images nearest the caption are not clearly worse")


# --------------------------------------------------------------------------- header


def _header(
    run: Run, views: list[_ClassView], examples: Any, *, n_expanded: int
) -> tuple[Markup, Markup]:
    info = run.info
    dataset, model, clip = _dataset_desc(info), _model_desc(info), _clip_desc(info)
    n_examples = len(examples) if examples is not None else _lookup(info, "n_examples")
    n_ok = sum(not v.skipped for v in views)
    n_skipped = len(views) - n_ok
    created = _lookup(info, "created", "created_at", "finished", "finished_at", "time", "date")
    timings = info.get("timings")
    total = None
    if isinstance(timings, Mapping):
        secs = [
            float(v)
            for k, v in timings.items()
            if k not in _LATER_STAGES and isinstance(v, (int, float)) and not isinstance(v, bool)
        ]
        total = timings.get("total", sum(secs) if secs else None)
    n_text = fmt_num(n_examples) if isinstance(n_examples, int) else _describe(n_examples)
    cards = [
        ("Dataset", *dataset),
        ("Audited model", *model),
        ("CLIP", *clip),
        ("Examples", n_text, None),
        ("Classes", f"{len(run.class_names or views):,}", None),
        ("Slices fit", f"{n_ok:,}" + (f" ({n_skipped:,} skipped)" if n_skipped else ""), None),
        ("Created", _when(created) if created else "–", None),
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


def _skipped_inputs(run: Run, *, limit: int = 1000) -> Markup:
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


# --------------------------------------------------------------------------- overview


def _overview(views: list[_ClassView], ctx: _Context, plot: Markup) -> Markup:
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
                        _badge("skipped", "skip"),
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
        top = _top_caption(e)
        check = _check_for(e, top)
        cap = (
            [top, " ", _confirmed_badge(check)]
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
                    _bars(rin, rout),
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


# --------------------------------------------------------------------------- class sections


def _class_frame(ctx: _Context, index: int) -> Any:
    """The examples of class ``index`` in the shown split (rows located once, then cached)."""
    df = ctx.examples
    if df is None or "label" not in df.columns:
        return None
    if ctx.rows_by_class is None:
        labels = df["label"].to_numpy()
        keep = np.ones(len(df), bool)
        if ctx.view_split is not None:
            keep = df["split"].astype(str).to_numpy() == ctx.view_split
        rows = np.flatnonzero(keep)
        order = np.argsort(labels[rows], kind="stable")
        rows, sorted_labels = rows[order], labels[rows][order]
        uniq, starts = np.unique(sorted_labels, return_index=True)
        bounds = [*starts[1:], len(rows)]
        ctx.rows_by_class = {
            int(c): rows[a:b] for c, a, b in zip(uniq, starts, bounds, strict=True)
        }
    return df.iloc[ctx.rows_by_class.get(index, np.zeros(0, np.int64))]


def _thumb(ctx: _Context, row: Mapping[str, Any]) -> Markup:
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
        _img(uri, alt, css="", width=None)
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


def _mosaics(ctx: _Context, frame: Any) -> Markup:
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
        head = tag(
            "h3", title, " ", _badge(f"{n_bad}/{len(idx)} wrong", "bad" if n_bad else "skip")
        )
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
        caps = _captions(entry, kind)[:n]
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
    checks = _checks(entry)
    if not checks:
        return Markup("")
    accs = [_acc_at(c) for c in checks]
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
                tag("td", _confirmed_badge(c) or "–"),
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


def _class_plots(ctx: _Context, v: _ClassView, frame: Any) -> Markup:
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
                _img(_plot_uri(png), f"failure score histogram for {v.name}"),
            )
        )
    checks = [c for c in _checks(v.entry) if isinstance(c.get("curve"), Mapping)]
    if checks:
        path = ctx.plots_dir / f"class-{v.index:04d}-captions.png"
        png = ctx.painter.accuracy_curves(checks, path=path)
        ctx.plots_written.add(path)
        parts.append(
            tag(
                "div",
                tag("h3", "Accuracy near the captions"),
                tag("p", "accuracy of the top-K images nearest each caption, vs K", class_="note"),
                _img(_plot_uri(png), f"caption accuracy curve for {v.name}"),
            )
        )
    return tag("div", parts, class_="grid2") if parts else Markup("")


def _class_stats(v: _ClassView) -> Markup:
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


def _class_section(ctx: _Context, v: _ClassView, *, open_: bool) -> Markup:
    e = v.entry
    if v.skipped:
        summary = tag(
            "summary",
            tag("span", f"#{v.rank}", class_="rank"),
            tag("span", v.name, class_="name"),
            _badge("skipped", "skip"),
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
    top = _top_caption(e)
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
        _confirmed_badge(_check_for(e, top)),
    )
    parts: list[Any] = [_class_stats(v), _caption_lists(e, n=5 if v.expanded else 3)]
    if v.expanded:
        parts.append(_checks_table(e))
        frame = _class_frame(ctx, v.index)
        parts.append(_class_plots(ctx, v, frame))
        parts.append(_mosaics(ctx, frame))
    else:
        parts.append(tag("p", "Compact section: see the note above “Expand all”.", class_="note"))
    return tag(
        "details", summary, tag("div", parts, class_="body"), class_="cls", id=v.anchor, open=open_
    )


def _classes(ctx: _Context, views: list[_ClassView], *, n_open: int) -> Markup:
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


# --------------------------------------------------------------------------- retrain


_OVERALL_KEYS = ("test_accuracy", "overall", "overall_accuracy", "accuracy", "acc")
_SLICES_KEYS = ("slice_accuracy", "slices", "per_slice", "slice_accuracies", "per_slice_accuracy")
_BASELINES = ("audited", "erm", "baseline", "original", "before")


def _number(v: Any) -> float | None:
    if isinstance(v, Mapping):
        v = v.get("accuracy", v.get("acc"))
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v)):
        return float(v)
    return None


def _accs(v: Any) -> dict[str, float | None]:
    """``{slice: accuracy}`` from a mapping or a list of ``{"slice"/"id"/"name", "accuracy"}``."""
    if isinstance(v, Mapping):
        return {str(k): _number(a) for k, a in v.items()}
    out: dict[str, float | None] = {}
    for item in v if isinstance(v, list) else []:
        if isinstance(item, Mapping):
            name = item.get("slice", item.get("id", item.get("name")))
            if name is not None:
                out[str(name)] = _number(item)
    return out


def _slice_groups(d: Mapping[str, Any]) -> dict[str, dict[str, float | None]]:
    for key in _SLICES_KEYS:
        v = d.get(key)
        if isinstance(v, Mapping) and v and all(isinstance(x, Mapping) for x in v.values()):
            if all(_number(x) is None for x in v.values()):  # {group: {slice: acc}}
                return {str(g): _accs(x) for g, x in v.items()}
        if isinstance(v, (Mapping, list)) and v:
            return {"slices": _accs(v)}
    return {}


def parse_retrain_metrics(metrics: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Normalise ``retrain/metrics.json`` for the report.

    Reads ``{"methods": {name: {...}}}`` (as written by ``failscope retrain``) or a bare
    ``{name: {...}}``. Each method has an overall accuracy (``test_accuracy``, or
    ``overall``/``accuracy``) and per-slice accuracies under ``slice_accuracy``: either
    ``{group: {slice: acc}}`` (groups such as ``"discovered"`` and ``"planted"``) or a
    flat ``{slice: acc}``. ``mean_<group>_accuracy``/``worst_<group>_accuracy`` and
    ``worst_slice_accuracy`` are used when present, else computed.

    Returns
    -------
    dict
        ``{method: {"overall": float|None, "worst": float|None,
        "groups": {group: {"mean", "worst", "slices": {slice: acc}}}}}``, in file order.
    """
    methods = metrics.get("methods", metrics)
    if isinstance(methods, list):
        methods = {
            str(m.get("method", m.get("name", i))): m
            for i, m in enumerate(methods)
            if isinstance(m, Mapping)
        }
    out: dict[str, dict[str, Any]] = {}
    if not isinstance(methods, Mapping):
        return out
    for name, d in methods.items():
        if not isinstance(d, Mapping):
            continue
        overall = next(
            (_number(d.get(k)) for k in _OVERALL_KEYS if _number(d.get(k)) is not None), None
        )
        groups = {}
        for g, accs in _slice_groups(d).items():
            vals = [a for a in accs.values() if a is not None]
            mean = _number(d.get(f"mean_{g}_accuracy"))
            worst = _number(d.get(f"worst_{g}_accuracy"))
            groups[g] = {
                "mean": mean if mean is not None else (float(np.mean(vals)) if vals else None),
                "worst": worst if worst is not None else (min(vals) if vals else None),
                "slices": accs,
            }
        worst = _number(d.get("worst_slice_accuracy", d.get("worst_slice")))
        if worst is None:
            ws = [g["worst"] for g in groups.values() if g["worst"] is not None]
            worst = min(ws) if ws else None
        if overall is None and worst is None and not groups:
            continue
        out[str(name)] = {"overall": overall, "worst": worst, "groups": groups}
    return out


def _baseline_first(methods: dict[str, dict[str, Any]], preferred: Any) -> list[str]:
    names = list(methods)
    for cand in [preferred, *_BASELINES]:
        if isinstance(cand, str) and cand in methods:
            names.remove(cand)
            return [cand, *names]
    return names


def _retrain(ctx: _Context, metrics: Mapping[str, Any], views: list[_ClassView]) -> Markup:
    from . import plots

    methods = parse_retrain_metrics(metrics)
    if not methods:
        msg = metrics.get("message") or "retrain/metrics.json holds no per-method accuracies."
        return tag("section", tag("h2", "Retraining"), tag("p", msg, class_="empty"), id="retrain")
    order = _baseline_first(methods, metrics.get("baseline"))
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
                    _badge("before", "info") if i == 0 and len(order) > 1 else "",
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
                _img(_plot_uri(png), f"per-slice accuracy before and after retraining, {title}"),
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


# --------------------------------------------------------------------------- evaluation


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
    return _badge("yes", "ok") if value else _badge("no", "bad")


def _plants_table(rows: list[Mapping[str, Any]], ks: list[int], views: list[_ClassView]) -> Markup:
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


def _evaluation(evaluation: Mapping[str, Any], views: list[_ClassView]) -> Markup:
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


# --------------------------------------------------------------------------- run details


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


def _run_details(run: Run) -> Markup:
    info = run.info
    shown = {k: v for k, v in info.items() if k not in ("classes", "skipped")}
    items = _flatten(shown)[:400]
    rows = [
        tag(
            "tr",
            tag("td", k, class_="mono"),
            tag("td", _describe(v) if not isinstance(v, str) else v, class_="mono"),
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


# --------------------------------------------------------------------------- page


def _static(name: str) -> str:
    return resources.files("failscope.report").joinpath(name).read_text(encoding="utf-8")


def _page(*, title: str, body: Markup) -> str:
    from failscope import __version__

    script = _static("report.js")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    csp = (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"
    )
    return render(
        _static("page.html"),
        title=title,
        csp=csp,
        version=__version__,
        css=Markup(_static("report.css")),
        body=body,
        script=Markup(script),
    )


def _load_examples(run: Run) -> Any:
    try:
        return run.examples
    except Exception as exc:  # a report of a partial run is still useful
        logger.warning(
            "report: cannot read examples.parquet (%s); thumbnails and plots are left out", exc
        )
        return None


def build_report(
    run: Run | str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] | None = None,
    max_classes_expanded: int = 50,
    thumbs_per_mosaic: int = 16,
    thumb_size: int = 80,
    open_classes: int = 3,
    split: str = "auto",
) -> Path:
    """Write the self-contained HTML report of a run directory.

    Parameters
    ----------
    run : Run or path
        The run (or its directory).
    out : path, optional
        Where to write the HTML; default ``RUN/report.html``.
    max_classes_expanded : int, default 50
        Thumbnails and plots are drawn for this many classes, most severe first; the
        rest get a compact section (stats and captions only).
    thumbs_per_mosaic : int, default 16
        Thumbnails in each of a class's two mosaics.
    thumb_size : int, default 80
        Thumbnail side in pixels.
    open_classes : int, default 3
        Class sections open when the page loads (the rest are collapsed).
    split : str, default "auto"
        Split the mosaics and histograms show: ``"auto"`` (the held-out test split if
        there is one, else the fitting split), ``"all"``, or a split name.

    Returns
    -------
    Path
        The written report. PNG plots are also written to ``RUN/plots/``.
    """
    t0 = time.perf_counter()
    if not isinstance(run, Run):
        run = load_run(run)
    max_classes_expanded = check_int(max_classes_expanded, name="max_classes_expanded", low=0)
    thumbs_per_mosaic = check_int(thumbs_per_mosaic, name="thumbs_per_mosaic", low=1, high=256)
    thumb_size = check_int(thumb_size, name="thumb_size", low=16, high=512)
    open_classes = check_int(open_classes, name="open_classes", low=0)
    out_path = Path(out) if out is not None else run.path / REPORT_HTML

    info = run.info
    class_names = [str(c) for c in info.get("classes", [])]
    slices = run.slices if (run.path / "slices.json").is_file() else []
    views = _order_classes(slices, class_names)
    for v in views:
        v.expanded = not v.skipped and v.rank <= max_classes_expanded
    examples = _load_examples(run)
    fit_split = _fit_split(info)
    view_split, view_note = _choose_view_split(examples, split, fit_split)
    meta_cols = (
        []
        if examples is None
        else [
            c
            for c in examples.columns
            if c not in _CORE_COLUMNS and not str(c).startswith("planted_")
        ][:8]
    )
    ctx = _Context(
        run=run,
        plots_dir=run.path / PLOTS_DIR,
        thumbs_per_mosaic=thumbs_per_mosaic,
        thumb_size=thumb_size,
        class_names=class_names,
        examples=examples,
        view_split=view_split,
        view_note=view_note,
        fit_split=fit_split,
        image_roots=_image_roots(run),
        meta_columns=meta_cols,
    )

    n_expanded = sum(v.expanded for v in views)
    ranked = [v for v in views if not v.skipped][:20]
    severity_html = Markup("")
    if ranked:
        from . import plots

        path = ctx.plots_dir / "severity.png"
        png = plots.severity_plot(
            [v.name for v in ranked], [v.severity or 0.0 for v in ranked], path=path
        )
        ctx.plots_written.add(path)
        severity_html = _img(_plot_uri(png), "severity of the most severe classes")

    header, cards = _header(run, views, examples, n_expanded=n_expanded)
    parts = [
        cards,
        tag("div", _skipped_inputs(run), class_="skipped-inputs"),
        _overview(views, ctx, severity_html)
        if views
        else tag(
            "section",
            tag("h2", "Overview"),
            tag("p", "slices.json is missing or empty.", class_="empty"),
            id="overview",
        ),
        _classes(ctx, views, n_open=open_classes),
    ]
    metrics = run.retrain_metrics
    if metrics is not None:
        parts.append(_retrain(ctx, metrics, views))
    evaluation = run.evaluation
    if evaluation is not None:
        parts.append(_evaluation(evaluation, views))
    parts.append(_run_details(run))
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    from failscope import __version__

    parts.append(tag("footer", f"failscope {__version__} · report built {stamp}"))
    title = f"failscope report: {_dataset_desc(info)[0]}"
    html_text = _page(title=title, body=header + tag("main", parts))
    with atomic_open(out_path, "w") as fh:
        fh.write(html_text)
    make_readable(out_path)
    _remove_stale_plots(ctx)
    seconds = time.perf_counter() - t0
    timings = info.get("timings")
    if isinstance(timings, Mapping):  # record this stage's time, as every stage does
        run.update_info(timings={**timings, "report": round(seconds, 3)})
    logger.info(
        "report: %s (%.1f MB, %d classes, %d expanded) in %.1f s",
        out_path,
        out_path.stat().st_size / 1e6,
        len(views),
        n_expanded,
        seconds,
    )
    return out_path


def _remove_stale_plots(ctx: _Context) -> None:
    """Delete plot files an earlier build wrote that this build did not (e.g. fewer classes)."""
    if not ctx.plots_dir.is_dir():
        return
    for p in ctx.plots_dir.glob("*.png"):
        if p not in ctx.plots_written and p.name.startswith(("class-", "retrain", "severity")):
            p.unlink(missing_ok=True)
