"""Attribution focus: how concentrated a slice's attribution is, and where it falls.

Each map is first normalised to a distribution over its cells (sums to 1; a map
that is zero everywhere counts as uniform). For a group of examples (a slice's
members, or its class's correctly predicted examples) the measures are means
over the group:

* ``concentration``: ``1 - H(p) / log(h * w)``: 0 for attribution spread evenly,
  1 for all of it on one cell;
* ``outside_centre``: the share of attribution on cells outside the image's central
  half (the middle half of its width times the middle half of its height);
* ``outside_class_region``: the share outside the region the class's correctly
  predicted examples attend to: the fewest cells that hold half of their mean
  map's mass;
* ``background`` (world runs, from the glyph boxes): the share outside the glyph's
  bounding box, i.e. on the background.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["box_share", "class_region", "focus_measures", "normalised"]

#: Share of the class-correct mean map that its region holds.
REGION_MASS = 0.5


def normalised(maps: np.ndarray) -> np.ndarray:
    """Maps (n, h, w) as distributions over cells, float64 (n, h, w) summing to 1."""
    p = np.nan_to_num(np.asarray(maps, dtype=np.float64), nan=0.0).clip(min=0)
    total = p.sum(axis=(1, 2), keepdims=True)
    uniform = np.full_like(p, 1.0 / (p.shape[1] * p.shape[2]))
    return np.where(total > 0, p / np.where(total > 0, total, 1.0), uniform)


def _centre_cells(h: int, w: int) -> np.ndarray:
    """Cells whose centre lies in the central half of the image, (h, w) bool."""
    cy = (np.arange(h) + 0.5) / h
    cx = (np.arange(w) + 0.5) / w
    iny = (cy > 0.25) & (cy < 0.75)
    inx = (cx > 0.25) & (cx < 0.75)
    return iny[:, None] & inx[None, :]


def class_region(p_correct: np.ndarray, *, mass: float = REGION_MASS) -> np.ndarray:
    """The fewest cells holding ``mass`` of the mean of ``p_correct`` (n, h, w): (h, w) bool."""
    mean = p_correct.mean(axis=0)
    order = np.argsort(-mean, axis=None, kind="stable")
    cum = np.cumsum(mean.ravel()[order])
    k = int(np.searchsorted(cum, mass * cum[-1]) + 1)
    region = np.zeros(mean.size, dtype=bool)
    region[order[:k]] = True
    return region.reshape(mean.shape)


def box_share(p: np.ndarray, boxes: np.ndarray, *, image_size: tuple[int, int]) -> np.ndarray:
    """Attribution share inside pixel boxes, per example.

    Parameters
    ----------
    p : ndarray of shape (n, h, w)
        Normalised maps covering the whole image.
    boxes : ndarray of shape (n, 4)
        ``(x0, y0, x1, y1)`` in pixels, end exclusive.
    image_size : (height, width)

    Returns
    -------
    ndarray of float64, shape (n,)
        Each cell counts with the fraction of its area inside the box.
    """
    _, h, w = p.shape
    height, width = image_size
    boxes = np.asarray(boxes, dtype=np.float64)

    def overlap(lo: np.ndarray, hi: np.ndarray, cells: int, side: int) -> np.ndarray:
        edges = np.arange(cells + 1) * side / cells
        a = np.maximum(edges[None, :-1], lo[:, None])
        b = np.minimum(edges[None, 1:], hi[:, None])
        return np.clip(b - a, 0, None) / (side / cells)  # (n, cells) fraction inside

    fy = overlap(boxes[:, 1], boxes[:, 3], h, height)
    fx = overlap(boxes[:, 0], boxes[:, 2], w, width)
    return np.einsum("nhw,nh,nw->n", p, fy, fx)


def focus_measures(
    p: np.ndarray, *, region: np.ndarray, boxes: np.ndarray | None = None, image_size: Any = None
) -> dict[str, float | None]:
    """The group means of the module docstring's measures for normalised maps ``p``.

    Returns
    -------
    dict
        ``concentration``, ``outside_centre``, ``outside_class_region`` and, with
        ``boxes``, ``background``; None for an empty group.
    """
    if not len(p):
        keys = ["concentration", "outside_centre", "outside_class_region"]
        return dict.fromkeys(keys + (["background"] if boxes is not None else []))
    n, h, w = p.shape
    flat = p.reshape(n, -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(flat > 0, flat * np.log(flat), 0.0).sum(axis=1)
    out: dict[str, float | None] = {
        "concentration": float(np.mean(1 - entropy / np.log(h * w))) if h * w > 1 else 1.0,
        "outside_centre": float(np.mean(1 - (p * _centre_cells(h, w)).sum(axis=(1, 2)))),
        "outside_class_region": float(np.mean(1 - (p * region).sum(axis=(1, 2)))),
    }
    if boxes is not None:
        out["background"] = float(np.mean(1 - box_share(p, boxes, image_size=image_size)))
    return out
