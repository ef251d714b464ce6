"""The local engine's prediction pass, with a resumable predictions cache.

The audited model's predictions are cached like CLIP embeddings (a
:class:`~failscope.rowcache.RowCache` in ``CACHE/predictions-<identity>/``): one
float64 row ``(pred, confidence)`` per example in ``predictions.npy``, keyed by the
file version of each image and by the model's identity (:func:`model_identity`), so
a re-run, or a run restarted after a crash, predicts only the missing rows.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "PREDICTION_COLUMNS",
    "model_identity",
    "predict_cached",
    "predictions_cache",
    "predictions_from_rows",
]

PREDICTIONS_FORMAT = 1
#: What each float64 row of ``predictions.npy`` holds.
PREDICTION_COLUMNS = ("pred", "confidence")


def _source_text(obj: Any) -> str | None:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return None


def model_identity(spec: dict[str, Any], module: Any) -> str | None:
    """sha256 hex naming what the audited model computes, or None if it cannot be named.

    TorchScript: the file's sha256 (code and weights). torchvision: the architecture,
    torchvision's version and the checkpoint's sha256. ``module:function`` and
    ``nn.Module`` objects: the state_dict's sha256 plus the source code of the model's
    class (and of the factory's module); None when that source cannot be read
    (e.g. a class typed into an interactive session), and then nothing is cached.
    Always: ``num_classes`` and the preprocessing (``image_size``, ``mean``, ``std``).
    """
    from failscope.embed import _hash, file_sha256, state_dict_sha256

    kind = spec["kind"]
    if kind == "torchscript":
        weights: dict[str, Any] = {"file": file_sha256(spec["spec"])}
    elif kind == "torchvision":
        import torchvision

        weights = {
            "arch": spec["spec"],
            "torchvision": torchvision.__version__.split("+")[0],
            "checkpoint": file_sha256(spec["checkpoint"]),
        }
    else:
        code = [_source_text(type(module))]
        if kind == "callable":
            code.append(_source_text(sys.modules.get(spec["spec"].split(":")[0])))
        if any(c is None for c in code):
            logger.info("the source of model %s cannot be read: predictions are not cached",
                        spec["spec"])  # fmt: skip
            return None
        weights = {"state_dict": state_dict_sha256(module), "code": _hash(code)}
    return _hash(
        {
            "format": PREDICTIONS_FORMAT,
            "kind": kind,
            "weights": weights,
            "num_classes": spec.get("num_classes"),
            "preprocess": {k: spec.get(k) for k in ("image_size", "mean", "std")},
        }
    )


def predictions_cache(cache_dir: str | os.PathLike[str], identity: str, spec: dict[str, Any]):
    """The audited model's predictions cache in ``cache_dir`` (a :class:`RowCache`)."""
    from failscope.rowcache import RowCache

    return RowCache(
        Path(cache_dir) / f"predictions-{identity[:16]}",
        identity=identity,
        row_shape=(len(PREDICTION_COLUMNS),),
        dtype=np.float64,  # holds class indices exactly
        data_file="predictions.npy",
        format=PREDICTIONS_FORMAT,
        meta={"columns": list(PREDICTION_COLUMNS), "model": spec},
        what="predictions cache",
    )


def predictions_from_rows(rows: np.ndarray, n_outputs: int | None, skipped: list) -> Any:
    """:class:`~failscope.data.Predictions` from cached rows (NaN rows: skipped, pred -1)."""
    from failscope.data import Predictions

    table = np.asarray(rows)
    ok = np.isfinite(table[:, 0])
    pred = np.full(len(table), -1, dtype=np.int64)
    pred[ok] = table[ok, 0].astype(np.int64)
    conf = table[:, 1].astype(np.float32)
    return Predictions(pred=pred, confidence=conf, n_outputs=n_outputs, skipped=skipped)


def predict_cached(
    dataset: Any,
    module: Any,
    spec: dict[str, Any],
    *,
    cache_dir: str | os.PathLike[str],
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    flush_seconds: float = 5.0,
) -> Any:
    """:func:`failscope.data.predict`, reusing and extending the predictions cache.

    Parameters
    ----------
    dataset : ImageDataset
    module : torch.nn.Module
    spec : dict
        The model's spec (:func:`failscope.data.model_spec`); gives the input transform.
    cache_dir : path
        Parent folder of the cache (one sub-folder per model identity).
    batch_size, num_workers, device, progress
        As for :func:`failscope.data.predict`.
    flush_seconds : float, default=5.0
        How often finished rows are flushed and marked done.

    Returns
    -------
    Predictions
    """
    from failscope.data import model_transform, predict
    from failscope.data.datasets import _first_files
    from failscope.data.models import _model_name, check_finite, predict_batch, resolve_device
    from failscope.rowcache import fill_rows

    transform = model_transform(spec)
    identity = model_identity(spec, module)
    if identity is None:
        return predict(
            dataset, module, transform, batch_size=batch_size, num_workers=num_workers,
            device=device, progress=progress,
        )  # fmt: skip
    device = resolve_device(device)
    module = module.to(device).eval()
    cache = predictions_cache(cache_dir, identity, spec)
    outputs: dict[str, int | None] = {}

    def compute(pixels: Any, ids: np.ndarray) -> np.ndarray:
        def files() -> str:
            return _first_files(dataset, ids)

        pred, conf, n_outputs = predict_batch(module, pixels, device, files=files)
        if outputs["n"] != n_outputs:  # recorded before any row is marked done
            cache.update_meta(n_outputs=n_outputs)
            outputs["n"] = n_outputs
        return np.stack([pred, conf], axis=1).astype(np.float64)

    with cache.open(dataset.file_keys(), flush_seconds=flush_seconds) as rows:
        outputs["n"] = cache.read_meta().get("n_outputs")
        skipped = fill_rows(
            rows, dataset, transform, compute, batch_size=batch_size, num_workers=num_workers,
            progress=progress,
        )  # fmt: skip
        preds = predictions_from_rows(rows.read(), outputs["n"], skipped)
    check_finite(preds, dataset, model=_model_name(module))
    return preds
