"""The serving cache: one split of one source as a memory-mapped ``[blocks, 2, seq_len]`` array.

Why not mosaicml-streaming's reader: it opens and decodes one sample at a time, ~50x slower
than a memmap (tools/bench_mixture.py). Instead each shard, on first use, is fetched (downloaded
if remote, with mosaicml-streaming's downloaders), checked against the manifest's sha256,
decompressed, and written once into a dense per-split file holding each block's token ids and
its position ids (precomputed from the document starts). A batch is then one fancy-index copy
per source, whatever the number of shards or documents.

Several processes (DataLoader workers, ranks on one node) may fill the same cache at once: the
file is created atomically, each shard's region is written with plain file writes (a full disk
is an error, never a SIGBUS through a memory map) and published by a marker file; two
processes filling the same shard write the same bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path

import numpy as np

from mixer.artifacts.manifest import FILENAME as MANIFEST_FILE
from mixer.artifacts.manifest import Manifest, SplitRecord
from mixer.artifacts.planfile import FILENAME as PLAN_FILE
from mixer.artifacts.shards import Block, fetch, is_remote, local_path, positions, read_shard_file
from mixer.errors import OutputError
from mixer.identity import sha256_file


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where fetched and unpacked shards go: ``cache_dir``, $MIXER_CACHE or ~/.cache/mixer."""
    return Path(cache_dir or os.environ.get("MIXER_CACHE") or Path.home() / ".cache" / "mixer")


def open_build(path: str, cache_dir: str | os.PathLike | None = None) -> Manifest:
    """The manifest of a build, local or remote (remote: manifest and plan fetched first)."""
    if not is_remote(path):
        return Manifest.load(local_path(path))
    meta = cache_root(cache_dir) / "remote" / str(path).replace("://", "/").strip("/")
    for name in (MANIFEST_FILE, PLAN_FILE):
        (meta / name).unlink(missing_ok=True)  # always read the small files afresh
        fetch(path, name, meta / name)
    return dataclasses.replace(Manifest.load(meta), location=str(path))


class SplitStore:
    def __init__(
        self,
        *,
        root: str,
        cache: Path,
        source: str,
        split: str,
        record: SplitRecord,
        seq_len: int,
        dtype: str,
    ):
        self.root, self.source, self.split = str(root), source, split
        self.rel = f"sources/{source}/{split}"
        self.cache = Path(cache) / source / split
        self.shards = record.shards
        self.seq_len, self.dtype = seq_len, np.dtype(dtype)
        pos_dtype = np.dtype(np.uint16 if seq_len <= 1 << 16 else np.uint32)
        self.cell = max(self.dtype, pos_dtype, key=lambda d: d.itemsize)
        sizes = [s.samples for s in self.shards]
        self.bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.path = self.cache / "blocks.npy"
        self._data: np.ndarray | None = None
        self._ready: set[int] = set()

    def __len__(self) -> int:
        return int(self.bounds[-1])

    def gather(self, blocks: np.ndarray) -> np.ndarray:
        """``[K, 2, seq_len]``: token ids (``[:, 0]``) and position ids (``[:, 1]``) of blocks."""
        blocks = np.asarray(blocks, np.int64)
        for sh in np.unique(np.searchsorted(self.bounds, blocks, side="right") - 1).tolist():
            if sh not in self._ready:
                self._ensure(sh)
        return self._data[blocks]

    def block(self, i: int) -> Block:
        """One block with its document starts, straight from its shard (for inspection)."""
        sh = int(np.searchsorted(self.bounds, i, side="right") - 1)
        rec = self.shards[sh]
        path = fetch(self.root, f"{self.rel}/{rec.file}", self.cache / "download" / rec.file)
        reader = read_shard_file(path, seq_len=self.seq_len, dtype=self.dtype.str)
        b = reader.block(i - int(self.bounds[sh]))
        return Block(np.array(b.input_ids), np.array(b.starts))

    # -- filling the cache ----------------------------------------------------------------
    def _marker(self, sh: int) -> Path:
        return self.cache / f"shard-{sh:06d}-{self.shards[sh].sha256[:16]}.ready"

    def _ensure(self, sh: int) -> None:
        if self._data is None:
            self._data = self._open()
        if not self._marker(sh).exists():
            self._fill(sh)
        self._ready.add(sh)

    def _open(self) -> np.ndarray:
        """Create the (sparse) cache file once, atomically, and map it read-only."""
        shape = (len(self), 2, self.seq_len)
        if not self.path.exists():
            self.cache.mkdir(parents=True, exist_ok=True)
            tmp = self.cache / f".blocks.{os.getpid()}.tmp"
            np.lib.format.open_memmap(tmp, mode="w+", dtype=self.cell, shape=shape).flush()
            with contextlib.suppress(FileExistsError):  # another process won the race: use theirs
                os.link(tmp, self.path)
            os.unlink(tmp)
        data = np.load(self.path, mmap_mode="r")
        if data.shape != shape or data.dtype != self.cell:
            raise OutputError(f"{self.path}: cache does not fit the manifest; delete it")
        return data.view(np.ndarray)  # np.memmap's Python-level __getitem__ costs ~20 us a call

    def _fill(self, sh: int) -> None:
        """Fetch, verify, decompress one shard and write its rows; then publish its marker."""
        rec = self.shards[sh]
        src = fetch(self.root, f"{self.rel}/{rec.file}", self.cache / "download" / rec.file)
        if sha256_file(src) != rec.sha256:
            raise OutputError(
                f"{src}: shard does not match the manifest (sha256 differs): it is corrupted or"
                " was altered; rebuild the output or restore the file"
            )
        reader = read_shard_file(src, seq_len=self.seq_len, dtype=self.dtype.str)
        if len(reader) != rec.samples:
            raise OutputError(f"{src}: {len(reader)} blocks, the manifest says {rec.samples}")
        rows = np.empty((len(reader), 2, self.seq_len), self.cell)
        rows[:, 0] = reader.all_ids()
        rows[:, 1] = positions(*reader.all_starts(), len(reader), self.seq_len)
        try:
            with open(self.path, "r+b") as f:
                offset = _data_offset(f)
                f.seek(offset + int(self.bounds[sh]) * rows[0].nbytes)
                f.write(rows.tobytes())
                f.flush()
                os.fsync(f.fileno())
            self._marker(sh).touch()
        except OSError as e:
            raise OutputError(
                f"{self.cache}: cannot fill the shard cache ({e.strerror});"
                " free space or set cache_dir / $MIXER_CACHE"
            ) from None
        if src.is_relative_to(self.cache):
            src.unlink(missing_ok=True)  # a downloaded copy is no longer needed


def _data_offset(f) -> int:
    """Byte offset of the array data in an open .npy file."""
    f.seek(0)
    fmt = np.lib.format
    if fmt.read_magic(f) == (1, 0):
        fmt.read_array_header_1_0(f)
    else:
        fmt.read_array_header_2_0(f)
    return f.tell()
