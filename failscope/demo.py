"""The main job, offline: the built-in world end to end.

``run_demo`` builds a world with planted failure modes, trains (or loads) the model
under audit, and runs the same stages a user runs on their own data: discover,
captions, evaluation against the planted truth, slice-aware retraining and the
report. The run directory is the one ``failscope discover`` writes, plus
``truth.json`` and the world's images under ``RUN/world/``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from failscope._validation import check_int
from failscope.run import FORMAT_VERSION, RUN_JSON, TRUTH_JSON, run_lock, write_json
from failscope.run.schema import Plant, Truth, WorldInfo
from failscope.run.writer import OWN_ENTRIES, check_output_dir

logger = logging.getLogger(__name__)

__all__ = ["default_cache_dir", "record_world", "run_demo", "world_model"]


def default_cache_dir() -> Path:
    """``$FAILSCOPE_CACHE``, else ``$XDG_CACHE_HOME/failscope``, else ``~/.cache/failscope``."""
    if os.environ.get("FAILSCOPE_CACHE"):
        return Path(os.environ["FAILSCOPE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "failscope"


def _only_an_unfinished_world(out: Path) -> bool:
    """Whether ``out`` holds nothing but the world of a demo stopped before discover.

    Such a folder has no ``run.json`` yet, so :func:`check_output_dir` cannot tell it is
    failscope's; its ``world/world.json`` (written by :func:`make_world`) says so.
    """
    if not out.is_dir() or (out / RUN_JSON).exists():
        return False
    if {p.name for p in out.iterdir()} - OWN_ENTRIES != {"world"}:
        return False
    try:
        meta = json.loads((out / "world" / "world.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and isinstance(meta.get("key"), str)


def run_demo(
    *,
    out: str | os.PathLike[str],
    plants: Sequence[str] | None = None,
    seed: int = 0,
    captions: bool = True,
    retrain: bool = True,
    report: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    sizes: dict[str, int] | None = None,
    audited: Any = None,
    threads: int | None = None,
    slicer: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the whole pipeline on the built-in world.

    Parameters
    ----------
    out : path
        Run directory.
    plants : sequence of str, optional
        Plant specs ``KIND:CLASS:FAMILY=VALUE:RATE``; default
        :data:`failscope.world.DEFAULT_PLANTS`.
    seed : int, default=0
        Seeds the world, the audited model, CV folds and retraining.
    captions, retrain, report : bool, default=True
        Run those stages.
    cache_dir : path, optional
        Where audited models are cached across runs (default :func:`default_cache_dir`).
    sizes : dict, optional
        Examples per split; default :data:`failscope.world.DEFAULT_SIZES`.
    audited : AuditedConfig, optional
        Hyperparameters of the audited CNN; default ``AuditedConfig()``.
    threads : int, optional
        torch threads of discover's predict and embed passes (see
        :func:`failscope.discover`).
    slicer : str, optional
        Slicer spec for discover (``NAME[:key=value,...]``); default: discover's. A
        slicer that needs attributions (``"attribution"``) gets the audited CNN as an
        eager module with the same weights (:func:`world_model`), so that Grad-CAM can
        hook its layers; the TorchScript file cannot be hooked.
    progress : callable(stage, done, total), optional
        Progress of the long stages (passed to :func:`failscope.discover`).
    on_stage : callable(name), optional
        Called as each stage starts.

    Returns
    -------
    dict
        ``{"run": Run, "evaluation": dict, "retrain": dict or None, "report": Path or None,
        "timings": {stage: seconds}}``.
    """
    from failscope.evaluate import evaluate_run
    from failscope.pipeline import discover
    from failscope.world import DEFAULT_PLANTS, get_audited_model, make_world, parse_plants

    check_int(seed, name="seed", low=0)
    out = Path(out)
    plant_list = parse_plants(list(plants) if plants else list(DEFAULT_PLANTS))
    timings: dict[str, float] = {}
    result: dict[str, Any] = {"retrain": None, "report": None, "timings": timings}

    def stage(name: str) -> float:
        logger.info("%s ...", name)
        if on_stage is not None:
            on_stage(name)
        return time.perf_counter()

    # before the world is written there; a demo stopped before discover left only its world
    check_output_dir(out, data_root=None, force=_only_an_unfinished_world(out))
    with run_lock(out):
        t = stage("world")
        world = make_world(plant_list, seed=seed, root=out / "world", sizes=sizes)
        timings["world"] = time.perf_counter() - t

        t = stage("audited model")
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "world-models"
        model_path, _ = get_audited_model(world, config=audited, cache_dir=cache)
        model = world_model(model_path, slicer=slicer, audited=audited)
        timings["audited_model"] = time.perf_counter() - t

        t = stage("discover")
        run = discover(
            world.manifest_path, clip="world", out=out, **model,
            fit_split="val", reference_split="train", seed=seed, threads=threads,
            progress=progress, captions=False, report=False,  # run below, after evaluation
            force=True,  # the folder was checked above; since then it holds our world/
            **({} if slicer is None else {"slicer": slicer}),
        )  # fmt: skip
        record_world(run, world, seed=seed)
        timings["discover"] = time.perf_counter() - t

        if captions:
            from failscope.caption import caption_run

            t = stage("captions")
            caption_run(run)
            timings["captions"] = time.perf_counter() - t

        t = stage("evaluate")
        result["evaluation"] = evaluate_run(run)
        timings["evaluate"] = time.perf_counter() - t

        if retrain:
            from failscope.retrain import retrain_run

            t = stage("retrain")
            result["retrain"] = retrain_run(run, methods="all", seed=seed)
            timings["retrain"] = time.perf_counter() - t

        if report:
            from failscope.report import build_report

            t = stage("report")
            result["report"] = build_report(run)
            timings["report"] = time.perf_counter() - t
        run.update_info(demo_timings=timings)
    result["run"] = run
    return result


def world_model(model_path: Path, *, slicer: str | None, audited: Any) -> dict[str, str]:
    """discover's model settings for the world's audited CNN at ``model_path``.

    The TorchScript file, or, for a slicer that needs attributions, the same network
    as an eager module (``failscope.world.audited:audited_cnn`` with its state_dict),
    whose layers Grad-CAM can hook. A non-default ``audited`` width keeps the
    TorchScript file (and so the saliency fallback).
    """
    from failscope.slicers import DEFAULT_SLICER, make_slicer
    from failscope.world.audited import AuditedConfig, audited_state_file

    width = (audited or AuditedConfig()).width
    needs = getattr(make_slicer(slicer or DEFAULT_SLICER), "needs_attributions", False)
    if not needs or width != AuditedConfig.width:  # audited_cnn() builds the default width
        return {"model": str(model_path)}
    return {
        "model": "failscope.world.audited:audited_cnn",
        "checkpoint": str(audited_state_file(model_path)),
    }


def record_world(run: Any, world: Any, *, seed: int) -> None:
    """Record that ``run`` audits the built-in ``world``: its planted truth (``truth.json``,
    for ``failscope evaluate``) and how the world was made (``run.json``'s ``world``)."""
    truth = Truth(FORMAT_VERSION, seed, tuple(_plant(e) for e in world.truth()))
    with run_lock(run.path):
        write_json(run.output(TRUTH_JSON), truth.to_json())
        run.add_files(TRUTH_JSON)
        root, here = world.root.resolve(), run.path.resolve()
        rel = root.relative_to(here) if root.is_relative_to(here) else root
        specs = tuple(p.spec for p in world.plants)
        run.update_info(world=WorldInfo(seed=seed, plants=specs, key=world.key, root=str(rel)))


def _plant(entry: dict[str, Any]) -> Plant:
    """A world's ``truth()`` entry as the run's typed :class:`~failscope.run.schema.Plant`."""
    fields = {k: v for k, v in entry.items() if k != "class"}
    return Plant(class_index=int(entry["class"]), **fields)
