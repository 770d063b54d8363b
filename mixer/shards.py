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
from mixer.pack import Packed
from mixer.tokenizer import sha256_file

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

    def write(self, packed: Packed) -> None:
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


class SplitStore:
    """The blocks of one split of one source, gathered by block index at memory speed.

    Why not mosaicml-streaming's reader: it opens and decodes one sample at a time (~50x slower
    than a memmap, measured in tools/bench_mixture.py). Instead, on first use each shard is
    fetched (downloaded if remote), checked against the manifest's sha256, decompressed, and
    re-laid out once into dense ``[samples, seq_len]`` token rows plus CSR document starts in
    ``cache``; those are memory-mapped, so a batch is a few fancy-index copies.
    """

    def __init__(
        self,
        *,
        root: str,
        cache: Path,
        source: str,
        split: str,
        record: dict,
        seq_len: int,
        dtype: str,
    ):
        self.root, self.source, self.split = str(root), source, split
        self.rel = f"sources/{source}/{split}"
        self.cache = Path(cache) / source / split
        self.shards = record["shards"]
        self.seq_len, self.dtype = seq_len, np.dtype(dtype)
        sizes = [s["samples"] for s in self.shards]
        self.bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self._open: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return int(self.bounds[-1])

    def gather(self, blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids [K, seq_len], start_rows, start_cols): tokens and document starts of blocks."""
        blocks = np.asarray(blocks, np.int64)
        shard = np.searchsorted(self.bounds, blocks, side="right") - 1
        ids = np.empty((blocks.size, self.seq_len), self.dtype)
        rows, cols = [], []
        for sh in np.unique(shard):
            sel = np.flatnonzero(shard == sh)
            dense, starts, offsets = self._shard(int(sh))
            local = blocks[sel] - self.bounds[sh]
            ids[sel] = dense[local]
            lo, hi = offsets[local], offsets[local + 1]
            cnt = hi - lo
            first = np.repeat(lo - (np.cumsum(cnt) - cnt), cnt)
            cols.append(starts[first + np.arange(int(cnt.sum()))])
            rows.append(np.repeat(sel, cnt))
        if not rows:
            return ids, np.empty(0, np.int64), np.empty(0, np.int64)
        return ids, np.concatenate(rows), np.concatenate(cols).astype(np.int64)

    def block(self, i: int) -> Block:
        dense, starts, offsets = self._shard(int(np.searchsorted(self.bounds, i, "right") - 1))
        local = i - int(self.bounds[np.searchsorted(self.bounds, i, "right") - 1])
        return Block(np.array(dense[local]), np.array(starts[offsets[local] : offsets[local + 1]]))

    def _shard(self, sh: int):
        if sh not in self._open:
            rec = self.shards[sh]
            key = rec["sha256"][:24]
            paths = [self.cache / f"{key}.{part}.npy" for part in ("ids", "starts", "offsets")]
            if not all(p.exists() for p in paths):
                self._materialize(rec, paths)
            self._open[sh] = tuple(np.load(p, mmap_mode="r") for p in paths)
        return self._open[sh]

    def _materialize(self, rec: dict, paths: list[Path]) -> None:
        """Fetch, verify, decompress and densify one shard into the cache (atomically)."""
        import zstandard

        name = f"{self.rel}/{rec['file']}"
        src = fetch(self.root, name, self.cache / "download" / rec["file"])
        if sha256_file(src) != rec["sha256"]:
            raise OutputError(
                f"{src}: shard does not match the manifest (sha256 differs): it is corrupted or"
                " was altered; rebuild the output or restore the file"
            )
        try:
            raw = zstandard.ZstdDecompressor().stream_reader(src.read_bytes()).read()
        except zstandard.ZstdError as e:
            raise OutputError(f"{src}: shard cannot be decompressed ({e})") from None
        reader = ShardReader(raw, seq_len=self.seq_len, dtype=self.dtype.str, name=str(src))
        if len(reader) != rec["samples"]:
            raise OutputError(f"{src}: {len(reader)} blocks, the manifest says {rec['samples']}")
        dense = np.empty((len(reader), self.seq_len), self.dtype)
        starts, offsets = [], np.zeros(len(reader) + 1, np.int64)
        for i in range(len(reader)):  # once per shard, at cache-fill time
            b = reader.block(i)
            dense[i] = b.input_ids
            starts.append(b.starts)
            offsets[i + 1] = offsets[i] + b.starts.size
        flat = np.concatenate(starts) if starts else np.empty(0, np.uint32)
        self.cache.mkdir(parents=True, exist_ok=True)
        for path, arr in zip(paths, (dense, flat, offsets), strict=True):
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                np.save(f, arr, allow_pickle=False)
            os.replace(tmp, path)


@dataclass(frozen=True)
class Block:
    input_ids: np.ndarray
    starts: np.ndarray


class ShardReader:
    """Random access to the blocks of one decompressed MDS joint shard, without `streaming`.

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


def read_shard_file(path: Path, *, seq_len: int, dtype: str) -> ShardReader:
    """Decompress (zstd) and parse one shard file."""
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
