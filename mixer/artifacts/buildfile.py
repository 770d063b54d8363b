"""A file of a build, opened as a regular file inside it and read no further than its size.

A build made elsewhere may hold anything under the names mixer reads: a symbolic link to
``/dev/zero`` or to a file outside the build, a FIFO (a read that never ends), a device. So
every file mixer reads from a build (manifest.json, plan.json, an ``index.json``, a shard, a
tokenizer file; in place or from the serving cache) is opened here: its path resolved (links
followed) and checked to stay inside its root, then opened without following a link
(``O_NOFOLLOW``) and without waiting for a writer (``O_NONBLOCK``: a FIFO opens at once, and is
refused), and the open descriptor checked (``fstat``): a regular file of at most ``limit`` (or
exactly ``size``) bytes. Reads stop at the size checked then, should the file grow meanwhile.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from pathlib import Path

from mixer.artifacts.fetch import inside
from mixer.errors import OutputError, UnsafeBuildError

_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_KINDS = {
    stat.S_ISFIFO: "a FIFO",
    stat.S_ISCHR: "a character device",
    stat.S_ISBLK: "a block device",
    stat.S_ISSOCK: "a socket",
    stat.S_ISDIR: "a folder",
    stat.S_ISLNK: "a symbolic link",
}


class _Capped(io.RawIOBase):
    """A descriptor's first ``size`` bytes: reading stops there whatever the file does next."""

    def __init__(self, fd: int, size: int):
        self.fd, self.left = fd, size

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        n = os.readv(self.fd, [memoryview(buf)[: min(len(buf), self.left)]]) if self.left else 0
        self.left -= n
        return n

    def close(self) -> None:
        if not self.closed:
            os.close(self.fd)
        super().close()


def open_checked(
    path: Path,
    root: Path,
    what: str,
    *,
    limit: int | None = None,
    size: int | None = None,
) -> io.BufferedReader:
    """``path`` (a file of ``what``, e.g. "a shard of the build") opened for reading if it is a
    regular file inside ``root`` of at most ``limit`` / exactly ``size`` bytes; else an
    UnsafeBuildError (or OutputError for a size) naming it. FileNotFoundError passes through."""
    resolved = inside(Path(path), Path(root), what)
    try:
        fd = os.open(resolved, _FLAGS)
    except OSError as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise OutputError(f"{path}: cannot open {what} ({e.strerror})") from None
    try:
        st = os.fstat(fd)
        kind = next((k for test, k in _KINDS.items() if test(st.st_mode)), None)
        if kind is not None or not stat.S_ISREG(st.st_mode):
            raise UnsafeBuildError(
                f"{path}: {what} is {kind or 'not a regular file'}, not a regular file; refused"
                " (a build holds only regular files)"
            )
        if limit is not None and st.st_size > limit:
            raise OutputError(
                f"{path}: {st.st_size:,} bytes, more than {what} may take ({limit:,}); refused"
            )
        if size is not None and st.st_size != size:
            raise OutputError(
                f"{path}: {st.st_size:,} bytes, the manifest says {size:,}: it was altered or"
                " is still being written"
            )
        os.set_blocking(fd, True)
        return io.BufferedReader(_Capped(fd, st.st_size), 1 << 20)
    except BaseException:
        os.close(fd)
        raise


def read_checked(path: Path, root: Path, what: str, *, limit: int) -> bytes:
    """The bytes of a checked file (see `open_checked`) of at most ``limit`` bytes."""
    with open_checked(path, root, what, limit=limit) as f:
        return f.read()


def sha256_checked(path: Path, root: Path, what: str, *, size: int | None = None) -> str:
    """sha256 (hex) of a checked file, read in 1 MiB pieces."""
    h = hashlib.sha256()
    with open_checked(path, root, what, size=size) as f:
        while piece := f.read(1 << 20):
            h.update(piece)
    return h.hexdigest()
