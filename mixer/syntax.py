"""How a user spells sizes (``64MiB``, ``500MB``, ``20GiB``, or bytes) and source names: one
definition each, for the recipe, the serving cache's limit, and the checks of a manifest or a
plan on load (a source name becomes a folder name, so the checks repeat the recipe's rule)."""

from __future__ import annotations

import re
from typing import Any

#: A source name: 1-64 letters, digits, "_", "-" or ".", starting with a letter or digit.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # use fullmatch: `$` accepts "a\n"
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(i?)b?|b)?\s*$", re.I)


def parse_size(value: Any) -> int | None:
    """Bytes from an integer or a string such as ``64MiB``, ``500MB``, ``20GiB``; else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and (m := _SIZE_RE.match(value)):
        prefix, binary = (m.group(2) or "").lower(), bool(m.group(3))
        power = " kmgt".index(prefix) if prefix else 0
        return int(float(m.group(1)) * (1024 if binary else 1000) ** power)
    return None
