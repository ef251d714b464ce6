"""Slicers: pluggable methods that find 0..K failure slices per class.

Like open_clip's model registry, slicers are found by name: :func:`list_slicers`,
:func:`add_slicer` for your own, and :func:`make_slicer` for a spec string
``NAME[:key=value,...]`` (as ``failscope discover --slicer`` takes it), e.g.
``"directions"`` or ``"mixture:n_components=6"``. Every slicer follows the
contract of :class:`~failscope.slicers.base.Slicer`.
"""

from __future__ import annotations

import importlib
import inspect
import os
from typing import Any

from failscope._validation import fail
from failscope.slicers.base import FittedSlice, Slicer

__all__ = [
    "DEFAULT_SLICER",
    "FittedSlice",
    "Slicer",
    "add_slicer",
    "list_slicers",
    "load_slicer",
    "make_slicer",
    "parse_slicer_spec",
]

#: The default of ``failscope discover --slicer``: failure directions, up to 3 per class, with
#: blended modes split (chosen by ``benchmarks/world_discovery.py``; see the README).
DEFAULT_SLICER = "directions"

# name -> "module:Class" (imported on first use) or a class added by add_slicer
_REGISTRY: dict[str, Any] = {
    "attribution": "failscope.slicers.attribution:AttributionSlicer",
    "directions": "failscope.slicers.directions:DirectionSlicer",
    "mixture": "failscope.slicers.mixture:MixtureSlicer",
}


def add_slicer(name: str, cls: type[Slicer]) -> None:
    """Register a slicer class under ``name`` (see :class:`~failscope.slicers.base.Slicer`)."""
    if not (isinstance(cls, type) and issubclass(cls, Slicer)):
        raise TypeError(f"a slicer must subclass failscope.slicers.Slicer, got {cls!r}")
    if not name or ":" in name or "," in name:
        raise fail(f"slicer name {name!r} must be non-empty without ':' or ','")
    _REGISTRY[name] = cls


def list_slicers() -> list[str]:
    """Names of the registered slicers."""
    return sorted(_REGISTRY)


def _class(name: str) -> type[Slicer]:
    if name not in _REGISTRY:
        raise fail(f"unknown slicer {name!r}; known: {', '.join(list_slicers())}")
    entry = _REGISTRY[name]
    if isinstance(entry, str):
        module, attr = entry.split(":")
        entry = _REGISTRY[name] = getattr(importlib.import_module(module), attr)
    return entry


def _value(text: str, default: Any) -> Any:
    """A ``key=value`` value, typed like the parameter's default."""
    try:
        if isinstance(default, bool):
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "yes")
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if isinstance(default, tuple):
            return tuple(float(v) for v in text.split("/"))
    except ValueError:
        raise fail(f"slicer option value {text!r} should be like {default!r}") from None
    return text


def parse_slicer_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"NAME:key=value,key=value"`` -> (name, typed params)."""
    name, _, rest = str(spec).strip().partition(":")
    cls = _class(name)
    defaults = {
        p.name: p.default
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.kind is p.KEYWORD_ONLY
    }
    params: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, text = item.partition("=")
        if not eq or key not in defaults:
            raise fail(
                f"slicer option {item!r} is not one of {name}'s: {', '.join(sorted(defaults))} "
                "(write NAME:key=value,...)"
            )
        params[key] = _value(text, defaults[key])
    return name, params


def make_slicer(spec: str, **defaults: Any) -> Slicer:
    """Build the slicer a spec names; ``defaults`` fill parameters the spec leaves out.

    ``defaults`` may name parameters a slicer does not have (the discover config's
    shared settings such as ``cv``); those are ignored.
    """
    name, params = parse_slicer_spec(spec)
    cls = _class(name)
    accepted = set(inspect.signature(cls.__init__).parameters)
    merged = {k: v for k, v in defaults.items() if k in accepted}
    merged.update(params)
    return cls(**merged)


def load_slicer(path: str | os.PathLike[str]) -> Slicer:
    """A fitted slicer saved by :meth:`Slicer.save`."""
    from failscope.slicers.base import load_state

    head, arrays = load_state(path)
    cls = _class(str(head["slicer"]))
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in dict(head["params"]).items()}
    slicer = cls(**params)
    slicer._restore(head["state"], arrays)
    return slicer
