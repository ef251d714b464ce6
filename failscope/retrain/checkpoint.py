"""Saving and loading retrained heads, and re-loading the audited model of a run.

Retrained heads: ``<name>.safetensors`` plus ``<name>.json``. The JSON holds what
rebuilds the module (``kind`` and its constructor arguments), the method that
trained it and where its input features come from. The weights are a safetensors
``state_dict`` (no pickle). A head trained on a frozen backbone stores the head
only; a fine-tuned backbone's weights are stored under ``backbone.*`` and loaded
when :func:`load_retrained` is given the backbone module.

The audited model (:func:`load_audited_model`) is re-loaded from the files that
``run.json["model"]`` names, and only if their sha256 is still the one ``discover``
recorded: a model file or checkpoint replaced since then is refused. Trust in a
pickled checkpoint is never read back from ``run.json``: each command needs its
own ``trust_checkpoint=True`` (``--trust-checkpoint``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from failscope._validation import fail

__all__ = ["CHECKPOINT_FORMAT", "load_audited_model", "load_retrained", "save_retrained"]

CHECKPOINT_FORMAT = 1
_KINDS = ("slice_aware", "linear")


def _kind(model: Any) -> str:
    from failscope.retrain.sbl import LinearHead, SliceAwareClassifier

    if isinstance(model, SliceAwareClassifier):
        return "slice_aware"
    if isinstance(model, LinearHead):
        return "linear"
    raise TypeError(f"cannot save a {type(model).__name__}; expected a failscope retrain head")


def _stem(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    return p.with_suffix("") if p.suffix in (".safetensors", ".json") else p


def save_retrained(
    model: Any, path: str | os.PathLike[str], *, info: dict[str, Any] | None = None
) -> Path:
    """Write ``path.safetensors`` and ``path.json``; returns the ``.safetensors`` path.

    Parameters
    ----------
    model : SliceAwareClassifier or LinearHead
    path : path
        Stem (a ``.safetensors`` or ``.json`` suffix is dropped).
    info : dict, optional
        Extra JSON-serialisable facts stored under ``"info"`` (method, features, ...).
    """
    from safetensors.torch import save_file

    from failscope.run import atomic_write, write_json

    stem = _stem(path)
    kind = _kind(model)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if getattr(model, "freeze_backbone", True):
        state = {k: v for k, v in state.items() if not k.startswith("backbone.")}
    weights = stem.with_suffix(".safetensors")
    atomic_write(weights, lambda tmp: save_file(state, str(tmp)))
    write_json(
        stem.with_suffix(".json"),
        {
            "format": CHECKPOINT_FORMAT,
            "kind": kind,
            "config": model.config(),
            "weights": weights.name,
            "info": info or {},
        },
    )
    return weights


def load_retrained(path: str | os.PathLike[str], *, backbone: Any | None = None) -> Any:
    """Load a head written by :func:`save_retrained` (in eval mode).

    Parameters
    ----------
    path : path
        The ``.safetensors`` file, its ``.json`` sibling, or their common stem.
    backbone : nn.Module, optional
        Attached to the head; its weights are restored too if they were fine-tuned.

    Returns
    -------
    SliceAwareClassifier or LinearHead
        Call ``model.forward_features(features)["logits"]`` on cached features, or
        ``model(x)`` when a backbone is attached. ``model.retrain_info`` holds ``info``.
    """
    from safetensors.torch import load_file

    from failscope.retrain.sbl import LinearHead, SliceAwareClassifier
    from failscope.run import read_json

    stem = _stem(path)
    meta = read_json(stem.with_suffix(".json"), what="retrained model config")
    if meta.get("format") != CHECKPOINT_FORMAT or meta.get("kind") not in _KINDS:
        raise fail(
            f"{stem.with_suffix('.json')} is not a failscope retrained-model config "
            f"(format {meta.get('format')!r}, kind {meta.get('kind')!r})"
        )
    weights = stem.parent / meta.get("weights", stem.with_suffix(".safetensors").name)
    if not weights.is_file():
        raise fail(f"retrained weights not found: {weights}")
    cls = SliceAwareClassifier if meta["kind"] == "slice_aware" else LinearHead
    model = cls(**meta["config"], backbone=backbone)
    state = load_file(str(weights))
    has_backbone = any(k.startswith("backbone.") for k in state)
    if backbone is None and has_backbone:
        state = {k: v for k, v in state.items() if not k.startswith("backbone.")}
    strict = backbone is None or has_backbone
    missing, unexpected = model.load_state_dict(state, strict=False)
    bad_missing = [k for k in missing if not (k.startswith("backbone.") and not strict)]
    if bad_missing or unexpected:
        raise fail(
            f"{weights} does not match its config (missing {bad_missing}, "
            f"unexpected {list(unexpected)})"
        )
    model.retrain_info = dict(meta.get("info") or {})
    model.eval()
    return model


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON config of a saved head (for inspection)."""
    return json.loads(_stem(path).with_suffix(".json").read_text(encoding="utf-8"))


def load_audited_model(run: Any, *, trust_checkpoint: bool = False) -> Any:
    """The audited model of ``run``, re-loaded after checking its files' sha256.

    Parameters
    ----------
    run : Run
        A discover run whose ``run.json["model"]`` is a loadable spec (TorchScript,
        ``torchvision:ARCH`` or ``module:function``).
    trust_checkpoint : bool, default=False
        Allow a checkpoint that needs pickle. What ``discover`` was allowed is not
        carried over.

    Returns
    -------
    torch.nn.Module
        In eval mode, on CPU.

    Raises
    ------
    InputError
        The model file or checkpoint changed since ``discover`` (sha256 differs from
        ``run.json``'s ``model.sha256``) or has no recorded hash; or it cannot be loaded.
    """
    from failscope.data.models import load_model
    from failscope.run import file_sha256

    spec = run.info.model
    for key, what, path in (("spec", "model file", spec.spec), ("checkpoint", "checkpoint",
                                                                  spec.checkpoint)):  # fmt: skip
        if not (isinstance(path, str) and Path(path).is_file()):
            continue  # module:function, no checkpoint, or missing (load_model says so)
        want = spec.sha256.get(key)
        if not want:
            raise fail(
                f"{run.path}/run.json records no sha256 for the audited model's {what} "
                f"{path}, so it cannot be checked; re-run `failscope discover`"
            )
        got = file_sha256(path, memo=False)
        if got != want:
            raise fail(
                f"the audited model's {what} {path} changed since discover (sha256 "
                f"{got[:12]}..., run.json recorded {want[:12]}...); re-run `failscope "
                "discover` with the current file"
            )
    return load_model(spec.to_json(), trust_checkpoint=trust_checkpoint)
