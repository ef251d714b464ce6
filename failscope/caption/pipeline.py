"""Caption every slice of a run: ``caption_run``.

Reads the run's slices, slice scores, examples and image embeddings, builds
candidate captions per class, embeds them with the run's CLIP text tower (cached
in ``RUN/cache/text/``), ranks them per slice (the slice's own score picks its
images), optionally checks the top failure captions on held-out images, and
rewrites ``slices.json``. Image embeddings are never recomputed.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
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
from failscope.run.schema import Caption, CaptionCheck, Captions, Rerank, SliceEntry

logger = logging.getLogger(__name__)

__all__ = ["caption_run", "default_vocabulary", "load_run_clip"]

TEST_SPLIT = "test"
TEXT_CACHE_DIR = "text"


def default_vocabulary(run: Any) -> str:
    """``"world"`` for a world run (its CLIP knows only the world's words), else ``"general"``."""
    return "world" if run.is_world else "general"


def load_run_clip(run: Any) -> Any:
    """Load the CLIP model recorded in ``run.json`` (``embeddings.clip``)."""
    spec = run.info.embeddings.clip
    if spec is None:
        raise fail(
            f"{run.path}/run.json records no CLIP model (its embeddings came from a file); "
            "pass the CLIP that made them (`failscope caption --clip NAME`, or clip=)"
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
) -> tuple[Caption, ...]:
    return tuple(
        Caption(
            text=cands.texts[i],
            score=float(scores[i]),
            family=cands.families[i],
            word=cands.words[i],
            fit_acc=fit_acc.get(int(i)),
        )
        for i in idx
    )


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
) -> tuple[SliceEntry, ...]:
    """Name every slice of a run with ranked captions.

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
        Failure and success captions kept per slice.
    clip : object with ``encode_text`` and ``identity``, optional
        Text encoder; default: the CLIP recorded in the run.
    checks : bool, default=True
        Run the caption check (:mod:`failscope.caption.check`) on the failure captions.
    n_centroid : int, default=50
        Images in the failure (and success) centroid (``method="centroid"``): the
        class's fitting-split images with the highest (lowest) scores of the slice.
    rerank : int, default=5
        At each end, the first ``rerank`` distinct captions proposed by ``method``
        are re-ordered by the caption check run on the class's **fitting-split**
        images (never test): the audited model's mean accuracy on the caption's
        nearest 5, 10, ... images, lowest first at the failure end, highest
        first at the success end (:func:`~failscope.caption.rank.check_rerank`).
        The curve runs to the check's ``decision_k`` at the success end and to
        the slice's size in the fitting split (if larger) at the failure end, so
        a caption must name a group as large as the slice. 0 keeps the proposal
        order. Skipped for a class with fewer than 10 non-test fitting images.
    distinct : bool, default=True
        At most one caption per (family, word) among the top ``k``.
    batch_size : int, default=256
        Text-encoder batch size.

    Returns
    -------
    tuple of SliceEntry
        The slices with ``captions`` (a :class:`~failscope.run.schema.Captions`) and,
        with ``checks``, ``caption_checks``; also written to the run. ``score`` is the
        proposal score of ``method``; ``fit_acc`` the re-ranking accuracy (None for
        captions not re-ranked). The captions of a weak slice are checked but never
        confirmed.
    """
    from failscope.caption.cache import TextEmbeddingCache
    from failscope.run import CACHE_DIR, Run, load_run, run_lock

    t0 = time.perf_counter()
    run = run if isinstance(run, Run) else load_run(run)
    check_method(method)
    check_int(top_k, name="top_k", low=1)
    check_int(n_centroid, name="n_centroid", low=1)
    check_int(rerank, name="rerank", low=0)
    class_names = run.class_names
    vocabulary: Vocabulary = resolve_vocabulary(default_vocabulary(run) if vocab is None else vocab)
    syn = _synonyms(synonyms, class_names)
    slices = run.slices
    if not slices:
        logger.warning("the run has no slice; nothing to caption")
        return slices
    if method == "classifier" and any(s.rule.direction is None for s in slices):
        raise fail(
            "the classifier method reads a slice's failure direction, and this run's "
            f"{slices[0].slicer} slices have none; use the centroid method"
        )
    class_ids = sorted({s.class_index for s in slices})
    cands = {
        c: build_candidates(vocabulary, class_names[c], synonyms=syn.get(class_names[c], ()))
        for c in class_ids
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
        recorded = run.info.embeddings.clip
        if recorded and getattr(clip, "identity", None) != recorded.identity:
            logger.warning(
                "the given CLIP (identity %s) is not the one that embedded this run's images "
                "(%s); captions compare texts and images from different models",
                str(clip.identity)[:12],
                str(recorded.identity)[:12],
            )
    with run_lock(run.path):
        cache = TextEmbeddingCache(run.path / CACHE_DIR / TEXT_CACHE_DIR, clip.identity)
        all_texts = list(
            dict.fromkeys(t for cd in cands.values() for t in (cd.reference_prompt, *cd.prompts))
        )
        emb = cache.embed(all_texts, clip, batch_size=batch_size)
        if emb.shape[1] != run.info.embeddings.dim:
            raise fail(
                f"the text encoder gives {emb.shape[1]}-d embeddings but the run's image "
                f"embeddings are {run.info.embeddings.dim}-d; use the CLIP the run was "
                "embedded with"
            )
        ctx = _Context.of(run, checks=checks, method=method, rerank=rerank)
        row = {t: i for i, t in enumerate(all_texts)}
        out = []
        for s in slices:
            cd = cands[s.class_index]
            text_emb = emb[[row[t] for t in cd.prompts]]
            ref_emb = emb[row[cd.reference_prompt]]
            entry = _caption_slice(
                s, cd, text_emb, ref_emb, ctx, method=method, top_k=top_k,
                n_centroid=n_centroid, rerank=rerank, distinct=distinct,
                checks=checks, vocabulary=vocabulary.name,
            )  # fmt: skip
            out.append(entry)
        run.save_slices(out)
        seconds = time.perf_counter() - t0
        run.update_info(
            timings={**run.info.timings, "captions": round(seconds, 3)},
            captions={
                "method": method,
                "vocabulary": vocabulary.name,
                "top_k": top_k,
                "checks": bool(checks),
                "rerank": int(rerank),
                "clip": clip.identity,
                "n_candidates": int(sum(len(cd) for cd in cands.values())),
                "n_encoded": int(cache.n_encoded_),
                "seconds": round(seconds, 3),
            },
        )
    logger.info(
        "captioned %d slices of %d classes with %s (%d candidates, %d newly encoded) in %.1f s",
        len(out), len(class_ids), method, sum(len(cd) for cd in cands.values()),
        cache.n_encoded_, seconds,
    )  # fmt: skip
    return run.slices


@dataclass(frozen=True)
class _Context:
    """What every slice's captioning reads from the run (loaded once)."""

    images: Any
    labels: np.ndarray
    splits: np.ndarray
    correct: np.ndarray
    scores: np.ndarray  # slice_scores.npy
    fit_mask: np.ndarray
    fit_name: str
    has_test: bool
    rerank_mask: np.ndarray
    slicer: Any  # the fitted slicer, for the classifier method

    @classmethod
    def of(cls, run: Any, *, checks: bool, method: str, rerank: int) -> _Context:
        ex = run.examples
        splits = ex["split"].astype(str).to_numpy()
        fit_mask = splits == run.fit_split
        need_images = checks or method == "centroid" or rerank > 0
        return cls(
            images=run.embeddings() if need_images else None,
            labels=ex["label"].to_numpy(),
            splits=splits,
            correct=ex["correct"].to_numpy(dtype=bool),
            scores=np.asarray(run.slice_score_matrix()),
            fit_mask=fit_mask,
            fit_name=run.fit_split,
            has_test=bool((splits == TEST_SPLIT).any()),
            # re-ranking reads correctness, so it never sees the test split the check reports on
            rerank_mask=fit_mask & (splits != TEST_SPLIT),
            slicer=run.slicer() if method == "classifier" else None,
        )


def _caption_slice(
    s: SliceEntry,
    cd: Candidates,
    e: np.ndarray,
    ref: np.ndarray,
    ctx: _Context,
    *,
    method: str,
    top_k: int,
    n_centroid: int,
    rerank: int,
    distinct: bool,
    checks: bool,
    vocabulary: str,
) -> SliceEntry:
    c = s.class_index
    score = ctx.scores[:, s.column].astype(np.float64)
    if method == "classifier":
        est = ctx.slicer.estimator_
        fit = ctx.slicer.slices_of(c)[s.rank]
        scores = classifier_scores(e, reference=ref, direction=fit.direction, scale=est.scale_)
        ok_scores = scores
    else:
        idx = np.flatnonzero(ctx.fit_mask & (ctx.labels == c))
        x_c, f_c = np.asarray(ctx.images[idx]), score[idx]
        scores = centroid_scores(e, centroid=failure_centroid(x_c, f_c, n=n_centroid))
        # success end: the slice's least-scored images have their own centroid; a slice
        # without a direction (a cluster) has no least-failing end, so the class's
        # correctly predicted images stand for it
        low, n_low = -f_c, n_centroid
        if s.rule.direction is None and ctx.correct[idx].any():
            low, n_low = ctx.correct[idx].astype(np.float64), int(ctx.correct[idx].sum())
        ok_scores = -centroid_scores(e, centroid=failure_centroid(x_c, low, n=n_low))
    groups = list(zip(cd.families, cd.words, strict=True)) if distinct else None
    k = min(top_k, len(cd))
    r_idx = np.flatnonzero(ctx.rerank_mask & (ctx.labels == c)) if rerank > 0 else []
    use_rerank = len(r_idx) >= MIN_IMAGES
    # failure end: as deep as the slice there, the group the caption should name
    k_ok = decision_k(len(r_idx))
    members = s.rule.passes(score[r_idx]) if use_rerank else np.zeros(0, dtype=bool)
    depth = {"failure": min(len(r_idx), max(k_ok, int(members.sum()))), "success": k_ok}
    pick = {
        "groups": groups,
        "rerank": rerank if use_rerank else 0,
        "text_emb": e,
        "images": np.asarray(ctx.images[r_idx]) if use_rerank else None,
        "correct": ctx.correct[r_idx] if use_rerank else None,
    }
    fail_idx, fail_acc = _pick(scores, k, end="failure", depth=depth["failure"], **pick)
    ok_idx, ok_acc = _pick(ok_scores, k, end="success", depth=depth["success"], **pick)
    captions = Captions(
        failure=_entries(cd, fail_idx, scores, fail_acc),
        success=_entries(cd, ok_idx, ok_scores, ok_acc),
        method=method,
        vocabulary=vocabulary,
        n_candidates=len(cd),
        reference=cd.reference,
        rerank=Rerank(top=rerank, k=depth, split=ctx.fit_name) if use_rerank else None,
    )
    checked = None
    if checks:
        checked = _check_slice(s, [cd.texts[i] for i in fail_idx], e[fail_idx], e, ctx)
    return s.replace(captions=captions, caption_checks=checked)


def _check_slice(
    s: SliceEntry, texts: list[str], text_emb: np.ndarray, null_emb: np.ndarray, ctx: _Context
) -> tuple[CaptionCheck, ...]:
    """Check a slice's failure captions on its class's test images (else the fitting split)."""
    c = s.class_index
    test_idx = np.flatnonzero((ctx.splits == TEST_SPLIT) & (ctx.labels == c))
    if len(test_idx):
        idx, split, note = test_idx, TEST_SPLIT, None
    else:
        idx = np.flatnonzero(ctx.fit_mask & (ctx.labels == c))
        split = ctx.fit_name
        why = "the run has no test split" if not ctx.has_test else "this class has no test images"
        note = f"{why}; checked on the fitting split, where the slice was found (optimistic)"
    if s.status == "weak":
        note = "the slice is weak (not statistically supported): its captions are not confirmed"
    checks = check_captions(
        texts, text_emb, np.asarray(ctx.images[idx]), ctx.correct[idx], split=split,
        note=note, null_text_emb=null_emb,
    )  # fmt: skip
    if s.status == "weak":
        checks = [dict(ch, confirmed=False) for ch in checks]
    return tuple(CaptionCheck.from_json(ch, where="caption check") for ch in checks)
