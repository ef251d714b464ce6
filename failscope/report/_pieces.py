"""Small HTML pieces the report sections share: images, badges, rate bars, p-values."""

from __future__ import annotations

from typing import Any

from failscope.run.schema import CaptionCheck

from ._html import Markup, tag
from ._images import data_uri

__all__ = [
    "WEAK_TEXT",
    "badge",
    "confirmed_badge",
    "fmt_p",
    "img_tag",
    "plot_uri",
    "rate_bars",
    "weak_badge",
]

#: How a weak slice is marked wherever it appears.
WEAK_TEXT = "weak: not statistically supported"


def plot_uri(png: bytes) -> str:
    """A PNG's bytes as a data URI."""
    return data_uri(png, "image/png")


def img_tag(uri: str, alt: str, *, css: str = "plot", width: int | None = None) -> Markup:
    """An ``<img>`` of a data URI."""
    return tag("img", src=uri, alt=alt, class_=css, width=width)


def badge(text: str, kind: str, title: str | None = None) -> Markup:
    """A small coloured label; ``kind`` is its CSS class (ok, no, bad, skip, info)."""
    return tag("span", text, class_=f"badge {kind}", title=title)


def rate_bars(rate_in: Any, rate_out: Any) -> Markup:
    """Two horizontal bars: the error rate inside and outside the slice."""

    def bar(css: str, v: Any) -> Markup:
        width = 0.0 if v is None else max(0.0, min(100.0, 100 * float(v)))
        return tag("div", tag("span", style=f"width:{width:.1f}%"), class_=f"bar {css}")

    return tag(
        "span",
        bar("in", rate_in),
        bar("out", rate_out),
        class_="bars",
    )


def weak_badge() -> Markup:
    """The mark of a weak slice."""
    return badge(WEAK_TEXT, "weak")


def confirmed_badge(check: CaptionCheck | None, *, weak: bool) -> Markup:
    """A caption check's verdict: "confirmed" (the images nearest the caption are less
    accurate than the class), "unconfirmed", or for a caption of a weak slice "not
    confirmed (weak slice)" whatever its check says; empty without a check."""
    if check is None:
        return Markup("")
    if weak:
        return badge("not confirmed (weak slice)", "no")
    return badge("confirmed", "ok") if check.confirmed else badge("unconfirmed", "no")


def fmt_p(p: float | None) -> str:
    """A p-value to two significant digits, ``<0.001`` below that; None -> an en dash."""
    if p is None:
        return "–"
    return f"{p:.2g}" if p >= 0.001 else "<0.001"
