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

__all__ = ["PALETTE", "accuracy_curve_plot", "retrain_plot", "score_histogram", "severity_plot"]

#: Colours shared by the page's CSS and the plots.
PALETTE = {
    "wrong": "#d1495b",
    "correct": "#2a9d8f",
    "accent": "#3d5a80",
    "muted": "#8d99ae",
    "ink": "#1f2933",
    "grid": "#e4e7eb",
}
_SERIES = ["#8d99ae", "#3d5a80", "#2a9d8f", "#e9a03b", "#d1495b", "#6c4f9e", "#5c946e"]
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
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    data = buf.getvalue()
    if path is not None:
        with atomic_open(path, "wb") as fh:
            fh.write(data)
    return data


def score_histogram(
    scores: np.ndarray,
    correct: np.ndarray,
    *,
    cutoff: float | None = None,
    path: Path | None = None,
) -> bytes:
    """Histogram of failure scores, correct vs wrong predictions, as PNG bytes.

    Parameters
    ----------
    scores : ndarray of float, shape (n,)
        Failure scores of one class's examples (non-finite values are dropped).
    correct : ndarray of bool, shape (n,)
        Whether the audited model got each example right.
    cutoff : float, optional
        Where the slice starts; drawn as a dashed line when finite.
    path : Path, optional
        Where to write the PNG as well.
    """
    scores = np.asarray(scores, dtype=float)
    correct = np.asarray(correct, dtype=bool)
    ok = np.isfinite(scores)
    scores, correct = scores[ok], correct[ok]
    fig = _figure(4.2, 2.4)
    ax = fig.add_subplot()
    _style(ax)
    if scores.size:
        lo, hi = float(scores.min()), float(scores.max())
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        bins = np.linspace(lo, hi, 25)
        n_ok, _ = np.histogram(scores[correct], bins)
        n_bad, _ = np.histogram(scores[~correct], bins)
        ax.stairs(n_ok, bins, fill=True, color=PALETTE["correct"], label=f"correct ({n_ok.sum()})")
        ax.stairs(
            n_ok + n_bad,
            bins,
            baseline=n_ok,
            fill=True,
            color=PALETTE["wrong"],
            label=f"wrong ({n_bad.sum()})",
        )
        ax.set_ylim(0, max(1, int((n_ok + n_bad).max())) * 1.12)
        if cutoff is not None and np.isfinite(cutoff):
            ax.axvline(cutoff, color=PALETTE["ink"], linestyle="--", linewidth=1)
            ax.annotate(
                "slice →",
                xy=(cutoff, 1),
                xycoords=("data", "axes fraction"),
                xytext=(3, -10),
                textcoords="offset points",
                fontsize=7,
                color=PALETTE["ink"],
            )
        ax.legend(fontsize=7, frameon=False, loc="upper left")
    else:
        ax.text(0.5, 0.5, "no scored examples", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("failure score", fontsize=8)
    ax.set_ylabel("examples", fontsize=8)
    fig.subplots_adjust(left=0.13, right=0.98, bottom=0.19, top=0.95)
    return _save(fig, path)


def accuracy_curve_plot(checks: Sequence[Mapping[str, Any]], *, path: Path | None = None) -> bytes:
    """Accuracy of the top-K images nearest each checked caption, vs K, as PNG bytes.

    Parameters
    ----------
    checks : sequence of dict
        ``caption_checks`` entries with ``"text"``, ``"class_acc"`` and
        ``"curve": {"k": [...], "acc": [...]}``; entries without a curve are skipped.
    path : Path, optional
        Where to write the PNG as well.
    """
    fig = _figure(4.2, 2.4)
    ax = fig.add_subplot()
    _style(ax)
    class_acc = None
    for i, check in enumerate(checks):
        curve = check.get("curve") or {}
        k, acc = curve.get("k") or [], curve.get("acc") or []
        if not k or len(k) != len(acc):
            continue
        ax.plot(
            k,
            acc,
            color=_SERIES[(i + 1) % len(_SERIES)],
            linewidth=1.6,
            label=_text(check.get("text", ""), 40),
        )
        if class_acc is None and check.get("class_acc") is not None:
            class_acc = float(check["class_acc"])
    if class_acc is not None:
        ax.axhline(class_acc, color=PALETTE["muted"], linestyle="--", linewidth=1)
        ax.annotate(
            "class accuracy",
            xy=(1, class_acc),
            xycoords=("axes fraction", "data"),
            xytext=(-3, 3),
            textcoords="offset points",
            ha="right",
            fontsize=7,
            color=PALETTE["muted"],
        )
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("K nearest images to the caption", fontsize=8)
    ax.set_ylabel("accuracy of top K", fontsize=8)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, frameon=False, loc="lower right")
    fig.subplots_adjust(left=0.13, right=0.98, bottom=0.19, top=0.95)
    return _save(fig, path)


def severity_plot(
    names: Sequence[str], severities: Sequence[float], *, path: Path | None = None
) -> bytes:
    """Horizontal bars of the most severe classes (given in order), as PNG bytes."""
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
    ax.legend(fontsize=7, frameon=False, ncols=min(m, 4), loc="lower left")
    fig.tight_layout(pad=0.4)
    return _save(fig, path)
