"""Frozen dataclasses that read and write themselves as JSON, with typed checks.

``Record.from_json`` checks every field against its annotation and raises a
one-line :class:`~failscope._validation.InputError` naming the file and the key
path (``slices.json: slices[3].size``) when a file is malformed: a missing key,
an unknown key, or a value of the wrong type. Nothing is guessed.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin

from failscope._validation import fail

__all__ = ["Record"]

R = TypeVar("R", bound="Record")

_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bad(where: str, expected: str, value: Any) -> Exception:
    return fail(f"{where} must be {expected}, got {_show(value)}; re-run the stage that wrote it")


def _convert(tp: Any, value: Any, where: str) -> Any:
    """``value`` (parsed JSON) as type ``tp``; raises naming ``where`` if it does not fit."""
    if tp is Any:
        return value
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise _bad(where, "set", value)
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(arg, value, where)
            except ValueError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is Literal:
        if value not in get_args(tp):
            raise _bad(where, "one of " + ", ".join(map(repr, get_args(tp))), value)
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise _bad(where, "a list", value)
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise _bad(where, f"a list of {len(args)}", value)
        pairs = enumerate(zip(args, value, strict=True))
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in pairs)
    if origin is dict:
        if not isinstance(value, dict):
            raise _bad(where, "an object", value)
        _, vt = get_args(tp) or (str, Any)
        return {str(k): _convert(vt, v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, Record):
        return tp._from_json(value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise _bad(where, "true or false", value)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(where, "an integer", value)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _bad(where, "a number", value)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _bad(where, "a string", value)
        return value
    raise TypeError(f"no JSON conversion for {tp!r} at {where}")


def _to_json(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, (tuple, list)):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    return value


class Record:
    """Base of the run directory's frozen dataclasses: ``to_json`` and ``from_json``.

    Subclasses are ``@dataclass(frozen=True)``; tuples stand for JSON lists,
    ``dict[str, X]`` for objects, ``X | None`` for nullable values.
    """

    __dataclass_fields__: ClassVar[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict with one key per field, in field order."""
        return {f.name: _to_json(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls: type[R], data: Any, *, where: str) -> R:
        """Build from parsed JSON, checking every field.

        Parameters
        ----------
        data : dict
            Parsed JSON.
        where : str
            What to call it in errors, e.g. ``"slices.json: slices[3]"``.
        """
        return cls._from_json(data, where)

    @classmethod
    def _from_json(cls: type[R], data: Any, where: str) -> R:
        if not isinstance(data, dict):
            raise _bad(where, "an object", data)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise fail(
                f"{where} has unknown key {unknown[0]!r}; it was written by another "
                "failscope version: re-run the stage that wrote it"
            )
        hints = _hints(cls)
        values = {}
        for name, f in fields.items():
            if name not in data:
                has_default = (
                    f.default is not dataclasses.MISSING
                    or f.default_factory is not dataclasses.MISSING
                )
                if has_default:
                    continue
                raise fail(f"{where} has no key {name!r}; re-run the stage that wrote it")
            values[name] = _convert(hints[name], data[name], f"{where}.{name}")
        return cls(**values)

    def replace(self: R, **changes: Any) -> R:
        """A copy with ``changes`` applied (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)
