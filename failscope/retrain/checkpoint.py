"""Saving and loading retrained heads: ``<name>.safetensors`` plus ``<name>.json``.

The JSON holds what rebuilds the module (``kind`` and its constructor arguments), the
method that trained it and where its input features come from. The weights are a
safetensors ``state_dict`` (no pickle). A head trained on a frozen backbone stores
the head only; a fine-tuned backbone's weights are stored under ``backbone.*`` and
loaded when :func:`load_retrained` is given the backbone module.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from failscope._validation import fail

__all__ = ["CHECKPOINT_FORMAT", "load_retrained", "save_retrained"]

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
