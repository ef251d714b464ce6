"""Rank candidate captions along a class's failure direction.

Two scores for a caption ``t`` of class ``c`` with CLIP text embedding ``e_t``
(higher = more failure-like in both):

``"centroid"`` (default)
    The cosine between ``e_t`` and the failure centroid ``v_fail = mean(the N
    highest failure-scored images of c) - mean(all images of c)``, raw CLIP space,
    fitting split, N=50::

        score(t) = e_t · v_fail / (||e_t|| ||v_fail||)

    The success end has its own centroid, from the N *lowest*-scored images
    (``v_ok = mean(bottom N) - mean(all)``): success captions are the candidates
    with the lowest ``-cos(e_t, v_ok)``, i.e. those that best describe the most
    success-aligned images. (The two ends are not mirror images: for a spurious
    cue, the success end is the small group that carries the cue.)

``"classifier"`` (the class's own linear error classifier reads the caption)
    Image embeddings reach the classifier as ``z = n((x - mean_) / scale_)`` with
    ``n(v) = v / ||v||``. A text embedding is not an image embedding (CLIP's
    modality gap puts all captions in a cone of their own), so the caption is
    read as a *change* relative to the class's reference caption
    ``e_ref = "a photo of a {class}"``: the difference cancels the gap and the
    class content, and the mean cancels too. The score is the cosine between
    the failure direction and that change, standardised like the images::

        score(t) = directions_[c] · n((e_t - e_ref) / scale_)

    in [-1, 1]; positive means "this wording moves an image towards the
    failure side". Success captions are the lowest-scoring candidates. Computed
    without materialising the standardised matrix: ``w·(e/s) - w·(r/s)`` over
    ``sqrt(||e/s||² - 2 (e/s)·(r/s) + ||r/s||²)``.

Re-ranking by the caption check (:func:`check_rerank`, on by default in
:func:`failscope.caption.caption_run`, ``rerank=5``): a score proposes, the check
disposes. The first 5 distinct captions at each end are re-ordered by the audited
model's accuracy on the class's **fitting-split** (validation) images nearest to
the caption's text, averaged over the depths 5, 10, ... (lowest first at the
failure end, highest at the success end). The curve runs to the check's
``decision_k`` (50) at the success end and, at the failure end, to the class's
slice size in the fitting split if that is larger: the caption must name a
group as large as the slice, not just its hardest corner. This is the paper's
own test of a caption, asked of held-in images; the test split stays for the
reported check. It settles what a direction cannot: when two values share the
extreme of the direction (the most success-aligned 7s are both large and red),
the caption whose images the model really gets right (red 7s: always) beats
the one it only mostly gets right (large 7s: 0.8); and when a spurious red 7
also makes red 3s fail, "small" (the planted rare 3s: about 130 validation
images at accuracy 0.40) beats "red" (about 60 at 0.44).

Why ``"centroid"`` (with re-ranking) is the default: on the built-in world
(shipped world CLIP, seeds 0-4, the eight plant sets of
``benchmarks/caption_accuracy.py``: 65 planted slices, full world vocabulary),
the planted value word was the top-1 caption for 0.954 of the slices with
``"centroid"`` vs 0.938 with ``"classifier"``, and in the top 5 for 1.000 vs
0.985. ``"centroid"``'s three misses put the planted value second: twice "small 8"
before "blurry 8" (small 8s are the world's hardest 8s even when sharp), once
"red 3" before "small 3" in a world whose spurious red 7s make red 3s fail too.
The classifier score's extra misses are at the success end of spurious plants:
its symmetric score puts the world's generic easy factors ("large",
backgrounds) in the top 5 and can leave the cue out, where re-ranking cannot
reach it. Also measured (world version 1, original four plant sets, 30 slices,
without re-ranking) and not used: centring text embeddings within each family
(0.63 / 1.00), a top-minus-bottom contrast centroid (0.77 / 0.97), N=25 or 100
(0.73 / 0.97, 0.57 / 1.00), and subtracting the other classes' mean score per
caption (raises top-1 but hides failure modes shared by all classes, such as
small digits); and, for re-ranking, a curve that stops at depth 50 at both ends
(top-1 0.73 vs 0.84 on the first 45 slices).

Both scores are one matrix-vector pass over the candidates: ranking 100,000
embedded candidates of a class takes ~0.2 s (target < 5 s;
``benchmarks/caption_speed.py``).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from failscope._validation import check_choice, check_int, fail

__all__ = [
    "DEFAULT_METHOD",
    "METHODS",
    "N_CENTROID",
    "RERANK_TOP",
    "centroid_scores",
    "check_rerank",
    "classifier_scores",
    "failure_centroid",
    "select_top",
]

METHODS = ("centroid", "classifier")
DEFAULT_METHOD = "centroid"
N_CENTROID = 50
#: Candidates re-ordered by the caption check on the fitting split (see :func:`check_rerank`).
RERANK_TOP = 5
#: Depth step of the re-ranking accuracy curve (the check's curve uses the same).
RERANK_STEP = 5
_CHUNK = 32768


def _as_rows(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != 2:
        raise fail(f"{name} must be 2-D (n, d), got shape {arr.shape}")
    return arr


def _as_vector(x: Any, d: int, name: str) -> np.ndarray:
    v = np.asarray(x, dtype=np.float32).ravel()
    if v.shape != (d,):
        raise fail(f"{name} must have {d} values to match the text embeddings, got {v.shape}")
    if not np.all(np.isfinite(v)):
        raise fail(f"{name} contains NaN or inf (a skipped class has no direction)")
    return v


def classifier_scores(
    text_emb: Any, *, reference: Any, direction: Any, scale: Any, chunk: int = _CHUNK
) -> np.ndarray:
    """Score captions with a class's linear error classifier.

    ``score = direction · n((text_emb - reference) / scale)``, see the module docstring.

    Parameters
    ----------
    text_emb : array-like of shape (n, d)
        Caption text embeddings.
    reference : array-like of shape (d,)
        Text embedding of the class's reference caption "a photo of a {class}".
    direction : array-like of shape (d,)
        The class's unit failure direction (``ErrorDirections.directions_[c]``).
    scale : array-like of shape (d,)
        ``ErrorDirections.scale_``.
    chunk : int, default=32768
        Rows processed at a time.

    Returns
    -------
    ndarray of shape (n,), float32
        Cosines in [-1, 1]; 0 for a caption whose embedding equals the reference.
    """
    e = _as_rows(text_emb, "text_emb")
    d = e.shape[1]
    r = _as_vector(reference, d, "reference")
    w = _as_vector(direction, d, "direction")
    s = _as_vector(scale, d, "scale")
    inv = 1.0 / s
    # e·a, e·b and (e*e)·c give numerator and squared norm for every row.
    proj = np.stack([w * inv, r * inv * inv]).T.astype(np.float32)  # (d, 2)
    inv2 = (inv * inv).astype(np.float32)
    w_r = float(w @ (r * inv))
    r_r = float((r * inv) @ (r * inv))
    out = np.empty(len(e), dtype=np.float32)
    for start in range(0, len(e), chunk):
        block = e[start : start + chunk]
        ab = block @ proj
        sq = (block * block) @ inv2
        num = ab[:, 0] - w_r
        norm2 = sq - 2.0 * ab[:, 1] + r_r
        norm = np.sqrt(np.maximum(norm2, 0.0))
        out[start : start + chunk] = np.where(norm > 1e-6, num / np.maximum(norm, 1e-6), 0.0)
    return out


def failure_centroid(embeddings: Any, failure_scores: Any, *, n: int = N_CENTROID) -> np.ndarray:
    """Mean of the ``n`` most failure-aligned images minus the mean of all of them.

    Parameters
    ----------
    embeddings : array-like of shape (m, d)
        Raw CLIP image embeddings of one class (fitting split).
    failure_scores : array-like of shape (m,)
        Their failure scores.
    n : int, default=50
        How many top-scored images form the failure centroid (capped at ``m``).

    Returns
    -------
    ndarray of shape (d,), float32
    """
    x = _as_rows(embeddings, "embeddings")
    f = np.asarray(failure_scores, dtype=np.float64).ravel()
    if len(f) != len(x):
        raise fail(f"failure_scores has {len(f)} values for {len(x)} embeddings")
    check_int(n, name="n_centroid", low=1)
    finite = np.isfinite(f)
    if not finite.any():
        raise fail("no finite failure score; the class has no direction")
    x, f = x[finite], f[finite]
    top = np.argsort(-f, kind="stable")[: min(n, len(f))]
    return (x[top].mean(axis=0) - x.mean(axis=0)).astype(np.float32)


def centroid_scores(text_emb: Any, *, centroid: Any, chunk: int = _CHUNK) -> np.ndarray:
    """Cosine between each caption embedding and a failure centroid.

    Parameters
    ----------
    text_emb : array-like of shape (n, d)
    centroid : array-like of shape (d,)
        From :func:`failure_centroid`.

    Returns
    -------
    ndarray of shape (n,), float32
    """
    e = _as_rows(text_emb, "text_emb")
    v = _as_vector(centroid, e.shape[1], "centroid")
    nv = float(np.linalg.norm(v))
    if nv == 0.0:
        return np.zeros(len(e), dtype=np.float32)
    v = v / nv
    out = np.empty(len(e), dtype=np.float32)
    for start in range(0, len(e), chunk):
        block = e[start : start + chunk]
        norms = np.sqrt((block * block).sum(axis=1))
        out[start : start + chunk] = (block @ v) / np.maximum(norms, 1e-12)
    return out


def select_top(
    scores: Any,
    k: int,
    *,
    largest: bool = True,
    groups: Sequence[Hashable] | None = None,
) -> np.ndarray:
    """Indices of the ``k`` best scores, best first.

    Parameters
    ----------
    scores : array-like of shape (n,)
    k : int
    largest : bool, default=True
        Highest scores first (failure captions); False for the lowest (success).
    groups : sequence of hashable, optional
        A group per candidate (e.g. its ``(family, word)``); at most one candidate
        per group is returned, so synonyms or templates of the same word do not
        crowd out other words.

    Returns
    -------
    ndarray of int, shape (<= k,)
        Ties are broken by candidate order.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    check_int(k, name="top_k", low=1)
    key = -s if largest else s
    key = np.where(np.isfinite(key), key, np.inf)
    if groups is None:
        if k < len(s):
            part = np.argpartition(key, k - 1)[:k]
            # stable order among the chosen: sort by (key, index)
            return part[np.lexsort((part, key[part]))]
        return np.lexsort((np.arange(len(s)), key))
    if len(groups) != len(s):
        raise fail(f"groups has {len(groups)} entries for {len(s)} scores")
    order = np.lexsort((np.arange(len(s)), key))
    out: list[int] = []
    seen: set[Hashable] = set()
    for i in order:
        g = groups[i]
        if g in seen:
            continue
        seen.add(g)
        out.append(int(i))
        if len(out) == k:
            break
    return np.asarray(out, dtype=np.int64)


def check_rerank(
    order: Any,
    text_emb: Any,
    image_emb: Any,
    correct: Any,
    *,
    k: int,
    end: str = "failure",
) -> tuple[np.ndarray, np.ndarray]:
    """Re-order proposed captions by the caption check on held-in images.

    For each proposed caption, the images of the class nearest to its text
    embedding are retrieved (:func:`failscope.caption.check.nearest_correct`) and
    the audited model's accuracy on the nearest ``j`` is averaged over the depths
    ``j = 5, 10, ..., k`` (the check's accuracy curve up to its decision depth;
    the near end weighs more, so a caption whose group is smaller than ``k`` is
    not diluted). The failure end puts the lowest mean accuracy first, the
    success end the highest; ties keep the proposed order. Give it the class's
    **fitting-split** images, never the test images that the caption check
    reports on.

    Parameters
    ----------
    order : array-like of int, shape (m,)
        Candidate indices, best proposal first (e.g. from :func:`select_top`).
    text_emb : array-like of shape (n, d)
        Text embeddings of all candidates (indexed by ``order``).
    image_emb : array-like of shape (p, d)
        The class's image embeddings.
    correct : array-like of bool, shape (p,)
        Whether the audited model got each image right.
    k : int
        Deepest depth (capped at ``p``), e.g. the check's ``decision_k(p)``.
    end : {"failure", "success"}, default="failure"

    Returns
    -------
    order : ndarray of int, shape (m,)
        The same indices, re-ordered.
    acc : ndarray of float, shape (m,)
        Each re-ordered caption's mean accuracy over the depths.
    """
    from failscope.caption.check import nearest_correct

    check_choice(end, ("failure", "success"), name="end")
    check_int(k, name="k", low=1)
    idx = np.asarray(order, dtype=np.int64).ravel()
    if len(idx) == 0:
        return idx, np.zeros(0)
    e = _as_rows(text_emb, "text_emb")
    hits = nearest_correct(image_emb, correct, e[idx], k=k)
    depth = hits.shape[1]
    if depth:
        curve = np.cumsum(hits, axis=1) / np.arange(1, depth + 1)
        depths = sorted({*range(RERANK_STEP, depth + 1, RERANK_STEP), depth})
        acc = curve[:, np.asarray(depths) - 1].mean(axis=1)
    else:
        acc = np.full(len(idx), np.nan)
    key = acc if end == "failure" else -acc
    perm = np.lexsort((np.arange(len(idx)), np.where(np.isfinite(key), key, np.inf)))
    return idx[perm], acc[perm]


def check_method(method: str) -> str:
    """Return ``method`` if it is a known scoring method."""
    return check_choice(method, METHODS, name="method")
