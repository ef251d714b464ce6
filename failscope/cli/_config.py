"""Command-line options made from a stage's config dataclass (its field metadata).

A field's metadata gives its ``help``, ``group`` and ``metavar``, and optionally
``type`` (``int``, ``float`` or ``"floats"`` for ``R,G,B`` lists), ``choices``,
``flag`` (default ``--field-name``), ``required`` and ``exclusive`` (fields sharing
it form a required mutually exclusive group). Booleans become switches:
``--name`` for a default of False, ``--no-name`` for a default of True.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

__all__ = ["add_config_arguments", "config_from_args", "flag_of", "parse_floats"]

GROUP_TITLES = {
    "data": "data",
    "model": "audited model (one of --model, --predictions)",
    "embeddings": "embeddings",
    "slices": "slices",
    "attributions": "attributions (where the audited model looks)",
    "compute": "compute",
    "output": "output",
}


def parse_floats(text: str) -> tuple[float, ...]:
    """``"0.5,0.5,0.5"`` (commas or spaces) as a tuple of floats."""
    try:
        return tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers like 0.5,0.5,0.5, got {text!r}"
        ) from None


def flag_of(f: dataclasses.Field[Any]) -> str:
    """The command-line flag of a config field."""
    if "flag" in f.metadata:
        return str(f.metadata["flag"])
    name = f.name.replace("_", "-")
    return f"--no-{name}" if f.default is True else f"--{name}"


def add_config_arguments(
    parser: argparse.ArgumentParser, config_cls: type, *, only: tuple[str, ...] | None = None
) -> None:
    """Add one option per field of ``config_cls`` (or of the fields named in ``only``),
    grouped as its metadata says."""
    groups: dict[str, Any] = {}
    exclusive: dict[str, Any] = {}
    for f in dataclasses.fields(config_cls):
        if only is not None and f.name not in only:
            continue
        meta = f.metadata
        group = meta["group"]
        if group not in groups:
            groups[group] = parser.add_argument_group(GROUP_TITLES.get(group, group))
        target = groups[group]
        if "exclusive" in meta:
            key = meta["exclusive"]
            if key not in exclusive:
                exclusive[key] = target.add_mutually_exclusive_group(required=True)
            target = exclusive[key]
        kwargs: dict[str, Any] = {"dest": f.name, "help": meta["help"]}
        if isinstance(f.default, bool):
            kwargs["action"] = "store_false" if f.default else "store_true"
        else:
            typ = meta.get("type")
            kwargs["type"] = parse_floats if typ == "floats" else typ
            kwargs["metavar"] = meta.get("metavar")
            if "choices" in meta:
                kwargs["choices"] = meta["choices"]
                kwargs.pop("metavar")
            if meta.get("required"):
                kwargs["required"] = True
            if f.default is not None and not meta.get("required"):
                kwargs["default"] = f.default
                kwargs["help"] += f" (default {_shown(f.default)})"
        target.add_argument(flag_of(f), **kwargs)


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(f"{v:g}" for v in value)
    return str(value)


def config_from_args(config_cls: type, args: argparse.Namespace) -> Any:
    """An instance of ``config_cls`` from parsed arguments (one value per field)."""
    return config_cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls)})
