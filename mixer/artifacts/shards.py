"""The only module that writes and reads MDS shards (mosaicml-streaming's format).

Each split of each source is one MDS dataset folder: ``index.json`` plus zstd-compressed joint
shards, one sample per block with columns ``input_ids`` (``ndarray:<dtype>:<seq_len>``) and
``starts`` (``bytes``: uint32 offsets of document starts; ``bytes`` because MDS cannot encode an
empty array, and a block inside one long document has no start). Any `StreamingDataset` reads
them, and :class:`ShardReader` reads shards written by `streaming.MDSWriter`
(tests/unit/test_mds_contract.py checks both ways).

Both sides are written here rather than through `streaming`: ``import streaming`` costs seconds
(it imports torch), more than a small build itself, and its writer encodes sample by sample in
Python. :class:`ShardWriter` writes the very bytes `MDSWriter` writes (same layout, same shard
cuts, same zstd frames: the golden build pins their sha256).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mixer.artifacts.manifest import ShardRecord
from mixer.errors import OutputError

COMPRESSION = "zstd"
ZSTD_LEVEL = 3  # MDSWriter's level for "zstd"
_SAMPLE_EXTRA = 4  # MDSWriter counts 4 bytes per sample (its offset) against the size limit


def columns(seq_len: int, dtype: str) -> dict[str, str]:
    return {"input_ids": f"ndarray:{dtype}:{seq_len}", "starts": "bytes"}


def _config(seq_len: int, dtype: str, shard_size: int) -> dict:
    """The shard-writing configuration MDSWriter stores in every shard and index entry."""
    cols = columns(seq_len, dtype)
    names = sorted(cols)
    return {
        "version": 2,
        "format": "mds",
        "compression": COMPRESSION,
        "hashes": [],
        "size_limit": shard_size,
        "column_names": names,
        "column_encodings": [cols[n] for n in names],
        "column_sizes": [seq_len * np.dtype(dtype).itemsize, None],
    }


class ShardWriter:
    """Blocks -> MDS shards in ``out_dir`` (created; it must not hold files yet).

    A shard is cut, as MDSWriter cuts it, before the sample that would take it past
    ``shard_size`` (counting the shard's header and 4 bytes per sample): the shard being
    filled (at most ``shard_size`` bytes) is the only thing held in memory.
    """

    def __init__(self, out_dir: Path, *, seq_len: int, dtype: str, shard_size: int):
        import zstandard

        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if any(self.out_dir.iterdir()):
            raise OutputError(f"{self.out_dir}: shard folder is not empty")
        self.num_blocks = 0
        self.seq_len, self.dtype, self.limit = seq_len, np.dtype(dtype), shard_size
        self.config = _config(seq_len, dtype, shard_size)
        self._config_data = json.dumps(self.config, sort_keys=True).encode("utf-8")
        # threads=1: zstd's multi-threaded mode, whose frames are the same for any number of
        # threads; the `zstd` module MDSWriter uses runs in that mode too.
        self._zstd = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=1)
        self._shards: list[dict] = []
        self._records: list[dict] = []
        self._reset()

    def _reset(self) -> None:
        self._parts: list = []
        self._sizes: list[int] = []
        self._size = 8 + len(self._config_data)

    def write(self, packed) -> None:
        """Write a `mixer.build.pack.Packed` (blocks and their document starts)."""
        blocks = np.ascontiguousarray(packed.blocks, self.dtype)
        block_bytes = self.seq_len * self.dtype.itemsize
        for block, starts in zip(blocks, packed.starts, strict=True):
            starts = np.ascontiguousarray(starts, np.uint32)
            size = 4 + block_bytes + starts.nbytes
            if self.limit < self._size + size + _SAMPLE_EXTRA:
                self._flush()
            self._parts += (np.uint32(starts.nbytes).tobytes(), block.data, starts.data)
            self._sizes.append(size)
            self._size += size + _SAMPLE_EXTRA
        self.num_blocks += len(blocks)

    def _flush(self) -> None:
        """Write the shard being filled (possibly empty, as MDSWriter does when a single sample
        exceeds the limit) and start a new one."""
        n = len(self._sizes)
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum(self._sizes, out=offsets[1:])
        offsets += 4 + 4 * (n + 1) + len(self._config_data)
        raw = b"".join(
            [np.uint32(n).tobytes(), offsets.astype(np.uint32).tobytes(), self._config_data]
            + self._parts
        )
        name = f"shard.{len(self._shards):05}.mds"
        packed = self._zstd.compress(raw)
        with open(self.out_dir / f"{name}.zstd", "wb") as f:
            f.write(packed)
        self._shards.append(
            {
                "samples": n,
                "raw_data": {"basename": name, "bytes": len(raw), "hashes": {}},
                "zip_data": {"basename": f"{name}.zstd", "bytes": len(packed), "hashes": {}},
                **self.config,
            }
        )
        self._records.append(
            ShardRecord(
                file=f"{name}.zstd",
                samples=n,
                bytes=len(packed),
                raw_bytes=len(raw),
                sha256=hashlib.sha256(packed).hexdigest(),
            )
        )
        self._reset()

    def finish(self) -> tuple[ShardRecord, ...]:
        """Write the last shard and ``index.json``; the shard records for the manifest."""
        if self._sizes:
            self._flush()
        with open(self.out_dir / "index.json", "w") as f:
            json.dump({"version": 2, "shards": self._shards}, f, sort_keys=True)
        return tuple(self._records)


def is_remote(root: str) -> bool:
    """True for URLs that mosaicml-streaming downloads (s3://, gs://, oci://, hf://, ...)."""
    return "://" in str(root) and not str(root).startswith("file://")


def local_path(root: str) -> Path:
    return Path(str(root)[len("file://") :] if str(root).startswith("file://") else root)


def fetch(root: str, rel: str, dest: Path) -> Path:
    """``root/rel`` as a local file: the file itself if local, else downloaded once to ``dest``
    with mosaicml-streaming's downloaders (its credentials, retries and endpoints)."""
    if not is_remote(root):
        path = local_path(root) / rel
        if not path.exists():
            raise OutputError(f"{path}: file is missing from the build; rebuild or restore it")
        return path
    if dest.exists():
        return dest
    from streaming.base.storage import CloudDownloader

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        CloudDownloader.direct_download(f"{str(root).rstrip('/')}/{rel}", str(tmp))
    except Exception as e:  # noqa: BLE001 (each storage backend raises its own types)
        raise OutputError(f"{root}/{rel}: cannot download ({type(e).__name__}: {e})") from None
    os.replace(tmp, dest)
    return dest


@dataclass(frozen=True)
class Block:
    input_ids: np.ndarray
    starts: np.ndarray


class ShardReader:
    """The blocks of one decompressed MDS joint shard, parsed without `streaming`.

    Parsing the MDS layout directly ([num_samples u32][offsets u32 x n+1][config][samples],
    each sample [len(starts) u32][input_ids][starts]) keeps reads at memory speed.
    """

    def __init__(
        self, raw: bytes | memoryview | np.ndarray, *, seq_len: int, dtype: str, name: str = "shard"
    ):
        self.buf = np.frombuffer(raw, np.uint8)
        self.seq_len, self.dtype, self.name = seq_len, np.dtype(dtype), name
        if self.buf.size < 4:
            raise OutputError(f"{name}: not an MDS shard (too short)")
        n = int(self.buf[:4].view(np.uint32)[0])
        if self.buf.size < 4 * (n + 2):
            raise OutputError(f"{name}: not an MDS shard (truncated header)")
        self.offsets = self.buf[4 : 4 * (n + 2)].view(np.uint32).astype(np.int64)
        self.num_samples = n
        if n and self.offsets[-1] != self.buf.size:
            raise OutputError(f"{name}: MDS shard size does not match its header")

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
        """``[num_samples, seq_len]`` token ids of every block."""
        out = np.empty((self.num_samples, self.seq_len), self.dtype)
        for i in range(self.num_samples):  # once per shard: fine in Python
            out[i] = self.block(i).input_ids
        return out

    def all_starts(self) -> tuple[np.ndarray, np.ndarray]:
        """(block, offset) of every document start, as two int64 arrays."""
        starts = [self.block(i).starts for i in range(self.num_samples)]
        rows = np.repeat(np.arange(self.num_samples), [s.size for s in starts])
        cols = np.concatenate(starts).astype(np.int64) if starts else np.empty(0, np.int64)
        return rows.astype(np.int64), cols


def read_shard_file(path: Path, *, seq_len: int, dtype: str) -> ShardReader:
    """Decompress (zstd) and parse one shard file; OutputError naming it if it is damaged."""
    import zstandard

    try:
        data = path.read_bytes()
        raw = (
            zstandard.ZstdDecompressor().stream_reader(data).read()
            if path.suffix == ".zstd"
            else data
        )
    except FileNotFoundError:
        raise OutputError(f"{path}: shard file is missing") from None
    except zstandard.ZstdError as e:
        raise OutputError(f"{path}: shard file is corrupted ({e})") from None
    return ShardReader(raw, seq_len=seq_len, dtype=dtype, name=str(path))
