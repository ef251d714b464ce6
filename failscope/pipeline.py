"""``discover``: dataset + audited model + CLIP -> failure directions and slices.

Stages (each timed in ``run.json["timings"]``, in seconds):

1. ``load_data``: open the ImageFolder tree or manifest (:mod:`failscope.data.datasets`).
   ``load_models``: load the audited model and CLIP (before any long stage, so a bad
   checkpoint or missing weights fail fast).
2. ``predict``: the audited model's ``pred`` and ``confidence`` for every example,
   or read them from a predictions file (:mod:`failscope.data.models`).
3. ``embed``: CLIP image embeddings of every example, all splits (cached and
   resumable, :mod:`failscope.embed`), or a precomputed ``.npy``.
4. ``fit``: :class:`~failscope.directions.ErrorDirections` on the fitting split,
   standardised with the reference split's statistics when present.
5. ``score``: ``failure_score`` of every scored example, slices and their summary.
6. ``write``: the run directory (every file atomic; ``run.json`` last).

Images that cannot be read (missing, corrupt) are skipped and listed in
``run.json["skipped"]``; they have no row in ``examples.parquet``.
Nothing holds all images or all embeddings in memory: images are streamed in
batches and embeddings stay memory-mapped (the fitting split and at most
``REFERENCE_MAX_ROWS`` reference rows are read into RAM).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from failscope._validation import check_choice, check_int, fail
from failscope.directions import DEFAULT_CS, SCORINGS, SOLVERS, ErrorDirections
from failscope.embed import DEFAULT_CLIP, DEFAULT_PRETRAINED, file_sha256
from failscope.slices import SliceThreshold, assign_slices, summarize_slices

logger = logging.getLogger(__name__)

__all__ = ["REFERENCE_MAX_ROWS", "discover"]

#: Reference (train) rows used for the standardisation statistics; a seeded sample above this.
REFERENCE_MAX_ROWS = 200_000
#: Signature of ``progress``: ``progress(stage, done, total)``, stage "predict" or "embed".
StageProgress = Callable[[str, int, int], None]


@dataclass
class _Timings:
    seconds: dict[str, float]

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        logger.info("stage %s ...", name)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - start, 4)
            logger.info("stage %s done in %.2f s", name, self.seconds[name])


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for key, dist in (
        ("failscope", "failscope"),
        ("torch", "torch"),
        ("torchvision", "torchvision"),
        ("open_clip", "open_clip_torch"),
        ("sklearn", "scikit-learn"),
        ("numpy", "numpy"),
        ("pandas", "pandas"),
    ):
        try:
            out[key] = version(dist)
        except PackageNotFoundError:
            out[key] = None
    return out


def _stage_progress(
    progress: StageProgress | None, stage: str
) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(stage, done, total)


def discover(
    data: Any,
    *,
    out: str | os.PathLike[str],
    model: Any = None,
    checkpoint: str | os.PathLike[str] | None = None,
    trust_checkpoint: bool = False,
    predictions: Any = None,
    classes: Any = None,
    split_by: str | None = None,
    image_size: int | None = None,
    mean: Any = None,
    std: Any = None,
    clip: Any = DEFAULT_CLIP,
    clip_pretrained: str | None = DEFAULT_PRETRAINED,
    clip_checkpoint: str | os.PathLike[str] | None = None,
    clip_random_init: bool = False,
    embeddings: Any = None,
    cache_dir: str | os.PathLike[str] | None = None,
    fit_split: str = "val",
    reference_split: str | None = "train",
    threshold: str | SliceThreshold = "zero",
    cv: int = 2,
    scoring: str = "balanced_accuracy",
    solver: str = "lssvm",
    Cs: tuple[float, ...] = DEFAULT_CS,
    min_examples: int = 10,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    ray_actors: int = 1,
    ray_gpus_per_actor: float = 0.0,
    seed: int = 0,
    captions: bool = True,
    report: bool = True,
    progress: StageProgress | None = None,
) -> Any:
    """Find each class's failure direction and slice; write the run directory.

    Parameters
    ----------
    data : path or ImageDataset
        ImageFolder tree or CSV/Parquet manifest (see :func:`failscope.data.load_dataset`).
    out : path
        Run directory (created; an existing run there is overwritten, its cache reused).
    model : str or torch.nn.Module, optional
        The audited model: TorchScript file, ``torchvision:ARCH`` or ``module:function``
        (see :func:`failscope.data.model_spec`), or a module. Exactly one of ``model``
        and ``predictions``.
    checkpoint : path, optional
        state_dict for ``torchvision:``/``module:`` models.
    trust_checkpoint : bool, default=False
        Allow a checkpoint that needs pickle.
    predictions : path or Predictions, optional
        Precomputed predictions (see :func:`failscope.data.read_predictions`).
    classes : path or list of str, optional
        Class names in index order.
    split_by : str, optional
        For data without splits: None (all "val"), "random:F" or "column:NAME".
    image_size : int, optional
        Model input side (default 224 for torchvision, else images as stored).
    mean, std : sequence of float, optional
        Model input normalisation (default ImageNet for torchvision, else none).
    clip : str or ClipModel or None, default="ViT-B-32"
        CLIP backbone (see :func:`failscope.embed.load_clip`). With ``embeddings`` it
        may be None; if given it must produce the same dimension (captions need it).
    clip_pretrained : str or None, default="laion2b_s34b_b79k"
    clip_checkpoint : path, optional
    clip_random_init : bool, default=False
        Random CLIP weights (tests only; recorded in ``run.json``).
    embeddings : path or ndarray, optional
        Precomputed embeddings (n_examples, d), row i = example i; replaces CLIP.
    cache_dir : path, optional
        Embedding cache (default ``OUT/cache``).
    fit_split : str, default="val"
        Split whose examples fit the directions.
    reference_split : str or None, default="train"
        Split whose embedding statistics standardise the space, if present.
    threshold : str or SliceThreshold, default="zero"
        ``"zero"``, ``"quantile:Q"`` or ``"topk:K"``.
    cv, scoring, solver, Cs, min_examples
        :class:`~failscope.directions.ErrorDirections` hyperparameters.
    batch_size : int, default=64
    num_workers : int, default=0
        DataLoader workers that decode images.
    device : str, optional
        Default: cuda, then mps, then cpu.
    engine : {"local", "ray"}, default="local"
        Where the prediction and embedding passes run (see :mod:`failscope.engines`);
        both fill the same caches, so a re-run computes only what is missing.
    ray_address : str, optional
        For ``engine="ray"``: None starts a local Ray instance, ``"auto"`` joins the
        cluster of this machine, or ``HOST:PORT`` / ``ray://HOST:PORT``.
    ray_actors : int, default=1
        Ray actors that each load CLIP and the audited model once.
    ray_gpus_per_actor : float, default=0.0
        GPUs per Ray actor (> 0 runs the models on CUDA).
    seed : int, default=0
        Seeds CV folds, random splits and the reference sample.
    captions : bool, default=True
        Name each direction with CLIP text prompts (needs a CLIP; see
        :func:`failscope.caption.caption_run`).
    report : bool, default=True
        Write ``OUT/report.html`` (:func:`failscope.build_report`).
    progress : callable(stage, done, total), optional
        Called during the "predict" and "embed" stages.

    Returns
    -------
    Run
        The written run (:func:`failscope.load_run`).
    """
    from failscope.data import ImageDataset, load_dataset
    from failscope.engines import EngineOptions, prefill_caches

    out = Path(out)
    timings = _Timings({})
    thr = threshold if isinstance(threshold, SliceThreshold) else SliceThreshold.parse(threshold)
    check_choice(scoring, SCORINGS, name="scoring")
    check_choice(solver, SOLVERS, name="solver")
    check_int(batch_size, name="batch_size", low=1)
    check_int(num_workers, name="num_workers", low=0)
    check_int(seed, name="seed", low=0)
    engine_options = EngineOptions(
        engine=engine, ray_address=ray_address, ray_actors=ray_actors,
        ray_gpus_per_actor=ray_gpus_per_actor,
    )  # fmt: skip
    estimator = ErrorDirections(
        Cs=tuple(Cs), cv=cv, scoring=scoring, solver=solver,
        min_examples=min_examples, random_state=seed,
    )  # fmt: skip
    estimator._validate_params()  # fail before any expensive stage
    if (model is None) == (predictions is None):
        raise fail("pass exactly one of a model (--model) and a predictions file (--predictions)")
    if embeddings is None and clip is None:
        raise fail("pass a CLIP (--clip) or precomputed embeddings (--embeddings)")

    with timings.stage("load_data"):
        ds = (
            data
            if isinstance(data, ImageDataset)
            else load_dataset(data, classes=classes, split_by=split_by, seed=seed)
        )
        splits = ds.split_names
        if fit_split not in splits:
            raise fail(
                f"fit split {fit_split!r} is not in the data, whose splits are {splits}; "
                "pass --fit-split NAME (or --split-by for data without splits)"
            )
        ref_split = (
            reference_split if reference_split in splits and reference_split != fit_split else None
        )
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir) if cache_dir is not None else out / "cache"

    with timings.stage("load_models"):
        module, spec = _audited_model(
            ds, model=model, checkpoint=checkpoint, trust_checkpoint=trust_checkpoint,
            image_size=image_size, mean=mean, std=std,
        )  # fmt: skip
        clip_model = _load_clip(
            clip, clip_pretrained=clip_pretrained, clip_checkpoint=clip_checkpoint,
            clip_random_init=clip_random_init, device=device,
        )  # fmt: skip

    engine_info = None
    if engine_options.engine != "local":  # the engine fills the caches; predict/embed read them
        with timings.stage(engine_options.engine):
            engine_info = prefill_caches(
                ds, options=engine_options, clip=None if embeddings is not None else clip_model,
                model_spec=spec, module=module, cache_dir=cache, batch_size=batch_size,
                progress=_stage_progress(progress, engine_options.engine),
            )  # fmt: skip

    with timings.stage("predict"):
        preds, model_info = _predict(
            ds, module=module, spec=spec, predictions=predictions, batch_size=batch_size,
            num_workers=num_workers, device=device, seed=seed, cache=cache,
            progress=_stage_progress(progress, "predict"),
        )  # fmt: skip

    with timings.stage("embed"):
        emb, emb_skipped, clip_model, emb_source = _embed(
            ds, clip_model=clip_model, embeddings=embeddings, cache=cache,
            batch_size=batch_size, num_workers=num_workers,
            progress=_stage_progress(progress, "embed"),
        )  # fmt: skip

    skipped = _merge_skipped(preds.skipped, emb_skipped)
    scored = np.ones(len(ds), dtype=bool)
    scored[[s["id"] for s in skipped]] = False
    ids = np.flatnonzero(scored)
    if len(skipped):
        logger.warning("%d of %d inputs skipped (see run.json 'skipped')", len(skipped), len(ds))
    if not len(ids):
        raise fail(
            f"all {len(ds)} images were skipped "
            f"(first: {skipped[0]['path']}: {skipped[0]['reason']})"
        )

    with timings.stage("fit"):
        x, emb_file = _aligned(emb, ids, out=out, source=emb_source)
        labels = ds.labels[ids]
        pred = preds.pred[ids]
        split = ds.splits[ids]
        fit_mask = split == fit_split
        if not fit_mask.any():
            raise fail(f"every example of the fitting split {fit_split!r} was skipped")
        fit_rows = np.flatnonzero(fit_mask)
        ref_rows = None
        if ref_split is not None:
            ref_rows = np.flatnonzero(split == ref_split)
            if len(ref_rows) > REFERENCE_MAX_ROWS:
                rng = np.random.default_rng(seed)
                ref_rows = np.sort(rng.choice(ref_rows, REFERENCE_MAX_ROWS, replace=False))
            if not len(ref_rows):
                ref_rows = None
        estimator.fit(
            np.asarray(x[fit_rows]),
            labels[fit_rows],
            pred[fit_rows],
            reference=None if ref_rows is None else np.asarray(x[ref_rows]),
            n_classes=ds.n_classes,
        )

    with timings.stage("score"):
        scores = estimator.failure_score(x, labels)
        correct = pred == labels
        in_slice, cutoffs = assign_slices(scores, labels, fit_mask, ds.n_classes, thr)
        slices = summarize_slices(
            estimator, labels=labels, correct=correct, in_slice=in_slice, fit_mask=fit_mask,
            cutoffs=cutoffs, threshold=thr, class_names=list(ds.classes),
        )  # fmt: skip

    with timings.stage("write"):
        _forget_previous_run(out)
        info = {
            "format": None,  # set in _write
            "command": "discover",
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "config": {
                "data": str(data) if not isinstance(data, ImageDataset) else None,
                "model": model if isinstance(model, (str, type(None))) else type(model).__name__,
                "checkpoint": None if checkpoint is None else str(checkpoint),
                "trust_checkpoint": bool(trust_checkpoint),
                "predictions": predictions
                if isinstance(predictions, (str, os.PathLike, type(None)))
                else "object",
                "classes": classes
                if isinstance(classes, (str, os.PathLike, type(None)))
                else list(classes),
                "split_by": split_by,
                "image_size": image_size,
                "mean": None if mean is None else list(mean),
                "std": None if std is None else list(std),
                "clip": clip
                if isinstance(clip, (str, type(None)))
                else getattr(clip, "name", "object"),
                "clip_pretrained": clip_pretrained,
                "clip_checkpoint": None if clip_checkpoint is None else str(clip_checkpoint),
                "clip_random_init": bool(clip_random_init),
                "embeddings": embeddings
                if isinstance(embeddings, (str, os.PathLike, type(None)))
                else "array",
                "cache_dir": str(cache),
                "fit_split": fit_split,
                "reference_split": reference_split,
                "threshold": "zero" if thr.mode == "zero" else f"{thr.mode}:{thr.value:g}",
                "cv": cv,
                "scoring": scoring,
                "solver": solver,
                "Cs": list(estimator.Cs_),
                "min_examples": min_examples,
                "batch_size": batch_size,
                "num_workers": num_workers,
                "device": device,
                **engine_options.to_json(),
            },
            "versions": _versions(),
            "seed": seed,
            "timings": timings.seconds,
            "classes": list(ds.classes),
            "n_examples": len(ds),
            "n_scored": len(ids),
            "splits": {s: int((split == s).sum()) for s in splits},
            "fit_split": fit_split,
            "reference_split": ref_split,
            "reference_rows": 0 if ref_rows is None else len(ref_rows),
            "skipped": skipped,
            "engine": engine_info,
            "data": ds.spec(),
            "model": model_info,
            "embeddings": {
                "path": _relative(emb_file, out),
                "dim": int(x.shape[1]),
                "rows": "examples",
                "source": emb_source["kind"],
                "file": emb_source.get("path"),
                "clip": None if clip_model is None else clip_model.spec(),
                **_cache_fingerprint(emb_file, out),
            },
        }
        _write(
            out, ds=ds, ids=ids, pred=pred, correct=correct, scores=scores, in_slice=in_slice,
            confidence=preds.confidence[ids], estimator=estimator, slices=slices, info=info,
            timings=timings,
        )  # fmt: skip

    from failscope.run import load_run

    run = load_run(out)
    run.update_info(timings=timings.seconds)  # now including "write"
    # ------------------------------------------------------------------ later stages
    if captions and clip_model is not None:
        from failscope.caption import caption_run

        with timings.stage("captions"):
            caption_run(run, clip=clip_model)
        run.update_info(timings=timings.seconds)
    elif captions:
        logger.info("no CLIP model (embeddings given without --clip): captions skipped")
    if report:
        from failscope.report import build_report

        build_report(run)  # records its own timing
    return run


# --------------------------------------------------------------------------- stages


def _forget_previous_run(out: Path) -> None:
    """Remove the old run's files that the new one would otherwise be read with.

    ``cache/`` stays (embeddings are keyed by content and reused). Stages downstream
    of discover (truth, evaluation, retrain, report) described the old run.
    """
    import shutil

    from failscope.run import EVALUATION_JSON, REPORT_HTML, RETRAIN_DIR, RUN_JSON, TRUTH_JSON

    old = out / RUN_JSON
    if old.is_file():
        logger.warning("overwriting the run in %s", out)
        old.unlink()  # a crash while writing leaves no run.json rather than a stale one
    for name in (TRUTH_JSON, EVALUATION_JSON, REPORT_HTML):
        (out / name).unlink(missing_ok=True)
    for name in (RETRAIN_DIR, "plots"):
        shutil.rmtree(out / name, ignore_errors=True)


def _audited_model(
    ds: Any,
    *,
    model: Any,
    checkpoint: Any,
    trust_checkpoint: bool,
    image_size: int | None,
    mean: Any,
    std: Any,
) -> tuple[Any, dict[str, Any] | None]:
    """(module, spec) of the audited model, or (None, None) when predictions are given."""
    if model is None:
        return None, None
    import torch

    from failscope.data import load_model, model_spec

    if isinstance(model, torch.nn.Module):
        spec = {
            "kind": "module", "spec": type(model).__name__, "checkpoint": None,
            "num_classes": ds.n_classes, "image_size": image_size,
            "mean": None if mean is None else list(mean),
            "std": None if std is None else list(std),
        }  # fmt: skip
        module = model
    else:
        spec = model_spec(
            str(model), num_classes=ds.n_classes, checkpoint=checkpoint,
            image_size=image_size, mean=mean, std=std,
        )  # fmt: skip
        module = load_model(spec, trust_checkpoint=trust_checkpoint)
    spec["trust_checkpoint"] = bool(trust_checkpoint)
    return module, spec


def _predict(
    ds: Any,
    *,
    module: Any,
    spec: dict[str, Any] | None,
    predictions: Any,
    batch_size: int,
    num_workers: int,
    device: str | None,
    seed: int,
    cache: Path,
    progress: Callable[[int, int], None] | None,
) -> tuple[Any, dict[str, Any]]:
    from failscope.data import Predictions, read_predictions
    from failscope.data.datasets import _show
    from failscope.engines.local import predict_cached

    if predictions is not None:
        if isinstance(predictions, Predictions):
            preds = predictions
            info = dict(preds.source or {"kind": "predictions", "spec": None})
        else:
            preds = read_predictions(predictions, ds)
            info = dict(preds.source)
    else:
        import torch

        torch.manual_seed(seed)
        preds = predict_cached(
            ds, module, spec, cache_dir=cache, batch_size=batch_size,
            num_workers=num_workers, device=device, progress=progress,
        )  # fmt: skip
        info = dict(spec)
    if preds.n_outputs is not None:
        ds.extend_classes(preds.n_outputs)
        if preds.n_outputs != ds.n_classes:
            raise fail(
                f"the model has {preds.n_outputs} outputs but the data has {ds.n_classes} classes "
                f"{_show(ds.classes)}; pass --classes FILE listing the model's classes in "
                "output order"
            )
    valid = preds.pred[preds.pred >= 0]
    if len(valid) and valid.max() >= ds.n_classes:
        if ds.labels_are_indices:
            ds.extend_classes(int(valid.max()) + 1)
        else:
            raise fail(
                f"predictions hold class index {int(valid.max())} but the data has "
                f"{ds.n_classes} classes {_show(ds.classes)}"
            )
    info["n_outputs"] = preds.n_outputs
    info["sha256"] = _file_hashes(info)
    return preds, info


def _file_hashes(info: dict[str, Any]) -> dict[str, str]:
    """sha256 of the model file, checkpoint or predictions file the run used (by content).

    ``run.json`` records them beside the paths, so a run stays traceable after the file
    at that path is replaced.
    """
    from failscope.embed import file_sha256

    out = {}
    for key in ("spec", "checkpoint"):
        value = info.get(key)
        if isinstance(value, str) and Path(value).is_file():
            out[key] = file_sha256(value)
    return out


def _load_clip(
    clip: Any,
    *,
    clip_pretrained: str | None,
    clip_checkpoint: Any,
    clip_random_init: bool,
    device: str | None,
) -> Any:
    """The CLIP model, or None; loaded before predicting so a missing weight fails fast."""
    if clip is None:
        return None
    from failscope.embed import load_clip

    clip_model = load_clip(
        clip, clip_pretrained, checkpoint=clip_checkpoint, device=device,
        random_init=clip_random_init,
    )  # fmt: skip
    if clip_model.random_init:
        logger.warning("CLIP has random weights: directions and captions are meaningless")
    return clip_model


def _embed(
    ds: Any,
    *,
    clip_model: Any,
    embeddings: Any,
    cache: Path,
    batch_size: int,
    num_workers: int,
    progress: Callable[[int, int], None] | None,
) -> tuple[np.ndarray, list[dict[str, Any]], Any, dict[str, Any]]:
    from failscope.embed import embed_dataset, load_embeddings

    if embeddings is None:
        emb, skipped = embed_dataset(
            ds, clip_model, cache_dir=cache, batch_size=batch_size,
            num_workers=num_workers, progress=progress,
        )  # fmt: skip
        return emb, skipped, clip_model, {"kind": "clip", "path": emb.filename}
    if isinstance(embeddings, np.ndarray):
        if embeddings.ndim != 2 or embeddings.shape[0] != len(ds):
            raise fail(
                f"embeddings have shape {embeddings.shape} but the dataset has {len(ds)} examples"
            )
        emb = embeddings.astype(np.float32, copy=False)
        source = {"kind": "array", "path": getattr(embeddings, "filename", None)}
    else:
        emb = load_embeddings(embeddings, len(ds), cache_dir=cache)
        source = {
            "kind": "file",
            "path": str(Path(embeddings).resolve()),
            "converted": emb.filename,
        }
    if clip_model is not None and clip_model.dim != emb.shape[1]:
        raise fail(
            f"embeddings have {emb.shape[1]} dimensions but CLIP {clip_model.name} gives "
            f"{clip_model.dim}; pass the CLIP that made them (captions need its text tower)"
        )
    skipped = []
    paths = ds.frame["path"]
    for s in range(0, len(emb), 65536):
        bad = ~np.isfinite(np.asarray(emb[s : s + 65536])).all(axis=1)
        for i in np.flatnonzero(bad) + s:
            skipped.append(
                {"id": int(i), "path": str(paths.iat[i]), "reason": "embedding is NaN or inf"}
            )
    if progress is not None:
        progress(len(ds), len(ds))
    return emb, skipped, clip_model, source


def _merge_skipped(*lists: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[int, dict[str, Any]] = {}
    for entries in lists:
        for e in entries:
            seen.setdefault(int(e["id"]), e)
    return [seen[i] for i in sorted(seen)]


def _aligned(
    emb: np.ndarray, ids: np.ndarray, *, out: Path, source: dict[str, Any]
) -> tuple[np.ndarray, Path]:
    """Embeddings whose row j is example ``ids[j]`` (a copy only if rows were skipped)."""
    from numpy.lib.format import open_memmap

    from failscope.run import atomic_write

    path = Path(emb.filename) if isinstance(emb, np.memmap) and emb.filename else None
    if len(ids) == len(emb) and path is not None:
        return emb, path
    target = out / "embeddings.npy"

    def copy(tmp: Path) -> None:
        dst = open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(ids), emb.shape[1]))
        for s in range(0, len(ids), 65536):
            dst[s : s + 65536] = emb[ids[s : s + 65536]]
        dst.flush()

    atomic_write(target, copy)
    logger.info("wrote %d scored embeddings to %s", len(ids), target)
    return np.load(target, mmap_mode="r", allow_pickle=False), target


def _cache_fingerprint(emb_file: Path, out: Path) -> dict[str, str]:
    """For embeddings read in place from a cache outside ``out``: its row keys' hash.

    A shared cache can be re-laid out by a later run on other data; ``Run.embeddings``
    compares this hash before trusting the file's row order.
    """
    keys = emb_file.parent / "keys.npy"
    if emb_file.resolve().is_relative_to(out.resolve()) or not keys.is_file():
        return {}
    return {"keys_path": str(keys.resolve()), "keys_sha256": file_sha256(keys)}


def _relative(path: Path, out: Path) -> str:
    path, out = Path(path).resolve(), out.resolve()
    try:
        return path.relative_to(out).as_posix()
    except ValueError:
        return str(path)


def _write(
    out: Path,
    *,
    ds: Any,
    ids: np.ndarray,
    pred: np.ndarray,
    correct: np.ndarray,
    scores: np.ndarray,
    in_slice: np.ndarray,
    confidence: np.ndarray,
    estimator: ErrorDirections,
    slices: list[dict[str, Any]],
    info: dict[str, Any],
    timings: _Timings,
) -> None:
    import pandas as pd

    from failscope.run import (
        DIRECTIONS,
        ESTIMATOR,
        EXAMPLE_COLUMNS,
        EXAMPLES,
        FORMAT_VERSION,
        RUN_JSON,
        SLICES_JSON,
        write_json,
        write_npy,
        write_parquet,
    )

    frame = ds.frame
    columns = {
        "id": ids.astype(np.int64),
        "path": frame["path"].to_numpy(dtype=object)[ids],
        "split": ds.splits[ids],
        "label": ds.labels[ids],
        "pred": pred.astype(np.int64),
        "correct": correct.astype(bool),
        "failure_score": scores.astype(np.float32),
        "slice": in_slice.astype(bool),
        "confidence": confidence.astype(np.float32),
    }
    examples = pd.DataFrame({c: columns[c] for c in (*EXAMPLE_COLUMNS, "confidence")})
    for col in ds.metadata_columns:
        examples[col] = frame[col].iloc[ids].to_numpy()
    write_parquet(out / EXAMPLES, examples)
    write_npy(out / DIRECTIONS, estimator.directions_.astype(np.float32))
    estimator.save(out / ESTIMATOR)
    write_json(out / SLICES_JSON, {"format": FORMAT_VERSION, "slices": slices})
    info["format"] = FORMAT_VERSION
    info["timings"] = dict(timings.seconds)
    write_json(out / RUN_JSON, info)
