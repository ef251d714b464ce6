"""Where the audited model looks: attributions (Captum) and attribution-weighted features.

The pieces, in the order a run uses them:

* :mod:`.methods`: Grad-CAM on a conv layer (:class:`captum.attr.LayerGradCam`), or a
  gradient method where Grad-CAM cannot hook the model (TorchScript, no ``Conv2d``):
  :func:`choose_method`, :class:`Attributor`, and :func:`grad_cam` for any eager
  model and batch of images (for training code that needs the maps, e.g. core-risk
  minimisation);
* :mod:`.features`: attribution-weighted features, ``model`` (pooled layer
  activations) and ``clip`` (CLIP embedding of the attribution-masked image);
* :mod:`.compute`: the cached, resumable pass over a dataset
  (:func:`compute_attributions`);
* :mod:`.stage`: a run's attributions: :func:`load_attributions` (maps aligned with
  ``examples.parquet``), :func:`attribute_run` (``failscope attribute RUN``) and
  :func:`describe_slices` (attribution-focus metrics and mosaics per slice);
* :mod:`.focus`, :mod:`.mosaic`: the measures and the pictures.

Example
-------
>>> from failscope.attribute import load_attributions  # doctest: +SKIP
>>> attr = load_attributions("runs/audit")  # doctest: +SKIP
>>> attr.maps.shape, attr.method, attr.layer  # doctest: +SKIP
((20000, 8, 8), 'saliency', None)
"""

from __future__ import annotations

from failscope._lazy import lazy_exports

_EXPORTS = {
    "Attributor": "failscope.attribute.methods",
    "MethodChoice": "failscope.attribute.methods",
    "choose_method": "failscope.attribute.methods",
    "grad_cam": "failscope.attribute.methods",
    "masked_clip_inputs": "failscope.attribute.features",
    "pooled_features": "failscope.attribute.features",
    "Computed": "failscope.attribute.compute",
    "compute_attributions": "failscope.attribute.compute",
    "Attributions": "failscope.attribute.stage",
    "attribute_run": "failscope.attribute.stage",
    "describe_slices": "failscope.attribute.stage",
    "load_attributions": "failscope.attribute.stage",
    "record_attributions": "failscope.attribute.stage",
    "unavailable_reason": "failscope.attribute.stage",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
