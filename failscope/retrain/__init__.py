"""Slice-aware retraining: slice-based learning (SBL), mixture of attentions (MoA), baselines.

Submodules import torch, so this package re-exports lazily.
"""

from __future__ import annotations

from failscope._lazy import lazy_exports

_EXPORTS = {
    "SliceAwareClassifier": "failscope.retrain.sbl",
    "LinearHead": "failscope.retrain.sbl",
    "SliceSet": "failscope.retrain.membership",
    "discovered_slices": "failscope.retrain.membership",
    "planted_slices": "failscope.retrain.membership",
    "column_slices": "failscope.retrain.membership",
    "mask_slices": "failscope.retrain.membership",
    "upweight_weights": "failscope.retrain.baselines",
    "membership_balanced_weights": "failscope.retrain.baselines",
    "TrainConfig": "failscope.retrain.train",
    "fit_head": "failscope.retrain.train",
    "predict_logits": "failscope.retrain.train",
    "RetrainConfig": "failscope.retrain.pipeline",
    "retrain_run": "failscope.retrain.pipeline",
    "load_retrained": "failscope.retrain.checkpoint",
    "save_retrained": "failscope.retrain.checkpoint",
    "BackboneFeatures": "failscope.retrain.features",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
