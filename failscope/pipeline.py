"""``discover``: dataset + audited model + CLIP -> slices, written as a run directory.

Stages (each timed in ``run.json["timings"]``, in seconds):

1. ``load_data``: open the ImageFolder tree or manifest (:mod:`failscope.data.datasets`);
   check the run directory (:func:`failscope.run.writer.check_output_dir`) and lock it.
   ``load_models``: load CLIP, then the audited model (before any long stage, so a
   missing weight or a bad checkpoint fails fast).
2. ``predict``: the audited model's ``pred`` and ``confidence`` for every example,
   or read them from a predictions file (:mod:`failscope.data.models`).
3. ``embed``: CLIP image embeddings of every example, all splits (cached and
   resumable, :mod:`failscope.embed`), or a precomputed ``.npy``.
4. ``fit``: the slicer (:mod:`failscope.slicers`) on the fitting split, standardised
   with the reference split's statistics when present.
5. ``score``: every slice's score for every scored example, the slices' entries.
6. ``write``: the run's files, staged and swapped in whole (:mod:`failscope.run.writer`).

Images that cannot be read (missing, corrupt) are skipped and listed in
``run.json["skipped"]``; they have no row in ``examples.parquet``.
Nothing holds all images or all embeddings in memory: images are streamed in
batches and embeddings stay memory-mapped (the fitting split and at most
``REFERENCE_MAX_ROWS`` reference rows are read into RAM).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from failscope._threads import torch_threads
from failscope._validation import check_choice, check_int, check_seed, fail
from failscope.data.datasets import CACHE_KEYS
from failscope.directions import SCORINGS, SOLVERS
from failscope.run import (
    CACHE_DIR,
    DIRECTIONS,
    EXAMPLE_COLUMNS,
    EXAMPLES,
    FORMAT_VERSION,
    SLICE_SCORES,
    SLICER_STATE,
    SLICES_JSON,
    DiscoverConfig,
    file_sha256,
    load_run,
    run_lock,
    write_json,
)
from failscope.run.schema import (
    ClassEntry,
    ClipInfo,
    EmbeddingsInfo,
    ModelInfo,
    RunInfo,
    SkippedInput,
    SliceEntry,
    SlicesFile,
)
from failscope.run.writer import (
    EMBEDDINGS_COPY,
    RunWriter,
    check_output_dir,
    save_npy,
    write_examples,
)
from failscope.slices import SliceThreshold, direction_matrix, slice_entries, top_membership

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


def _resolve(config: DiscoverConfig) -> DiscoverConfig:
    """Fill the defaults that depend on other settings (the CLIP and its tag)."""
    from failscope.embed import DEFAULT_CLIP, default_pretrained

    clip = config.clip
    if clip is None and config.embeddings is None:
        clip = DEFAULT_CLIP
    tag = config.clip_pretrained
    if isinstance(clip, str):
        tag = default_pretrained(
            clip, tag, checkpoint=config.clip_checkpoint, random_init=config.clip_random_init
        )
    return config.replace(clip=clip, clip_pretrained=tag)


def _check_config(config: DiscoverConfig) -> Any:
    """Validate every setting before any expensive stage; return the unfitted slicer."""
    from failscope.slicers import make_slicer

    check_choice(config.scoring, SCORINGS, name="scoring")
    check_choice(config.solver, SOLVERS, name="solver")
    check_int(config.batch_size, name="batch_size", low=1)
    check_int(config.num_workers, name="num_workers", low=0)
    check_seed(config.seed)
    check_choice(config.cache_key, CACHE_KEYS, name="cache_key")
    if (config.model is None) == (config.predictions is None):
        raise fail("pass exactly one of a model (--model) and a predictions file (--predictions)")
    if config.embeddings is None and config.clip is None:
        raise fail("pass a CLIP (--clip) or precomputed embeddings (--embeddings)")
    SliceThreshold.parse(config.threshold)
    slicer = make_slicer(
        config.slicer, threshold=config.threshold, Cs=tuple(config.Cs), cv=config.cv,
        scoring=config.scoring, solver=config.solver, min_examples=config.min_examples,
        alpha=config.alpha, n_jobs=config.n_jobs, random_state=config.seed,
    )  # fmt: skip
    slicer._validate_params()
    return slicer


def discover(
    data: Any,
    *,
    out: str | os.PathLike[str],
    config: DiscoverConfig | None = None,
    progress: StageProgress | None = None,
    **settings: Any,
) -> Any:
    """Find each class's failure slices; write the run directory.

    Parameters
    ----------
    data : path or ImageDataset
        ImageFolder tree or CSV/Parquet manifest (see :func:`failscope.data.load_dataset`).
    out : path
        Run directory: new, empty, or holding a failscope run (replaced; its cache reused).
    config : DiscoverConfig, optional
        All settings at once; ``settings`` override its fields.
    progress : callable(stage, done, total), optional
        Called during the "predict" and "embed" stages.
    **settings
        Any field of :class:`~failscope.run.config.DiscoverConfig` (the same names as
        ``failscope discover``'s options): ``model=``, ``predictions=``, ``clip=``,
        ``embeddings=``, ``slicer=``, ``fit_split=``, ``seed=``... The model may be an
        ``nn.Module``, the embeddings an array, the data an ``ImageDataset``.

    Returns
    -------
    Run
        The written run (:func:`failscope.load_run`).
    """
    from failscope.data import ImageDataset, load_dataset

    known = {f.name for f in dataclasses.fields(DiscoverConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise TypeError(f"discover() got an unknown setting {unknown[0]!r}")
    cfg = _resolve((config or DiscoverConfig()).replace(data=data, **settings))
    slicer = _check_config(cfg)
    out = Path(out)
    timings = _Timings({})

    with timings.stage("load_data"):
        ds = data if isinstance(data, ImageDataset) else load_dataset(
            data, classes=cfg.classes, split_by=cfg.split_by, seed=cfg.seed
        )  # fmt: skip
        splits = ds.split_names
        if cfg.fit_split not in splits:
            raise fail(
                f"fit split {cfg.fit_split!r} is not in the data, whose splits are {splits}; "
                "pass --fit-split NAME (or --split-by for data without splits)"
            )
        ref_split = (
            cfg.reference_split
            if cfg.reference_split in splits and cfg.reference_split != cfg.fit_split
            else None
        )
    old_files = check_output_dir(out, data_root=ds.image_root, force=cfg.force)
    with run_lock(out):
        return _discover_locked(
            cfg, ds=ds, out=out, slicer=slicer, old_files=old_files, ref_split=ref_split,
            timings=timings, progress=progress,
        )  # fmt: skip


def _discover_locked(
    cfg: DiscoverConfig,
    *,
    ds: Any,
    out: Path,
    slicer: Any,
    old_files: list[str],
    ref_split: str | None,
    timings: _Timings,
    progress: StageProgress | None,
) -> Any:
    cache = Path(cfg.cache_dir) if cfg.cache_dir is not None else out / CACHE_DIR
    with timings.stage("load_models"):
        clip_model = _load_clip(
            cfg.clip, clip_pretrained=cfg.clip_pretrained, clip_checkpoint=cfg.clip_checkpoint,
            clip_random_init=cfg.clip_random_init, device=cfg.device, offline=cfg.offline,
        )  # fmt: skip
        if clip_model is not None:  # record the tag actually used (None for local weights)
            cfg = cfg.replace(clip_pretrained=clip_model.pretrained)
        module, spec = _audited_model(
            ds, model=cfg.model, checkpoint=cfg.checkpoint,
            trust_checkpoint=cfg.trust_checkpoint, image_size=cfg.image_size,
            mean=cfg.mean, std=cfg.std,
        )  # fmt: skip

    threads = {"num_workers": cfg.num_workers}
    with torch_threads(cfg.threads, **threads), timings.stage("predict"):
        preds, model_info = _predict(
            ds, module=module, spec=spec, predictions=cfg.predictions,
            batch_size=cfg.batch_size, num_workers=cfg.num_workers, device=cfg.device,
            seed=cfg.seed, progress=_stage_progress(progress, "predict"),
        )  # fmt: skip

    with RunWriter(out, old_files=old_files) as writer:
        with torch_threads(cfg.threads, **threads), timings.stage("embed"):
            emb, emb_skipped, emb_source = _embed(
                ds, clip_model=clip_model, embeddings=cfg.embeddings, cache=cache,
                cache_key=cfg.cache_key, batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                progress=_stage_progress(progress, "embed"),
            )  # fmt: skip

        skipped = _merge_skipped(preds.skipped, emb_skipped)
        scored = np.ones(len(ds), dtype=bool)
        scored[[s["id"] for s in skipped]] = False
        ids = np.flatnonzero(scored)
        if len(skipped):
            logger.warning("%d of %d inputs skipped (listed in run.json)", len(skipped), len(ds))
        if not len(ids):
            raise fail(
                f"all {len(ds)} images were skipped "
                f"(first: {skipped[0]['path']}: {skipped[0]['reason']})"
            )

        with timings.stage("fit"):
            x, emb_path = _aligned(emb, ids, writer=writer)
            labels = ds.labels[ids]
            pred = preds.pred[ids]
            split = ds.splits[ids]
            fit_rows = np.flatnonzero(split == cfg.fit_split)
            if not len(fit_rows):
                raise fail(f"every example of the fitting split {cfg.fit_split!r} was skipped")
            ref_rows = _reference_rows(split, ref_split, seed=cfg.seed)
            slicer.fit(
                np.asarray(x[fit_rows]), labels[fit_rows], pred[fit_rows],
                reference=None if ref_rows is None else np.asarray(x[ref_rows]),
                n_classes=ds.n_classes,
            )  # fmt: skip

            warnings = _run_warnings(slicer, x[fit_rows], labels[fit_rows], pred[fit_rows], cfg)

        with timings.stage("score"):
            scores = slicer.score(x, labels)
            correct = pred == labels
            classes, slices = slice_entries(
                slicer, list(ds.classes), labels=labels[fit_rows], wrong=~correct[fit_rows]
            )
            in_top, slice_id = top_membership(scores, labels, slices)

        with timings.stage("write"):
            info = RunInfo(
                format=FORMAT_VERSION,
                run_id=uuid.uuid4().hex,
                command="discover",
                created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                config=cfg.to_json(),
                versions=_versions(),
                seed=cfg.seed,
                timings={},
                classes=tuple(ds.classes),
                n_examples=len(ds),
                n_scored=len(ids),
                splits={s: int((split == s).sum()) for s in ds.split_names},
                fit_split=cfg.fit_split,
                reference_split=ref_split,
                reference_rows=0 if ref_rows is None else len(ref_rows),
                skipped=tuple(SkippedInput(**s) for s in skipped),
                data=ds.spec(),
                model=ModelInfo.from_json(model_info, where="the audited model's spec"),
                embeddings=EmbeddingsInfo(
                    path=_relative(emb_path, out),
                    dim=int(x.shape[1]),
                    source=emb_source["kind"],
                    file=emb_source.get("path"),
                    clip=None
                    if clip_model is None
                    else ClipInfo.from_json(clip_model.spec(), where="the CLIP's spec"),
                    **_cache_fingerprint(emb_path, out),
                ),
                slicer={"name": slicer.name, "params": _jsonable(slicer.get_params())},
                files=(),
                warnings=warnings,
            )
            _write(
                writer, ds=ds, ids=ids, pred=pred, correct=correct,
                confidence=preds.confidence[ids], scores=scores, in_top=in_top,
                slice_id=slice_id, slicer=slicer, classes=classes, slices=slices,
                dim=int(x.shape[1]),
            )  # fmt: skip
            writer.commit(info.replace(timings=dict(timings.seconds)))

    run = load_run(out)
    run.update_info(timings=dict(timings.seconds))  # now including "write"
    if cfg.captions and clip_model is not None:
        from failscope.caption import caption_run

        with timings.stage("captions"):
            caption_run(run, clip=clip_model)
        run.update_info(timings=dict(timings.seconds))
    elif cfg.captions:
        logger.info("no CLIP model (embeddings given without --clip): captions skipped")
    if cfg.report:
        from failscope.report import build_report

        build_report(run)  # records its own timing
    return run


def _run_warnings(
    slicer: Any, x: np.ndarray, labels: np.ndarray, pred: np.ndarray, cfg: DiscoverConfig
) -> tuple[str, ...]:
    """Findings about the run as a whole, for ``run.json`` and the report (also logged)."""
    from failscope.evidence import tautology_check

    out = []
    check = tautology_check(x, labels, pred, random_state=cfg.seed)
    if check.tautological:
        out.append(
            f"the embeddings reproduce the audited model's own wrong predictions "
            f"({check.mimicry:.0%} of held-out errors): they look like the model's own "
            "features, so the slices describe its decision boundary, not the data; use "
            "independent embeddings (a CLIP) instead"
        )
    edges = sum(bool(s.metrics.get("C_at_edge")) for s in slicer.slices_)
    if edges:
        out.append(
            f"{edges} slice direction(s) chose C at an end of the widened grid with the CV "
            "score still rising; they may be under- or over-regularised (--C-grid)"
        )
    for w in out:
        logger.warning("%s", w)
    return tuple(out)


def _reference_rows(split: np.ndarray, ref_split: str | None, *, seed: int) -> np.ndarray | None:
    """Rows of the reference split (a seeded sample above ``REFERENCE_MAX_ROWS``), or None."""
    if ref_split is None:
        return None
    rows = np.flatnonzero(split == ref_split)
    if len(rows) > REFERENCE_MAX_ROWS:
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(rows, REFERENCE_MAX_ROWS, replace=False))
    return rows if len(rows) else None


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}


# --------------------------------------------------------------------------- stages


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
    progress: Callable[[int, int], None] | None,
) -> tuple[Any, dict[str, Any]]:
    from failscope.data import Predictions, model_transform, predict, read_predictions
    from failscope.data.datasets import _show

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
        preds = predict(
            ds, module, model_transform(spec), batch_size=batch_size,
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
    offline: bool,
) -> Any:
    """The CLIP model, or None; loaded before predicting so a missing weight fails fast."""
    if clip is None:
        return None
    from failscope.embed import load_clip

    clip_model = load_clip(
        clip, clip_pretrained, checkpoint=clip_checkpoint, device=device,
        random_init=clip_random_init, offline=offline,
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
    cache_key: str,
    batch_size: int,
    num_workers: int,
    progress: Callable[[int, int], None] | None,
) -> tuple[np.ndarray, list[dict[str, Any]], dict[str, Any]]:
    from failscope.embed import embed_dataset, load_embeddings

    if embeddings is None:
        emb, skipped = embed_dataset(
            ds, clip_model, cache_dir=cache, batch_size=batch_size,
            num_workers=num_workers, progress=progress, cache_key=cache_key,
        )  # fmt: skip
        return emb, skipped, {"kind": "clip", "path": emb.filename}
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
    return emb, skipped, source


def _merge_skipped(*lists: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[int, dict[str, Any]] = {}
    for entries in lists:
        for e in entries:
            seen.setdefault(int(e["id"]), e)
    return [seen[i] for i in sorted(seen)]


def _aligned(emb: np.ndarray, ids: np.ndarray, *, writer: RunWriter) -> tuple[np.ndarray, Path]:
    """Embeddings whose row j is example ``ids[j]``, and the file that will hold them.

    In place (the cache file) when nothing was skipped; otherwise a copy of the
    scored rows is staged as the run's ``embeddings.npy``.
    """
    from numpy.lib.format import open_memmap

    path = Path(emb.filename) if isinstance(emb, np.memmap) and emb.filename else None
    if len(ids) == len(emb) and path is not None:
        return emb, path
    staged = writer.path(EMBEDDINGS_COPY)
    dst = open_memmap(staged, mode="w+", dtype=np.float32, shape=(len(ids), emb.shape[1]))
    for s in range(0, len(ids), 65536):
        dst[s : s + 65536] = emb[ids[s : s + 65536]]
    dst.flush()
    del dst
    logger.info("staged %d scored embeddings as %s", len(ids), EMBEDDINGS_COPY)
    return np.load(staged, mmap_mode="r", allow_pickle=False), writer.out / EMBEDDINGS_COPY


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
    writer: RunWriter,
    *,
    ds: Any,
    ids: np.ndarray,
    pred: np.ndarray,
    correct: np.ndarray,
    confidence: np.ndarray,
    scores: np.ndarray,
    in_top: np.ndarray,
    slice_id: np.ndarray,
    slicer: Any,
    classes: tuple[ClassEntry, ...],
    slices: tuple[SliceEntry, ...],
    dim: int,
) -> None:
    """Stage every file of the run but ``run.json`` (the writer adds it at commit)."""
    columns = {
        "id": ids.astype(np.int64),
        "path": ds.frame["path"].to_numpy(dtype=object)[ids],
        "split": ds.splits[ids],
        "label": ds.labels[ids],
        "pred": pred.astype(np.int64),
        "correct": correct.astype(bool),
        "confidence": confidence.astype(np.float32),
        "failure_score": scores[:, 0].astype(np.float32),
        "slice": in_top,
        "slice_id": slice_id,
    }
    write_examples(
        writer.path(EXAMPLES), {c: columns[c] for c in EXAMPLE_COLUMNS},
        metadata=ds.frame, metadata_columns=ds.metadata_columns, rows=ids,
    )  # fmt: skip
    save_npy(writer.path(SLICE_SCORES), scores.astype(np.float32))
    save_npy(writer.path(DIRECTIONS), direction_matrix(slicer, dim))
    slicer.save(writer.path(SLICER_STATE))
    write_json(
        writer.path(SLICES_JSON),
        SlicesFile(format=FORMAT_VERSION, classes=classes, slices=slices).to_json(),
    )
