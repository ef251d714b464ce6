"""A tiny HTML builder that escapes by default.

Every string that reaches the page goes through :func:`escape` unless it is
already :class:`Markup` (HTML this package built itself). Templates are
``string.Template`` texts whose ``$name`` values are escaped the same way, so a
class name or caption such as ``<script>`` always renders as text. Bidirectional
control characters (:data:`BIDI_CONTROLS`) are shown as their code point, e.g.
``<U+202E>``, so a class name cannot reorder the text around it on screen.
"""

from __future__ import annotations

import html
import math
import string
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "BIDI_CONTROLS",
    "Markup",
    "attrs",
    "escape",
    "fmt_num",
    "fmt_pct",
    "join",
    "render",
    "tag",
]

#: Characters that change the display order of text: LRM, RLM, ALM, the embeddings and
#: overrides U+202A-U+202E and the isolates U+2066-U+2069.
BIDI_CONTROLS = frozenset(
    "\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_BIDI_VISIBLE = {ord(c): f"<U+{ord(c):04X}>" for c in BIDI_CONTROLS}


class Markup(str):
    """A string that is already safe HTML; :func:`escape` passes it through."""

    __slots__ = ()

    def __add__(self, other: Any) -> Markup:
        return Markup(str.__add__(self, escape(other)))

    def __radd__(self, other: Any) -> Markup:
        return Markup(str.__add__(escape(other), self))


def escape(value: Any) -> Markup:
    """Return ``value`` as safe HTML: Markup is kept, anything else is escaped text with
    its bidi control characters made visible."""
    if isinstance(value, Markup):
        return value
    if value is None:
        return Markup("")
    return Markup(html.escape(str(value).translate(_BIDI_VISIBLE), quote=True))


def join(parts: Iterable[Any], sep: str = "") -> Markup:
    """Escape each part and join them (``sep`` is trusted HTML)."""
    return Markup(sep.join(escape(p) for p in parts))


def attrs(values: Mapping[str, Any]) -> Markup:
    """Render attributes; values are escaped, ``None``/``False`` drop the attribute."""
    out = []
    for key, value in values.items():
        if value is None or value is False:
            continue
        name = key.rstrip("_").replace("_", "-")
        if value is True:
            out.append(f" {name}")
        else:
            out.append(f' {name}="{escape(value)}"')
    return Markup("".join(out))


_VOID = frozenset({"img", "br", "hr", "meta", "link", "input", "col", "wbr"})


def tag(name: str, *children: Any, **attributes: Any) -> Markup:
    """``<name attrs>children</name>`` with escaped children and attribute values.

    Attribute names are keyword names with ``_`` turned into ``-`` (a trailing
    ``_`` is dropped, so ``class_="x"`` gives ``class="x"``).
    """
    head = f"<{name}{attrs(attributes)}>"
    if name in _VOID:
        return Markup(head)
    body = "".join(escape(c) for c in _flatten(children))
    return Markup(f"{head}{body}</{name}>")


def _flatten(items: Iterable[Any]) -> Iterable[Any]:
    for item in items:
        if isinstance(item, (list, tuple)) or (
            not isinstance(item, str) and hasattr(item, "__next__")
        ):
            yield from _flatten(item)
        elif item is not None:
            yield item


def render(template: str, **values: Any) -> Markup:
    """Fill a ``string.Template`` text; every value is escaped unless it is Markup."""
    return Markup(string.Template(template).substitute({k: escape(v) for k, v in values.items()}))


def fmt_pct(x: Any, digits: int = 1) -> str:
    """``0.1234`` -> ``"12.3%"``; None/NaN -> an en dash."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{100 * float(x):.{digits}f}%"


def fmt_num(x: Any, digits: int = 3) -> str:
    """Round floats to ``digits`` decimals, ints as is; None/NaN -> an en dash."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    try:
        return f"{float(x):.{digits}f}"
    except (TypeError, ValueError):
        return str(x)
