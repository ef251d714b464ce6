"""Small HTML pieces the report sections share: images, badges, rate bars."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._html import Markup, tag
from ._images import data_uri

__all__ = ["badge", "confirmed_badge", "img_tag", "plot_uri", "rate_bars"]


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


def confirmed_badge(check: Mapping[str, Any] | None) -> Markup:
    """A "confirmed"/"unconfirmed" badge for a caption check; empty without a verdict."""
    if check is None or check.get("confirmed") is None:
        return Markup("")
    if check["confirmed"]:
        return badge(
            "confirmed", "ok", "images nearest the caption are less accurate than the class"
        )
    return badge("unconfirmed", "no", "images nearest the caption are not clearly worse")
