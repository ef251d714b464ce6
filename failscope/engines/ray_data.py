"""The Ray engine: the embedding and prediction passes on Ray Data.

For the rows still missing from the caches (:mod:`failscope.rowcache`), one Ray Data
pipeline per set of passes needed:

1. ``ray.data.from_pandas``: example ids and absolute image paths, in blocks;
2. ``map_batches(_decode)``, Ray tasks: each image is read once, with the local
   engine's own reader, then transformed by CLIP's ``preprocess`` and by the audited
   model's :func:`~failscope.data.model_transform` (the local engine's transforms);
   unreadable images are dropped here. (With GPU actors these are CPU tasks of their
   own; on CPU-only clusters Ray fuses this step into the actors of step 3, so each
   actor decodes and runs its own batches.)
3. ``map_batches(_Models, compute=ActorPoolStrategy(size=ray_actors),
   num_gpus=ray_gpus_per_actor)``: each actor rebuilds CLIP
   (:func:`~failscope.embed.load_clip_from_spec`) and the audited model
   (:func:`~failscope.data.load_model`) once from their JSON specs, checks their
   identities, and runs both on each batch;
4. ``iter_batches`` on the driver: rows are written into the same caches as the
   local engine, flushed and marked done as they arrive, so a killed run resumes
   without recomputing finished rows.

The local passes then read the caches and compute nothing; they re-read only the
images Ray dropped, and list them as skipped with the local engine's reasons.
Image paths must be readable from every Ray node (a shared filesystem).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from failscope._validation import InputError, fail

logger = logging.getLogger(__name__)

__all__ = ["RayNotInstalled", "fill_caches"]

INSTALL_HINT = "pip install 'failscope[ray]'"
#: Rows per input block of the Ray dataset, in batches (a decode task reads one block).
BATCHES_PER_BLOCK = 4


class RayNotInstalled(InputError, ImportError):
    """``engine="ray"`` without Ray Data installed (the message says what to install)."""


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # Ray Data: the ray[data] extra
    except ImportError:
        raise RayNotInstalled(
            f"--engine ray (engine='ray') needs Ray Data, which is not installed: {INSTALL_HINT}"
        ) from None
    return ray


@contextmanager
def _ray_session(address: str | None) -> Iterator[Any]:
    """Ray, initialised for the run: a local instance (address None) or a cluster.

    A Ray session already open in this process is used as it is and left open;
    one started here is shut down after the run.
    """
    ray = _import_ray()
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(
                address=address, include_dashboard=False, log_to_driver=False,
                logging_level=logging.WARNING,
            )  # fmt: skip
        except ConnectionError as exc:
            raise fail(
                f"cannot reach the Ray cluster at --ray-address {address} ({exc}); start one "
                "with `ray start --head`, or leave out --ray-address for a local Ray instance"
            ) from None
    elif address is not None:
        logger.info("Ray is already initialised in this process; ray_address=%s ignored", address)
    ctx = ray.data.DataContext.get_current()
    before = ctx.enable_progress_bars, logging.getLogger("ray.data").level
    ctx.enable_progress_bars = False  # the caller shows progress
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    try:
        yield ray
    finally:
        ctx.enable_progress_bars = before[0]
        logging.getLogger("ray.data").setLevel(before[1])
        if started:
            ray.shutdown()


# --------------------------------------------------------------------------- in Ray workers


def _read_one(path: str, transforms: dict[str, Callable[[Any], Any]]) -> dict[str, Any] | None:
    """The local engine's reader on one image: its transformed arrays by name (None: unreadable)."""
    from failscope.data.datasets import _ImageLoader

    names = list(transforms)
    loader = _ImageLoader(
        [path], np.zeros(1, np.int64), lambda im: [transforms[k](im) for k in names]
    )
    _, xs, _ = loader[0]
    if xs is None:
        return None
    return {k: np.asarray(x, dtype=np.float32) for k, x in zip(names, xs, strict=True)}


def _decode(
    batch: dict[str, np.ndarray],
    *,
    transforms: dict[str, Callable[[Any], Any]],
    shapes: dict[str, tuple[int, ...]],
) -> dict[str, np.ndarray]:
    """Ray task: read and transform a batch of images; unreadable ones are dropped."""
    ids, arrays = [], {k: [] for k in transforms}
    for i, path in zip(batch["id"].tolist(), batch["path"].tolist(), strict=True):
        xs = _read_one(str(path), transforms)
        if xs is None:
            continue  # listed by the local pass, with its reason
        for k, x in xs.items():
            if x.shape != shapes[k]:
                raise fail(
                    f"images of different sizes: {path} gives {x.shape}, others "
                    f"{shapes[k]}; pass an image size (e.g. --image-size 224) so images are resized"
                )
            arrays[k].append(x)
        ids.append(i)
    out = {"id": np.asarray(ids, dtype=np.int64)}
    for k, xs in arrays.items():
        out[k] = np.stack(xs) if xs else np.zeros((0, *shapes[k]), dtype=np.float32)
    return out


class _Models:
    """Ray Data callable class: CLIP and/or the audited model, built once per actor."""

    def __init__(
        self,
        *,
        clip_spec: dict[str, Any] | None,
        clip_factory: Any,
        model_spec: dict[str, Any] | None,
        model_id: str | None,
        device: str,
    ) -> None:
        self.device = device
        self.clip = self.module = None
        if clip_spec is not None:
            from failscope.embed import add_clip_model, load_clip_from_spec

            if clip_factory is not None:  # a registered name: register it in this worker too
                add_clip_model(clip_spec["name"], clip_factory)
            self.clip = load_clip_from_spec(
                clip_spec, device=device, precision=clip_spec["precision"]
            )
            if self.clip.identity != clip_spec["identity"]:
                raise fail(
                    f"CLIP {clip_spec['name']} rebuilt in a Ray worker has another identity "
                    "than on the driver (other weights file contents on this node?)"
                )
        if model_spec is not None:
            from failscope.data import load_model
            from failscope.engines.local import model_identity

            trust = bool(model_spec.get("trust_checkpoint", False))
            module = load_model(model_spec, trust_checkpoint=trust)
            if model_identity(model_spec, module) != model_id:
                raise fail(
                    f"the audited model {model_spec['spec']} rebuilt in a Ray worker has another "
                    "identity than on the driver (other files on this node?)"
                )
            self.module = module.to(device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        out = {"id": batch["id"]}
        n = len(batch["id"])
        if self.clip is not None:
            out["embedding"] = (
                self.clip.encode_images(torch.from_numpy(batch["clip"]))
                if n
                else np.zeros((0, self.clip.dim), dtype=np.float32)
            )
        if self.module is not None:
            from failscope.data.models import predict_batch

            pred, conf, k = (
                predict_batch(self.module, torch.from_numpy(batch["model"]), self.device)
                if n
                else (np.zeros(0), np.zeros(0), 0)
            )
            out["prediction"] = np.stack([pred, conf], axis=1).astype(np.float64)
            out["n_outputs"] = np.full(n, k, dtype=np.int64)
        return out


# --------------------------------------------------------------------------- the driver


def _user_error(exc: BaseException) -> str | None:
    """The message of a failscope InputError raised inside a Ray task or actor, if any."""
    seen = set()
    stack = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, InputError):
            return str(e)
        stack += [getattr(e, "cause", None), e.__cause__, e.__context__]
    found = re.findall(r"InputError: (.+)", str(exc))  # an actor's constructor: text only
    return found[-1].strip() if found else None


def _first_shapes(
    dataset: Any, ids: np.ndarray, transforms: dict[str, Callable[[Any], Any]]
) -> dict[str, tuple[int, ...]] | None:
    """Output shape of each transform on the first readable image of ``ids`` (None: none is)."""
    for i in ids:
        xs = _read_one(dataset.abspaths[int(i)], transforms)
        if xs is not None:
            return {k: x.shape for k, x in xs.items()}
    return None


def fill_caches(
    dataset: Any,
    *,
    options: Any,
    clip: Any,
    model_spec: dict[str, Any] | None,
    module: Any,
    cache_dir: Any,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
    flush_seconds: float = 5.0,
) -> dict[str, Any]:
    """Compute the embedding and prediction rows missing from the caches, on Ray Data.

    Parameters
    ----------
    dataset : ImageDataset
    options : EngineOptions
        ``ray_address``, ``ray_actors``, ``ray_gpus_per_actor``.
    clip : ClipModel or None
        None: no embedding pass.
    model_spec : dict or None
        The audited model's spec (:func:`failscope.data.model_spec`); None: no
        prediction pass. A model given as an ``nn.Module`` object is refused: Ray
        actors rebuild it from a file or ``module:function``.
    module : torch.nn.Module or None
        The audited model as loaded on the driver (its identity keys the cache).
    cache_dir : path
    batch_size : int, default=64
        Images per model batch (a decode task reads ``BATCHES_PER_BLOCK`` batches).
    progress : callable(done, total), optional
        Rows finished, cached ones included.
    flush_seconds : float, default=5.0
        How often arrived rows are flushed and marked done.

    Returns
    -------
    dict
        ``rows_missing``, ``embedded``, ``predicted``, ``dropped`` (unreadable),
        ``startup_seconds`` (Ray init; None if no pipeline ran), ``first_batch_seconds``
        and ``first_batch_rows`` (actors up, models loaded, first batch back),
        ``pipeline_seconds`` (from building the pipelines to their last batch),
        ``seconds`` (all), the options and the Ray version.

    Raises
    ------
    RayNotInstalled
        Ray Data is not installed.
    InputError
        An ``nn.Module`` object as the model, or a model or CLIP that a worker
        rebuilds differently.
    """
    from failscope.embed import embedding_cache
    from failscope.engines.local import model_identity, predictions_cache

    _import_ray()
    t0 = time.perf_counter()
    if model_spec is not None and model_spec["kind"] == "module":
        raise fail(
            "--engine ray rebuilds the audited model in each Ray actor from its spec, so it "
            "cannot take an nn.Module object: pass a TorchScript file, 'torchvision:ARCH' "
            "with a checkpoint, or 'module:function'"
        )
    model_id = None if model_spec is None else model_identity(model_spec, module)
    if model_spec is not None and model_id is None:
        raise fail(
            f"--engine ray cannot key the predictions of {model_spec['spec']}: the source of "
            "its model class cannot be read; define it in a module file"
        )
    stats: dict[str, Any] = {
        "engine": "ray", **options.to_json(), "rows_missing": 0, "embedded": 0,
        "predicted": 0, "dropped": 0, "startup_seconds": None, "first_batch_seconds": None,
        "first_batch_rows": 0, "pipeline_seconds": 0.0,
    }  # fmt: skip
    keys = dataset.file_keys()
    passes: dict[str, _Pass] = {}
    with ExitStack() as stack:
        if clip is not None:
            cache = embedding_cache(cache_dir, clip)
            passes["clip"] = _Pass(
                cache, stack.enter_context(cache.open(keys, flush_seconds=flush_seconds))
            )
        if model_spec is not None:
            cache = predictions_cache(cache_dir, model_id, model_spec)
            passes["model"] = _Pass(
                cache, stack.enter_context(cache.open(keys, flush_seconds=flush_seconds))
            )
        groups = _groups(dataset, passes, clip=clip, model_spec=model_spec)
        stats["rows_missing"] = sum(len(g.ids) for g in groups)
        tally = _Tally(len(dataset), len(dataset) - stats["rows_missing"], progress)
        tally.report()
        for g in groups:
            if g.shapes is None:  # every image unreadable: the local passes list them
                stats["dropped"] += len(g.ids)
                tally.add(len(g.ids))
        runnable = [g for g in groups if g.shapes is not None]
        if runnable:
            t_init = time.perf_counter()
            with _ray_session(options.ray_address) as ray:
                stats["startup_seconds"] = round(time.perf_counter() - t_init, 4)
                stats["ray"] = ray.__version__
                for g in runnable:
                    actor_kwargs = {
                        "clip_spec": clip.spec() if "clip" in g.passes else None,
                        "clip_factory": _registered_factory(clip) if "clip" in g.passes else None,
                        "model_spec": model_spec if "model" in g.passes else None,
                        "model_id": model_id,
                        "device": "cuda" if options.ray_gpus_per_actor > 0 else "cpu",
                    }
                    _run_pipeline(
                        ray, dataset, g, actor_kwargs=actor_kwargs, options=options,
                        batch_size=batch_size, stats=stats, tally=tally,
                    )  # fmt: skip
    stats["seconds"] = round(time.perf_counter() - t0, 4)
    logger.info(
        "ray: %d rows missing, %d embedded, %d predicted, %d unreadable; %.1f s "
        "(Ray start %.1f s, first batch %.1f s)", stats["rows_missing"], stats["embedded"],
        stats["predicted"], stats["dropped"], stats["seconds"], stats["startup_seconds"] or 0.0,
        stats["first_batch_seconds"] or 0.0,
    )  # fmt: skip
    return stats


@dataclass
class _Pass:
    """One cache being filled: the embedding or the predictions cache, and its writer."""

    cache: Any
    writer: Any


@dataclass
class _Group:
    """Rows that need the same passes: one Ray Data pipeline."""

    ids: np.ndarray
    passes: dict[str, _Pass]
    transforms: dict[str, Callable[[Any], Any]]
    shapes: dict[str, tuple[int, ...]] | None  # None: no image of the group is readable


@dataclass
class _Tally:
    """Rows finished so far, reported to ``progress``."""

    total: int
    done: int
    progress: Callable[[int, int], None] | None

    def report(self) -> None:
        if self.progress is not None:
            self.progress(self.done, self.total)

    def add(self, rows: int) -> None:
        self.done += rows
        self.report()


def _groups(
    dataset: Any, passes: dict[str, _Pass], *, clip: Any, model_spec: dict[str, Any] | None
) -> list[_Group]:
    """The rows missing from some cache, grouped by the passes they need."""
    from failscope.data import model_transform

    transforms: dict[str, Callable[[Any], Any]] = {}
    if "clip" in passes:
        transforms["clip"] = clip.preprocess
    if "model" in passes:
        transforms["model"] = model_transform(model_spec)
    code = np.zeros(len(dataset), dtype=np.int64)  # one bit per pass the row needs
    for bit, p in enumerate(passes.values()):
        code[p.writer.todo()] |= 1 << bit
    todo = np.flatnonzero(code)
    groups = []
    for c in sorted(set(code[todo].tolist())):
        names = [k for bit, k in enumerate(passes) if c >> bit & 1]
        ids = todo[code[todo] == c]
        tf = {k: transforms[k] for k in names}
        groups.append(
            _Group(ids, {k: passes[k] for k in names}, tf, _first_shapes(dataset, ids, tf))
        )
    return groups


def _registered_factory(clip: Any) -> Any:
    """The factory of a CLIP registered with ``add_clip_model`` (shipped to the actors)."""
    from failscope.embed import _REGISTRY

    return _REGISTRY.get(clip.name) if clip.registered else None


def _run_pipeline(
    ray: Any,
    dataset: Any,
    group: _Group,
    *,
    actor_kwargs: dict[str, Any],
    options: Any,
    batch_size: int,
    stats: dict[str, Any],
    tally: _Tally,
) -> None:
    """Run one group's passes with Ray Data; write rows into the caches as they arrive."""
    ds = ray.data.from_pandas(_id_frames(dataset, group.ids, batch_size * BATCHES_PER_BLOCK))
    ds = ds.map_batches(
        _decode, batch_size=batch_size, batch_format="numpy",
        fn_kwargs={"transforms": group.transforms, "shapes": group.shapes},
    ).map_batches(
        _Models, batch_size=batch_size, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=options.ray_actors),
        num_gpus=options.ray_gpus_per_actor or None,
        fn_constructor_kwargs=actor_kwargs,
    )  # fmt: skip
    clip_pass, model_pass = group.passes.get("clip"), group.passes.get("model")
    n_outputs = None if model_pass is None else model_pass.cache.read_meta().get("n_outputs")
    received = 0
    t_run = time.perf_counter()
    try:
        for out in ds.iter_batches(batch_size=None, batch_format="numpy"):
            if stats["first_batch_seconds"] is None:
                stats["first_batch_seconds"] = round(time.perf_counter() - t_run, 4)
                stats["first_batch_rows"] = len(out["id"])
            got = out["id"]
            if clip_pass is not None:
                clip_pass.writer.write(got, out["embedding"])
                stats["embedded"] += len(got)
            if model_pass is not None and len(got):
                if n_outputs != int(out["n_outputs"][0]):
                    n_outputs = int(out["n_outputs"][0])
                    model_pass.cache.update_meta(n_outputs=n_outputs)  # before rows are done
                model_pass.writer.write(got, out["prediction"])
                stats["predicted"] += len(got)
            received += len(got)
            tally.add(len(got))
    except Exception as exc:
        message = _user_error(exc)
        if message is None:
            raise
        raise fail(message) from None
    stats["pipeline_seconds"] += round(time.perf_counter() - t_run, 4)
    stats["dropped"] += len(group.ids) - received
    tally.add(len(group.ids) - received)


def _id_frames(dataset: Any, ids: np.ndarray, rows: int) -> list[Any]:
    """Ids and absolute paths of ``ids``, as DataFrames of ``rows`` rows (one Ray block each).

    (Split here: ``from_pandas(override_num_blocks=...)`` fails with pandas 3 in Ray 2.60.)
    """
    import pandas as pd

    paths = dataset.abspaths
    return [
        pd.DataFrame({"id": part.astype(np.int64), "path": [paths[int(i)] for i in part]})
        for part in np.array_split(ids, max(1, -(-len(ids) // rows)))
    ]
