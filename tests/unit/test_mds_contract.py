"""The MDS contract with mosaicml-streaming, both ways.

mixer writes and reads MDS shards without `streaming` (mixer.artifacts.shards). These tests hold
it to the library: (a) shards mixer writes are the very bytes `streaming.MDSWriter` writes for
the same blocks, and `streaming`'s own `StreamingDataset` reads them back sample for sample;
(b) shards `MDSWriter` writes are read by mixer's `ShardReader` identically. The blocks vary
the things that change bytes: dtype (uint16 / uint32), the number of document starts (none,
one, many), shard cuts (a limit smaller than one sample, which makes MDSWriter write an empty
first shard; several shards; one shard of many MiB, over zstd's job size).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mixer.artifacts.shards import ShardWriter, columns, read_shard_file
from mixer.builder.pack import Packed

CASES = [  # (dtype, seq_len, blocks, shard_size)
    ("uint16", 64, 300, 1 << 10),  # every sample exceeds the limit: empty first shard
    ("uint16", 256, 2000, 64 << 10),  # many shards
    ("uint32", 2048, 1200, 64 << 20),  # one shard of 9.8 MiB
]


def _packed(dtype: str, seq_len: int, num_blocks: int, seed: int) -> Packed:
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    ids = (rng.zipf(1.2, (num_blocks, seq_len)) % top).astype(dtype)
    starts = []
    for b in range(num_blocks):
        k = [0, 1, int(rng.integers(2, 12))][b % 3]
        starts.append(np.sort(rng.choice(seq_len, k, replace=False)).astype(np.uint32))
    return Packed(blocks=ids, starts=starts)


def _write_mixer(folder: Path, packed: Packed, dtype: str, seq_len: int, shard_size: int):
    w = ShardWriter(folder, seq_len=seq_len, dtype=dtype, shard_size=shard_size)
    half = len(packed.blocks) // 2  # in two calls, as the merge feeds it
    w.write(Packed(blocks=packed.blocks[:half], starts=packed.starts[:half]))
    w.write(Packed(blocks=packed.blocks[half:], starts=packed.starts[half:]))
    return w.finish()


def _write_streaming(folder: Path, packed: Packed, dtype: str, seq_len: int, shard_size: int):
    from streaming import MDSWriter

    with MDSWriter(
        out=str(folder),
        columns=columns(seq_len, dtype),
        compression="zstd",
        size_limit=shard_size,
    ) as w:
        for block, starts in zip(packed.blocks, packed.starts, strict=True):
            w.write({"input_ids": block, "starts": starts.tobytes()})


def _read_mixer(folder: Path, dtype: str, seq_len: int) -> list[tuple[list, list]]:
    index = json.loads((folder / "index.json").read_text())
    out = []
    for shard in index["shards"]:
        path = folder / shard["zip_data"]["basename"]
        reader = read_shard_file(path, seq_len=seq_len, dtype=dtype)
        assert len(reader) == shard["samples"]
        for i in range(len(reader)):
            b = reader.block(i)
            out.append((b.input_ids.tolist(), b.starts.tolist()))
    return out


def _expected(packed: Packed) -> list[tuple[list, list]]:
    return [(b.tolist(), s.tolist()) for b, s in zip(packed.blocks, packed.starts, strict=True)]


@pytest.mark.slow
@pytest.mark.parametrize(("dtype", "seq_len", "num_blocks", "shard_size"), CASES)
def test_mixer_writes_the_bytes_mdswriter_writes(tmp_path, dtype, seq_len, num_blocks, shard_size):
    packed = _packed(dtype, seq_len, num_blocks, seed=seq_len)
    records = _write_mixer(tmp_path / "ours", packed, dtype, seq_len, shard_size)
    _write_streaming(tmp_path / "theirs", packed, dtype, seq_len, shard_size)
    ours = sorted(p.name for p in (tmp_path / "ours").iterdir())
    assert ours == sorted(p.name for p in (tmp_path / "theirs").iterdir())
    for name in ours:
        assert (tmp_path / "ours" / name).read_bytes() == (tmp_path / "theirs" / name).read_bytes()
    assert sum(r.samples for r in records) == num_blocks
    assert [r.file for r in records] == [n for n in ours if n != "index.json"]
    if shard_size < seq_len * np.dtype(dtype).itemsize:
        assert records[0].samples == 0  # MDSWriter's empty first shard, reproduced


@pytest.mark.slow
@pytest.mark.parametrize(("dtype", "seq_len", "num_blocks", "shard_size"), CASES)
def test_streaming_reads_what_mixer_writes(tmp_path, dtype, seq_len, num_blocks, shard_size):
    from streaming import StreamingDataset

    packed = _packed(dtype, seq_len, num_blocks, seed=1)
    _write_mixer(tmp_path / "ours", packed, dtype, seq_len, shard_size)
    ds = StreamingDataset(local=str(tmp_path / "ours"), shuffle=False, batch_size=1)
    assert len(ds) == num_blocks
    got = []
    for i in range(num_blocks):
        sample = ds[i]
        assert sample["input_ids"].dtype == np.dtype(dtype)
        got.append((sample["input_ids"].tolist(), np.frombuffer(sample["starts"], np.uint32)))
    assert [(ids, s.tolist()) for ids, s in got] == _expected(packed)


@pytest.mark.slow
@pytest.mark.parametrize(("dtype", "seq_len", "num_blocks", "shard_size"), CASES)
def test_mixer_reads_what_mdswriter_writes(tmp_path, dtype, seq_len, num_blocks, shard_size):
    packed = _packed(dtype, seq_len, num_blocks, seed=2)
    _write_streaming(tmp_path / "theirs", packed, dtype, seq_len, shard_size)
    assert _read_mixer(tmp_path / "theirs", dtype, seq_len) == _expected(packed)
