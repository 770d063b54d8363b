"""Identity: one canonical JSON and one digest for every fingerprint and key, and file hashes.

A fingerprint (manifest, plan) or a key (a source's, a work unit's) is the sha256 of the
canonical JSON of a record: keys sorted, no spaces, UTF-8 kept as is. Only JSON values are
accepted (dicts with string keys, lists, tuples, strings, numbers, booleans, None): anything
else is a bug, never hashed through ``str()`` (which could hash a memory address).
Pure standard library: `mixer.plan` uses it too.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def canonical_json(obj: Any) -> str:
    """The one serialization every digest is taken of (raises TypeError on non-JSON values)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(obj: Any) -> str:
    """sha256 (hex) of ``canonical_json(obj)``."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 (hex) of a file's bytes, read in chunks (bounded memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
