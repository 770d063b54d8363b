"""Reading recipe YAML: a safe loader that refuses duplicate keys, and typed access to one
mapping with errors that name the key.

Hand-written rather than a schema library: the messages must name the recipe file and the
dotted key, suggest the closest known key for a typo, and never show a traceback; the whole
recipe grammar is a few dozen keys.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from typing import Any

import yaml

from mixer.errors import RecipeError
from mixer.syntax import parse_size

_MISSING = object()
# a size: digits, then B, or K/M/G/T with an optional i (binary) and B: 64MiB, 500MB, 1g


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

    def choice(self, key: str, choices: tuple[str, ...], default: Any = None) -> Any:
        v = self._get(key, False)
        if v is _MISSING:
            return default
        if v not in choices:
            raise self.error(f"must be one of {', '.join(choices)}, got {v!r}", key=key)
        return v

    def mapping(self, key: str, required: bool = False) -> Keys:
        v = self._get(key, required)
        return Keys(None if v is _MISSING else v, self.path(key), self.origin)

    def size(self, key: str, default: Any = None) -> Any:
        """A byte size: an integer or a string such as ``64MiB``, ``500MB`` (1KiB to 4GiB)."""
        value = self._get(key, False)
        if value is _MISSING:
            return default
        n = parse_size(value)
        if n is None:
            raise self.error(
                f"expected a size such as 64MiB, 500MB or 65536, got {value!r}", key=key
            )
        if not 1 << 10 <= n < 1 << 32:
            raise self.error(f"must be between 1KiB and 4GiB, got {value!r}", key=key)
        return n


def given(cls, **values):
    """``cls`` from the values the recipe gave (None: not given): a field not given takes the
    dataclass's default, so each default is written once, on the dataclass."""
    required = {
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    return cls(**{k: v for k, v in values.items() if v is not None or k in required})


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def load_yaml(text: str, origin: str) -> Any:
    """Parse YAML as data (safe loader, duplicate keys refused); RecipeError naming the line."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise RecipeError(f"{origin}{where}: invalid YAML: {problem}") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of silently keeping the last one."""

    def construct_mapping(self, node, deep=False):  # noqa: ANN001 (PyYAML's signature)
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (list, dict, set)):  # `? [a, b]`: unhashable, a TypeError later
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"a key must be a name, not a {type(key).__name__}",
                    key_node.start_mark,
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)
