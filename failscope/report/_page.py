"""The page shell: template, inline CSS and script, and the Content-Security-Policy.

The page has no external resources and its CSP forbids any: the only script that
may run is the package's own ``report.js``, pinned by its SHA-256.
"""

from __future__ import annotations

import base64
import hashlib
from importlib import resources

from ._html import Markup, render

__all__ = ["render_page"]


def _static(name: str) -> str:
    return resources.files("failscope.report").joinpath(name).read_text(encoding="utf-8")


def render_page(*, title: str, body: Markup) -> str:
    """The whole HTML page around ``body``, with the CSP pinning ``report.js``."""
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
