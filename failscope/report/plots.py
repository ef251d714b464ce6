"""The report's plots, drawn with matplotlib's Agg canvas and saved as PNG files.

matplotlib is imported inside the functions (never pyplot, so no global backend or
figure state is touched). Each function writes its PNG atomically and returns the
bytes, which the report embeds as a data URI.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from failscope.run import atomic_open

__all__ = ["PALETTE", "SlicePlots", "retrain_plot", "severity_plot"]

#: Colours shared by the page's CSS and the plots.
PALETTE = {
    "wrong": "#d1495b",
    "correct": "#2a9d8f",
    "accent": "#3d5a80",
    "muted": "#8d99ae",
    "ink": "#1f2933",
    "grid": "#e4e7eb",
}
_SERIES = [
    "#8d99ae", "#3d5a80", "#2a9d8f", "#e9a03b", "#d1495b",
    "#6c4f9e", "#5c946e", "#b5651d", "#1b263b", "#c77dff",
]  # fmt: skip
_DPI = 100


def _text(s: Any, limit: int = 48) -> str:
    """Plain text for a matplotlib label: no mathtext, bounded length."""
    s = " ".join(str(s).split())
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return s.replace("\\", "\\\\").replace("$", r"\$")


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig


def _style(ax: Any) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color(PALETTE["muted"])
    ax.tick_params(colors=PALETTE["ink"], labelsize=8)
    ax.grid(True, color=PALETTE["grid"], linewidth=0.8)
    ax.set_axisbelow(True)


def _save(fig: Any, path: Path | None) -> bytes:
    """Render ``fig`` to a 64-colour PNG (a quarter of the size of matplotlib's own)."""
    from PIL import Image

    canvas = fig.canvas
    canvas.draw()
    w, h = canvas.get_width_height(physical=True)
    rgb = Image.frombuffer("RGBA", (w, h), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    small = rgb.convert("RGB").quantize(colors=64, method=Image.Quantize.FASTOCTREE)
    buf = io.BytesIO()
    small.save(buf, format="PNG", optimize=True)
    data = buf.getvalue()
    if path is not None:
        with atomic_open(path, "wb") as fh:
            fh.write(data)
    return data


class SlicePlots:
    """Draws the per-slice score histograms, reusing one figure across slices.

    Building a matplotlib figure (axes, ticks, legend) costs more than drawing it,
    so the report keeps one histogram figure and only updates its data for each
    slice: about twice as fast as fresh figures.
    """

    def __init__(self) -> None:
        self._hist: dict[str, Any] | None = None

    # -- slice score histogram
    def _hist_fig(self) -> dict[str, Any]:
        if self._hist is None:
            fig = _figure(4.2, 2.4)
            ax = fig.add_subplot()
            _style(ax)
            edges = np.linspace(0, 1, 26)
            zeros = np.zeros(25)
            ok = ax.stairs(zeros, edges, fill=True, color=PALETTE["correct"], label="correct")
            bad = ax.stairs(zeros, edges, baseline=zeros, fill=True, color=PALETTE["wrong"])
            bad.set_label("wrong")
            line = ax.axvline(0, color=PALETTE["ink"], linestyle="--", linewidth=1)
            note = ax.annotate(
                "slice →",
                xy=(0, 1),
                xycoords=("data", "axes fraction"),
                xytext=(3, -10),
                textcoords="offset points",
                fontsize=7,
                color=PALETTE["ink"],
            )
            empty = ax.text(
                0.5, 0.5, "no scored examples", ha="center", va="center", transform=ax.transAxes
            )
            legend = ax.legend(
                fontsize=7,
                frameon=False,
                loc="lower left",
                bbox_to_anchor=(0, 1.0),
                ncols=2,
                borderaxespad=0.2,
            )
            from matplotlib.ticker import MaxNLocator

            ax.yaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
            ax.set_xlabel("slice score", fontsize=8)
            ax.set_ylabel("examples", fontsize=8)
            fig.subplots_adjust(left=0.13, right=0.98, bottom=0.19, top=0.88)
            self._hist = dict(
                fig=fig, ax=ax, ok=ok, bad=bad, line=line, note=note, empty=empty, legend=legend
            )
        return self._hist

    def score_histogram(
        self,
        scores: np.ndarray,
        correct: np.ndarray,
        *,
        cutoff: float | None = None,
        path: Path | None = None,
    ) -> bytes:
        """Histogram of one slice's scores, correct vs wrong predictions, as PNG bytes.

        Parameters
        ----------
        scores : ndarray of float, shape (n,)
            The slice's scores of its class's examples (non-finite values are dropped).
        correct : ndarray of bool, shape (n,)
            Whether the audited model got each example right.
        cutoff : float, optional
            Where the slice starts; drawn as a dashed line when finite.
        path : Path, optional
            Where to write the PNG as well.
        """
        h = self._hist_fig()
        scores = np.asarray(scores, dtype=float)
        correct = np.asarray(correct, dtype=bool)
        keep = np.isfinite(scores)
        scores, correct = scores[keep], correct[keep]
        has = scores.size > 0
        show_cut = has and cutoff is not None and bool(np.isfinite(cutoff))
        lo, hi = (float(scores.min()), float(scores.max())) if has else (0.0, 1.0)
        if show_cut:
            lo, hi = min(lo, float(cutoff)), max(hi, float(cutoff))
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, 26)
        n_ok, _ = np.histogram(scores[correct], edges)
        n_bad, _ = np.histogram(scores[~correct], edges)
        h["ok"].set_data(n_ok, edges, baseline=0)
        h["bad"].set_data(n_ok + n_bad, edges, baseline=n_ok)
        for artist in (h["ok"], h["bad"], h["legend"]):
            artist.set_visible(has)
        h["empty"].set_visible(not has)
        texts = h["legend"].get_texts()
        texts[0].set_text(f"correct ({int(n_ok.sum())})")
        texts[1].set_text(f"wrong ({int(n_bad.sum())})")
        h["line"].set_visible(show_cut)
        h["note"].set_visible(show_cut)
        if show_cut:
            h["line"].set_xdata([cutoff, cutoff])
            h["note"].xy = (float(cutoff), 1)
        pad = 0.02 * (hi - lo)
        h["ax"].set_xlim(lo - pad, hi + pad)
        h["ax"].set_ylim(0, max(1, int((n_ok + n_bad).max(initial=0))) * 1.15)
        return _save(h["fig"], path)


def severity_plot(
    names: Sequence[str], severities: Sequence[float], *, path: Path | None = None
) -> bytes:
    """Horizontal bars of the most severe slices (given in order), as PNG bytes."""
    n = len(names)
    fig = _figure(6.0, 0.6 + 0.22 * max(n, 1))
    ax = fig.add_subplot()
    _style(ax)
    ax.grid(False, axis="y")
    y = np.arange(n)
    ax.barh(y, list(severities), color=PALETTE["wrong"], height=0.7)
    ax.set_yticks(y, [_text(s, 32) for s in names])
    ax.invert_yaxis()
    ax.set_xlabel("severity (errors inside the slice)", fontsize=8)
    fig.tight_layout(pad=0.4)
    return _save(fig, path)


def retrain_plot(
    slice_names: Sequence[str],
    methods: Mapping[str, Sequence[float | None]],
    *,
    path: Path | None = None,
) -> bytes:
    """Grouped bars: per-slice accuracy for each method (first = before), as PNG bytes.

    Parameters
    ----------
    slice_names : sequence of str, length s
        Slice labels along the x axis.
    methods : mapping of str to sequence of float or None, each of length s
        Accuracy per slice for each method; None leaves a gap.
    path : Path, optional
        Where to write the PNG as well.
    """
    s, m = len(slice_names), max(len(methods), 1)
    fig = _figure(min(2.0 + 0.5 * s * m / 2, 11.0), 2.8)
    ax = fig.add_subplot()
    _style(ax)
    ax.grid(False, axis="x")
    x = np.arange(s)
    width = 0.8 / m
    for i, (method, values) in enumerate(methods.items()):
        vals = [np.nan if v is None else float(v) for v in values]
        ax.bar(
            x - 0.4 + width * (i + 0.5),
            vals,
            width=width,
            color=_SERIES[i % len(_SERIES)],
            label=_text(method, 24),
        )
    ax.set_xticks(x, [_text(n, 18) for n in slice_names], rotation=30 if s > 6 else 0, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("slice accuracy", fontsize=8)
    ax.legend(
        fontsize=7,
        frameon=False,
        ncols=min(m, 5),
        loc="lower left",
        bbox_to_anchor=(0, 1.0),
        borderaxespad=0.2,
    )
    fig.tight_layout(pad=0.4)
    return _save(fig, path)
