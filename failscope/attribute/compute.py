"""The attribution pass: maps and attribution-weighted features for every image, cached.

One pass over the dataset decodes each image once, runs the attribution method
for the audited model's predicted class (:mod:`failscope.attribute.methods`) and
derives the features (:mod:`failscope.attribute.features`). Each output is a
resumable :class:`~failscope.rowcache.RowCache` in the cache folder, exactly like
the embeddings (memory-mapped, row i = example i, keyed per row by the image
file's version):

* ``attributions-<id>/maps.npy``: float16 (n, h, w), each map's maximum 1;
* ``attr-model-<id>/features.npy``: float32 (n, C), Grad-CAM runs only;
* ``attr-clip-<id>/features.npy``: float32 (n, d), when a CLIP is given.

``<id>`` is a hash of the model's identity
(:func:`failscope.engines.local.model_identity`: its file or weights and code, and
its preprocessing), the method, the layer and the grid, plus the CLIP's identity
for ``clip`` features. A model whose identity cannot be named (its source is not
readable) gets a fresh cache every time.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from failscope._validation import fail
from failscope.attribute.features import masked_clip_inputs, pooled_features
from failscope.attribute.methods import GRID, Attributor, MethodChoice, choose_method

logger = logging.getLogger(__name__)

__all__ = ["ATTRIBUTION_FORMAT", "Computed", "attribution_caches", "compute_attributions"]

#: Layout version of the attribution caches (part of their identity).
ATTRIBUTION_FORMAT = 1
#: What each map explains.
TARGET = "predicted class"


@dataclass
class Computed:
    """What :func:`compute_attributions` returns.

    Attributes
    ----------
    choice : MethodChoice
    maps : numpy.memmap of float16, shape (n, h, w)
        Row i = example i; NaN rows for skipped images.
    features : dict of str to numpy.memmap
        ``"model"`` and/or ``"clip"`` features (float32, (n, dim)).
    skipped : list of dict
        ``{"id", "path", "reason"}`` of images that could not be read.
    identity : str
        The maps' cache identity.
    """

    choice: MethodChoice
    maps: np.ndarray
    features: dict[str, np.ndarray]
    skipped: list[dict[str, Any]] = field(default_factory=list)
    identity: str = ""


def _hash(obj: Any) -> str:
    from failscope.embed import _hash as json_hash

    return json_hash(obj)


def attribution_caches(
    cache_dir: str | os.PathLike[str],
    *,
    identity: str,
    grid: tuple[int, int],
    model_dim: int | None,
    clip: Any,
    spec: dict[str, Any],
    choice: MethodChoice,
) -> dict[str, Any]:
    """The row caches of one attribution setting: ``"maps"``, ``"model"``, ``"clip"``."""
    from failscope.rowcache import RowCache

    meta = {"model": spec, "method": choice.method, "layer": choice.layer, "target": TARGET}

    def cache(prefix: str, ident: str, shape: tuple[int, ...], **kw: Any) -> Any:
        return RowCache(Path(cache_dir) / f"{prefix}-{ident[:16]}", identity=ident,
                        row_shape=shape, format=ATTRIBUTION_FORMAT, **kw)  # fmt: skip

    caches = {"maps": cache("attributions", identity, grid, dtype=np.float16,
                            data_file="maps.npy", meta=meta, what="attribution cache")}  # fmt: skip
    if model_dim is not None:
        ident = _hash({"maps": identity, "features": "model"})
        caches["model"] = cache("attr-model", ident, (model_dim,), data_file="features.npy",
                                meta=meta, what="attribution model-feature cache")  # fmt: skip
    if clip is not None:
        ident = _hash({"maps": identity, "features": "clip", "clip": clip.identity})
        caches["clip"] = cache("attr-clip", ident, (clip.dim,), data_file="features.npy",
                               meta={**meta, "clip": clip.spec()},
                               what="attribution CLIP-feature cache")  # fmt: skip
    return caches


def _probe(dataset: Any, transform: Any, attributor: Attributor, device: str) -> tuple[Any, Any]:
    """Maps and activations of the first readable image (to learn their shapes)."""
    from failscope.data.datasets import iter_image_batches

    for start in range(0, len(dataset), 64):
        ids = np.arange(start, min(start + 64, len(dataset)))
        for batch in iter_image_batches(dataset, transform, ids=ids, batch_size=1):
            if batch.pixels is not None:
                return attributor(batch.pixels.to(device), [0])
    raise fail("no image of the dataset can be read, so nothing can be attributed")


def compute_attributions(
    dataset: Any,
    module: Any,
    spec: dict[str, Any],
    *,
    pred: np.ndarray,
    cache_dir: str | os.PathLike[str],
    clip: Any = None,
    method: str = "auto",
    layer: str | None = None,
    grid: int = GRID,
    cache_key: str = "stat",
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    flush_seconds: float = 5.0,
) -> Computed:
    """Attribute every image of ``dataset`` for its predicted class; cached and resumable.

    Parameters
    ----------
    dataset : ImageDataset
    module : torch.nn.Module
        The audited model (TorchScript too: it gets the fallback method).
    spec : dict
        Its spec (``run.json``'s model entry): transform and identity.
    pred : ndarray of int, shape (n,)
        The predicted class of every example (-1: skipped, not attributed).
    cache_dir : path
        Parent folder of the caches.
    clip : ClipModel, optional
        Also compute ``clip`` features (the CLIP embedding of the masked image).
    method, layer : str, optional
        See :func:`~failscope.attribute.methods.choose_method`.
    grid : int, default=8
        Side of gradient methods' maps.
    cache_key : {"stat", "content"}, default="stat"
        What identifies a file version (as for the embeddings).
    batch_size, num_workers, device, progress, flush_seconds
        As for :func:`failscope.embed.embed_dataset`.

    Returns
    -------
    Computed
    """
    from failscope.data import model_transform
    from failscope.data.datasets import iter_image_batches
    from failscope.data.models import _skip, resolve_device
    from failscope.engines.local import model_identity

    device = resolve_device(device)
    module = module.to(device).eval()
    choice = choose_method(module, method, layer)
    attributor = Attributor(module, choice, grid=grid, activations=choice.method == "gradcam")
    transform = model_transform(spec)
    maps0, acts0 = _probe(dataset, transform, attributor, device)
    model_id = model_identity(spec, module)
    identity = _hash({
        "format": ATTRIBUTION_FORMAT, "model": model_id or uuid.uuid4().hex,
        "method": choice.method, "layer": choice.layer, "grid": int(grid), "target": TARGET,
    })  # fmt: skip
    caches = attribution_caches(
        cache_dir, identity=identity, grid=tuple(maps0.shape[1:]),
        model_dim=None if acts0 is None else int(acts0.shape[1]), clip=clip, spec=spec,
        choice=choice,
    )  # fmt: skip
    keys = dataset.file_keys(cache_key)
    pred = np.asarray(pred, dtype=np.int64)
    keys = np.where(pred >= 0, keys, np.uint64(0))  # nothing to explain: never done
    writers = {k: c.open(keys, flush_seconds=flush_seconds) for k, c in caches.items()}
    for w in writers.values():
        w.skip(np.flatnonzero(pred < 0))
    try:
        todo = np.unique(np.concatenate([w.todo() for w in writers.values()]))
        todo = todo[pred[todo] >= 0]
        n = len(dataset)
        done = n - len(todo)
        logger.info("attributing %d of %d images with %s (%d cached)", len(todo), n,
                    choice.method, done)  # fmt: skip
        if progress is not None:
            progress(done, n)
        skipped: list[dict[str, Any]] = []
        clip_cfg = None if clip is None else clip.preprocess_cfg
        for batch in iter_image_batches(
            dataset, transform, ids=todo, batch_size=batch_size, num_workers=num_workers
        ):
            if batch.pixels is not None:
                x = batch.pixels.to(device)
                maps, acts = attributor(x, pred[batch.ids])
                writers["maps"].write(batch.ids, maps.astype(np.float16))
                if "model" in writers:
                    writers["model"].write(batch.ids, pooled_features(maps, acts))
                if "clip" in writers:
                    masked = masked_clip_inputs(
                        x, maps, model_mean=spec.get("mean"), model_std=spec.get("std"),
                        clip_cfg=clip_cfg,
                    )  # fmt: skip
                    writers["clip"].write(batch.ids, clip.encode_images(masked))
            for w in writers.values():
                w.skip(i for i, _ in batch.skipped)
            skipped += [_skip(dataset, i, r) for i, r in batch.skipped]
            done += len(batch.ids) + len(batch.skipped)
            if progress is not None:
                progress(done, n)
    finally:
        for w in writers.values():
            w.commit()
    features = {k: w.read() for k, w in writers.items() if k != "maps"}
    return Computed(choice, writers["maps"].read(), features, skipped, identity)
