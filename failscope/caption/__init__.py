"""Captions: name each failure direction with ranked CLIP text prompts.

Candidate captions come from templates x vocabularies (:mod:`.vocabulary`,
:mod:`.templates`), are ranked along each class's failure direction
(:mod:`.rank`), the first few re-ordered by the caption check on validation
images, and the top ones are checked on held-out test images (:mod:`.check`).
:func:`caption_run` does all of it for a run directory.
"""

from __future__ import annotations

from failscope._lazy import lazy_exports

_EXPORTS = {
    "caption_run": "failscope.caption.pipeline",
    "default_vocabulary": "failscope.caption.pipeline",
    "check_captions": "failscope.caption.check",
    "caption_rows": "failscope.caption.display",
    "caption_table": "failscope.caption.display",
    "DEFAULT_METHOD": "failscope.caption.rank",
    "METHODS": "failscope.caption.rank",
    "classifier_scores": "failscope.caption.rank",
    "centroid_scores": "failscope.caption.rank",
    "check_rerank": "failscope.caption.rank",
    "failure_centroid": "failscope.caption.rank",
    "select_top": "failscope.caption.rank",
    "TextEmbeddingCache": "failscope.caption.cache",
    "Candidates": "failscope.caption.vocabulary",
    "Family": "failscope.caption.vocabulary",
    "Vocabulary": "failscope.caption.vocabulary",
    "add_vocabulary": "failscope.caption.vocabulary",
    "build_candidates": "failscope.caption.vocabulary",
    "get_vocabulary": "failscope.caption.vocabulary",
    "list_vocabularies": "failscope.caption.vocabulary",
    "load_synonyms": "failscope.caption.vocabulary",
    "load_vocabulary_file": "failscope.caption.vocabulary",
    "fix_articles": "failscope.caption.templates",
    "indefinite_article": "failscope.caption.templates",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
