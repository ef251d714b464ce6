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
argmax and ``confidence`` the softmax probability of ``pred``. A model that raises
stops the run with one line naming the model and the files of the batch; NaN or
inf logits stop it after the pass, naming how many images had them.

Predictions files (:func:`read_predictions`): ``.npy`` with predicted class
indices (1-D) or class scores (2-D, one column per class in class order); or
``.csv``/``.parquet`` with a ``pred`` column (index or class name) and/or
``prob_*`` columns, optionally keyed by a ``path`` or ``id`` column (then rows may
come in any order).

* ``prob_<class>`` columns are matched to the classes **by name** and must cover
  every class. Only the purely positional names ``prob_0`` .. ``prob_{K-1}`` map
  by index (column ``k`` is class ``k``). Any other mismatch is refused, naming
  the columns without a class and the classes without a column.
* Class scores (the whole file is judged at once) are

  - **probabilities** when every row lies in [0, 1] and sums to 1 (within
    :data:`PROB_TOLERANCE`): ``confidence`` is the probability of ``pred``;
  - refused as **percentages** when every row is non-negative and sums to 100;
  - refused as **neither** when every value lies in [0, 1] but rows do not sum
    to 1 (e.g. per-class sigmoid scores);
  - refused as **partly bad** when more than half of the rows are probabilities
    (the others are named by their first row);
  - otherwise **logits**: softmax turns them into probabilities, and a warning
    says so.

  A stored ``confidence`` always lies in [0, 1].
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
from failscope._validation import InputError, check_file, fail, open_npy
from failscope.data.datasets import ImageDataset, _first_files, _show, iter_image_batches

logger = logging.getLogger(__name__)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MODEL_KINDS",
    "PROB_TOLERANCE",
    "Predictions",
    "check_finite",
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
#: How far a row of probabilities may sum from 1 (values rounded when written to a CSV).
PROB_TOLERANCE = 0.05
#: Devices :func:`resolve_device` accepts (with an index for cuda, e.g. ``cuda:1``).
DEVICE_TYPES = ("cpu", "cuda", "mps")
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


def _mps_available() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def resolve_device(device: str | None = None) -> str:
    """``device`` if given, else ``"cuda"``, ``"mps"`` or ``"cpu"``, the first available.

    Raises
    ------
    InputError
        ``device`` is not one of :data:`DEVICE_TYPES` (``cuda:N`` allowed), or it is
        not available on this machine (CUDA or MPS missing, no GPU number N).
    """
    import torch

    if not device:
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if _mps_available() else "cpu"
    try:
        dev = torch.device(str(device))
    except (RuntimeError, ValueError):
        dev = None
    if dev is None or dev.type not in DEVICE_TYPES:
        raise fail(f"--device {device!r} is not one of {', '.join(DEVICE_TYPES)} (or cuda:N)")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = "built without CUDA" if torch.version.cuda is None else "no GPU found"
            raise fail(
                f"--device {device}: CUDA is not available (torch {torch.__version__}, "
                f"{build}); use --device cpu, or leave --device out to pick what is there"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise fail(
                f"--device {device}: there are only {torch.cuda.device_count()} CUDA "
                "devices (numbered from 0)"
            )
    if dev.type == "mps" and not _mps_available():
        raise fail(
            f"--device {device}: Apple's MPS is not available on this machine; use "
            "--device cpu, or leave --device out to pick what is there"
        )
    return str(device)


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

    Raises
    ------
    InputError
        The model raises (naming the model and the batch's files), returns something
        other than (batch, classes) logits, or returns NaN/inf logits (after the pass:
        how many images, and the first files).
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
                    module, batch.pixels, device,
                    files=lambda ids=batch.ids: _first_files(dataset, ids),
                )  # fmt: skip
            skipped += [_skip(dataset, i, r) for i, r in batch.skipped]
            done += len(batch.ids) + len(batch.skipped)
            if progress is not None:
                progress(done, n)
    preds = Predictions(pred=pred, confidence=conf, n_outputs=n_outputs, skipped=skipped)
    check_finite(preds, dataset, model=_model_name(module))
    return preds


def check_finite(preds: Predictions, dataset: ImageDataset, *, model: str) -> None:
    """Refuse predictions of images whose logits were NaN or inf (``predict_batch`` marks
    them with pred -1), naming how many and the first files."""
    missing = preds.pred < 0
    missing[[int(s["id"]) for s in preds.skipped]] = False
    if missing.any():
        bad = np.flatnonzero(missing)
        raise fail(
            f"the audited model {model} returned NaN or inf logits for {len(bad)} of "
            f"{len(dataset)} images (first: {_first_files(dataset, bad)}); check the model "
            "and its input normalisation (--mean/--std)"
        )


def _model_name(module: Any) -> str:
    """The audited model's class name (TorchScript keeps it as ``original_name``)."""
    return str(getattr(module, "original_name", None) or type(module).__name__)


def predict_batch(
    module: Any, pixels: Any, device: str, *, files: Callable[[], str] | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """The audited model on one batch of inputs (b, 3, S, S), on ``device``.

    Parameters
    ----------
    files : callable, optional
        Describes the batch's files, for the error when the model raises.

    Returns
    -------
    pred : ndarray of int64, shape (b,)
        -1 where the logits are NaN or inf (:func:`check_finite` refuses them).
    confidence : ndarray of float32, shape (b,)
        Softmax probability of ``pred`` (NaN where it is -1).
    n_outputs : int
        Number of logits (classes).

    Raises
    ------
    InputError
        The model raises (naming the model, and the files when ``files`` is given), or
        returns something other than (batch, classes) logits.
    """
    import torch

    with torch.inference_mode():
        try:
            out = module(torch.as_tensor(pixels).to(device))
        except InputError:
            raise
        except Exception as exc:
            where = f" ({files()})" if files is not None else ""
            raise fail(
                f"the audited model {_model_name(module)} failed on a batch of {len(pixels)} "
                f"images{where}: {type(exc).__name__}: {exc}"
            ) from None
        logits = _logits(out)
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
            shape = getattr(logits, "shape", type(logits).__name__)
            raise fail(f"the model must return logits of shape (batch, classes), got {shape}")
        finite = torch.isfinite(logits).all(dim=1).cpu().numpy()
        p, k = torch.softmax(logits.float(), dim=1).max(dim=1)
    pred, conf = k.cpu().numpy().astype(np.int64), p.cpu().numpy().astype(np.float32)
    pred[~finite], conf[~finite] = -1, np.nan
    return pred, conf, int(logits.shape[1])


def _skip(dataset: ImageDataset, i: int, reason: str) -> dict[str, Any]:
    return {"id": int(i), "path": str(dataset.frame["path"].iat[i]), "reason": reason}


# --------------------------------------------------------------------------- predictions files


def read_predictions(path: str | os.PathLike[str], dataset: ImageDataset) -> Predictions:
    """Read precomputed predictions aligned with ``dataset`` (see the module docstring).

    Raises
    ------
    InputError
        Wrong length (both lengths named), unknown class names, missing keys,
        ``prob_*`` columns that do not match the classes, a non-numeric score,
        scores that are neither probabilities nor logits, an empty, truncated or
        0-d ``.npy``.
    """
    p = check_file(path, what="predictions file", suffixes=PREDICTION_SUFFIXES)
    n = len(dataset)
    source = {"kind": "predictions", "spec": str(p.resolve()), "checkpoint": None}
    if p.suffix.lower() == ".npy":
        arr = open_npy(p, what="predictions file")
        if arr.ndim > 2:
            raise fail(
                f"predictions file {p} must be 1-D (labels) or 2-D (class scores), "
                f"got shape {arr.shape}"
            )
        if arr.shape[0] != n:
            raise fail(
                f"predictions file {p} has {arr.shape[0]} rows but the dataset has {n} examples"
            )
        if arr.ndim == 2:
            if arr.dtype.kind not in "fiub":
                raise fail(f"predictions file {p} holds {arr.dtype} values; expected numbers")
            pred, conf, _ = _scan_scores(arr, p)
            return Predictions(pred, conf, n_outputs=arr.shape[1], source=source)
        return Predictions(
            _as_indices(np.asarray(arr), p), np.full(n, np.nan, np.float32), source=source
        )
    import pandas as pd

    table = _read_predictions_table(p)
    prob_cols = [c for c in table.columns if str(c).startswith("prob_")]
    if prob_cols:
        prob_cols = _order_prob_columns(prob_cols, dataset.classes, p)
        _check_numeric(table, prob_cols, p)
    table = _align(table, dataset, p)
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
            scores = table[prob_cols].to_numpy(np.float64)
            _, _, kind = _scan_scores(scores, p)
            if kind == "logits":
                scores = _softmax(scores)
            conf = scores[np.arange(n), np.clip(pred, 0, scores.shape[1] - 1)]
            conf = np.clip(conf, 0.0, 1.0).astype(np.float32)
        return Predictions(pred, conf, n_outputs=len(prob_cols) or None, source=source)
    if prob_cols:
        pred, conf, _ = _scan_scores(table[prob_cols].to_numpy(np.float64), p)
        return Predictions(pred, conf, n_outputs=len(prob_cols), source=source)
    raise fail(f"predictions file {p} has neither a 'pred' column nor 'prob_*' columns")


def _read_predictions_table(p: Path) -> Any:
    import pandas as pd

    try:
        if p.suffix.lower() == ".csv":
            return pd.read_csv(p)
        return pd.read_parquet(p)
    except (ValueError, OSError, pd.errors.ParserError) as exc:  # EmptyDataError is one
        raise fail(f"cannot read predictions file {p}: {exc}") from None


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


def _check_numeric(table: Any, cols: list[str], p: Path) -> None:
    """Raise naming the column, row and value of the first non-numeric or empty score."""
    import pandas as pd

    for c in cols:
        values = pd.to_numeric(table[c], errors="coerce")
        bad = values.isna().to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raw = table[c].iat[row]
            what = "is empty" if pd.isna(raw) else f"holds {raw!r}, which is not a number,"
            raise fail(f"predictions file {p}: column {c!r} {what} at row {row}")


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _scan_scores(scores: Any, p: Path, chunk: int = 65536) -> tuple[np.ndarray, np.ndarray, str]:
    """``pred``, ``confidence`` and the kind ("probabilities"/"logits") of class scores.

    One pass over ``scores`` (n, k), in chunks (a memory map stays on disk); the
    rule is in the module docstring.
    """
    n = scores.shape[0]
    pred = np.empty(n, dtype=np.int64)
    conf_prob = np.empty(n, dtype=np.float32)
    conf_logit = np.empty(n, dtype=np.float32)
    n_prob = n_pct = 0
    outside = False
    first_bad: tuple[int, float] | None = None
    for s in range(0, n, chunk):
        block = np.asarray(scores[s : s + chunk], dtype=np.float64)
        finite = np.isfinite(block).all(axis=1)
        if not finite.all():
            row = s + int(np.flatnonzero(~finite)[0])
            raise fail(f"predictions file {p} holds NaN or inf scores (row {row})")
        sums = block.sum(axis=1)
        unit = ((block >= -1e-6) & (block <= 1 + 1e-6)).all(axis=1)
        prob = unit & (np.abs(sums - 1) <= PROB_TOLERANCE)
        pct = (block >= 0).all(axis=1) & (np.abs(sums - 100) <= 100 * PROB_TOLERANCE)
        n_prob += int(prob.sum())
        n_pct += int(pct.sum())
        outside = outside or not unit.all()
        if first_bad is None and not prob.all():
            r = int(np.flatnonzero(~prob)[0])
            first_bad = (s + r, float(sums[r]))
        top = block.max(axis=1)
        pred[s : s + chunk] = block.argmax(axis=1)
        conf_prob[s : s + chunk] = np.clip(top, 0.0, 1.0)
        conf_logit[s : s + chunk] = 1.0 / np.exp(block - top[:, None]).sum(axis=1)
    if first_bad is None:
        return pred, conf_prob, "probabilities"
    row, total = first_bad
    if n_pct == n:
        raise fail(
            f"predictions file {p}: every row sums to 100 (row {row}: {total:.4g}); these "
            "look like percentages: divide them by 100"
        )
    if not outside:
        raise fail(
            f"predictions file {p}: row {row} sums to {total:.4g}, not 1, so the scores are "
            "not probabilities, and every value lies in [0, 1], so they are not logits "
            "either (per-class sigmoid scores?); give probabilities whose rows sum to 1, "
            "or logits"
        )
    if n_prob > n / 2:
        raise fail(
            f"predictions file {p}: {n - n_prob} of {n} rows are not probabilities (row "
            f"{row} sums to {total:.4g} or holds a value outside [0, 1]) while the others "
            "are; fix those rows"
        )
    logger.warning(
        "predictions file %s holds logits, not probabilities (values outside [0, 1], rows "
        "not summing to 1; row %d sums to %.4g): confidence is their softmax",
        p, row, total,
    )  # fmt: skip
    return pred, conf_logit, "logits"


def _order_prob_columns(cols: list[str], classes: list[str], p: Path) -> list[str]:
    """``prob_*`` columns in class order: by class name, or ``prob_0..prob_{K-1}`` by index."""
    suffixes = [str(c)[len("prob_") :] for c in cols]
    by_name = dict(zip(suffixes, cols, strict=True))
    if set(suffixes) == set(classes):
        return [by_name[c] for c in classes]
    positional = [str(i) for i in range(len(cols))]
    if sorted(suffixes) == sorted(positional):
        logger.info(
            "predictions file %s: prob_0 .. prob_%d matched to the classes by position "
            "(prob_k is class k of %s)", p, len(cols) - 1, _show(classes),
        )  # fmt: skip
        return [by_name[k] for k in positional]
    unmatched = [c for c, x in zip(cols, suffixes, strict=True) if x not in classes]
    missing = [c for c in classes if c not in by_name]
    raise fail(
        f"predictions file {p}: the prob_* columns do not match the classes "
        f"{_show(classes)}: no class for {_show(unmatched, 5)}, no column for "
        f"{_show(missing, 5)}; name them prob_<class name> (or prob_0 .. prob_{len(cols) - 1} "
        "in class order)"
    )


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
