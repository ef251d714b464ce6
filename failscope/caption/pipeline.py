"""Caption every slice of a run: ``caption_run``.

Reads the run's fitted :class:`~failscope.directions.ErrorDirections`, examples and
image embeddings, builds candidate captions per class, embeds them with the
run's CLIP text tower (cached in ``RUN/cache/text/``), ranks them, optionally
checks the top failure captions on held-out images, and rewrites ``slices.json``.
Image embeddings are never recomputed.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from failscope._validation import check_int, fail
from failscope.caption.check import MIN_IMAGES, check_captions, decision_k
from failscope.caption.rank import (
    DEFAULT_METHOD,
    N_CENTROID,
    RERANK_TOP,
    centroid_scores,
    check_method,
    check_rerank,
    classifier_scores,
    failure_centroid,
    select_top,
)
from failscope.caption.vocabulary import (
    Candidates,
    Vocabulary,
    build_candidates,
    load_synonyms,
    resolve_vocabulary,
)

logger = logging.getLogger(__name__)

__all__ = ["caption_run", "default_vocabulary", "fit_split", "load_run_clip"]

TEST_SPLIT = "test"
TEXT_CACHE_DIR = "text"


def default_vocabulary(run: Any) -> str:
    """``"world"`` for a world run (its CLIP knows only the world's words), else ``"general"``."""
    return "world" if run.info.get("world") else "general"


def fit_split(run: Any, splits: Sequence[str]) -> str | None:
    """The split the failure directions were fit on, or None for "all rows".

    Read from ``run.json`` (``fit_split``, top level or under ``config``); else
    ``"val"``/``"validation"`` if present; else None.
    """
    info = run.info
    for source in (info, info.get("config") or {}):
        name = source.get("fit_split") if isinstance(source, Mapping) else None
        if name:
            return str(name)
    for name in ("val", "validation", "valid"):
        if name in splits:
            return name
    return None


def load_run_clip(run: Any) -> Any:
    """Load the CLIP model recorded in ``run.json["embeddings"]["clip"]``."""
    spec = (run.info.get("embeddings") or {}).get("clip")
    if spec is None:
        raise fail(
            f"{run.path}/run.json records no CLIP model (embeddings.clip); "
            "pass clip= explicitly or re-run `failscope discover`"
        )
    from failscope.embed import load_clip_from_spec

    return load_clip_from_spec(spec)


def _synonyms(synonyms: Any, class_names: list[str]) -> dict[str, tuple[str, ...]]:
    if synonyms is None:
        return {}
    if isinstance(synonyms, (str, os.PathLike)):
        return load_synonyms(synonyms, class_names)
    if isinstance(synonyms, Mapping):
        known = set(class_names)
        out = {}
        for k, v in synonyms.items():
            if str(k) not in known:
                raise fail(f"synonyms name class {str(k)!r}, which is not a class of this run")
            out[str(k)] = (v,) if isinstance(v, str) else tuple(str(x) for x in v)
        return out
    raise TypeError(f"synonyms must be a YAML path or a mapping, got {type(synonyms).__name__}")


def _entries(
    cands: Candidates, idx: np.ndarray, scores: np.ndarray, fit_acc: dict[int, float]
) -> list[dict[str, Any]]:
    return [
        {
            "text": cands.texts[i],
            "score": float(scores[i]),
            "family": cands.families[i],
            "word": cands.words[i],
            "fit_acc": fit_acc.get(int(i)),
        }
        for i in idx
    ]


def _pick(
    scores: np.ndarray,
    k: int,
    *,
    end: str,
    groups: list[Any] | None,
    rerank: int,
    depth: int,
    text_emb: np.ndarray,
    images: np.ndarray | None,
    correct: np.ndarray | None,
) -> tuple[np.ndarray, dict[int, float]]:
    """The top ``k`` candidates of one end: proposed by score, the first ``rerank`` re-checked
    on the nearest ``depth`` images."""
    largest = end == "failure"
    m = max(k, rerank)
    idx = select_top(scores, m, largest=largest, groups=groups)
    accs: dict[int, float] = {}
    if rerank > 0 and images is not None and correct is not None and len(idx):
        head, acc = check_rerank(idx[:rerank], text_emb, images, correct, k=depth, end=end)
        idx = np.concatenate([head, idx[rerank:]])
        accs = {int(i): float(a) for i, a in zip(head, acc, strict=True) if np.isfinite(a)}
    return idx[:k], accs


def caption_run(
    run: Any,
    *,
    vocab: Any = None,
    synonyms: Any = None,
    method: str = DEFAULT_METHOD,
    top_k: int = 5,
    clip: Any = None,
    checks: bool = True,
    n_centroid: int = N_CENTROID,
    rerank: int = RERANK_TOP,
    distinct: bool = True,
    batch_size: int = 256,
) -> list[dict[str, Any]]:
    """Name every failure direction of a run with ranked captions.

    Parameters
    ----------
    run : Run or path-like
        A run directory written by ``failscope discover``.
    vocab : str, path-like, Vocabulary or a list of these, optional
        Registered vocabulary name(s) or user file(s), merged in order. Default:
        ``"world"`` on world runs, else ``"general"``.
    synonyms : path-like or mapping, optional
        Other names per class (YAML ``class -> list`` or a dict).
    method : {"centroid", "classifier"}, default="centroid"
        Scoring method, see :mod:`failscope.caption.rank`.
    top_k : int, default=5
        Failure and success captions kept per class.
    clip : object with ``encode_text`` and ``identity``, optional
        Text encoder; default: the CLIP recorded in the run.
    checks : bool, default=True
        Run the caption check (:mod:`failscope.caption.check`) on the failure captions.
    n_centroid : int, default=50
        Images in the failure (and success) centroid (``method="centroid"``).
    rerank : int, default=5
        At each end, the first ``rerank`` distinct captions proposed by ``method``
        are re-ordered by the caption check run on the class's **fitting-split**
        images (never test): the audited model's mean accuracy on the caption's
        nearest 5, 10, ... images, lowest first at the failure end, highest
        first at the success end (:func:`~failscope.caption.rank.check_rerank`).
        The curve runs to the check's ``decision_k`` at the success end and to
        the class's slice size in the fitting split (if larger) at the failure
        end, so a caption must name a group as large as the slice. 0 keeps the
        proposal order. Skipped for a class with fewer than 10 non-test fitting
        images.
    distinct : bool, default=True
        At most one caption per (family, word) among the top ``k``.
    batch_size : int, default=256
        Text-encoder batch size.

    Returns
    -------
    list of dict
        The updated ``slices.json`` entries (also written to the run). Each
        captioned entry has ``captions = {"failure": [{"text", "score", "family",
        "word", "fit_acc"}, ...], "success": [...], "method", "vocabulary",
        "n_candidates", "reference", "rerank"}`` and, with ``checks``,
        ``caption_checks``. ``score`` is the proposal score of ``method``;
        ``fit_acc`` the re-ranking accuracy (None for captions not re-ranked);
        ``rerank`` is ``{"top", "k": {"failure", "success"}, "split"}`` or None. Skipped classes get
        ``captions: None``.
    """
    from failscope.caption.cache import TextEmbeddingCache
    from failscope.run import CACHE_DIR, Run, load_run

    t0 = time.perf_counter()
    run = run if isinstance(run, Run) else load_run(run)
    check_method(method)
    check_int(top_k, name="top_k", low=1)
    check_int(n_centroid, name="n_centroid", low=1)
    check_int(rerank, name="rerank", low=0)
    class_names = run.class_names
    vocabulary: Vocabulary = resolve_vocabulary(default_vocabulary(run) if vocab is None else vocab)
    syn = _synonyms(synonyms, class_names)
    slices = [dict(s) for s in run.slices]
    est = run.error_directions()
    active = [
        s
        for s in slices
        if s.get("status") == "ok" and np.all(np.isfinite(est.directions_[int(s["class_index"])]))
    ]
    active_ids = {int(s["class_index"]) for s in active}
    for s in slices:
        if int(s["class_index"]) not in active_ids:
            s["captions"] = None
            s["caption_checks"] = None
    if not active:
        logger.warning("no class has a failure direction; nothing to caption")
        run.save_slices(slices)
        return slices

    cands = {
        int(s["class_index"]): build_candidates(
            vocabulary,
            class_names[int(s["class_index"])],
            synonyms=syn.get(class_names[int(s["class_index"])], ()),
        )
        for s in active
    }
    empty = [class_names[c] for c, cd in cands.items() if len(cd) == 0]
    if empty:
        raise fail(
            f"vocabulary {vocabulary.name!r} gives no caption for class {empty[0]!r} "
            "(every phrase restates the class); add phrases"
        )
    if clip is None:
        clip = load_run_clip(run)
    else:
        recorded = ((run.info.get("embeddings") or {}).get("clip") or {}).get("identity")
        if recorded and getattr(clip, "identity", None) != recorded:
            logger.warning(
                "the given CLIP (identity %s) is not the one that embedded this run's images "
                "(%s); captions compare texts and images from different models",
                str(clip.identity)[:12],
                str(recorded)[:12],
            )
    cache = TextEmbeddingCache(run.path / CACHE_DIR / TEXT_CACHE_DIR, clip.identity)
    all_texts = list(
        dict.fromkeys(t for cd in cands.values() for t in (cd.reference_prompt, *cd.prompts))
    )
    emb = cache.embed(all_texts, clip, batch_size=batch_size)
    row = {t: i for i, t in enumerate(all_texts)}
    if emb.shape[1] != est.mean_.shape[0]:
        raise fail(
            f"the text encoder gives {emb.shape[1]}-d embeddings but the run's image "
            f"embeddings are {est.mean_.shape[0]}-d; use the CLIP the run was embedded with"
        )
    n_encoded = cache.n_encoded_

    ex = run.examples
    need_images = checks or method == "centroid" or rerank > 0
    images = run.embeddings() if need_images else None
    labels = ex["label"].to_numpy()
    splits = ex["split"].astype(str).to_numpy()
    correct = ex["correct"].to_numpy(dtype=bool)
    fscore = ex["failure_score"].to_numpy(dtype=np.float64)
    in_slice = ex["slice"].to_numpy(dtype=bool) if "slice" in ex else np.zeros(len(ex), dtype=bool)
    fit_name = fit_split(run, sorted(set(splits)))
    fit_mask = np.ones(len(ex), dtype=bool) if fit_name is None else splits == fit_name
    has_test = bool((splits == TEST_SPLIT).any())
    # re-ranking reads correctness, so it never sees the test split the check reports on
    rerank_mask = fit_mask & (splits != TEST_SPLIT)

    for s in active:
        c = int(s["class_index"])
        cd = cands[c]
        e = emb[[row[t] for t in cd.prompts]]
        if method == "classifier":
            scores = classifier_scores(
                e,
                reference=emb[row[cd.reference_prompt]],
                direction=est.directions_[c],
                scale=est.scale_,
            )
            ok_scores = scores
        else:
            idx = np.flatnonzero(fit_mask & (labels == c))
            x_c, f_c = np.asarray(images[idx]), fscore[idx]
            scores = centroid_scores(e, centroid=failure_centroid(x_c, f_c, n=n_centroid))
            # success end: the most success-aligned images have their own centroid
            ok_scores = -centroid_scores(e, centroid=failure_centroid(x_c, -f_c, n=n_centroid))
        groups = list(zip(cd.families, cd.words, strict=True)) if distinct else None
        k = min(top_k, len(cd))
        r_idx = np.flatnonzero(rerank_mask & (labels == c)) if rerank > 0 else []
        use_rerank = len(r_idx) >= MIN_IMAGES
        # failure end: as deep as the class's slice there, the group the caption should name
        k_ok = decision_k(len(r_idx))
        depth = {"failure": min(len(r_idx), max(k_ok, int(in_slice[r_idx].sum()))), "success": k_ok}
        pick = {
            "groups": groups,
            "rerank": rerank if use_rerank else 0,
            "text_emb": e,
            "images": np.asarray(images[r_idx]) if use_rerank else None,
            "correct": correct[r_idx] if use_rerank else None,
        }
        fail_idx, fail_acc = _pick(scores, k, end="failure", depth=depth["failure"], **pick)
        ok_idx, ok_acc = _pick(ok_scores, k, end="success", depth=depth["success"], **pick)
        s["captions"] = {
            "failure": _entries(cd, fail_idx, scores, fail_acc),
            "success": _entries(cd, ok_idx, ok_scores, ok_acc),
            "method": method,
            "vocabulary": vocabulary.name,
            "n_candidates": len(cd),
            "reference": cd.reference,
            "rerank": (
                {"top": rerank, "k": depth, "split": fit_name or "all but test"}
                if use_rerank
                else None
            ),
        }
        if checks:
            s["caption_checks"] = _check_class(
                c,
                [cd.texts[i] for i in fail_idx],
                e[fail_idx],
                images=images,
                labels=labels,
                splits=splits,
                correct=correct,
                fit_mask=fit_mask,
                fit_name=fit_name,
                has_test=has_test,
            )
    run.save_slices(slices)
    seconds = time.perf_counter() - t0
    timings = dict(run.info.get("timings") or {})
    timings["captions"] = round(seconds, 3)
    run.update_info(
        timings=timings,
        captions={
            "method": method,
            "vocabulary": vocabulary.name,
            "top_k": top_k,
            "checks": bool(checks),
            "rerank": int(rerank),
            "clip": clip.identity,
            "n_candidates": int(sum(len(cd) for cd in cands.values())),
            "n_encoded": int(n_encoded),
            "seconds": round(seconds, 3),
        },
    )
    logger.info(
        "captioned %d classes with %s (%d candidates, %d newly encoded) in %.1f s",
        len(active),
        method,
        sum(len(cd) for cd in cands.values()),
        n_encoded,
        seconds,
    )
    return slices


def _check_class(
    c: int,
    texts: list[str],
    text_emb: np.ndarray,
    *,
    images: Any,
    labels: np.ndarray,
    splits: np.ndarray,
    correct: np.ndarray,
    fit_mask: np.ndarray,
    fit_name: str | None,
    has_test: bool,
) -> list[dict[str, Any]]:
    test_idx = np.flatnonzero((splits == TEST_SPLIT) & (labels == c))
    if len(test_idx):
        idx, split, note = test_idx, TEST_SPLIT, None
    else:
        idx = np.flatnonzero(fit_mask & (labels == c))
        split = fit_name or "all"
        why = "the run has no test split" if not has_test else "this class has no test images"
        note = f"{why}; checked on the fitting split, where the direction was fit (optimistic)"
    return check_captions(
        texts, text_emb, np.asarray(images[idx]), correct[idx], split=split, note=note
    )
