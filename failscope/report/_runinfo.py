"""Facts about a run for the report, read from its typed ``run.json`` (``RunInfo``)."""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any

from failscope._validation import fail
from failscope.run import Run
from failscope.run.schema import RunInfo

__all__ = [
    "choose_view_split",
    "clip_desc",
    "dataset_desc",
    "image_roots",
    "model_desc",
    "when",
]


def _short(value: Any) -> str:
    """A path's last two components (``data/manifest.csv``); other values as given."""
    text = str(value)
    if "/" not in text and "\\" not in text:
        return text
    parts = Path(text).parts
    return "/".join(parts[-2:]) if len(parts) > 1 else text


def _data_source(info: RunInfo) -> str:
    """The manifest or ImageFolder root the run was made from (``ImageDataset.spec()``)."""
    data = info.data
    return str(data["manifest"] if data["kind"] == "manifest" else data["root"])


def dataset_desc(info: RunInfo) -> tuple[str, str | None]:
    """(short, full) description of the dataset."""
    if info.world is not None:  # written by `failscope demo`
        plants = info.world.plants
        short = f"built-in world (seed {info.world.seed}, {len(plants)} plants)"
        return short, "; ".join(plants) or None
    source = _data_source(info)
    return f"{_short(source)} ({info.data['kind']})", source


def model_desc(info: RunInfo) -> tuple[str, str | None]:
    """(short, full) description of the audited model."""
    m = info.model
    if m.spec is None:
        return m.kind, None
    return f"{Path(m.spec).name} ({m.kind})", m.spec


def clip_desc(info: RunInfo) -> tuple[str, str | None]:
    """(short, full) description of the image embedder (CLIP, or given embeddings)."""
    emb = info.embeddings
    if emb.clip is not None:
        pre = f" ({emb.clip.pretrained})" if emb.clip.pretrained else ""
        return _short(emb.clip.name) + pre, emb.clip.name
    if emb.source == "file" and emb.file:
        return f"precomputed ({_short(emb.file)})", emb.file
    return f"precomputed ({emb.source})", None


def when(value: str) -> str:
    """An ISO timestamp as ``YYYY-MM-DD HH:MM UTC`` (other text as given)."""
    try:
        t = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if t.tzinfo is not None:
        return t.astimezone(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return t.strftime("%Y-%m-%d %H:%M")


def image_roots(run: Run) -> list[Path]:
    """Folders a relative image path is looked up under: the dataset's root (as
    recorded; a relative one from the working directory, then from the run), and the
    world's image folder on world runs."""
    root = Path(str(run.info.data["root"]))
    roots = [root] if root.is_absolute() else [Path.cwd() / root, run.path / root]
    if run.info.world is not None:
        roots.append(run.path / run.info.world.root)
    seen, out = set(), []
    for r in roots:
        key = os.path.abspath(r)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def choose_view_split(examples: Any, requested: str, fit_split: str) -> tuple[str | None, str]:
    """Which split the mosaics and histograms show, and a sentence that says so."""
    splits = [str(s) for s in examples["split"].dropna().unique()]
    if requested not in ("auto", "all"):
        if requested not in splits:
            raise fail(
                f"split {requested!r} is not in this run's examples; "
                f"choose one of {', '.join(sorted(splits)) or '(none)'}, 'auto' or 'all'"
            )
        chosen = requested
    elif requested == "all" or not splits:
        return None, "all scored examples (every split)"
    else:
        held_out = [s for s in ("test", "holdout", "val", "valid", "validation") if s in splits]
        held_out = [s for s in held_out if s != fit_split]
        chosen = held_out[0] if held_out else (fit_split if fit_split in splits else None)
        if chosen is None:
            return None, "all scored examples (every split)"
    if chosen == fit_split:
        return chosen, f"the fitting split ({chosen!r}): the examples the slicer was fitted on"
    return chosen, f"the {chosen!r} split, held out from fitting (fitting split: {fit_split!r})"
