"""The audited model: load it from one ``--model`` string, or read its predictions.

Model specs (:func:`model_spec`):

* ``path/to/model.pt``: a TorchScript file (``torch.jit.load``).
* ``torchvision:ARCH`` plus ``checkpoint``: a torchvision architecture
  (``torchvision.models.get_model(ARCH, weights=None, num_classes=K)``) with a
  state_dict read by ``torch.load(weights_only=True)``.
* ``module:function`` (``checkpoint`` optional): ``function()`` returns an
  ``nn.Module``; ``module`` is imported from the working directory or PYTHONPATH.

A checkpoint that needs pickle (it holds Python objects, not only tensors) is
refused unless ``trust_checkpoint=True``, because unpickling can run code.

Input preprocessing (:func:`model_transform`): resize the shorter side to
``image_size`` and centre-crop a square, convert to a float tensor in [0, 1]
(RGB, shape (3, S, S)), then normalise with ``mean``/``std`` if given. Defaults:
torchvision models get 224 and the ImageNet mean/std; TorchScript and callable
models get no resize (images must share one size) and no normalisation, so
they receive [0, 1] tensors. Model outputs are treated as logits: ``pred`` is the
argmax and ``confidence`` the softmax probability of ``pred``.

Predictions files (:func:`read_predictions`): ``.npy`` with predicted class
indices (1-D) or class probabilities (2-D); or ``.csv``/``.parquet`` with a
``pred`` column (index or class name) or ``prob_*`` columns, optionally keyed by
a ``path`` or ``id`` column (then rows may come in any order).
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from failscope._torch import quiet_torchscript
from failscope._validation import check_file, fail
from failscope.data.datasets import ImageDataset, _show, iter_image_batches

logger = logging.getLogger(__name__)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MODEL_KINDS",
    "Predictions",
    "load_checkpoint",
    "load_model",
    "model_spec",
    "model_transform",
    "predict",
    "predict_batch",
    "read_predictions",
    "resolve_device",
]

MODEL_KINDS = ("torchscript", "torchvision", "callable", "predictions")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TORCHVISION_IMAGE_SIZE = 224
PREDICTION_SUFFIXES = (".npy", ".csv", ".parquet", ".pq")
_CALLABLE = re.compile(r"^([A-Za-z_][\w.]*):([A-Za-z_]\w*)$")


# --------------------------------------------------------------------------- specs


def _check_stats(value: Any, name: str) -> list[float] | None:
    if value is None:
        return None
    vals = [float(v) for v in value]
    if len(vals) not in (1, 3):
        raise fail(f"{name} needs 1 or 3 numbers (one per RGB channel), got {len(vals)}")
    if name == "std" and any(v <= 0 for v in vals):
        raise fail(f"std must be positive, got {vals}")
    return vals * 3 if len(vals) == 1 else vals


def model_spec(
    model: str,
    *,
    num_classes: int,
    checkpoint: str | os.PathLike[str] | None = None,
    image_size: int | None = None,
    mean: Any = None,
    std: Any = None,
) -> dict[str, Any]:
    """Resolve a ``--model`` string into the JSON-able spec stored in ``run.json``.

    Parameters
    ----------
    model : str
        A TorchScript file, ``torchvision:ARCH`` or ``module:function``.
    num_classes : int
        Number of classes of the dataset (torchvision models are built with it).
    checkpoint : path, optional
        state_dict file (required for torchvision, optional for callables).
    image_size : int, optional
        Square input side. Default 224 for torchvision, else no resize.
    mean, std : sequence of float, optional
        Normalisation. Default ImageNet for torchvision, else none.

    Returns
    -------
    dict
        ``{"kind", "spec", "checkpoint", "num_classes", "image_size", "mean", "std",
        "cwd"}``; paths absolute.
    """
    model = str(model).strip()
    mean, std = _check_stats(mean, "mean"), _check_stats(std, "std")
    if (mean is None) != (std is None):
        raise fail("pass both mean and std (--mean and --std), or neither")
    if image_size is not None and (int(image_size) != image_size or image_size < 1):
        raise fail(f"image_size must be a positive integer, got {image_size!r}")
    ckpt = None
    if checkpoint is not None:
        ckpt = str(check_file(checkpoint, what="checkpoint").resolve())
    if model.startswith("torchvision:"):
        kind = "torchvision"
        arch = model.split(":", 1)[1]
        spec_value: str = arch
        if ckpt is None:
            raise fail(
                f"--model {model} needs --checkpoint (a state_dict); failscope never "
                "downloads or invents weights"
            )
        if image_size is None:
            image_size = TORCHVISION_IMAGE_SIZE
        if mean is None:
            mean, std = list(IMAGENET_MEAN), list(IMAGENET_STD)
    elif Path(model).is_file():
        kind, spec_value = "torchscript", str(Path(model).resolve())
        if ckpt is not None:
            raise fail(
                "--checkpoint applies to torchvision:ARCH and module:function models, "
                f"not to the TorchScript file {model}"
            )
    elif _CALLABLE.match(model):
        kind, spec_value = "callable", model
    else:
        raise fail(
            f"--model {model!r} is not a file (TorchScript), 'torchvision:ARCH' or "
            "'module:function'"
        )
    return {
        "kind": kind,
        "spec": spec_value,
        "checkpoint": ckpt,
        "num_classes": int(num_classes),
        "image_size": None if image_size is None else int(image_size),
        "mean": mean,
        "std": std,
        "cwd": os.getcwd(),
    }


# --------------------------------------------------------------------------- loading


def load_checkpoint(path: str | os.PathLike[str], *, trust_checkpoint: bool = False) -> dict:
    """Read a state_dict with ``torch.load(weights_only=True)``.

    A file that needs pickle is refused with a one-line error unless
    ``trust_checkpoint``. ``{"state_dict": ...}``/``{"model_state_dict": ...}``
    wrappers and DataParallel ``module.`` prefixes are unwrapped.
    """
    import pickle

    import torch

    p = check_file(path, what="checkpoint")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not trust_checkpoint:
            raise fail(
                f"checkpoint {p} needs pickle to load (it holds Python objects, not only "
                "tensors) and unpickling can run code; re-save it as a state_dict, or pass "
                "--trust-checkpoint (trust_checkpoint=True) if you trust the file"
            ) from None
        logger.warning("loading %s with pickle (trust_checkpoint=True)", p)
        obj = torch.load(p, map_location="cpu", weights_only=False)
    except (RuntimeError, OSError, EOFError) as exc:
        raise fail(f"checkpoint {p} cannot be read: {' '.join(str(exc).split())[:300]}") from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), (dict, torch.nn.Module)):
                obj = obj[key]
                break
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise fail(f"checkpoint {p} does not hold a state_dict (a dict of tensors)")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return obj


def _load_state(module: Any, state: dict, path: str) -> None:
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        lines = [ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln]
        first = lines[0] if lines else " ".join(str(exc).split())[:200]
        raise fail(f"checkpoint {path} does not fit the model: {first}") from None
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if missing or unexpected:
        raise fail(
            f"checkpoint {path} does not fit the model: missing keys {_show(missing, 3)}, "
            f"unexpected keys {_show(unexpected, 3)}"
        )


def _import_callable(spec: str, cwd: str | None) -> Callable[[], Any]:
    module_name, func_name = spec.split(":")
    extra = [p for p in (os.getcwd(), cwd) if p and p not in sys.path]
    sys.path[:0] = extra
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise fail(
            f"cannot import module {module_name!r} for --model {spec} ({exc}); run from its "
            "folder or add it to PYTHONPATH"
        ) from None
    finally:
        for p in extra:
            sys.path.remove(p)
    func = getattr(module, func_name, None)
    if not callable(func):
        raise fail(f"module {module_name!r} has no callable {func_name!r} (--model {spec})")
    return func


def load_model(spec: dict[str, Any], *, trust_checkpoint: bool = False) -> Any:
    """Build the audited ``nn.Module`` from :func:`model_spec`'s dict, in eval mode on CPU."""
    import torch

    kind = spec["kind"]
    if kind == "torchscript":
        try:
            with quiet_torchscript():
                module = torch.jit.load(spec["spec"], map_location="cpu")
        except (RuntimeError, ValueError) as exc:
            first = " ".join(str(exc).split())[:200]
            raise fail(
                f"--model {spec['spec']} is not a TorchScript file ({first}); for a state_dict "
                "use --model torchvision:ARCH or module:function with --checkpoint FILE"
            ) from None
    elif kind == "torchvision":
        import torchvision

        arch = spec["spec"]
        names = torchvision.models.list_models(module=torchvision.models)
        if arch not in names:
            raise fail(f"torchvision has no classification model {arch!r}; known: {_show(names)}")
        module = torchvision.models.get_model(arch, weights=None, num_classes=spec["num_classes"])
        _load_state(
            module,
            load_checkpoint(spec["checkpoint"], trust_checkpoint=trust_checkpoint),
            spec["checkpoint"],
        )
    elif kind == "callable":
        module = _import_callable(spec["spec"], spec.get("cwd"))()
        if not isinstance(module, torch.nn.Module):
            raise fail(
                f"--model {spec['spec']} returned {type(module).__name__}, not a torch.nn.Module"
            )
        if spec.get("checkpoint"):
            _load_state(
                module,
                load_checkpoint(spec["checkpoint"], trust_checkpoint=trust_checkpoint),
                spec["checkpoint"],
            )
    else:
        raise fail(f"model kind {kind!r} cannot be loaded; kinds: {', '.join(MODEL_KINDS[:3])}")
    return module.eval()


def model_transform(spec: dict[str, Any]) -> Callable[[Any], Any]:
    """PIL RGB image -> float tensor (3, S, S): resize + centre crop, [0, 1], normalise."""
    from torchvision import transforms as T

    steps: list[Any] = []
    size = spec.get("image_size")
    if size:
        steps += [T.Resize(int(size), antialias=True), T.CenterCrop(int(size))]
    steps.append(T.ToTensor())
    if spec.get("mean") is not None:
        steps.append(T.Normalize(spec["mean"], spec["std"]))
    return T.Compose(steps)


# --------------------------------------------------------------------------- predicting


@dataclass
class Predictions:
    """The audited model's output for every example.

    Attributes
    ----------
    pred : ndarray of int64, shape (n,)
        Predicted class index; -1 where the image was skipped.
    confidence : ndarray of float32, shape (n,)
        Probability of ``pred``; NaN when only labels were given or the image was skipped.
    n_outputs : int or None
        Number of model outputs (classes), if known.
    skipped : list of dict
        ``{"id", "path", "reason"}`` for each image that could not be read.
    source : dict
        What produced them (goes to ``run.json["model"]``).
    """

    pred: np.ndarray
    confidence: np.ndarray
    n_outputs: int | None = None
    skipped: list[dict[str, Any]] = field(default_factory=list)
    source: dict[str, Any] = field(default_factory=dict)


def _logits(out: Any) -> Any:
    if isinstance(out, (tuple, list)):
        out = out[0]
    if isinstance(out, dict):
        out = out["logits"] if "logits" in out else next(iter(out.values()))
    if hasattr(out, "logits"):  # torchvision's InceptionOutputs / GoogLeNetOutputs
        out = out.logits
    return out


def resolve_device(device: str | None = None) -> str:
    """``device`` if given, else ``"cuda"``, ``"mps"`` or ``"cpu"``, the first available."""
    import torch

    if device:
        return str(device)
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def predict(
    dataset: ImageDataset,
    module: Any,
    transform: Callable[[Any], Any],
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Predictions:
    """Run the audited model over every example, in batches.

    Parameters
    ----------
    dataset : ImageDataset
    module : torch.nn.Module
        Maps (b, 3, S, S) float tensors to logits (b, k).
    transform : callable
        PIL image -> tensor, e.g. :func:`model_transform`.
    batch_size : int, default=64
    num_workers : int, default=0
    device : str, optional
        Default: cuda, then mps, then cpu.
    progress : callable(done, total), optional
        Called after every batch.

    Returns
    -------
    Predictions
    """
    import torch

    device = resolve_device(device)
    module = module.to(device).eval()
    n = len(dataset)
    pred = np.full(n, -1, dtype=np.int64)
    conf = np.full(n, np.nan, dtype=np.float32)
    skipped: list[dict[str, Any]] = []
    n_outputs = None
    done = 0
    with torch.inference_mode():
        for batch in iter_image_batches(
            dataset, transform, batch_size=batch_size, num_workers=num_workers
        ):
            if batch.pixels is not None:
                pred[batch.ids], conf[batch.ids], n_outputs = predict_batch(
                    module, batch.pixels, device
                )
            skipped += [_skip(dataset, i, r) for i, r in batch.skipped]
            done += len(batch.ids) + len(batch.skipped)
            if progress is not None:
                progress(done, n)
    return Predictions(pred=pred, confidence=conf, n_outputs=n_outputs, skipped=skipped)


def predict_batch(module: Any, pixels: Any, device: str) -> tuple[np.ndarray, np.ndarray, int]:
    """The audited model on one batch of inputs (b, 3, S, S), on ``device``.

    Returns
    -------
    pred : ndarray of int64, shape (b,)
    confidence : ndarray of float32, shape (b,)
        Softmax probability of ``pred``.
    n_outputs : int
        Number of logits (classes).
    """
    import torch

    with torch.inference_mode():
        logits = _logits(module(torch.as_tensor(pixels).to(device)))
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
            shape = getattr(logits, "shape", type(logits).__name__)
            raise fail(f"the model must return logits of shape (batch, classes), got {shape}")
        p, k = torch.softmax(logits.float(), dim=1).max(dim=1)
    return k.cpu().numpy(), p.cpu().numpy(), int(logits.shape[1])


def _skip(dataset: ImageDataset, i: int, reason: str) -> dict[str, Any]:
    return {"id": int(i), "path": str(dataset.frame["path"].iat[i]), "reason": reason}


# --------------------------------------------------------------------------- predictions files


def read_predictions(path: str | os.PathLike[str], dataset: ImageDataset) -> Predictions:
    """Read precomputed predictions aligned with ``dataset`` (see the module docstring).

    Raises
    ------
    InputError
        Wrong length (both lengths named), unknown class names, missing keys.
    """
    p = check_file(path, what="predictions file", suffixes=PREDICTION_SUFFIXES)
    n = len(dataset)
    source = {"kind": "predictions", "spec": str(p.resolve()), "checkpoint": None}
    if p.suffix.lower() == ".npy":
        try:
            arr = np.load(p, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            raise fail(f"predictions file {p} cannot be read ({exc})") from None
        if arr.shape[0] != n:
            raise fail(
                f"predictions file {p} has {arr.shape[0]} rows but the dataset has {n} examples"
            )
        if arr.ndim == 2:
            pred, conf = _from_probs(arr, p)
            return Predictions(pred, conf, n_outputs=arr.shape[1], source=source)
        if arr.ndim != 1:
            raise fail(
                f"predictions file {p} must be 1-D (labels) or 2-D (probabilities), "
                f"got shape {arr.shape}"
            )
        return Predictions(
            _as_indices(np.asarray(arr), p), np.full(n, np.nan, np.float32), source=source
        )
    import pandas as pd

    table = pd.read_csv(p) if p.suffix.lower() == ".csv" else pd.read_parquet(p)
    table = _align(table, dataset, p)
    prob_cols = [c for c in table.columns if str(c).startswith("prob_")]
    if "pred" in table.columns:
        values = table["pred"]
        if pd.api.types.is_integer_dtype(values):
            pred = _as_indices(values.to_numpy(), p)
        else:
            lookup = {c: i for i, c in enumerate(dataset.classes)}
            mapped = values.astype(str).map(lookup)
            if mapped.isna().any():
                row = int(np.flatnonzero(mapped.isna())[0])
                raise fail(
                    f"predictions file {p}: pred {values.iloc[row]!r} at row {row} is not in "
                    f"the classes {_show(dataset.classes)}"
                )
            pred = mapped.to_numpy(dtype=np.int64)
        conf = np.full(n, np.nan, dtype=np.float32)
        if prob_cols:
            probs = table[_order_prob_columns(prob_cols, dataset.classes)].to_numpy(np.float32)
            conf = probs[np.arange(n), np.clip(pred, 0, probs.shape[1] - 1)]
        return Predictions(pred, conf, n_outputs=len(prob_cols) or None, source=source)
    if prob_cols:
        cols = _order_prob_columns(prob_cols, dataset.classes)
        pred, conf = _from_probs(table[cols].to_numpy(np.float32), p)
        return Predictions(pred, conf, n_outputs=len(cols), source=source)
    raise fail(f"predictions file {p} has neither a 'pred' column nor 'prob_*' columns")


def _as_indices(arr: np.ndarray, p: Path) -> np.ndarray:
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise fail(f"predictions file {p} holds non-integer labels; give class indices")
    elif arr.dtype.kind not in "iub":
        raise fail(f"predictions file {p} holds {arr.dtype} values; give integer class indices")
    out = arr.astype(np.int64)
    if len(out) and out.min() < 0:
        raise fail(f"predictions file {p} holds a negative class index ({int(out.min())})")
    return out


def _from_probs(probs: Any, p: Path, chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    n = probs.shape[0]
    pred = np.empty(n, dtype=np.int64)
    conf = np.empty(n, dtype=np.float32)
    for s in range(0, n, chunk):
        block = np.asarray(probs[s : s + chunk], dtype=np.float32)
        if not np.isfinite(block).all():
            raise fail(f"predictions file {p} holds NaN or inf probabilities (rows {s}..)")
        pred[s : s + chunk] = block.argmax(axis=1)
        conf[s : s + chunk] = block.max(axis=1)
    return pred, conf


def _order_prob_columns(cols: list[str], classes: list[str]) -> list[str]:
    suffixes = [c[len("prob_") :] for c in cols]
    if set(suffixes) <= set(classes):
        by_name = dict(zip(suffixes, cols, strict=True))
        return [by_name[c] for c in classes if c in by_name]
    if all(s.isdigit() for s in suffixes):
        return [c for _, c in sorted(zip((int(s) for s in suffixes), cols, strict=True))]
    return cols


def _align(table: Any, dataset: ImageDataset, p: Path) -> Any:
    n = len(dataset)
    key = "id" if "id" in table.columns else ("path" if "path" in table.columns else None)
    if len(table) != n:
        raise fail(f"predictions file {p} has {len(table)} rows but the dataset has {n} examples")
    if key is None:
        return table.reset_index(drop=True)
    if key == "id":
        want: list[Any] = list(range(n))
        got = table["id"].tolist()
    else:
        want = dataset.frame["path"].astype(str).tolist()
        got = table["path"].astype(str).tolist()
    index = {k: i for i, k in enumerate(got)}
    if len(index) != len(got):
        raise fail(f"predictions file {p}: {key!r} values are not unique")
    order = []
    for k in want:
        if k not in index:
            raise fail(f"predictions file {p} has no row for {key} {k!r}")
        order.append(index[k])
    return table.iloc[order].reset_index(drop=True)
