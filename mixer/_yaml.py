"""Typed access to one mapping of a YAML document, with errors that name the key.

Hand-written rather than a schema library: the messages must name the recipe file and the
dotted key, suggest the closest known key for a typo, and never show a traceback; the whole
recipe grammar is a few dozen keys.
"""

from __future__ import annotations

import difflib
import math
from typing import Any

from mixer.errors import RecipeError

_MISSING = object()


class Keys:
    def __init__(self, data: Any, prefix: str, origin: str):
        if data is None:
            data = {}
        if not isinstance(data, dict):
            where = prefix or "the recipe"
            raise RecipeError(f"{origin}: {where}: expected a mapping, got {_kind(data)}")
        self.data, self.prefix, self.origin = data, prefix, origin
        self._used: set[str] = set()

    def path(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else str(key)

    def names(self) -> list:
        self._used.update(self.data)
        return list(self.data)

    def used(self, key: str) -> None:
        self._used.add(key)

    def error(self, why: str, hint: str = "", key: str | None = None) -> RecipeError:
        where = self.path(key) if key else (self.prefix or "recipe")
        return RecipeError(f"{self.origin}: {where}: {why}{' ' + hint if hint else ''}")

    def finish(self) -> None:
        """Refuse keys nobody asked for (typos, keys from another version)."""
        for key in self.data:
            if key not in self._used:
                close = difflib.get_close_matches(str(key), [str(u) for u in self._used], n=1)
                hint = f"(did you mean {close[0]!r}?)" if close else ""
                raise self.error("unknown key", hint, key=str(key))

    def _get(self, key: str, required: bool) -> Any:
        """The value at ``key``, or _MISSING when absent or null."""
        self._used.add(key)
        value = self.data.get(key, _MISSING)
        if (value is _MISSING or value is None) and required:
            raise self.error("missing required key", key=key)
        return _MISSING if value is None else value

    def _typed(self, key: str, value: Any, ok: bool, expected: str) -> Any:
        if not ok:
            raise self.error(f"expected {expected}, got {_kind(value)} {value!r}", key=key)
        return value

    def str(self, key: str, default: Any = None, required: bool = False) -> Any:
        v = self._get(key, required)
        if v is _MISSING:
            return default
        return self._typed(key, v, isinstance(v, str) and v != "", "a non-empty string")

    def bool(self, key: str, default: Any = None, required: bool = False) -> Any:
        v = self._get(key, required)
        return (
            default if v is _MISSING else self._typed(key, v, isinstance(v, bool), "true or false")
        )

    def int(
        self, key: str, default: Any = None, required: bool = False, minimum: int | None = None
    ):
        v = self._get(key, required)
        if v is _MISSING:
            return default
        self._typed(key, v, isinstance(v, int) and not isinstance(v, bool), "an integer")
        if minimum is not None and v < minimum:
            raise self.error(f"must be >= {minimum}, got {v}", key=key)
        return v

    def float(self, key: str, default: Any = None, required: bool = False):
        v = self._get(key, required)
        if v is _MISSING:
            return default
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        return float(self._typed(key, v, ok, "a number"))

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        v = self._get(key, False)
        v = default if v is _MISSING else v
        if v not in choices:
            raise self.error(f"must be one of {', '.join(choices)}, got {v!r}", key=key)
        return v

    def mapping(self, key: str, required: bool = False) -> Keys:
        v = self._get(key, required)
        return Keys(None if v is _MISSING else v, self.path(key), self.origin)


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )
