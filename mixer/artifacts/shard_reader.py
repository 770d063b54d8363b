"""Reading MDS shards without `streaming`: a shard decompressed to at most its declared size,
its layout checked whole before a block is served (`mixer.artifacts.shards` writes them; the
contract test checks both against `streaming`'s own writer and reader)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mixer.artifacts.buildfile import open_checked, read_checked
from mixer.artifacts.checks import MAX_SHARD_BYTES
from mixer.errors import MixerError, OutputError


def columns(seq_len: int, dtype: str) -> dict[str, str]:
    return {"input_ids": f"ndarray:{dtype}:{seq_len}", "starts": "bytes"}


@dataclass(frozen=True)
class Block:
    input_ids: np.ndarray
    starts: np.ndarray


class ShardReader:
    """The blocks of one decompressed MDS joint shard, parsed without `streaming`.

    Parsing the MDS layout directly ([num_samples u32][offsets u32 x n+1][config][samples],
    each sample [len(starts) u32][input_ids][starts]) keeps reads at memory speed. The layout
    is checked whole when the shard is opened (a few vectorized passes over its n offsets), so
    a shard someone else wrote can never make a read run past its bytes or return a block of
    another length: an OutputError naming it instead.
    """

    def __init__(
        self, raw: bytes | memoryview | np.ndarray, *, seq_len: int, dtype: str, name: str = "shard"
    ):
        self.buf = np.frombuffer(raw, np.uint8)
        self.seq_len, self.dtype, self.name = seq_len, np.dtype(dtype), name
        if self.buf.size < 8:
            raise OutputError(f"{name}: not an MDS shard (too short)")
        n = int(self.buf[:4].view(np.uint32)[0])
        if self.buf.size < 4 * (n + 2):
            raise OutputError(f"{name}: not an MDS shard (truncated header)")
        self.offsets = self.buf[4 : 4 * (n + 2)].view(np.uint32).astype(np.int64)
        self.num_samples = n
        self._check_layout()

    def _check_layout(self) -> None:
        """Offsets in order and inside the shard, each sample [u32 k][seq_len ids][k bytes]."""
        off, nbytes = self.offsets, self.seq_len * self.dtype.itemsize
        if off[0] < 4 * (self.num_samples + 2) or off[-1] != self.buf.size:
            raise OutputError(f"{self.name}: MDS shard size does not match its header")
        sizes = np.diff(off)
        if (sizes < 4 + nbytes).any():
            raise OutputError(f"{self.name}: a block is shorter than {self.seq_len} tokens")
        head = self.buf[off[:-1, None] + np.arange(4)].view(np.uint32)[:, 0].astype(np.int64)
        if (sizes != 4 + nbytes + head).any() or (head % 4).any():
            raise OutputError(f"{self.name}: not an MDS shard of {self.seq_len}-token blocks")

    def __len__(self) -> int:
        return self.num_samples

    def block(self, i: int) -> Block:
        off = int(self.offsets[i])
        nbytes = self.seq_len * self.dtype.itemsize
        size = int(self.buf[off : off + 4].view(np.uint32)[0])
        ids = self.buf[off + 4 : off + 4 + nbytes].view(self.dtype)
        starts = self.buf[off + 4 + nbytes : off + 4 + nbytes + size].view(np.uint32)
        return Block(ids, starts)

    def all_ids(self) -> np.ndarray:
        """``[num_samples, seq_len]`` token ids of every block: one masked copy per group of
        blocks (`_pieces`), never a Python step per block (a shard may hold millions)."""
        nbytes = self.seq_len * self.dtype.itemsize
        first = self.offsets[:-1] + 4
        ids = self._pieces(first, first + nbytes)
        return ids.view(self.dtype).reshape(self.num_samples, self.seq_len)

    def all_starts(self) -> tuple[np.ndarray, np.ndarray]:
        """(block, offset) of every document start, as two int64 arrays."""
        first = self.offsets[:-1] + 4 + self.seq_len * self.dtype.itemsize
        data = self._pieces(first, self.offsets[1:])
        counts = (self.offsets[1:] - first) // 4
        rows = np.repeat(np.arange(self.num_samples, dtype=np.int64), counts)
        return rows, data.view(np.uint32).astype(np.int64)

    def _pieces(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """The bytes ``[lo[i], hi[i])`` of every block ``i`` (inside the block, in order; each
        ``lo`` distinct, each ``hi`` distinct), concatenated: a mask made of +1 at ``lo``, -1 at
        ``hi`` and a cumulative sum, then one boolean-index copy, per group of blocks spanning
        ~16 MiB (the mask's memory)."""
        out = np.empty(int((hi - lo).sum()), np.uint8)
        at, i, n = 0, 0, self.num_samples
        while i < n:
            base = int(self.offsets[i])
            j = int(np.searchsorted(self.offsets, base + (1 << 24), "right")) - 1
            j = min(max(j, i + 1), n)
            marks = np.zeros(int(self.offsets[j]) - base + 1, np.int8)
            marks[lo[i:j] - base] += 1  # two statements: an empty piece (lo == hi) cancels
            marks[hi[i:j] - base] -= 1
            piece = self.buf[base : int(self.offsets[j])][np.cumsum(marks[:-1], dtype=np.int8) > 0]
            out[at : at + piece.size] = piece
            at, i = at + piece.size, j
        return out


def bad_starts(rows: np.ndarray, cols: np.ndarray, seq_len: int) -> int | None:
    """The first block whose document starts are not increasing offsets below ``seq_len``."""
    bad = (cols >= seq_len) | (np.diff(rows, prepend=-1) == 0) & (np.diff(cols, prepend=-1) <= 0)
    return int(rows[bad][0]) if bad.any() else None


def read_shard_file(
    path: Path,
    *,
    seq_len: int,
    dtype: str,
    raw_bytes: int | None = None,
    root: Path | None = None,
    size: int | None = None,
) -> ShardReader:
    """Decompress (zstd) and parse one shard file; OutputError naming it if it is damaged.

    ``raw_bytes``: the size the manifest declares: the shard must decompress to exactly that,
    and decompression stops one byte past it (a decompression bomb is an error, never an
    out-of-memory). Without it, the MDS format's limit (4 GiB) bounds it. The file is a regular
    file inside ``root`` (default: its folder) of ``size`` bytes if given
    (`mixer.artifacts.buildfile`).
    """
    import zstandard

    limit = MAX_SHARD_BYTES if raw_bytes is None else raw_bytes
    try:
        with open_checked(path, root or path.parent, "a shard", size=size) as f:
            if path.suffix != ".zstd":
                raw = f.read(limit + 1)
            else:
                raw = _decompress(zstandard.ZstdDecompressor().stream_reader(f), limit)
    except FileNotFoundError:
        raise OutputError(f"{path}: shard file is missing") from None
    except zstandard.ZstdError as e:
        raise OutputError(f"{path}: shard file is corrupted ({e})") from None
    if len(raw) > limit or (raw_bytes is not None and len(raw) != raw_bytes):
        got = f"more than {limit:,}" if len(raw) > limit else f"{len(raw):,}"
        raise OutputError(
            f"{path}: decompresses to {got} bytes, the manifest says {raw_bytes or limit:,};"
            " refused (corrupted or altered)"
        )
    return ShardReader(raw, seq_len=seq_len, dtype=dtype, name=str(path))


def _decompress(reader, limit: int) -> memoryview:
    """At most ``limit + 1`` bytes of a zstd stream, into one buffer grown as they come (a
    frame's declared size is not trusted: memory follows the bytes actually produced)."""
    buf = bytearray(min(limit + 1, 1 << 24))
    got = 0
    while True:
        n = reader.readinto(memoryview(buf)[got:])
        if n == 0:
            return memoryview(buf)[:got]
        got += n
        if got == len(buf):
            if got > limit:
                return memoryview(buf)[:got]
            buf.extend(bytes(min(len(buf), limit + 1 - got)))


def index_problems(path: Path, rec, seq_len: int, dtype: str, root: Path) -> list[str]:
    """How a split's MDS ``index.json`` (``path``) disagrees with its manifest record ``rec``
    (a `SplitRecord`): the shards it lists, their blocks, sizes and columns. What
    `StreamingDataset` reads must be what the manifest promises (empty list: it is). It is
    read as a regular file inside ``root``, the build (`mixer.artifacts.buildfile`)."""
    enc = [columns(seq_len, dtype)[n] for n in sorted(columns(seq_len, dtype))]
    try:
        text = read_checked(path, root, "an MDS index", limit=64 << 20)
        shards = json.loads(text.decode("utf-8"))["shards"]
        got = [
            (s["zip_data"]["basename"], s["samples"], s["zip_data"]["bytes"])
            + (s["raw_data"]["bytes"], s["column_encodings"])
            for s in shards
        ]
    except FileNotFoundError:
        return [f"{path}: MDS index is missing"]
    except MixerError as e:
        return [str(e)]
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:
        return [f"{path}: not an MDS index ({type(e).__name__}: {str(e)[:100]})"]
    want = [(s.file, s.samples, s.bytes, s.raw_bytes, enc) for s in rec.shards]
    if got == want:
        return []
    if [g[0] for g in got] != [w[0] for w in want]:
        return [f"{path}: lists other shards than the manifest"]
    i = next(i for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w)
    return [f"{path}: {want[i][0]}: blocks, sizes or columns differ from the manifest's"]
