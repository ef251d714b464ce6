"""Render digit scenes: a handwritten glyph composited onto a coloured, textured background.

Glyphs are the 1,797 8x8 handwritten digits bundled with scikit-learn
(:func:`sklearn.datasets.load_digits`). They are split once, by a fixed seed
(:data:`GLYPH_SPLIT_SEED`) and stratified by class, into ``train`` (60%),
``val`` (20%) and ``test`` (20%) pools. The split does not depend on a world's
seed, so the world CLIP, trained on the ``train`` pool only, never sees a
val or test glyph of any world.

Rendering is vectorised numpy and deterministic for a given
:class:`numpy.random.Generator` state.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from failscope.world.attributes import BACKGROUND_RGB, CLASS_NAMES, DIGIT_RGB, FAMILIES

__all__ = [
    "GLYPH_ALPHA",
    "GLYPH_SPLIT_SEED",
    "IMAGE_SIZE",
    "SIZE_PIXELS",
    "glyph_pools",
    "load_glyphs",
    "render_scenes",
    "sample_uniform_attributes",
]

IMAGE_SIZE = 32
GLYPH_SPLIT_SEED = 0
#: Side length in pixels of the digit for each ``size`` value.
SIZE_PIXELS: dict[str, int] = {"small": 12, "medium": 18, "large": 26}
#: Blur sigma in pixels of the background, and of a ``small`` glyph (scaled by side).
_BLUR_SIGMA = 1.1
_NOISE_STD = 24.0
_COLOR_JITTER = 12.0
_SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
#: A pixel belongs to the glyph when the digit's opacity there is at least this.
GLYPH_ALPHA = 0.1


@lru_cache(maxsize=1)
def load_glyphs() -> tuple[np.ndarray, np.ndarray]:
    """Return the bundled glyphs and their classes.

    Returns
    -------
    images : ndarray of shape (1797, 8, 8), float32 in [0, 1]
    labels : ndarray of shape (1797,), int64
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    images.setflags(write=False)
    labels = digits.target.astype(np.int64)
    labels.setflags(write=False)
    return images, labels


@lru_cache(maxsize=1)
def glyph_pools() -> dict[str, np.ndarray]:
    """Return the fixed, class-stratified glyph split.

    Returns
    -------
    dict
        ``{"train": ids, "val": ids, "test": ids}``, sorted int64 arrays of
        glyph ids (indices into :func:`load_glyphs`), pairwise disjoint.
    """
    _, labels = load_glyphs()
    rng = np.random.default_rng(GLYPH_SPLIT_SEED)
    pools: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for cls in range(len(CLASS_NAMES)):
        ids = rng.permutation(np.flatnonzero(labels == cls))
        n_train = round(_SPLIT_FRACTIONS[0] * len(ids))
        n_val = round(_SPLIT_FRACTIONS[1] * len(ids))
        pools["train"].append(ids[:n_train])
        pools["val"].append(ids[n_train : n_train + n_val])
        pools["test"].append(ids[n_train + n_val :])
    out = {}
    for split, parts in pools.items():
        arr = np.sort(np.concatenate(parts)).astype(np.int64)
        arr.setflags(write=False)
        out[split] = arr
    return out


def sample_uniform_attributes(n: int, *, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draw ``n`` examples' attributes uniformly and independently.

    Returns
    -------
    dict
        Family name -> ndarray of shape (n,) of value words (object dtype).
    """
    return {
        family: np.asarray(values, dtype=object)[rng.integers(0, len(values), size=n)]
        for family, values in FAMILIES.items()
    }


@lru_cache(maxsize=8)
def _resize_matrix(out_size: int, in_size: int = 8) -> np.ndarray:
    """Bilinear interpolation matrix of shape (out_size, in_size), half-pixel centres."""
    pos = (np.arange(out_size) + 0.5) * in_size / out_size - 0.5
    pos = np.clip(pos, 0, in_size - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, in_size - 1)
    frac = pos - lo
    mat = np.zeros((out_size, in_size), dtype=np.float32)
    mat[np.arange(out_size), lo] += 1 - frac
    mat[np.arange(out_size), hi] += frac
    return mat


@lru_cache(maxsize=8)
def _blur_matrix(sigma: float, size: int = IMAGE_SIZE) -> np.ndarray:
    """Gaussian blur as a (size, size) matrix with reflected edges."""
    radius = int(np.ceil(3 * sigma))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    mat = np.zeros((size, size), dtype=np.float32)
    for i in range(size):
        for off, k in zip(offsets, kernel, strict=True):
            j = i + off
            j = -j - 1 if j < 0 else (2 * size - j - 1 if j >= size else j)
            mat[i, j] += k
    return mat


def _texture_masks(texture: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return (n, 32, 32) float32 masks, 1 where the texture pattern is drawn."""
    n = len(texture)
    yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32)
    phase_x = rng.integers(0, 8, size=n)[:, None, None]
    phase_y = rng.integers(0, 8, size=n)[:, None, None]
    x = xx[None] + phase_x
    y = yy[None] + phase_y
    masks = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    patterns = {
        "striped": ((x + y) % 8) < 4,
        "dotted": ((x % 7) < 3) & ((y % 7) < 3),
        "checkered": ((x // 6 + y // 6) % 2) == 0,
        "wavy": ((y + 2.5 * np.sin(2 * np.pi * x / 10.0)) % 8) < 3,
    }
    for name, pattern in patterns.items():
        sel = texture == name
        masks[sel] = pattern[sel]
    return masks


def render_scenes(
    glyph_ids: np.ndarray,
    attributes: dict[str, np.ndarray],
    *,
    rng: np.random.Generator,
    return_boxes: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Render one RGB scene per example.

    Parameters
    ----------
    glyph_ids : ndarray of shape (n,)
        Indices into :func:`load_glyphs`.
    attributes : dict
        Family name -> ndarray of shape (n,) of value words, one entry per
        family of :data:`~failscope.world.attributes.FAMILIES`.
    rng : numpy.random.Generator
        Source of the per-example jitter (position, colour shade, pattern phase,
        sensor noise). The same state gives the same pixels.
    return_boxes : bool, default False
        Also return each glyph's bounding box.

    Returns
    -------
    images : ndarray of shape (n, 32, 32, 3), uint8
    boxes : ndarray of shape (n, 4), int16
        Only with ``return_boxes``: ``(x0, y0, x1, y1)`` in pixels, end exclusive, the
        tightest box around the pixels where the digit's opacity is at least
        :data:`GLYPH_ALPHA` (after blur); the rest of the image is background.
        Asking for boxes does not change the pixels or the random stream.
    """
    glyphs, _ = load_glyphs()
    glyph_ids = np.asarray(glyph_ids, dtype=np.int64)
    n = len(glyph_ids)
    attrs = {f: np.asarray(attributes[f], dtype=object) for f in FAMILIES}

    # Background: base colour, jittered, with a texture drawn in a shade that
    # is lighter on dark backgrounds and darker on light ones.
    bg = np.array([BACKGROUND_RGB[v] for v in attrs["background"]], dtype=np.float32)
    bg = np.clip(bg + rng.uniform(-_COLOR_JITTER, _COLOR_JITTER, size=(n, 3)), 0, 255)
    lum = bg @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    dark = (lum < 110)[:, None]
    shade = np.where(dark, bg + (255 - bg) * 0.4, bg * 0.5)
    mask = _texture_masks(attrs["texture"], rng)[..., None]
    img = bg[:, None, None, :] * (1 - mask) + shade[:, None, None, :] * mask

    # Digit: glyph resized to its size, placed at a random position.
    fg = np.array([DIGIT_RGB[v] for v in attrs["color"]], dtype=np.float32)
    fg = np.clip(fg + rng.uniform(-_COLOR_JITTER, _COLOR_JITTER, size=(n, 3)), 0, 255)
    alpha = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    sizes = attrs["size"]
    offsets = rng.random(size=(n, 2))
    # A blurry glyph is blurred by a sigma proportional to its side (and its
    # background, below, by a fixed sigma), so blur costs every size the same
    # share of its legibility. (A fixed-pixel blur nearly erased small glyphs but
    # left large ones legible, which tied every blurry failure to "small".)
    is_blurry = attrs["quality"] == "blurry"
    for size_word, side in SIZE_PIXELS.items():
        sel = np.flatnonzero(sizes == size_word)
        if len(sel) == 0:
            continue
        mat = _resize_matrix(side)
        resized = mat @ glyphs[glyph_ids[sel]] @ mat.T
        resized = np.clip(resized * 1.4 - 0.1, 0, 1)
        top_left = np.floor(offsets[sel] * (IMAGE_SIZE - side + 1)).astype(int)
        for row, (y0, x0), patch in zip(sel, top_left, resized, strict=True):
            alpha[row, y0 : y0 + side, x0 : x0 + side] = patch
        soft = sel[is_blurry[sel]]
        if len(soft):
            blur = _blur_matrix(_BLUR_SIGMA * side / SIZE_PIXELS["small"])
            alpha[soft] = blur @ alpha[soft] @ blur.T
    blurry = np.flatnonzero(is_blurry)
    if len(blurry):
        mat = _blur_matrix(_BLUR_SIGMA)
        chw = img[blurry].transpose(0, 3, 1, 2)
        img[blurry] = (mat @ chw @ mat.T).transpose(0, 2, 3, 1)
    boxes = _boxes(alpha) if return_boxes else None
    alpha = alpha[..., None]
    img = img * (1 - alpha) + fg[:, None, None, :] * alpha

    # Quality, sensor noise.
    grainy = np.flatnonzero(attrs["quality"] == "grainy")
    noise = rng.normal(0.0, _NOISE_STD, size=(len(grainy), IMAGE_SIZE, IMAGE_SIZE, 3))
    img[grainy] += noise.astype(np.float32)
    images = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return images if boxes is None else (images, boxes)


def _boxes(alpha: np.ndarray) -> np.ndarray:
    """Tight ``(x0, y0, x1, y1)`` boxes of ``alpha >= GLYPH_ALPHA``, shape (n, 4); an
    inkless glyph gets the empty box (0, 0, 0, 0)."""
    ink = alpha >= GLYPH_ALPHA
    rows, cols = ink.any(axis=2), ink.any(axis=1)  # (n, 32): which rows / columns have ink
    has = rows.any(axis=1)
    size = ink.shape[1]
    y0, y1 = rows.argmax(axis=1), size - rows[:, ::-1].argmax(axis=1)
    x0, x1 = cols.argmax(axis=1), size - cols[:, ::-1].argmax(axis=1)
    boxes = np.stack([x0, y0, x1, y1], axis=1) * has[:, None]
    return boxes.astype(np.int16)
