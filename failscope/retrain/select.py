"""Data selection for core slices: which unlabelled images to label next.

The failure-directions paper's intervention (Jain et al., ICLR 2023): rank a pool of
unlabelled images by how far they lie along a slice's failure direction, and label
the best. Here every pool image is embedded with the run's CLIP and scored by the
fitted slicer as an example of the slice's class (``run.slicer().score``): for a
direction-based slice that is its alignment with the direction (signed distance to
the hyperplane), for other slicers the slice's own score. The pool has no labels,
and a CLIP embedding may say little about the class (the world's CLIP knows the
attributes, not the digits), so by default a slice only draws from the pool images
whose ``top_k`` most probable classes under the audited model include the slice's
class (``class_filter="none"`` ranks the whole pool).

The result is a manifest to label: the ``per_slice`` best images of each slice.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from failscope._validation import check_choice, check_int, fail

logger = logging.getLogger(__name__)

__all__ = ["CLASS_FILTERS", "Selection", "load_pool", "select_pool"]

CLASS_FILTERS = ("model", "none")
#: Default output of ``failscope select`` in the run directory.
SELECTION_CSV = "selection.csv"
_COLUMNS = ("slice_id", "class_name", "rank", "score", "path", "audited_pred", "label")


@dataclass(frozen=True)
class Selection:
    """What :func:`select_pool` picked.

    Attributes
    ----------
    frame : pandas.DataFrame
        One row per (slice, picked image): ``slice_id``, ``class_name``, ``rank``
        (0 = best), ``score``, ``path``, ``audited_pred``, and an empty ``label``
        column to fill in.
    skipped : list of dict
        Pool images that could not be read (``{"id", "path", "reason"}``).
    n_pool : int
        Images in the pool.
    n_candidates : dict of str to int
        Pool images each slice could draw from (after the class filter).
    out : Path or None
        Where the manifest was written.
    """

    frame: Any
    skipped: list[dict[str, Any]]
    n_pool: int
    n_candidates: dict[str, int]
    out: Path | None = None


def load_pool(pool: str | os.PathLike[str]) -> Any:
    """A pool of unlabelled images: a folder (searched recursively) or a manifest with a
    ``path`` column (other columns are ignored).

    Returns
    -------
    ImageDataset
        Split ``"pool"``; labels are placeholders (0).
    """
    import pandas as pd

    from failscope.data.datasets import (
        IMG_EXTENSIONS,
        MANIFEST_SUFFIXES,
        ImageDataset,
        _read_table,
        _walk_images,
    )

    p = Path(pool)
    if p.is_dir():
        root = p.resolve()
        files, _ = _walk_images(root, set())
        paths = [os.path.relpath(f, root).replace(os.sep, "/") for f in files]
        if not paths:
            raise fail(f"--pool {p} holds no images ({', '.join(IMG_EXTENSIONS)})")
    elif p.is_file() and p.name.lower().endswith(MANIFEST_SUFFIXES):
        table = _read_table(p.resolve())
        if "path" not in table.columns:
            raise fail(f"pool manifest {p} has no 'path' column")
        root = p.resolve().parent
        paths = [str(v) for v in table["path"].tolist()]
        if not paths:
            raise fail(f"pool manifest {p} has no rows")
    else:
        raise fail(f"--pool {p} is neither a folder of images nor a .csv/.parquet manifest")
    frame = pd.DataFrame({"path": paths, "split": "pool", "label": np.zeros(len(paths), np.int64)})
    source = {"kind": "pool", "root": str(root), "manifest": None}
    return ImageDataset(frame=frame, classes=["pool"], root=root, source=source)


def _pool_embeddings(run: Any, ds: Any, *, batch_size: int) -> tuple[np.ndarray, list]:
    from failscope.embed import embed_dataset, load_clip_from_spec
    from failscope.run import CACHE_DIR

    clip_info = run.info.embeddings.clip
    if clip_info is None:
        raise fail(
            f"{run.path} was discovered with embeddings from a file, so its CLIP is not "
            "known; re-run discover with --clip to select from a pool"
        )
    clip = load_clip_from_spec(clip_info)
    emb, skipped = embed_dataset(
        ds, clip, cache_dir=run.path / CACHE_DIR / "pool", batch_size=batch_size
    )
    return np.asarray(emb), skipped


def _pool_top_classes(run: Any, ds: Any, ids: np.ndarray, *, top_k: int, batch_size: int) -> Any:
    """(n_ids, top_k) most probable classes and the top-1 class under the audited model."""
    import torch

    from failscope.data.datasets import iter_image_batches
    from failscope.data.models import model_transform
    from failscope.retrain.checkpoint import load_audited_model

    if run.info.model.kind == "predictions":
        raise fail(
            f"{run.path} has no reloadable audited model (it was given predictions), so "
            "pool images cannot be filtered by class; pass --class-filter none"
        )
    model = load_audited_model(run)
    transform = model_transform(run.info.model.to_json())
    top = np.full((len(ids), top_k), -1, dtype=np.int64)
    where = {int(i): j for j, i in enumerate(ids)}
    with torch.inference_mode():
        for batch in iter_image_batches(ds, transform, ids=ids, batch_size=batch_size):
            if batch.pixels is None:
                continue
            logits = model(batch.pixels)
            k = torch.topk(logits.float(), min(top_k, logits.shape[1]), dim=1).indices
            for i, row in zip(batch.ids, k.numpy(), strict=True):
                top[where[int(i)], : len(row)] = row
    return top


def _target(run: Any, out: str | os.PathLike[str] | None) -> tuple[Path, str | None]:
    """Where the manifest goes, and its run-relative name when it is a run file.

    In the run directory only a new file or failscope's own is replaced; elsewhere only
    a new file or an earlier selection manifest (same header).
    """
    target, rel = run.target(out, SELECTION_CSV, what="the manifest's file name (.csv)")
    if rel is not None:
        return target, rel
    if target.exists():
        with open(target, encoding="utf-8", errors="replace") as fh:
            if fh.readline().strip() != ",".join(_COLUMNS):
                raise fail(
                    f"--out {target} exists and is not a selection manifest; move it away "
                    "or choose another path (failscope never overwrites files it did not write)"
                )
    return target, None


def select_pool(
    run: Any,
    pool: str | os.PathLike[str],
    *,
    per_slice: int,
    slices: Sequence[str] | None = None,
    top_k: int = 3,
    class_filter: str = "model",
    out: str | os.PathLike[str] | None = None,
    write: bool = True,
    batch_size: int = 256,
) -> Selection:
    """Rank a pool of unlabelled images for each core slice; write the best as a manifest.

    Parameters
    ----------
    run : Run or path
    pool : path
        A folder of images or a manifest with a ``path`` column.
    per_slice : int
        Images to pick per slice (the labelling budget).
    slices : sequence of str, optional
        Slice ids; default: the slices annotated *core* (``RUN/annotations.json``).
    top_k : int, default=3
        Class filter: a pool image is a candidate for a slice of class ``c`` when ``c`` is
        among the audited model's ``top_k`` most probable classes for it.
    class_filter : {"model", "none"}, default="model"
    out : path, optional
        The manifest (CSV); default ``RUN/selection.csv``. An existing file is replaced
        only if failscope wrote it.
    write : bool, default=True

    Returns
    -------
    Selection
        Unreadable pool images are skipped and listed in ``skipped``.
    """
    import pandas as pd

    from failscope.retrain.fixes import fix_plan
    from failscope.run import Run, atomic_write, load_run, run_lock

    run = run if isinstance(run, Run) else load_run(run)
    per_slice = check_int(per_slice, name="per_slice", low=1)
    top_k = check_int(top_k, name="top_k", low=1)
    check_choice(class_filter, CLASS_FILTERS, name="class_filter")
    if slices is None:
        slices = fix_plan(run).of("core")
        if not slices:
            raise fail(
                f"{run.path} has no slice annotated core; annotate some (failscope review) "
                "or name them with --slice ID"
            )
    entries = [run.slice(s) for s in slices]
    ds = load_pool(pool)
    emb, skipped = _pool_embeddings(run, ds, batch_size=batch_size)
    ok = np.flatnonzero(np.isfinite(emb).all(axis=1))
    if skipped:
        logger.warning("skipped %d unreadable pool images (first: %s: %s)", len(skipped),
                       skipped[0]["path"], skipped[0]["reason"])  # fmt: skip
    if not len(ok):
        raise fail(f"none of the {len(ds)} pool images in {pool} could be read")
    top = None
    if class_filter == "model":
        top = _pool_top_classes(run, ds, ok, top_k=top_k, batch_size=batch_size)
    slicer = run.slicer()
    names = run.class_names
    rows, counts = [], {}
    for e in entries:
        cand = ok if top is None else ok[(top == e.class_index).any(axis=1)]
        counts[e.id] = len(cand)
        if not len(cand):
            continue
        scores = slicer.score(emb[cand], np.full(len(cand), e.class_index, np.int64))[:, e.column]
        order = np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")[:per_slice]
        pos = {int(i): j for j, i in enumerate(ok)}
        for rank, j in enumerate(order):
            i = int(cand[j])
            pred = None if top is None else names[int(top[pos[i], 0])]
            rows.append({
                "slice_id": e.id, "class_name": e.class_name, "rank": rank,
                "score": float(scores[j]), "path": str(ds.abspaths[i]), "audited_pred": pred,
                "label": None,
            })  # fmt: skip
    frame = pd.DataFrame(rows, columns=list(_COLUMNS))
    target = None
    if write:
        with run_lock(run.path):
            target, rel = _target(run, out)
            atomic_write(target, lambda tmp: frame.to_csv(tmp, index=False))
            if rel is not None:
                run.add_files(rel)
    return Selection(frame, skipped, len(ds), counts, target)
