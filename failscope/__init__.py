"""failscope: find, name and fix where an image classifier fails.

Heavy dependencies (torch, open_clip, pandas) are imported lazily, so
``import failscope`` is fast and never touches the network.
"""

from __future__ import annotations

from failscope._lazy import lazy_exports

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "ErrorDirections": "failscope.directions",
    "InputError": "failscope._validation",
    "Run": "failscope.run",
    "load_run": "failscope.run",
    "DiscoverConfig": "failscope.run",
    "list_slicers": "failscope.slicers",
    "add_slicer": "failscope.slicers",
    "make_slicer": "failscope.slicers",
    "Slicer": "failscope.slicers",
    "SliceThreshold": "failscope.slices",
    "caption_run": "failscope.caption",
    "list_vocabularies": "failscope.caption",
    "add_vocabulary": "failscope.caption",
    "discover": "failscope.pipeline",
    "ClipModel": "failscope.embed",
    "load_clip": "failscope.embed",
    "embed_dataset": "failscope.embed",
    "list_clip_models": "failscope.embed",
    "add_clip_model": "failscope.embed",
    "load_dataset": "failscope.data",
    "build_report": "failscope.report",
    "retrain_run": "failscope.retrain.pipeline",
    "SliceAwareClassifier": "failscope.retrain.sbl",
    "load_retrained": "failscope.retrain.checkpoint",
    "run_demo": "failscope.demo",
    "evaluate_run": "failscope.evaluate",
    "attribute_run": "failscope.attribute",
    "load_attributions": "failscope.attribute",
    "annotate": "failscope.review.annotations",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
