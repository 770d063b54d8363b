"""Typed records to and from JSON: frozen dataclasses whose every field is checked on load.

``from_json(cls, data, where)`` builds ``cls`` from a parsed JSON value, checking each field
against its annotation (``int``, ``float``, ``str``, ``bool``, ``X | None``, ``tuple[X, ...]``,
``dict[str, X]``, nested dataclasses, ``Any``); an unknown key, a missing one or a wrong type
raises :class:`FieldError` naming the dotted field. ``to_json(record)`` is the inverse: a field
whose default is None or () is left out while it holds it (optional keys that older files
lack), every other field is always written, so ``to_json(from_json(d)) == d`` for every file
mixer wrote.

Hand-written rather than pydantic: the records are a few small dataclasses, and pydantic's
import plus schema building added about 0.4 s to every command's start (measured here).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from functools import cache
from typing import Any, Union


class FieldError(ValueError):
    """A JSON value does not fit its record: ``where`` is the dotted field."""

    def __init__(self, where: str, why: str):
        super().__init__(f"{where}: {why}")
        self.where, self.why = where, why


@cache
def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_json(cls, data: Any, where: str):
    """An instance of dataclass ``cls`` from ``data`` (a dict), every field checked."""
    if not isinstance(data, dict):
        raise FieldError(where, f"expected an object, got {_kind(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            raise FieldError(f"{where}.{key}", "unknown key (written by a newer mixer?)")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _value(_hints(cls)[name], data[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise FieldError(f"{where}.{name}", "missing")
    return cls(**kwargs)


def to_json(record) -> dict:
    """The JSON object of a record (tuples as lists; optional fields left out while None)."""
    out = {}
    for f in dataclasses.fields(record):
        if not f.init or f.metadata.get("runtime"):
            continue
        value = getattr(record, f.name)
        if f.default in (None, ()) and value == f.default:
            continue  # an optional field left at its default: files without it stay the same
        out[f.name] = _plain(value)
    return out


def _plain(value):
    if dataclasses.is_dataclass(value):
        return to_json(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _value(tp, v, where: str):
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return v
    if origin in (Union, types.UnionType):
        if v is None and type(None) in args:
            return None
        (inner,) = (a for a in args if a is not type(None))
        return _value(inner, v, where)
    if dataclasses.is_dataclass(tp):
        return from_json(tp, v, where)
    if origin is tuple:
        if not isinstance(v, list):
            raise FieldError(where, f"expected a list, got {_kind(v)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_value(args[0], x, f"{where}[{i}]") for i, x in enumerate(v))
        if len(v) != len(args):
            raise FieldError(where, f"expected {len(args)} items, got {len(v)}")
        return tuple(
            _value(a, x, f"{where}[{i}]") for i, (a, x) in enumerate(zip(args, v, strict=True))
        )
    if origin is dict:
        if not isinstance(v, dict):
            raise FieldError(where, f"expected an object, got {_kind(v)}")
        return {k: _value(args[1], x, f"{where}.{k}") for k, x in v.items()}
    return _scalar(tp, v, where)


def _scalar(tp, v, where: str):
    ok = {
        bool: isinstance(v, bool),
        int: isinstance(v, int) and not isinstance(v, bool),
        float: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
        str: isinstance(v, str),
    }.get(tp)
    if ok is None:
        raise TypeError(f"{where}: unsupported annotation {tp!r}")  # a bug in a record
    if not ok:
        raise FieldError(where, f"expected {tp.__name__}, got {_kind(v)} {str(v)[:40]!r}")
    return v


def _kind(v) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(v), "null" if v is None else type(v).__name__
    )
