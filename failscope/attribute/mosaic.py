"""The attribution mosaic of a slice: the image regions the model attends to, tiled.

Left: a 4 x 4 grid of crops, one per member (failures first, then by slice score),
each centred on the cell of its attribution map with the most attribution and half
the image's side wide; failures have a red frame. Right: the first four members
whole, with the attribution heat map (upsampled, "jet") blended over them. Images
are shown as the audited model saw them (its resize and centre crop).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["mosaic_image"]

logger = logging.getLogger(__name__)

TILE = 48  # side of a crop tile, pixels
OVERLAY = 96  # side of an overlaid whole image
GRID = 4  # crops per side
N_OVERLAYS = 4
_GAP = 4
_FAIL_RGB = (220, 30, 30)


def _model_view(path: Path, image_size: int | None) -> Any:
    """The image as the audited model saw it (resize + centre crop), or None if unreadable."""
    from PIL import Image
    from torchvision.transforms import functional as TF

    from failscope.data.datasets import to_rgb

    try:
        with Image.open(path) as im:
            rgb = to_rgb(im)
    except Exception as exc:  # a mosaic is still useful without one image
        logger.debug("mosaic: cannot read %s: %s", path, exc)
        return None
    if image_size:
        rgb = TF.center_crop(TF.resize(rgb, int(image_size), antialias=True), int(image_size))
    return rgb


def _upsampled(amap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A map (h, w) resized to (height, width) pixels, bilinear, in [0, 1]."""
    from PIL import Image

    im = Image.fromarray(np.nan_to_num(amap.astype(np.float32)), mode="F")
    return np.clip(np.asarray(im.resize((size[1], size[0]), Image.BILINEAR)), 0, 1)


def _resized(im: Any, side: int) -> Any:
    from PIL import Image

    small = max(im.size) < side  # enlarge pixel art without smoothing it
    return im.resize((side, side), Image.NEAREST if small else Image.LANCZOS)


def _crop(im: Any, amap: np.ndarray) -> Any:
    w, h = im.size
    i, j = np.unravel_index(int(np.nanargmax(amap)), amap.shape)
    cy, cx = (i + 0.5) * h / amap.shape[0], (j + 0.5) * w / amap.shape[1]
    half = max(1, min(w, h) // 4)
    x0 = int(np.clip(round(cx - half), 0, max(0, w - 2 * half)))
    y0 = int(np.clip(round(cy - half), 0, max(0, h - 2 * half)))
    return im.crop((x0, y0, x0 + 2 * half, y0 + 2 * half))


def _overlay(im: Any, amap: np.ndarray) -> Any:
    from matplotlib import colormaps
    from PIL import Image

    arr = np.asarray(im, dtype=np.float32)
    heat = colormaps["jet"](_upsampled(amap, arr.shape[:2]))[..., :3] * 255
    return Image.fromarray(np.uint8(np.clip(0.5 * arr + 0.5 * heat, 0, 255)))


def mosaic_image(
    paths: list[Path], maps: np.ndarray, wrong: np.ndarray, *, image_size: int | None
) -> Any:
    """The mosaic of one slice (see the module docstring) as a PIL image.

    Parameters
    ----------
    paths : list of Path
        The members' image files, in display order (failures first).
    maps : ndarray of shape (len(paths), h, w)
        Their attribution maps.
    wrong : ndarray of bool, shape (len(paths),)
        Whether the audited model got each wrong.
    image_size : int or None
        The model's input side (its resize and centre crop), None: as stored.
    """
    from PIL import Image, ImageDraw

    side = GRID * TILE
    canvas = Image.new("RGB", (side + _GAP + 2 * OVERLAY, max(side, 2 * OVERLAY)), "white")
    draw = ImageDraw.Draw(canvas)
    shown = 0
    for path, amap, bad in zip(paths, maps, wrong, strict=True):
        if shown >= GRID * GRID:
            break
        im = _model_view(path, image_size)
        if im is None or not np.isfinite(amap).all():
            continue
        r, c = divmod(shown, GRID)
        canvas.paste(_resized(_crop(im, amap), TILE), (c * TILE, r * TILE))
        if bad:
            draw.rectangle((c * TILE, r * TILE, (c + 1) * TILE - 1, (r + 1) * TILE - 1),
                           outline=_FAIL_RGB, width=2)  # fmt: skip
        if shown < N_OVERLAYS:
            r2, c2 = divmod(shown, 2)
            canvas.paste(_resized(_overlay(im, amap), OVERLAY),
                         (side + _GAP + c2 * OVERLAY, r2 * OVERLAY))  # fmt: skip
        shown += 1
    return canvas
