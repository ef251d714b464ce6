"""A run's attributions: record them, read them, add them to an existing run, describe slices.

``discover`` computes attributions when its slicer needs them (``--slicer
attribution``); :func:`attribute_run` (``failscope attribute RUN``) adds them to any
run with a loadable audited model, without re-embedding. Both record them in
``run.json["attributions"]`` (:class:`~failscope.run.schema.AttributionsInfo`) and then
:func:`describe_slices` adds each slice's attribution-focus measures to its
``metrics`` and writes its mosaic to ``RUN/plots/mosaic-<id>.png``.

The arrays are read in place from the run's own cache (``RUN/cache``) when every
example was scored; otherwise (some images skipped, or a cache outside the run)
the scored rows are copied to ``RUN/attributions/``, so that row j is always
``examples.parquet`` row j.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from failscope._validation import fail
from failscope.attribute.compute import TARGET, Computed
from failscope.attribute.focus import class_region, focus_measures, normalised
from failscope.run.schema import AttributionFeatures, AttributionsInfo

logger = logging.getLogger(__name__)

__all__ = [
    "ATTRIBUTIONS_DIR",
    "Attributions",
    "attribute_run",
    "describe_slices",
    "load_attributions",
    "record_attributions",
    "unavailable_reason",
]

#: Run-relative folder of the attribution arrays the run holds itself.
ATTRIBUTIONS_DIR = "attributions"


@dataclass
class Attributions:
    """A run's attributions, aligned with ``examples.parquet`` rows.

    Attributes
    ----------
    info : AttributionsInfo
        ``run.json["attributions"]``.
    maps : numpy.memmap of float16, shape (n_examples, h, w)
        Row j = examples row j; each map's maximum is 1 (zeros: no attribution).
    """

    info: AttributionsInfo
    maps: np.ndarray
    _features: dict[str, np.ndarray]

    @property
    def method(self) -> str:
        """The attribution method (``"gradcam"``, ``"saliency"``, ...)."""
        return self.info.method

    @property
    def layer(self) -> str | None:
        """Grad-CAM's layer, None for gradient methods."""
        return self.info.layer

    @property
    def fallback_reason(self) -> str | None:
        """Why Grad-CAM was not used (``auto`` fell back), else None."""
        return self.info.fallback_reason

    @property
    def feature_kinds(self) -> tuple[str, ...]:
        """The kinds of attribution-weighted features the run has (``"model"``, ``"clip"``)."""
        return tuple(self._features)

    def features(self, kind: str) -> np.ndarray:
        """Attribution-weighted features of ``kind``, float32 (n_examples, dim), memory-mapped."""
        if kind not in self._features:
            raise fail(
                f"this run has no {kind!r} attribution features (it has: "
                f"{', '.join(self._features) or 'none'}); model features need Grad-CAM, "
                "clip features a CLIP"
            )
        return self._features[kind]


def _array(run_path: Path, rel: str, n: int, what: str) -> np.ndarray:
    p = Path(rel)
    p = p if p.is_absolute() else run_path / p
    if not p.is_file():
        raise fail(f"the run's {what} {p} is missing; re-run `failscope attribute {run_path}`")
    arr = np.load(p, mmap_mode="r", allow_pickle=False)
    if arr.shape[0] != n:
        raise fail(
            f"the run's {what} {p} has {arr.shape[0]} rows but examples.parquet has {n}; "
            f"re-run `failscope attribute {run_path}`"
        )
    return arr


def load_attributions(run: Any) -> Attributions:
    """The attributions of ``run`` (a :class:`~failscope.run.Run` or its path).

    Raises
    ------
    InputError
        The run has none (``failscope attribute RUN`` adds them), or its files are
        missing or of another length.
    """
    from failscope.run import Run, load_run

    run = run if isinstance(run, Run) else load_run(run)
    info = run.info.attributions
    if info is None:
        raise fail(
            f"{run.path} has no attributions; add them with `failscope attribute {run.path}`"
        )
    n = run.info.n_scored
    maps = _array(run.path, info.maps, n, "attribution maps")
    feats = {f.kind: _array(run.path, f.path, n, f"{f.kind} attribution features")
             for f in info.features}  # fmt: skip
    return Attributions(info, maps, feats)


def record_attributions(
    computed: Computed,
    ids: np.ndarray,
    *,
    out: Path,
    place: Callable[[str], Path],
    seconds: float,
    clip_identity: str | None,
) -> tuple[AttributionsInfo, dict[str, np.ndarray], list[str]]:
    """The ``run.json`` entry for computed attributions, and the arrays aligned with ``ids``.

    Parameters
    ----------
    computed : Computed
        Rows = dataset rows.
    ids : ndarray of int
        The dataset rows of the run's examples.
    out : Path
        The run directory.
    place : callable(relpath) -> Path
        Where a copy named ``relpath`` is written (a staged path in discover).
    seconds : float
        The attribution pass's time.
    clip_identity : str, optional
        The CLIP of the ``clip`` features.

    Returns
    -------
    info : AttributionsInfo
    arrays : dict
        ``"maps"`` and each feature kind, row j = ``ids[j]``.
    copies : list of str
        Run-relative files written (to list as the run's own).
    """
    from failscope.run.writer import copy_rows

    copies: list[str] = []
    arrays: dict[str, np.ndarray] = {}

    def keep(name: str, arr: np.ndarray) -> str:
        src = Path(arr.filename).resolve()
        if len(ids) == len(arr) and src.is_relative_to(out.resolve()):
            arrays[name] = arr
            return src.relative_to(out.resolve()).as_posix()
        rel = f"{ATTRIBUTIONS_DIR}/{'maps' if name == 'maps' else 'features-' + name}.npy"
        arrays[name] = copy_rows(arr, ids, place(rel))
        copies.append(rel)
        return rel

    maps = keep("maps", computed.maps)
    feats = tuple(
        AttributionFeatures(kind=k, path=keep(k, a), dim=int(a.shape[1]),
                            clip=clip_identity if k == "clip" else None)
        for k, a in computed.features.items()
    )  # fmt: skip
    info = AttributionsInfo(
        method=computed.choice.method, layer=computed.choice.layer,
        fallback_reason=computed.choice.reason, target=TARGET,
        grid=tuple(int(s) for s in computed.maps.shape[1:]), maps=maps, features=feats,
        identity=computed.identity, seconds=round(float(seconds), 4),
    )  # fmt: skip
    return info, arrays, copies


def unavailable_reason(run: Any) -> str | None:
    """Why ``run``'s audited model cannot be attributed, or None if it can."""
    kind = run.info.model.kind
    if kind == "predictions":
        return (
            "attribution unavailable: this run was made from a predictions file, so there "
            "is no model to attribute (re-run discover with --model to get attributions)"
        )
    if kind == "module":
        return (
            "attribution unavailable: the audited model was given as a Python object and "
            "cannot be reloaded; pass it again: failscope.attribute.attribute_run(run, model=...)"
        )
    return None


def attribute_run(
    run: Any,
    *,
    model: Any = None,
    method: str = "auto",
    layer: str | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | None = None,
    threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Attributions:
    """Add attributions to an existing run (``failscope attribute RUN``), without re-embedding.

    The images are re-read from the dataset the run recorded, the audited model is
    re-loaded from ``run.json`` (its file hashes checked) unless ``model`` is given,
    and the ``clip`` features use the run's CLIP (none for runs from precomputed
    embeddings). Then every slice gets its attribution-focus metrics and mosaic
    (:func:`describe_slices`).

    Parameters
    ----------
    run : Run or path
    model : torch.nn.Module, optional
        The audited model, for runs whose model cannot be re-loaded (given as a Python
        object to discover).
    method, layer : str, optional
        See :func:`~failscope.attribute.methods.choose_method`.
    batch_size, num_workers, device, threads, progress
        As for :func:`failscope.discover`.

    Returns
    -------
    Attributions

    Raises
    ------
    InputError
        The run has no model to attribute (:func:`unavailable_reason`), or its dataset
        or model files are gone or changed.
    """
    from failscope._threads import torch_threads
    from failscope.attribute.compute import compute_attributions
    from failscope.data.datasets import load_dataset_from_spec
    from failscope.run import CACHE_DIR, Run, load_run, run_lock

    run = run if isinstance(run, Run) else load_run(run)
    reason = unavailable_reason(run) if model is None else None
    if reason is not None:
        raise fail(reason)
    if model is None:
        from failscope.retrain.checkpoint import load_audited_model

        model = load_audited_model(run)
    clip = None
    if run.info.embeddings.clip is not None:
        from failscope.caption.pipeline import load_run_clip

        clip = load_run_clip(run)
    ds = load_dataset_from_spec(run.info.data)
    ids = run.examples["id"].to_numpy(np.int64)
    pred = np.full(len(ds), -1, dtype=np.int64)
    pred[ids] = run.examples["pred"].to_numpy(np.int64)
    cache = Path(run.config.cache_dir) if run.config.cache_dir else run.path / CACHE_DIR
    with run_lock(run.path):
        start = time.perf_counter()
        with torch_threads(threads, num_workers=num_workers):
            computed = compute_attributions(
                ds, model, run.info.model.to_json(), pred=pred, cache_dir=cache, clip=clip,
                method=method, layer=layer, cache_key=run.config.cache_key,
                batch_size=batch_size, num_workers=num_workers, device=device,
                progress=progress,
            )  # fmt: skip
        seconds = time.perf_counter() - start
        info, _, copies = record_attributions(
            computed, ids, out=run.path, place=run.output, seconds=seconds,
            clip_identity=None if clip is None else clip.identity,
        )  # fmt: skip
        run.add_files(*copies)
        run.update_info(attributions=info, timings={**run.info.timings, "attribute": info.seconds})
    describe_slices(run)
    return load_attributions(run)


def _world_boxes(ex: Any, rows: np.ndarray) -> np.ndarray | None:
    """Glyph boxes of world examples (``glyph_x0``... columns), else None."""
    from failscope.world.generate import GLYPH_BOX_COLUMNS

    if not set(GLYPH_BOX_COLUMNS) <= set(ex.columns):
        return None
    return ex.loc[rows, list(GLYPH_BOX_COLUMNS)].to_numpy(np.float64)


def describe_slices(run: Any) -> list[str]:
    """Add attribution metrics to every slice and write its mosaic; return the mosaic paths.

    Metrics (on the fitting split, added to ``SliceEntry.metrics``): ``confidence``
    (the members' mean confidence) and, from :func:`~failscope.attribute.focus.focus_measures`
    for the members and for their class's correctly predicted examples (suffix
    ``_correct``): ``attr_concentration``, ``attr_outside_centre``,
    ``attr_outside_class_region`` and, on world runs, ``attr_background``. Mosaics
    show the members of the split the report shows (held out where there is one).
    """
    from failscope.run import atomic_write, run_lock

    attr = load_attributions(run)
    ex = run.examples
    labels = ex["label"].to_numpy()
    correct = ex["correct"].to_numpy(bool)
    fit = (ex["split"] == run.fit_split).to_numpy()
    conf = ex["confidence"].to_numpy(np.float64)
    scores = np.asarray(run.slice_score_matrix())
    boxes_all = _world_boxes(ex, np.arange(len(ex)))
    world_size = _world_image_size(run)
    out, written = [], []
    for s in run.slices:
        member = run.members(s, scores)
        ref = np.flatnonzero(fit & (labels == s.class_index) & correct)
        inside = np.flatnonzero(fit & member)
        p_ref = normalised(attr.maps[ref])
        region = class_region(p_ref) if len(ref) else np.ones(attr.info.grid, dtype=bool)
        metrics = dict(s.metrics)
        conf_in = conf[inside]
        ok = np.isfinite(conf_in)
        metrics["confidence"] = float(conf_in[ok].mean()) if ok.any() else None
        for suffix, rows in (("", inside), ("_correct", ref)):
            boxes = None if boxes_all is None or world_size is None else boxes_all[rows]
            found = focus_measures(normalised(attr.maps[rows]), region=region, boxes=boxes,
                                   image_size=world_size)  # fmt: skip
            metrics.update({f"attr_{k}{suffix}": v for k, v in found.items()})
        out.append(s.replace(metrics=metrics))
    with run_lock(run.path):
        run.save_slices(out)
        for s, rel in _mosaics(run, attr, ex, scores):
            atomic_write(run.output(rel), lambda tmp, im=s: im.save(tmp, format="PNG"))
            written.append(rel)
        run.add_files(*written)
    return written


def _world_image_size(run: Any) -> tuple[int, int] | None:
    """(32, 32) when the model saw world images as stored (boxes are in their pixels)."""
    from failscope.world.render import IMAGE_SIZE

    return None if run.info.model.image_size else (IMAGE_SIZE, IMAGE_SIZE)


def _mosaics(run: Any, attr: Attributions, ex: Any, scores: np.ndarray) -> list[tuple[Any, str]]:
    from failscope.attribute.mosaic import mosaic_image
    from failscope.data.datasets import load_dataset_from_spec
    from failscope.report import attribution_mosaic_path
    from failscope.report._runinfo import choose_view_split

    view, _ = choose_view_split(ex, "auto", run.fit_split)
    in_view = np.ones(len(ex), bool) if view is None else (ex["split"] == view).to_numpy()
    paths = load_dataset_from_spec(run.info.data).abspaths
    ids = ex["id"].to_numpy(np.int64)
    wrong = ~ex["correct"].to_numpy(bool)
    images = []
    for s in run.slices:
        rows = np.flatnonzero(in_view & run.members(s, scores))
        order = rows[np.lexsort((-scores[rows, s.column], ~wrong[rows]))]
        chosen = [Path(paths[int(i)]) for i in ids[order[:32]]]
        im = mosaic_image(chosen, np.asarray(attr.maps[order[:32]], dtype=np.float32),
                          wrong[order[:32]], image_size=run.info.model.image_size)  # fmt: skip
        images.append((im, attribution_mosaic_path(s.id)))
    return images
