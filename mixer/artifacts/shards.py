"""The only module that writes and reads MDS shards (mosaicml-streaming's format).

Each split of each source is one MDS dataset folder: ``index.json`` plus zstd-compressed joint
shards, one sample per block with columns ``input_ids`` (``ndarray:<dtype>:<seq_len>``) and
``starts`` (``bytes``: uint32 offsets of document starts; ``bytes`` because MDS cannot encode an
empty array, and a block inside one long document has no start). Any `StreamingDataset` can
read them. ``import streaming`` takes seconds (it imports torch and transformers), so it
happens only inside the writer.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mixer.errors import OutputError
from mixer.identity import sha256_file

COMPRESSION = "zstd"


def columns(seq_len: int, dtype: str) -> dict[str, str]:
    return {"input_ids": f"ndarray:{dtype}:{seq_len}", "starts": "bytes"}


class ShardWriter:
    """Blocks -> MDS shards in ``out_dir`` (which must not exist yet)."""

    def __init__(self, out_dir: Path, *, seq_len: int, dtype: str, shard_size: int):
        from streaming import MDSWriter

        self.out_dir = Path(out_dir)
        self.num_blocks = 0
        self._w = MDSWriter(
            out=str(self.out_dir),
            columns=columns(seq_len, dtype),
            compression=COMPRESSION,
            size_limit=shard_size,
        )

    def write(self, packed) -> None:
        """Write a `mixer.build.pack.Packed` (blocks and their document starts)."""
        for block, starts in zip(packed.blocks, packed.starts, strict=True):
            self._w.write({"input_ids": block, "starts": starts.tobytes()})
        self.num_blocks += len(packed.blocks)

    def finish(self) -> list[dict]:
        """Close the writer; the shard records for the manifest (relative file names)."""
        self._w.finish()
        index = json.loads((self.out_dir / "index.json").read_text())
        records = []
        for shard in index["shards"]:
            name = shard["zip_data"]["basename"]
            records.append(
                {
                    "file": name,
                    "samples": shard["samples"],
                    "bytes": shard["zip_data"]["bytes"],
                    "raw_bytes": shard["raw_data"]["bytes"],
                    "sha256": sha256_file(self.out_dir / name),
                }
            )
        return records


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
