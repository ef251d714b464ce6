"""Facts about a run for the report, read from ``run.json`` and ``examples.parquet``."""

from __future__ import annotations

import datetime as _dt
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from failscope._validation import fail
from failscope.run import Run

logger = logging.getLogger(__name__)

__all__ = [
    "choose_view_split",
    "clip_desc",
    "dataset_desc",
    "describe",
    "fitting_split",
    "image_roots",
    "load_examples",
    "lookup",
    "model_desc",
    "when",
]


def _config(info: Mapping[str, Any]) -> dict[str, Any]:
    cfg = info.get("config")
    return dict(cfg) if isinstance(cfg, Mapping) else {}


def lookup(info: Mapping[str, Any], *keys: str) -> Any:
    """First non-empty value among ``keys`` in run.json's config, then its top level."""
    cfg = _config(info)
    for source in (cfg, info):
        for key in keys:
            value = source.get(key)
            if value not in (None, "", {}, []):
                return value
    return None


def describe(value: Any) -> str:
    """A short human description of a config value (string, or dict with a name)."""
    if value is None:
        return "–"
    if isinstance(value, Mapping):
        for key in ("name", "model", "arch", "kind", "type", "path", "root"):
            if value.get(key) not in (None, ""):
                extra = [
                    f"{k}={value[k]}"
                    for k in ("pretrained", "tag", "split", "n_classes")
                    if value.get(k) not in (None, "") and k != key
                ]
                return f"{value[key]}" + (f" ({', '.join(extra)})" if extra else "")
        items = [f"{k}={v}" for k, v in value.items() if not isinstance(v, (Mapping, list))]
        return ", ".join(items[:4]) or "–"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value[:6])
    return str(value)


def _short(value: Any) -> str:
    """A path's last two components (``data/manifest.csv``); other values as given."""
    text = str(value)
    if "/" not in text and "\\" not in text:
        return text
    parts = Path(text).parts
    return "/".join(parts[-2:]) if len(parts) > 1 else text


def dataset_desc(info: Mapping[str, Any]) -> tuple[str, str | None]:
    """(short, full) description of the dataset, from run.json's ``data`` spec."""
    data = info.get("data")
    world = info.get("world")
    if isinstance(world, Mapping):  # written by `failscope demo`
        plants = world.get("plants") or []
        short = f"built-in world (seed {world.get('seed', '?')}, {len(plants)} plants)"
        return short, "; ".join(str(p) for p in plants) or None
    if isinstance(data, Mapping) and data:
        source = data.get("manifest") or data.get("root") or _config(info).get("data")
        name = data.get("name") or (_short(source) if source else None) or data.get("kind")
        kind = data.get("kind")
        short = f"{name} ({kind})" if kind and kind != name else str(name or "–")
        return short, None if source is None else str(source)
    value = lookup(info, "dataset", "data")
    return (_short(describe(value)), describe(value)) if value else ("–", None)


def model_desc(info: Mapping[str, Any]) -> tuple[str, str | None]:
    """(short, full) description of the audited model, from run.json's ``model`` spec."""
    model = info.get("model")
    if isinstance(model, Mapping) and model:
        spec = model.get("name") or model.get("spec") or model.get("path")
        kind = model.get("kind")
        if spec is None:
            return str(kind or "–"), None
        short = Path(str(spec)).name + (f" ({kind})" if kind and kind != spec else "")
        return short, str(spec)
    value = lookup(info, "model", "audited_model", "classifier")
    return (_short(describe(value)), describe(value)) if value else ("–", None)


def clip_desc(info: Mapping[str, Any]) -> tuple[str, str | None]:
    """(short, full) description of the image embedder (CLIP, or precomputed embeddings)."""
    emb = info.get("embeddings")
    clip = emb.get("clip") if isinstance(emb, Mapping) else None
    if isinstance(clip, Mapping) and clip.get("name"):
        name, pre = str(clip["name"]), clip.get("pretrained")
        return _short(name) + (f" ({pre})" if pre else ""), name
    if isinstance(emb, Mapping) and emb.get("source") not in (None, "clip"):
        src = emb.get("file")
        return f"precomputed ({_short(src)})" if src else "precomputed", src
    value = lookup(info, "clip", "clip_model", "embedder", "backbone")
    if value is None:
        return "–", None
    pre = _config(info).get("clip_pretrained")
    text = describe(value)
    return _short(text) + (f" ({pre})" if pre and isinstance(value, str) else ""), text


def when(value: Any) -> str:
    """An ISO timestamp as ``YYYY-MM-DD HH:MM UTC`` (other values as given)."""
    try:
        t = _dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return describe(value)
    if t.tzinfo is not None:
        return t.astimezone(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return t.strftime("%Y-%m-%d %H:%M")


def fitting_split(info: Mapping[str, Any]) -> str | None:
    """The split the directions were fit on, if run.json names exactly one."""
    value = lookup(info, "fit_split", "split", "directions_split")
    if isinstance(value, Mapping):
        value = lookup(value, "fit_split", "split")
    if isinstance(value, (list, tuple)):
        value = value[0] if len(value) == 1 else None
    return str(value) if isinstance(value, str) and value else None


def image_roots(run: Run) -> list[Path]:
    """Folders a relative image path is looked up under, in order, without repeats."""
    roots: list[Path] = []
    data = run.info.get("data")
    root = data.get("root") if isinstance(data, Mapping) else None
    if root:
        r = Path(root)
        roots += [r] if r.is_absolute() else [run.path / r, Path.cwd() / r]
    roots += [run.path, Path.cwd()]
    seen, out = set(), []
    for r in roots:
        key = os.path.abspath(r)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def choose_view_split(
    examples: Any, requested: str, fit_split: str | None
) -> tuple[str | None, str]:
    """Which split the mosaics and histograms show, and a sentence that says so."""
    if examples is None or "split" not in examples.columns:
        return None, "all scored examples"
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
    if fit_split is not None and chosen == fit_split:
        return chosen, f"the fitting split ({chosen!r}): the examples the directions were fit on"
    if fit_split is not None:
        return chosen, f"the {chosen!r} split, held out from fitting (fitting split: {fit_split!r})"
    return chosen, f"the {chosen!r} split"


def load_examples(run: Run) -> Any:
    """``run.examples``, or None (with a warning) when it cannot be read."""
    try:
        return run.examples
    except Exception as exc:  # a report of a partial run is still useful
        logger.warning(
            "report: cannot read examples.parquet (%s); thumbnails and plots are left out", exc
        )
        return None
