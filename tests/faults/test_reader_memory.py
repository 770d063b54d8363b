"""A reader's memory is bounded by mixer, not by the build (issue 21): chunk arrays whatever
seq_len, a shard of millions of tiny blocks opened in vectorized passes, records parsed only
once their number of JSON values is known to be bounded."""

from __future__ import annotations

import json
import time
import tracemalloc

import numpy as np
import pytest

from mixer import StreamingMixture
from mixer.artifacts.manifest import read_record
from mixer.artifacts.shards import ShardReader, ShardWriter
from mixer.builder.pack import Packed
from tests.helpers import build_demo


def test_the_first_sample_of_long_blocks_takes_a_bounded_chunk(tmp_path):
    out = build_demo(tmp_path, {"web": 1}, seq_len=1 << 14, mixture={"samples": 4096})
    ds = StreamingMixture(out, cache_dir=tmp_path / "c")
    ds._store("web").tokens(np.arange(1))  # the shard unpacked first: not the chunk's memory
    tracemalloc.start()
    try:
        next(iter(ds))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # 256 samples x 2 x 16,384 x 8 bytes (64 MiB) before; one 8 MiB chunk now
    assert peak < 24 << 20, peak


def tiny_blocks_shard(tmp_path, n: int):
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 100, (n, 2)).astype(np.uint16)
    starts = [np.array([0], np.uint32) if i % 3 else np.empty(0, np.uint32) for i in range(n)]
    w = ShardWriter(tmp_path / "s", seq_len=2, dtype="uint16", shard_size=1 << 29)
    w.write(Packed(blocks=blocks, starts=starts))
    (rec,) = w.finish()
    import zstandard

    raw = zstandard.ZstdDecompressor().decompress(
        (tmp_path / "s" / rec.file).read_bytes(), max_output_size=rec.raw_bytes
    )
    return raw, blocks, starts


def test_a_shard_of_two_million_tiny_blocks_opens_in_well_under_a_second(tmp_path):
    raw, blocks, starts = tiny_blocks_shard(tmp_path, 2_000_000)
    t = time.perf_counter()
    reader = ShardReader(raw, seq_len=2, dtype="uint16")
    ids, (rows, cols) = reader.all_ids(), reader.all_starts()
    took = time.perf_counter() - t
    assert (ids == blocks).all()
    want_rows = np.flatnonzero([s.size for s in starts])
    assert (rows == want_rows).all() and (cols == 0).all()
    assert took < 2.0, took  # 0.4 s on a quiet machine; 19 s with a Python loop per block


def test_a_manifest_of_empty_lists_is_refused_in_bounded_memory(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_bytes(b"[" + b"[]," * ((64 << 20) // 3 - 1) + b"[]]")
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"more than [\d,]+ JSON values"):
            read_record(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200 << 20, peak  # 1.6 GB before


def test_a_record_within_the_bounds_still_loads(tmp_path):
    path = tmp_path / "manifest.json"
    data = {"format": 1, "files": [{"path": f"f{i}", "bytes": i} for i in range(10_000)]}
    path.write_text(json.dumps(data))
    assert read_record(path) == data
