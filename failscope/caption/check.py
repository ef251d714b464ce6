"""Caption check: are the images a caption retrieves really harder?

Jain et al.'s own test of a caption. For a class's top failure caption, take the
class's images nearest to the caption's text embedding (inner product over
L2-normalised CLIP image embeddings, a faiss ``IndexFlatIP``) and compare the
audited model's accuracy on the nearest K with its accuracy on the whole class.
The check runs on the **test** split, whose images took no part in fitting the
direction; without a test split it falls back to the fitting split and says so
(``"note"``), which is optimistic.

A caption is **confirmed** when, at the decision depth ``K*`` (50 if the class
has at least 100 images in the split, else half of them, at least 5):

* accuracy on the nearest ``K*`` is at least ``margin`` (default 0.05) below the
  class accuracy, and
* that many errors among ``K*`` images are unlikely by chance: the one-sided
  hypergeometric p-value of drawing at least that many of the class's errors in
  ``K*`` draws without replacement is below ``alpha`` (default 0.05).

* it beats random captions: errors cluster in embedding space, so the neighbourhood
  of almost any text can be harder than the class on average (a phrase CLIP never
  saw lands near the average caption and retrieves whatever cluster is there). With
  ``null_text_emb`` (:func:`failscope.caption.caption_run` passes every candidate
  caption of the class), ``N_NULL`` random captions are drawn from a Gaussian with
  the candidates' mean and per-dimension spread (seeded), and ``null_p_value =
  (1 + #{random captions whose nearest K* images are at least as hard}) / (1 +
  N_NULL)`` must be below ``alpha`` too.

A caption whose neighbours are no harder than average is ``confirmed: false``, and so
is every caption of a class with fewer than 10 images (or no errors) in the split.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from failscope._validation import check_fraction, fail

logger = logging.getLogger(__name__)

__all__ = [
    "CHECK_KS",
    "CURVE_KS",
    "check_captions",
    "decision_k",
    "nearest_correct",
    "random_captions",
]

CHECK_KS = (25, 50, 100)
CURVE_KS = tuple(range(5, 101, 5))
MARGIN = 0.05
ALPHA = 0.05
#: Random captions in the null test, and their seed.
N_NULL = 200
NULL_SEED = 0
#: Classes with fewer images in the split are never confirmed (too few to judge).
MIN_IMAGES = 10


def _normalize(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def nearest_correct(image_emb: Any, correct: Any, queries: Any, *, k: int) -> np.ndarray:
    """For each query, whether the model was right on its ``k`` nearest images.

    Parameters
    ----------
    image_emb : array-like of shape (n, d)
        CLIP image embeddings of one class (normalised here).
    correct : array-like of bool, shape (n,)
    queries : array-like of shape (m, d)
        Caption text embeddings (normalised here).
    k : int
        Neighbours to retrieve (capped at ``n``).

    Returns
    -------
    ndarray of bool, shape (m, min(k, n))
        Row ``i`` lists correctness of query ``i``'s neighbours, nearest first.
    """
    import faiss

    x = _normalize(np.asarray(image_emb))
    q = _normalize(np.atleast_2d(np.asarray(queries)))
    ok = np.asarray(correct, dtype=bool).ravel()
    if len(ok) != len(x):
        raise fail(f"correct has {len(ok)} values for {len(x)} image embeddings")
    if q.shape[1] != x.shape[1]:
        raise fail(f"caption embeddings have {q.shape[1]} dimensions, images {x.shape[1]}")
    kk = min(int(k), len(x))
    if kk == 0:
        return np.zeros((len(q), 0), dtype=bool)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    _, idx = index.search(q, kk)
    return ok[idx]


def random_captions(text_emb: Any, n: int = N_NULL, *, seed: int = NULL_SEED) -> np.ndarray:
    """``n`` random caption embeddings with the mean and per-dimension spread of ``text_emb``."""
    e = _normalize(np.asarray(text_emb))
    if len(e) < 2:
        raise fail("the null test needs at least 2 captions to estimate their spread")
    rng = np.random.default_rng(seed)
    draws = e.mean(axis=0) + rng.normal(size=(n, e.shape[1])) * e.std(axis=0, ddof=1)
    return draws.astype(np.float32)


def decision_k(n: int) -> int:
    """The depth at which a caption is judged: 50, or half a small class (>= 5)."""
    return 50 if n >= 100 else max(5, n // 2)


def _hypergeom_p(errors_in_k: int, k: int, n: int, errors: int) -> float:
    from scipy.stats import hypergeom

    return float(hypergeom.sf(errors_in_k - 1, n, errors, k))


def check_captions(
    texts: Sequence[str],
    text_emb: Any,
    image_emb: Any,
    correct: Any,
    *,
    split: str,
    note: str | None = None,
    ks: Sequence[int] = CHECK_KS,
    curve_ks: Sequence[int] = CURVE_KS,
    margin: float = MARGIN,
    alpha: float = ALPHA,
    null_text_emb: Any = None,
) -> list[dict[str, Any]]:
    """Check failure captions of one class against its images.

    Parameters
    ----------
    texts : sequence of str
        The captions.
    text_emb : array-like of shape (m, d)
        Their text embeddings.
    image_emb : array-like of shape (n, d)
        The class's image embeddings in ``split``.
    correct : array-like of bool, shape (n,)
        Whether the audited model got each image right.
    split : str
        The split the images come from (recorded).
    note : str, optional
        Recorded as ``"note"`` (e.g. why the fitting split was used).
    ks : sequence of int, default=(25, 50, 100)
        Depths reported in ``acc_at_k`` (None where the class has fewer images).
    curve_ks : sequence of int, default=5, 10, ..., 100
        Depths of the accuracy curve (only those <= n).
    margin : float, default=0.05
        Accuracy drop required at the decision depth.
    alpha : float, default=0.05
        Significance level of the hypergeometric test and of the null test.
    null_text_emb : array-like of shape (m, d), optional
        Captions whose spread defines the random captions of the null test (see the
        module docstring); at least 2. Without it ``null_p_value`` is None and not
        required.

    Returns
    -------
    list of dict
        One per caption: ``text``, ``k``, ``acc_at_k``, ``class_acc``, ``n_class``,
        ``k_decision``, ``acc_at_decision``, ``p_value``, ``margin``, ``confirmed``,
        ``split``, ``curve`` (``{"k": [...], "acc": [...]}``), ``null_p_value`` and
        ``note`` if given.
    """
    check_fraction(margin, name="margin", inclusive_low=True)
    check_fraction(alpha, name="alpha")
    ok = np.asarray(correct, dtype=bool).ravel()
    n = len(ok)
    m = len(texts)
    if m == 0:
        return []
    n_err = int((~ok).sum())
    class_acc = float(ok.mean()) if n else None
    k_star = decision_k(n)
    depth = max([*ks, *curve_ks, k_star])
    hits = nearest_correct(image_emb, ok, text_emb, k=depth) if n else np.zeros((m, 0), dtype=bool)
    cum = np.cumsum(hits, axis=1)  # correct among the nearest 1..depth
    null_acc = None
    if null_text_emb is not None and n >= MIN_IMAGES:
        null_acc = nearest_correct(
            image_emb, ok, random_captions(null_text_emb), k=min(k_star, n)
        ).mean(axis=1)
    out = []
    for i, text in enumerate(texts):

        def acc_at(k: int, row: int = i) -> float | None:
            return float(cum[row, k - 1] / k) if 0 < k <= n else None

        curve_k = [int(k) for k in curve_ks if k <= n]
        entry: dict[str, Any] = {
            "text": text,
            "k": [int(k) for k in ks],
            "acc_at_k": [acc_at(int(k)) for k in ks],
            "class_acc": class_acc,
            "n_class": n,
            "k_decision": k_star if n else None,
            "acc_at_decision": None,
            "p_value": None,
            "margin": float(margin),
            "confirmed": False,
            "null_p_value": None,
            "split": split,
            "curve": {"k": curve_k, "acc": [acc_at(k) for k in curve_k]},
        }
        if n >= MIN_IMAGES and n_err > 0:
            kd = min(k_star, n)
            acc_k = acc_at(kd)
            assert acc_k is not None and class_acc is not None
            errors_k = kd - int(cum[i, kd - 1])
            p = _hypergeom_p(errors_k, kd, n, n_err)
            null_p = None
            if null_acc is not None:
                null_p = (1 + int((null_acc <= acc_k + 1e-9).sum())) / (1 + len(null_acc))
            entry.update(
                acc_at_decision=acc_k,
                p_value=p,
                null_p_value=null_p,
                confirmed=bool(
                    class_acc - acc_k >= margin and p < alpha and (null_p is None or null_p < alpha)
                ),
            )
        if note:
            entry["note"] = note
        out.append(entry)
    return out
