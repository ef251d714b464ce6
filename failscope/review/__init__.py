"""Human in the loop: annotate slices (``failscope review``) and read the verdicts.

:func:`annotate` writes ``RUN/annotations.json`` from Python (the file the review
server writes); :func:`annotations_by_slice` reads it back, e.g. for the report.
The server itself is :class:`~failscope.review.server.ReviewServer` (Starlette on
uvicorn).
"""

from __future__ import annotations

from failscope._lazy import lazy_exports

_EXPORTS = {
    "VersionConflict": "failscope.review.annotations",
    "annotate": "failscope.review.annotations",
    "annotations_by_slice": "failscope.review.annotations",
    "read_annotations": "failscope.review.annotations",
    "remove_annotation": "failscope.review.annotations",
    "save_annotation": "failscope.review.annotations",
    "ReviewServer": "failscope.review.server",
    "suggest_labels": "failscope.review.suggest",
    "slice_vectors": "failscope.review.suggest",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
