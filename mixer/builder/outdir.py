"""The folder a build writes into, its lock, and the rename that publishes it.

Layout next to the output ``OUT``: ``.OUT.lock`` (held while building: a second build of the
same output fails at once), ``.OUT.building/`` (the work in progress; kept after a crash so a
rerun reuses finished units), ``.OUT.old/`` (the previous output, for the instant between the
two renames of a publish). Whatever moment a build is killed at, ``OUT`` is either the previous
complete output or absent, and the next build restores the previous one if it is absent.

Only folders a build made are ever moved or removed: ``.OUT.building/`` holds the file
``.mixer-building`` from its creation until just after it is published, and ``.OUT.old/`` the
file ``.mixer-old``, written into the output just before it is renamed there. A folder at either
name without its mark (the user's own ``.data.old/``, say) is an error naming it, never touched.
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

WORK_MARK = ".mixer-building"  # in .OUT.building/: this folder is a build's work
OLD_MARK = ".mixer-old"  # in .OUT.old/: this folder is a replaced output


def _ours(folder: Path, mark: str, empty_ok: bool = False) -> bool:
    """True if ``folder`` is a build's (holds ``mark``, or is empty if ``empty_ok``); False if
    absent; else an OutputError naming it: a folder mixer did not make is never touched."""
    if not os.path.lexists(folder):
        return False
    real = folder.is_dir() and not folder.is_symlink()
    if real and ((folder / mark).is_file() or (empty_ok and not any(folder.iterdir()))):
        return True
    raise OutputError(
        f"{folder}: exists and was not made by a mixer build (no {mark} in it); move it away or"
        " choose another output (mixer moves and removes only its own folders)"
    )


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
            if _ours(self.old, OLD_MARK) and not self.out.exists():
                os.rename(self.old, self.out)  # a publish was cut between its two renames
                (self.out / OLD_MARK).unlink()
            if _ours(self.old, OLD_MARK):
                shutil.rmtree(self.old)
            if (self.out / FILENAME).is_file() and (self.out / WORK_MARK).is_file():
                (self.out / WORK_MARK).unlink()  # a publish was cut just after its last rename
            if not _ours(self.work, WORK_MARK, empty_ok=True):
                self.work.mkdir()
            (self.work / WORK_MARK).touch()
        except OutputError:
            self._unlock()
            raise
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
        """Make the work the output: everything flushed first, then two renames. The work keeps
        its mark until it is the output (a kill at any moment before leaves a folder the rerun
        knows as its own); a kill right after leaves the mark in the output, removed by the next
        build."""
        _fsync_tree(self.work)
        if self.out.exists():
            (self.out / OLD_MARK).touch()
            os.rename(self.out, self.old)
        os.rename(self.work, self.out)
        _fsync_dir(self.out.parent)
        (self.out / WORK_MARK).unlink()
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
