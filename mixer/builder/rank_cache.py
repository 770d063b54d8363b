"""A tiktoken file's parsed ranks, kept in mixer's cache (`cache_root`/tokenizers).

Every build reads its tiktoken file at least twice (the build's ids, the reference encoder of
the encoder check) and each tiktoken worker once more. Parsing Qwen's 151,643 base64 lines
costs about 0.12 s each time; loading the same dict from `marshal` costs 0.03 s. `marshal` is
hand-picked over pickle because it cannot run code, and over a file of offsets because it
builds the dict in C. The entry is named by the sha256 of the file's bytes and the Python
version (marshal's format is one Python's), and carries the sha256 of its own payload: a
damaged or truncated entry is parsed again, never trusted. A cache that cannot be written costs
only the time.
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
import os
import sys
from pathlib import Path

from mixer.artifacts.fetch import cache_root, private_dir

FORMAT = 1  # bump when the entry's layout changes


def _entry(sha256: str) -> Path:
    py = f"{sys.version_info[0]}{sys.version_info[1]}"
    return cache_root() / "tokenizers" / f"ranks-{sha256}-py{py}-v{FORMAT}.marshal"


def load(sha256: str) -> dict[bytes, int] | None:
    """The ranks cached for the file whose bytes hash to ``sha256``, or None."""
    try:
        blob = _entry(sha256).read_bytes()
    except OSError:
        return None
    payload = memoryview(blob)[32:]
    if hashlib.sha256(payload).digest() != blob[:32]:
        return None
    try:
        ranks = marshal.loads(payload)
    except (EOFError, ValueError, TypeError):
        return None
    return ranks if isinstance(ranks, dict) else None


def store(sha256: str, ranks: dict[bytes, int]) -> None:
    """Keep ``ranks`` (already checked), written whole (a temporary file renamed) or not at all."""
    path = _entry(sha256)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    payload = marshal.dumps(ranks)
    try:
        private_dir(path.parent)
        tmp.write_bytes(hashlib.sha256(payload).digest() + payload)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
