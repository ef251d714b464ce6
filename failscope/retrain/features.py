"""Backbone features for retraining: the audited model's penultimate layer, cached.

With a frozen backbone every method trains a small head on the same cached features,
so the whole comparison costs one forward pass over the dataset plus a few seconds
per method. The cache lives in ``RUN/cache/retrain_features.npy`` with a key file;
it is reused only when the key (model spec, example ids, paths) matches.

A backbone must expose its features in one of these ways:

* a ``features(x) -> (N, d)`` method (the world's TorchScript CNN does); its final
  linear layer is the parameter pair of shapes ``(C, d)`` and ``(C,)``;
* a final ``nn.Linear`` named ``fc``, ``head`` or ``classifier`` (torchvision style),
  which is bypassed to read the features.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from failscope._validation import fail

logger = logging.getLogger(__name__)

__all__ = ["BackboneFeatures", "audited_features", "clip_features", "feature_fn", "final_linear"]

CACHE_NAME = "retrain_features"
_HEAD_NAMES = ("fc", "head", "classifier")


@dataclass
class BackboneFeatures:
    """Cached features of every example and the audited model's final layer.

    Parameters
    ----------
    features : ndarray of shape (n_examples, d), float32
        Aligned with ``examples.parquet`` rows.
    head_weight : ndarray of shape (C, d) or None
    head_bias : ndarray of shape (C,) or None
    source : str
        Where the features come from (``"audited-model"``, ``"user"``, ``"clip"``).
    """

    features: np.ndarray
    head_weight: np.ndarray | None = None
    head_bias: np.ndarray | None = None
    source: str = "user"


def final_linear(model: Any, n_classes: int, dim: int) -> tuple[Any, Any] | None:
    """The (weight (C, d), bias (C,)) of the model's final linear layer, if identifiable."""
    for name in _HEAD_NAMES:
        layer = getattr(model, name, None)
        w = getattr(layer, "weight", None)
        if w is not None and tuple(w.shape) == (n_classes, dim):
            return w.detach(), getattr(layer, "bias", None)
    candidates = []
    for _, module in model.named_modules():
        w = getattr(module, "weight", None)
        if w is not None and tuple(w.shape) == (n_classes, dim):
            b = getattr(module, "bias", None)
            candidates.append((w.detach(), None if b is None else b.detach()))
    return candidates[-1] if candidates else None


def feature_fn(model: Any) -> Any:
    """A callable ``x -> (N, d)`` reading the penultimate features of ``model``."""
    import torch

    fn = getattr(model, "features", None)
    if callable(fn):
        return fn
    for name in _HEAD_NAMES:
        layer = getattr(model, name, None)
        if isinstance(layer, torch.nn.Linear):

            def _features(x: Any, _layer: Any = layer, _name: str = name) -> Any:
                setattr(model, _name, torch.nn.Identity())
                try:
                    return model(x)
                finally:
                    setattr(model, _name, _layer)

            return _features
    raise fail(
        "the audited model exposes no penultimate features (no features() method and no "
        "final Linear named fc/head/classifier); pass features=... to retrain_run or use "
        "--backbone clip"
    )


def clip_features(run: Any) -> BackboneFeatures:
    """The run's CLIP image embeddings as backbone features (no audited head)."""
    return BackboneFeatures(np.asarray(run.embeddings(), dtype=np.float32), source="clip")


def _cache_key(run: Any) -> str:
    ex = run.examples
    h = hashlib.sha256()
    h.update(json.dumps(run.info.model.to_json(), sort_keys=True, default=str).encode())
    h.update(np.ascontiguousarray(ex["id"].to_numpy(dtype=np.int64)).tobytes())
    h.update("\n".join(map(str, ex["path"].tolist())).encode())
    return h.hexdigest()


def audited_features(
    run: Any,
    *,
    batch_size: int = 256,
    trust_checkpoint: bool = False,
    use_cache: bool = True,
    progress: Any | None = None,
) -> BackboneFeatures:
    """Penultimate-layer features of the audited model for every example of ``run``.

    Parameters
    ----------
    run : Run
    batch_size : int, default=256
    trust_checkpoint : bool, default=False
        Allow a pickled checkpoint (never read back from ``run.json``; see
        :func:`~failscope.retrain.checkpoint.load_audited_model`).
    use_cache : bool, default=True
        Reuse ``RUN/cache/retrain_features.npy`` when its key matches.
    progress : callable, optional
        Called with the number of rows done after each batch.

    Returns
    -------
    BackboneFeatures
    """
    import torch

    from failscope.retrain.checkpoint import load_audited_model
    from failscope.run import CACHE_DIR, write_json, write_npy

    spec = run.info.model
    if spec.kind not in ("torchscript", "torchvision", "callable"):
        raise fail(
            f"the audited model of {run.path} (kind {spec.kind!r}) cannot be reloaded "
            "to read its features; use --backbone clip or pass features=..."
        )
    model = load_audited_model(run, trust_checkpoint=trust_checkpoint)
    n_classes = len(run.class_names)

    cache = run.path / CACHE_DIR
    key = _cache_key(run)
    npy, key_file = cache / f"{CACHE_NAME}.npy", cache / f"{CACHE_NAME}.json"
    feats = None
    if use_cache and npy.is_file() and key_file.is_file():
        try:
            if json.loads(key_file.read_text(encoding="utf-8"))["key"] == key:
                feats = np.load(npy, allow_pickle=False)
                logger.info("using cached backbone features %s", npy)
        except (OSError, ValueError, KeyError, TypeError):
            feats = None
    if feats is None:
        fn = feature_fn(model)
        chunks = []
        done = 0
        with torch.no_grad():
            for batch in iter_images(run, batch_size=batch_size):
                chunks.append(fn(batch).float().reshape(len(batch), -1).numpy())
                done += len(batch)
                if progress is not None:
                    progress(done)
        feats = np.concatenate(chunks).astype(np.float32)
        write_npy(npy, feats)
        write_json(key_file, {"key": key, "shape": list(feats.shape)})
    lin = final_linear(model, n_classes, feats.shape[1])
    w = b = None
    if lin is not None:
        w = lin[0].float().numpy()
        b = None if lin[1] is None else lin[1].detach().float().numpy()
    return BackboneFeatures(feats, w, b, "audited-model")


def iter_images(run: Any, *, batch_size: int = 256) -> Any:
    """Yield float tensors of the run's images, in ``examples.parquet`` row order.

    Re-opens the dataset from ``run.json``'s ``data`` and applies the audited model's
    preprocessing (:func:`failscope.data.models.model_transform`). When that is only
    "to a [0, 1] tensor" (no resize, no normalisation), images are decoded straight
    into a batch array, which is several times faster than per-image transforms.
    """
    from failscope.data.datasets import iter_image_batches, load_dataset_from_spec
    from failscope.data.models import model_transform

    spec = run.info.model
    ds = load_dataset_from_spec(run.info.data)
    ids = run.examples["id"].to_numpy(dtype=np.int64)
    if not spec.image_size and spec.mean is None:
        yield from _iter_plain(ds.abspaths, ids, batch_size)
        return
    transform = model_transform(spec.to_json())
    for batch in iter_image_batches(ds, transform, ids=ids, batch_size=batch_size):
        if batch.skipped or batch.pixels is None:
            bad = batch.skipped[0] if batch.skipped else (None, "unreadable batch")
            raise fail(
                f"image id {bad[0]} cannot be read now ({bad[1]}) although discover read it; "
                "re-run `failscope discover`"
            )
        yield batch.pixels


def _iter_plain(paths: Any, ids: np.ndarray, batch_size: int) -> Any:
    """RGB images as float tensors (b, 3, H, W) in [0, 1], decoded with PIL only."""
    import torch
    from PIL import Image

    from failscope.data.datasets import to_rgb

    for s in range(0, len(ids), batch_size):
        arrays = []
        for i in ids[s : s + batch_size]:
            try:
                with Image.open(paths[int(i)]) as im:
                    arrays.append(np.asarray(to_rgb(im)))
            except Exception as exc:  # same files discover read: report, do not skip
                raise fail(
                    f"image id {int(i)} ({paths[int(i)]}) cannot be read now "
                    f"({type(exc).__name__}) although discover read it; re-run discover"
                ) from None
        if len({a.shape for a in arrays}) > 1:
            raise fail("images differ in size and the model has no resize; re-run discover")
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
        yield batch.float().div_(255.0)
