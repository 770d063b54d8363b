"""The only module that writes and reads MDS shards (mosaicml-streaming's format).

Each split of each source is one MDS dataset folder: ``index.json`` plus zstd-compressed joint
shards, one sample per block with columns ``input_ids`` (``ndarray:<dtype>:<seq_len>``) and
``starts`` (``bytes``: uint32 offsets of document starts; ``bytes`` because MDS cannot encode an
empty array, and a block inside one long document has no start). Any `StreamingDataset` reads
them, and :class:`ShardReader` reads shards written by `streaming.MDSWriter`
(tests/unit/test_mds_contract.py checks both ways).

Reading checks what it reads: a shard decompresses to at most the size its manifest declares,
and its layout is checked whole before a block is served (builds read from elsewhere are
data, `mixer.artifacts.checks`). Files are located and downloaded by `mixer.artifacts.fetch`.

Both sides are written here rather than through `streaming`: ``import streaming`` costs seconds
(it imports torch), more than a small build itself, and its writer encodes sample by sample in
Python. :class:`ShardWriter` writes the very bytes `MDSWriter` writes (same layout, same shard
cuts, same zstd frames: the golden build pins their sha256).

Invariant: the bytes written here (columns and their encodings, the shard size limit where
shards are cut, the zstd level and frames, ``index.json``) are part of every source's reuse key
through ``BLOCKS_FORMAT`` (`mixer.artifacts.manifest`). Never change them without bumping it
and regenerating tests/data/golden/; a change that writes the same bytes keeps it, so nothing
is re-tokenized after an upgrade.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from mixer.artifacts.manifest import ShardRecord

# reading is `mixer.artifacts.shard_reader`; its names stay importable from here
from mixer.artifacts.shard_reader import Block as Block
from mixer.artifacts.shard_reader import ShardReader as ShardReader
from mixer.artifacts.shard_reader import bad_starts as bad_starts
from mixer.artifacts.shard_reader import columns
from mixer.artifacts.shard_reader import index_problems as index_problems
from mixer.artifacts.shard_reader import read_shard_file as read_shard_file
from mixer.errors import OutputError

COMPRESSION = "zstd"
ZSTD_LEVEL = 3  # MDSWriter's level for "zstd"
_SAMPLE_EXTRA = 4  # MDSWriter counts 4 bytes per sample (its offset) against the size limit
_SLICE_PARTS = 3 * 128  # parts (3 per block) joined per write to the compressor: ~1 MiB at 2048


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
        """Write a `mixer.builder.pack.Packed` (blocks and their document starts)."""
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
        exceeds the limit) and start a new one. The shard is streamed through the compressor
        in slices (the same frame as one call on the joined bytes, its size pledged): no copy
        of the shard, nor of its compressed bytes, besides the blocks themselves."""
        n = len(self._sizes)
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum(self._sizes, out=offsets[1:])
        offsets += 4 + 4 * (n + 1) + len(self._config_data)
        head = [np.uint32(n).tobytes(), offsets.astype(np.uint32).tobytes(), self._config_data]
        raw_bytes = int(offsets[-1])
        name = f"shard.{len(self._shards):05}.mds"
        with open(self.out_dir / f"{name}.zstd", "wb") as f:
            out = _Hashing(f)
            with self._zstd.stream_writer(out, size=raw_bytes, closefd=False) as z:
                z.write(b"".join(head))
                for i in range(0, len(self._parts), _SLICE_PARTS):
                    z.write(b"".join(self._parts[i : i + _SLICE_PARTS]))
        self._shards.append(
            {
                "samples": n,
                "raw_data": {"basename": name, "bytes": raw_bytes, "hashes": {}},
                "zip_data": {"basename": f"{name}.zstd", "bytes": out.size, "hashes": {}},
                **self.config,
            }
        )
        self._records.append(
            ShardRecord(
                file=f"{name}.zstd",
                samples=n,
                bytes=out.size,
                raw_bytes=raw_bytes,
                sha256=out.sha.hexdigest(),
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


class _Hashing:
    """A write-only file that hashes and counts what goes through it (the compressed shard)."""

    def __init__(self, f):
        self.f, self.sha, self.size = f, hashlib.sha256(), 0

    def write(self, data) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()
