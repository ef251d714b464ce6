"""The world's own small CLIP, loadable through open_clip like any pretrained model.

The architecture is an open_clip model config (``failscope-world-clip.json``: an
open_clip ``ModifiedResNet`` image tower with 32x32 input, width 16 and one
bottleneck per stage; a 1-layer text transformer of width 64 with context
length 32; a 64-d joint space) and the weights are a float16 safetensors file
trained by :mod:`failscope.world.clip.train`.
Images are normalised with open_clip's default (OpenAI) mean and std.

Examples
--------
>>> model, preprocess, tokenizer = load_world_clip()  # doctest: +SKIP
>>> import open_clip  # doctest: +SKIP
>>> register_world_clip()  # doctest: +SKIP
>>> open_clip.create_model_and_transforms(WORLD_CLIP_NAME, pretrained=str(WORLD_CLIP_WEIGHTS))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = [
    "WORLD_CLIP_CONFIG",
    "WORLD_CLIP_NAME",
    "WORLD_CLIP_WEIGHTS",
    "load_world_clip",
    "register_world_clip",
]

_HERE = Path(__file__).resolve().parent
WORLD_CLIP_NAME = "failscope-world-clip"
WORLD_CLIP_CONFIG = _HERE / f"{WORLD_CLIP_NAME}.json"
WORLD_CLIP_WEIGHTS = _HERE / "weights.safetensors"


def register_world_clip() -> str:
    """Register the world CLIP's config with open_clip (idempotent).

    Returns
    -------
    str
        The model name to pass to ``open_clip.create_model_and_transforms``.
    """
    import open_clip

    if WORLD_CLIP_NAME not in open_clip.list_models():
        open_clip.add_model_config(WORLD_CLIP_CONFIG)
    return WORLD_CLIP_NAME


def load_world_clip(
    device: str = "cpu", *, weights: str | Path | None = None
) -> tuple[Any, Any, Any]:
    """Load the world CLIP through open_clip's pretrained-checkpoint code path.

    Parameters
    ----------
    device : str, default "cpu"
        Torch device for the model.
    weights : path, optional
        Weights file; defaults to the shipped :data:`WORLD_CLIP_WEIGHTS`.

    Returns
    -------
    model : open_clip.CLIP
        In eval mode, float32.
    preprocess : callable
        PIL image -> tensor of shape (3, 32, 32).
    tokenizer : callable
        list of str -> LongTensor of shape (n, 32).
    """
    import open_clip

    path = Path(weights) if weights is not None else WORLD_CLIP_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(
            f"world CLIP weights not found at {path}; train them with "
            "`python -m failscope.world.clip.train --out <path>`"
        )
    name = register_world_clip()
    model, _, preprocess = open_clip.create_model_and_transforms(
        name, pretrained=str(path), device=device
    )
    model.eval()
    tokenizer = open_clip.get_tokenizer(name)
    return model, preprocess, tokenizer
