"""One cached shard: its blocks' token ids and document starts in one memory-mappable file.

Layout (sections 8-byte aligned, arrays in this machine's byte order: the cache is local)::

    header   64 B    b"MIXBLK02", then u64 blocks, seq_len, token itemsize, starts, then
                     the first 16 bytes of the sha256 of everything after the header
    tokens           blocks x seq_len, the build's dtype (uint16, or uint32 above 65,536 ids)
    ptr              blocks + 1 uint32: block b's starts are starts[ptr[b]:ptr[b + 1]]
    starts           document starts, offsets in their block: uint16 (uint32 if seq_len > 65,536)

So a shard takes its token bytes plus 4 bytes per block and 2 per document start: 1.002x the
token bytes for 2048-token blocks of uint16 ids and 1,500-token documents (position ids are
derived per batch, `mixer.serve.positions`). A file is written whole under a temporary name and
renamed into place, so a file under its final name is always complete; it is never modified
afterwards, only removed (see `mixer.serve.cache_limit` for why a reader can never see it change).
"""

from __future__ import annotations

import hashlib
import mmap
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mixer.errors import OutputError

MAGIC = b"MIXBLK02"
HEADER = 64
PTR = np.dtype(np.uint32)  # a shard holds < 4 GiB (`shard_size`), so < 2^32 starts


def _align(n: int) -> int:
    return -(-n // 8) * 8


def start_dtype(seq_len: int) -> np.dtype:
    return np.dtype(np.uint16 if seq_len <= 1 << 16 else np.uint32)


def layout(blocks: int, seq_len: int, itemsize: int, starts: int) -> tuple[int, int, int]:
    """Byte offsets of (ptr, starts, end of file)."""
    ptr = HEADER + _align(blocks * seq_len * itemsize)
    first = ptr + _align((blocks + 1) * PTR.itemsize)
    return ptr, first, first + starts * start_dtype(seq_len).itemsize


def file_size(ids: np.ndarray, rows: np.ndarray) -> int:
    """Bytes of the cache file of ``ids`` ``[blocks, seq_len]`` with ``rows.size`` starts."""
    return layout(ids.shape[0], ids.shape[1], ids.itemsize, rows.size)[2]


def encode(ids: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> list[bytes | memoryview]:
    """The file's bytes, in pieces: ``ids`` ``[blocks, seq_len]``, starts as (block, offset)
    pairs sorted by block."""
    blocks, seq_len = ids.shape
    ptr_at, starts_at, _ = layout(blocks, seq_len, ids.itemsize, rows.size)
    head = np.zeros(HEADER // 8, np.uint64)
    head[1:5] = (blocks, seq_len, ids.itemsize, rows.size)
    ptr = np.searchsorted(rows, np.arange(blocks + 1)).astype(PTR)
    pieces = [MAGIC, head.tobytes()[8:], np.ascontiguousarray(ids).data]
    pad_ids = ptr_at - HEADER - ids.nbytes
    pad_ptr = starts_at - ptr_at - ptr.nbytes
    body = [
        pieces[2],
        bytes(pad_ids),
        ptr.data,
        bytes(pad_ptr),
        cols.astype(start_dtype(seq_len)).data,
    ]
    h = hashlib.sha256()
    for piece in body:
        h.update(piece)
    head[5:7] = np.frombuffer(h.digest()[:16], np.uint64)
    return [MAGIC, head.tobytes()[8:], *body]


@dataclass(eq=False)
class CachedShard:
    """A mapped cache file. The mapping stays valid after the file is removed (POSIX keeps a
    removed file's data until its last mapping goes), so a shard evicted mid-read reads on."""

    path: Path
    inode: int
    tokens: np.ndarray  # [blocks, seq_len]
    ptr: np.ndarray
    starts: np.ndarray

    @classmethod
    def open(
        cls, path: Path, *, blocks: int, seq_len: int, dtype: np.dtype, check: bool = True
    ) -> CachedShard | None:
        """Map ``path``; None if it is missing or not a complete cache file for this shard:
        its size, and (``check``) the sha256 its header records of its body (a file edited or
        damaged since it was unpacked is filled again, from its manifest-checked shard). The
        hash reads the whole file once per process and mapping: 0.09 s per 64 MiB shard."""
        try:  # a link, FIFO or device in the cache is no cache file: never followed or waited on
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            raise OutputError(f"{path}: not a cache file ({e.strerror}); remove it") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise OutputError(f"{path}: not a regular file; remove it from the cache")
            if st.st_size < HEADER:
                return None
            buf = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)  # the mapping keeps the file open
        head = np.frombuffer(buf, np.uint64, 4, 8).tolist()
        if buf[:8] != MAGIC or head[:3] != [blocks, seq_len, dtype.itemsize]:
            return None
        ptr_at, starts_at, end = layout(blocks, seq_len, dtype.itemsize, head[3])
        if end != st.st_size:
            return None
        if check and hashlib.sha256(memoryview(buf)[HEADER:]).digest()[:16] != buf[40:56]:
            return None
        tokens = np.frombuffer(buf, dtype, blocks * seq_len, HEADER).reshape(blocks, seq_len)
        ptr = np.frombuffer(buf, PTR, blocks + 1, ptr_at)
        starts = np.frombuffer(buf, start_dtype(seq_len), head[3], starts_at)
        return cls(path=Path(path), inode=st.st_ino, tokens=tokens, ptr=ptr, starts=starts)

    def start_keys(self, blocks: np.ndarray, base: np.ndarray) -> np.ndarray:
        """``base[i] + offset`` for every document start of ``blocks[i]``: a ragged gather in a
        dozen numpy calls, whatever the number of blocks."""
        lo = self.ptr[blocks].astype(np.int64)
        n = self.ptr[blocks + 1] - lo
        shift = lo - np.cumsum(n) + n  # starts[lo[i] + j] is the j-th start of blocks[i]
        at = np.repeat(shift, n) + np.arange(int(n.sum()))
        return np.repeat(base, n) + self.starts[at]

    def removed(self) -> bool:
        """True once the file under ``path`` is no longer this mapping's (evicted, replaced)."""
        try:
            return os.stat(self.path).st_ino != self.inode
        except FileNotFoundError:
            return True
