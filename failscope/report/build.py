"""Build the self-contained HTML report of a run directory.

The page has no external resources: thumbnails and plots are base64 data URIs, CSS
and the little JavaScript are inline, and a Content-Security-Policy forbids
anything else (an injected ``<script>`` could not run even if it slipped through
the escaping, which it does not: every user string goes through
:func:`failscope.report._html.escape`).

Files: ``RUN/report.html`` and the PNGs under ``RUN/plots/`` are written through
:meth:`Run.output` and recorded with the run's files, so failscope only ever
replaces or deletes files it wrote: a rebuild removes the report's own plots that
it no longer draws, and never touches any other file of ``plots/`` (a file of the
user's, an attribution mosaic). See :func:`build_report` for ``out``.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import re
import time
from pathlib import Path

from failscope._validation import check_int, fail
from failscope.review.annotations import annotations_by_slice
from failscope.run import PLOTS_DIR, REPORT_HTML, Run, atomic_open, load_run, run_lock
from failscope.run.schema import EXAMPLE_COLUMNS

from ._classes import classes_section
from ._details import run_details_section
from ._evaluation import evaluation_section
from ._html import Markup, tag
from ._overview import overview_section, page_header, warnings_panel
from ._page import render_page
from ._pieces import img_tag, plot_uri
from ._retrain import retrain_section
from ._runinfo import choose_view_split, dataset_desc, image_roots
from ._views import Context, order_views

logger = logging.getLogger(__name__)

__all__ = ["PLOTS_DIR", "build_report"]

#: The PNGs the report writes under RUN/plots/ (only these may it replace or delete).
_OWN_PLOT = re.compile(
    rf"^{PLOTS_DIR}/(severity|slice-[A-Za-z0-9_.-]+-scores|retrain-[A-Za-z0-9_.-]+)\.png$"
)
#: Bytes of a report's head that hold its generator tag.
_HEAD_BYTES = 4096
_SEVERITY_BARS = 20


def _is_report(path: Path) -> bool:
    """Whether ``path`` is an HTML report failscope wrote (its generator tag)."""
    with open(path, "rb") as fh:
        head = fh.read(_HEAD_BYTES)
    return b'<meta name="generator" content="failscope ' in head


def _html_target(run: Run, out: str | os.PathLike[str] | None) -> tuple[Path, str | None]:
    """Where the HTML goes, and its path relative to the run when it is a run file.

    Inside the run directory, ``Run.output`` decides (only a file failscope wrote is
    replaced). Elsewhere, an existing file is replaced only if it is a failscope report.
    """
    target, rel = run.target(out, REPORT_HTML, what="the path of the HTML file to write")
    if rel is not None:
        return target, rel
    if target.exists() and not _is_report(target):
        raise fail(
            f"--out {target} exists and is not a failscope report; move it away or choose "
            "another path (failscope never overwrites files it did not write)"
        )
    return target, None


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
        Where to write the HTML; default ``RUN/report.html``. Inside the run directory
        the file must be new or one failscope wrote there; elsewhere an existing file
        is replaced only if it is a failscope report (else an ``InputError``). The PNG
        plots always go to ``RUN/plots/``.
    max_classes_expanded : int, default 50
        Mosaics and plots are drawn for this many classes, in the order of their most
        severe slice; the rest get a compact section (statistics and captions only).
    thumbs_per_mosaic : int, default 16
        Thumbnails in each slice's mosaic of members.
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
        The written report.

    Raises
    ------
    InputError
        A bad argument, or a file in the way that failscope did not write.
    """
    t0 = time.perf_counter()
    if not isinstance(run, Run):
        run = load_run(run)
    max_classes_expanded = check_int(max_classes_expanded, name="max_classes_expanded", low=0)
    thumbs_per_mosaic = check_int(thumbs_per_mosaic, name="thumbs_per_mosaic", low=1, high=256)
    thumb_size = check_int(thumb_size, name="thumb_size", low=16, high=512)
    open_classes = check_int(open_classes, name="open_classes", low=0)
    with run_lock(run.path):
        out_path, out_rel = _html_target(run, out)
        examples = run.examples
        view_split, view_note = choose_view_split(examples, split, run.fit_split)
        ctx = Context(
            run=run,
            thumbs_per_mosaic=thumbs_per_mosaic,
            thumb_size=thumb_size,
            class_names=run.class_names,
            examples=examples,
            scores=run.slice_score_matrix(),
            view_split=view_split,
            view_note=view_note,
            image_roots=image_roots(run),
            meta_columns=[
                c
                for c in examples.columns
                if c not in EXAMPLE_COLUMNS and not str(c).startswith("planted_")
            ][:8],
            annotations=annotations_by_slice(run),
        )
        try:
            html_text = _page(run, ctx, max_classes_expanded, open_classes)
            with atomic_open(out_path, "w") as fh:
                fh.write(html_text)
        except BaseException:  # the plots written so far are failscope's all the same
            run.add_files(*ctx.written)
            raise
        if out_rel is not None:
            ctx.written.append(out_rel)
        _record_files(run, ctx.written, seconds=time.perf_counter() - t0)
    logger.info(
        "report: %s (%.1f MB, %d slices in %d classes) in %.1f s",
        out_path,
        out_path.stat().st_size / 1e6,
        len(run.slices),
        len(run.classes),
        time.perf_counter() - t0,
    )
    return out_path


def _page(run: Run, ctx: Context, max_classes_expanded: int, open_classes: int) -> str:
    """The whole HTML page; plots are written (through ``ctx.output``) on the way."""
    slices, classes = order_views(run.classes, run.slices)
    for c in classes:
        c.expanded = bool(c.slices) and c.rank <= max_classes_expanded
    n_expanded = sum(c.expanded for c in classes)
    ranked = [v for v in slices if not v.weak][:_SEVERITY_BARS]
    severity_html = Markup("")
    if ranked:
        from . import plots

        png = plots.severity_plot(
            [f"{v.entry.class_name} · {v.entry.id}" for v in ranked],
            [v.entry.n_errors_in for v in ranked],
            path=ctx.output(f"{PLOTS_DIR}/severity.png"),
        )
        severity_html = img_tag(plot_uri(png), "severity of the most severe slices")
    metrics = run.retrain_metrics
    evaluation = run.evaluation
    nav = [("#overview", "Overview"), ("#classes", "Classes")]
    nav += [("#retrain", "Retraining")] if metrics is not None else []
    nav += [("#evaluation", "Planted slices")] if evaluation is not None else []
    nav.append(("#run", "Run details"))
    header, cards = page_header(run, slices, classes, n_expanded=n_expanded, nav=nav)
    parts = [
        cards,
        warnings_panel(run),
        overview_section(slices, classes, fit_split=run.fit_split, plot=severity_html),
        classes_section(ctx, classes, n_open=open_classes),
    ]
    if metrics is not None:
        parts.append(retrain_section(ctx, metrics, slices))
    if evaluation is not None:
        parts.append(evaluation_section(evaluation, classes, slices))
    parts.append(run_details_section(run))
    from failscope import __version__

    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(tag("footer", f"failscope {__version__} · report built {stamp}"))
    title = f"failscope report: {dataset_desc(run.info)[0]}"
    return render_page(title=title, body=header + tag("main", parts))


def _record_files(run: Run, written: list[str], *, seconds: float) -> None:
    """List what this build wrote as the run's, delete the report's own plots it no
    longer draws (and only those), and record the report's time."""
    stale = [f for f in run.info.files if _OWN_PLOT.match(f) and f not in written]
    for rel in stale:
        (run.path / rel).unlink(missing_ok=True)
    files = tuple(dict.fromkeys([*(f for f in run.info.files if f not in stale), *written]))
    timings = {**run.info.timings, "report": round(seconds, 3)}
    run.update_info(files=files, timings=timings)
