"""A build's JSON records (manifest.json, plan.json) read and written: bounded before they are
parsed, of a format this mixer reads, refused in one line otherwise, and written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path

from mixer.artifacts.buildfile import read_checked
from mixer.errors import MixerError, OutputError, UnsafeBuildError
from mixer.typed import FieldError

#: The largest manifest.json or plan.json read, and the most JSON values it may hold (a build
#: of 10^5 input files takes ~25 MiB and ~10^6 values): a file someone else wrote is sized and
#: counted before it is parsed, in at most ~400 MiB (measured: 4M "ab" strings, 391 MiB).
MAX_RECORD_BYTES = 64 << 20
MAX_RECORD_VALUES = 1 << 22


def load_record(path: Path, where, what: str, version: int, missing: str) -> dict:
    """The JSON of a build's record (``what``: "manifest" or "plan") in the ``version`` this
    mixer reads, else a one-line OutputError naming ``where`` (``missing``: the message for no
    file at all)."""
    try:
        data = read_record(path)
    except FileNotFoundError:
        raise OutputError(missing) from None
    except (OSError, ValueError, RecursionError) as e:
        raise OutputError(f"{where}: unreadable {what} ({str(e)[:200]})") from None
    fmt = data.get("format") if isinstance(data, dict) else None
    if fmt != version:
        newer = isinstance(fmt, int) and not isinstance(fmt, bool) and fmt > version
        raise OutputError(
            f"{where}: {what} format {fmt!r} is not {version}; "
            + ("upgrade mixer to read it" if newer else "rebuild with this version of mixer")
        )
    return data


def read_record(path: Path):
    """The JSON of manifest.json or plan.json: a regular file in its build's folder (no link
    out of it, no FIFO or device: `mixer.artifacts.buildfile`), refused unread beyond
    MAX_RECORD_BYTES."""
    path = Path(path)
    try:
        data = read_checked(path, path.parent, f"the build's {path.name}", limit=MAX_RECORD_BYTES)
    except MixerError as e:
        raise ValueError(str(e).removeprefix(f"{path}: ")) from None
    # Every JSON value but the first follows a ',', ':' or '[' (counted in strings too: an
    # over-count): at most MAX_RECORD_VALUES Python objects (64 MiB of "[]," took 1.6 GB).
    values = data.count(b",") + data.count(b":") + data.count(b"[") + 1
    if values > MAX_RECORD_VALUES:
        raise ValueError(f"more than {MAX_RECORD_VALUES:,} JSON values ({values:,})")
    return json.loads(data.decode("utf-8"))


def refused(path, e: FieldError, what: str, fix: str = "") -> OutputError:
    """The one-line error for a record that did not load: one mixer cannot read (a wrong type,
    an unknown key: another version), or one it will not act on (`Refused`)."""
    from mixer.artifacts.checks import Refused

    if isinstance(e, Refused):
        return UnsafeBuildError(
            f"{path}: refused: {e} (mixer never writes this: the build was altered or made"
            " elsewhere; do not use it, rebuild it from its recipe)"
        )
    return OutputError(f"{path}: not a {what} this mixer can read: {e}{fix}")


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
