"""Build the self-contained HTML report of a run directory.

The page has no external resources: thumbnails and plots are base64 data URIs, CSS
and the little JavaScript are inline, and a Content-Security-Policy forbids
anything else (an injected ``<script>`` could not run even if it slipped through
the escaping, which it does not: every user string goes through
:func:`failscope.report._html.escape`).
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path

from failscope._validation import check_int
from failscope.run import REPORT_HTML, Run, atomic_open, load_run

from ._classes import classes_section
from ._evaluation import evaluation_section
from ._html import Markup, tag
from ._images import make_readable
from ._metrics import parse_retrain_metrics
from ._overview import overview_section, page_header, run_details_section, skipped_inputs
from ._page import render_page
from ._pieces import img_tag, plot_uri
from ._retrain import retrain_section
from ._runinfo import (
    choose_view_split,
    dataset_desc,
    fitting_split,
    image_roots,
    load_examples,
)
from ._views import Context, order_classes, severity

logger = logging.getLogger(__name__)

__all__ = ["PLOTS_DIR", "build_report", "parse_retrain_metrics", "severity"]


#: Sub-folder of the run directory that receives the report's PNG plots.
PLOTS_DIR = "plots"


_CORE_COLUMNS = frozenset(
    {"id", "path", "split", "label", "pred", "correct", "failure_score", "slice", "confidence"}
)


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
    views = order_classes(slices, class_names)
    for v in views:
        v.expanded = not v.skipped and v.rank <= max_classes_expanded
    examples = load_examples(run)
    fit_split = fitting_split(info)
    view_split, view_note = choose_view_split(examples, split, fit_split)
    meta_cols = (
        []
        if examples is None
        else [
            c
            for c in examples.columns
            if c not in _CORE_COLUMNS and not str(c).startswith("planted_")
        ][:8]
    )
    ctx = Context(
        run=run,
        plots_dir=run.path / PLOTS_DIR,
        thumbs_per_mosaic=thumbs_per_mosaic,
        thumb_size=thumb_size,
        class_names=class_names,
        examples=examples,
        view_split=view_split,
        view_note=view_note,
        fit_split=fit_split,
        image_roots=image_roots(run),
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
        severity_html = img_tag(plot_uri(png), "severity of the most severe classes")

    header, cards = page_header(run, views, examples, n_expanded=n_expanded)
    parts = [
        cards,
        tag("div", skipped_inputs(run), class_="skipped-inputs"),
        overview_section(views, ctx, severity_html)
        if views
        else tag(
            "section",
            tag("h2", "Overview"),
            tag("p", "slices.json is missing or empty.", class_="empty"),
            id="overview",
        ),
        classes_section(ctx, views, n_open=open_classes),
    ]
    metrics = run.retrain_metrics
    if metrics is not None:
        parts.append(retrain_section(ctx, metrics, views))
    evaluation = run.evaluation
    if evaluation is not None:
        parts.append(evaluation_section(evaluation, views))
    parts.append(run_details_section(run))
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    from failscope import __version__

    parts.append(tag("footer", f"failscope {__version__} · report built {stamp}"))
    title = f"failscope report: {dataset_desc(info)[0]}"
    html_text = render_page(title=title, body=header + tag("main", parts))
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


def _remove_stale_plots(ctx: Context) -> None:
    """Delete plot files an earlier build wrote that this build did not (e.g. fewer classes)."""
    if not ctx.plots_dir.is_dir():
        return
    for p in ctx.plots_dir.glob("*.png"):
        if p not in ctx.plots_written and p.name.startswith(("class-", "retrain", "severity")):
            p.unlink(missing_ok=True)
