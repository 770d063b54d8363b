"""The cache's optional size limit, shared safely by every process that uses one cache folder.

Protocol (DataLoader workers and ranks on one node share a folder; POSIX file semantics):

* **Files never change.** A shard's cache file is written under a temporary name and renamed
  into place complete (`mixer.serve.shardfile`); afterwards it is only ever removed, never
  truncated or rewritten. A process that has it memory-mapped keeps reading the same bytes
  after another process removes it: POSIX keeps a removed file's data until its last mapping
  goes (a truncated file would SIGBUS instead). Eviction is therefore only ``unlink``, and no
  reader ever takes a lock. The space comes back when the last mapping goes: each process
  checks its mappings after each of its fills and at least once a second, and lets go of those
  whose file was removed unless it read them since its previous check (still in use: keeping
  it costs its space a little longer, dropping it would fetch the shard again at once).
* **One filler per shard.** Filling takes an exclusive ``flock`` on the shard's lock file;
  a process that needs the same shard waits, then maps the finished file (no second fetch).
* **Room before writing.** Before a fill, under the folder's lock (``.lock``), the filler
  records a reservation (a file in ``.reserve/`` named by its size, ``flock``-ed by its owner
  for as long as it fills: a reservation whose lock can be taken is a crashed filler's and is
  removed), then removes least recently used shard files (of any build in the folder) until
  the shard files plus every live reservation fit the limit.
* **Recency** is each file's modification time: a process sets it to the time it last read
  the shard, for the shards it read since it last did so, before each of its fills and at
  least once a second.

The limit holds between fills; while several processes fill at once, each counts the others'
reservations, so only an eviction that finds nothing left to remove (the limit smaller than
the shards being filled at that moment) lets the folder exceed it. A full disk is an
`OutputError` from the write itself (plain writes, never through a memory map).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path

from mixer.errors import OutputError, UsageError
from mixer.recipe.keys import parse_size

try:
    import fcntl
except ImportError:  # Windows: no cross-process coordination (correct; may fetch twice)
    fcntl = None

ENV = "MIXER_CACHE_LIMIT"
SHARD_GLOB = "*/*/*/shard-*.blk"  # <fingerprint>/<source>/<split>/shard-NNNNNN-<sha>.blk
TOUCH_EVERY = 1.0  # seconds between recency updates when this process fills nothing


def parse_limit(value: int | str | None) -> int | None:
    """``cache_limit`` in bytes: an int, a size such as ``"20GiB"``, else $MIXER_CACHE_LIMIT."""
    where = "cache_limit"
    if value is None:
        value = os.environ.get(ENV) or None
        where = f"${ENV}"
        if value is None:
            return None
    n = parse_size(value)
    if n is None or n < 1:
        raise UsageError(f"{where}={value!r}: expected a number of bytes or a size such as '20GiB'")
    return n


def check_room(folder: Path, need: int, what: str) -> None:
    """OutputError unless the disk holding ``folder`` has ``need`` bytes free: checked before a
    shard is downloaded and before its cache file is created, so that a full disk is this
    clear error rather than a half-written file (the write itself still reports ENOSPC)."""
    free = shutil.disk_usage(folder).free
    if free < need:
        raise OutputError(
            f"{folder}: cannot fill the shard cache (No space left: {what} needs {need:,} bytes,"
            f" the disk has {free:,} free); free space, set cache_limit / $MIXER_CACHE_LIMIT,"
            " or set cache_dir / $MIXER_CACHE"
        )


@contextlib.contextmanager
def locked(path: Path, blocking: bool = True):
    """An exclusive ``flock`` on ``path`` (created if needed), released on exit or process death."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield fd
    finally:
        os.close(fd)


class CacheLimit:
    """One process's view of a cache folder's limit: recency, reservations and eviction."""

    def __init__(self, root: Path, limit: int | None):
        self.root, self.limit = Path(root), limit
        self.generation = 0  # bumped whenever files may have been removed: stores re-check
        self._used: dict[Path, int] = {}  # shards used since the last touch: when, in ns
        self._touched = time.monotonic()

    def used(self, paths) -> None:
        """Record that these shard files were just read (cheap: a dict update per shard)."""
        now = time.time_ns()
        for p in paths:
            self._used[p] = now
        if time.monotonic() - self._touched > TOUCH_EVERY:
            self.touch()

    def touch(self) -> None:
        """Set the used files' modification times to their last use, for everyone's LRU."""
        for p, t in self._used.items():
            with contextlib.suppress(OSError):  # removed meanwhile, or another user's file
                os.utime(p, ns=(t, t))
        self._used.clear()
        self._touched = time.monotonic()
        self.generation += 1

    @contextlib.contextmanager
    def reserve(self, nbytes: int):
        """Room for ``nbytes`` more in the folder while the body fills a shard."""
        self.touch()
        if self.limit is None or fcntl is None:
            if self.limit is not None:  # no locks: each process evicts for itself
                self._make_room(nbytes, others=0)
            yield
            return
        folder = self.root / ".reserve"
        folder.mkdir(parents=True, exist_ok=True)
        with locked(self.root / ".lock"):
            fd, name = tempfile.mkstemp(prefix=f"{nbytes}-", dir=folder)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                self._make_room(nbytes, others=self._reserved(folder, Path(name)))
            except BaseException:
                os.close(fd)
                os.unlink(name)
                raise
        try:
            yield
        finally:
            os.unlink(name)
            os.close(fd)

    def _reserved(self, folder: Path, mine: Path) -> int:
        """Bytes reserved by live fillers; reservations of crashed ones are removed."""
        total = 0
        for p in folder.iterdir():
            if p == mine:
                continue
            try:
                with locked(p, blocking=False):
                    p.unlink()  # its owner is gone: the lock was free
            except BlockingIOError:
                total += int(p.name.split("-", 1)[0])
            except (FileNotFoundError, ValueError):
                pass
        return total

    def _make_room(self, need: int, others: int) -> None:
        files = []
        for p in self.root.glob(SHARD_GLOB):
            with contextlib.suppress(FileNotFoundError):
                st = p.stat()
                files.append((st.st_mtime_ns, st.st_size, p))
        used = others + sum(size for _, size, _ in files)
        files.sort()
        for _, size, p in files:
            if used + need <= self.limit:
                break
            try:
                p.unlink()
            except FileNotFoundError:  # another process evicted it first
                pass
            except OSError:  # Windows: a mapped file cannot be removed
                continue
            used -= size
            self.generation += 1
