"""The folder a build writes into, its lock, and the rename that publishes it.

Layout next to the output ``OUT``: ``.OUT.lock`` (held while building: a second build of the
same output fails at once), ``.OUT.building/`` (the work in progress; kept after a crash so a
rerun reuses finished units), ``.OUT.old/`` (the previous output, for the instant between the
two renames of a publish). Whatever moment a build is killed at, ``OUT`` is either the previous
complete output or absent, and the next build restores the previous one if it is absent.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
from pathlib import Path

from mixer.artifacts.manifest import FILENAME
from mixer.errors import OutputError


class BuildDir:
    def __init__(self, out: Path):
        self.out = Path(out)
        self.work = self.out.parent / f".{self.out.name}.building"
        self.old = self.out.parent / f".{self.out.name}.old"
        self.lock_path = self.out.parent / f".{self.out.name}.lock"
        self._fd: int | None = None

    def __enter__(self) -> BuildDir:
        check_target(self.out)
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self._lock()
            if not self.out.exists() and self.old.exists():
                os.rename(self.old, self.out)  # a publish was cut between its two renames
            shutil.rmtree(self.old, ignore_errors=True)
            self.work.mkdir(exist_ok=True)
        except OSError as e:
            self._unlock()
            raise write_error(e, self.out.parent) from None
        return self

    def _lock(self) -> None:
        while True:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise OutputError(
                    f"{self.out}: another build is writing this output (pid {holder}, lock"
                    f" {self.lock_path}); wait for it to finish"
                ) from None
            # the holder may have removed the file between our open and our lock: retry
            same = os.path.exists(self.lock_path) and (
                os.stat(self.lock_path).st_ino == os.fstat(fd).st_ino
            )
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def _unlock(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(FileNotFoundError):  # removed while held: see _lock's check
                os.unlink(self.lock_path)
            os.close(self._fd)
            self._fd = None

    def publish(self) -> None:
        """Make the work the output: everything flushed first, then two renames."""
        _fsync_tree(self.work)
        if self.out.exists():
            os.rename(self.out, self.old)
        os.rename(self.work, self.out)
        _fsync_dir(self.out.parent)
        shutil.rmtree(self.old, ignore_errors=True)

    def discard(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)

    def __exit__(self, *exc) -> None:
        self._unlock()


def check_target(out: Path) -> None:
    """Refuse to replace anything that is not a mixer output."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder; choose another output")
    if out.is_dir() and any(out.iterdir()) and not (out / FILENAME).exists():
        raise OutputError(
            f"{out}: exists, is not empty and is not a mixer output; remove it or choose another"
            " output (mixer only replaces its own builds)"
        )


def write_error(e: OSError, where: Path) -> OutputError:
    """A one-line error for a failed write: full disk, read-only or forbidden folder, ..."""
    path = e.filename or where
    if e.errno == errno.ENOSPC:
        why = "no space left on the device; free space and rerun (finished units are kept)"
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = f"cannot write there ({e.strerror}); choose another output"
    else:
        why = f"{e.strerror or e}"
    return OutputError(f"{path}: {why}")


def _fsync_tree(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
