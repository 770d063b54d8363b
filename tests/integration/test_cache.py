"""The serving cache: its size, samples that never change, and the size limit with eviction."""

from __future__ import annotations

import collections
import errno
import itertools
import os

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import mixer.serve.cache as cache_mod
import mixer.serve.mixture as mixture_mod
from mixer import StreamingMixture
from mixer.artifacts.manifest import Manifest
from mixer.errors import OutputError, UsageError
from mixer.serve.cache_limit import parse_limit
from tests.faults.test_disk import mounted
from tests.helpers import build_demo, qwen_tiktoken_file


@pytest.fixture(scope="module")
def windows(tmp_path_factory):
    """Two sources of 12 and 16 shards, read a window of 2 shards at a time, 3 and 5 passes."""
    return build_demo(
        tmp_path_factory.mktemp("windows"),
        {"books": 0.55, "web": 0.45},
        seq_len=32,
        shard_size="16KiB",
        validation={},
        mixture={"shuffle": "shards", "window": 2, "samples": 24_000},
    )


def blk_files(root):
    return sorted(root.rglob("shard-*.blk"))


def served(ds, n=None):
    return [(x["index"], x["input_ids"].copy()) for x in itertools.islice(ds, n)]


# -- size ---------------------------------------------------------------------------------
@pytest.mark.parametrize("vocab", ["demo", "qwen"])
def test_the_cache_takes_about_the_token_bytes(tmp_path, vocab):
    tokenizer = (
        {"tiktoken": str(qwen_tiktoken_file()), "pattern": "qwen"} if vocab == "qwen" else None
    )
    out = build_demo(
        tmp_path, seq_len=256, **({"tokenizer": tokenizer} if tokenizer else {}), validation={}
    )
    m = Manifest.load(out)
    assert m.dtype == ("uint32" if vocab == "qwen" else "uint16")
    ds = StreamingMixture(out, cache_dir=tmp_path / "c")
    assert sum(1 for _ in ds) == ds.total_samples
    files = blk_files(tmp_path / "c")
    assert len(files) == sum(len(m.split(n).shards) for n in m.source_names)
    blocks = sum(m.split(n).blocks for n in m.source_names)
    token_bytes = blocks * 256 * np.dtype(m.dtype).itemsize
    cache_bytes = sum(f.stat().st_size for f in files)
    # the documents' starts: one 2-byte offset each, at most one per document
    starts = 2 * sum(m.split(n).documents for n in m.source_names)
    assert token_bytes < cache_bytes <= 1.1 * token_bytes + starts


# -- kept samples -------------------------------------------------------------------------
@pytest.mark.parametrize("chunk,batch", [(1, None), (3, 2), (64, 8), (128, None), (1000, 7)])
def test_a_kept_sample_never_changes(windows, tmp_path, monkeypatch, chunk, batch):
    """Whatever the chunking, samples (and views or tensors made from them) the caller keeps
    hold their values while later samples are served."""
    monkeypatch.setattr(mixture_mod, "CHUNK_SAMPLES", chunk)
    ds = StreamingMixture(windows, cache_dir=tmp_path / "c", batch_size=batch)
    kept, values = [], []
    for i, x in enumerate(itertools.islice(ds, 3000)):
        if i % 7 == 0:
            ids, pos = x["input_ids"], x["position_ids"]
            kept.append((ids, pos[5:], torch.as_tensor(ids)))
            values.append((ids.copy(), pos[5:].copy()))
    assert len(kept) == 429
    for (ids, pos, tensor), (ids0, pos0) in zip(kept, values, strict=True):
        assert (ids == ids0).all() and (pos == pos0).all() and (tensor.numpy() == ids0).all()


# -- the limit: parsing and errors ---------------------------------------------------------
def test_cache_limit_values(monkeypatch):
    assert parse_limit("20GiB") == 20 << 30
    assert parse_limit("500MB") == 500 * 10**6
    assert parse_limit(123_456) == 123_456
    monkeypatch.delenv("MIXER_CACHE_LIMIT", raising=False)
    assert parse_limit(None) is None
    monkeypatch.setenv("MIXER_CACHE_LIMIT", "2GiB")
    assert parse_limit(None) == 2 << 30
    monkeypatch.setenv("MIXER_CACHE_LIMIT", "lots")
    with pytest.raises(UsageError, match=r"\$MIXER_CACHE_LIMIT='lots': expected a number of bytes"):
        parse_limit(None)
    for bad in ("20 apples", 0, -5, 1.5, True):
        with pytest.raises(UsageError, match=r"^cache_limit=.*: expected a number of bytes or a"):
            parse_limit(bad)


def test_a_limit_below_one_shard_is_refused(windows, tmp_path):
    m = Manifest.load(windows)
    need, name = max((s.raw_bytes, n) for n in m.source_names for s in m.split(n).shards)
    with pytest.raises(
        UsageError, match=rf"^cache_limit=1,000 bytes is smaller than one shard of {name}/train"
    ):
        StreamingMixture(windows, cache_dir=tmp_path, cache_limit=1000)
    with pytest.raises(UsageError, match=rf"\({need:,} bytes to unpack it\): give it room"):
        StreamingMixture(windows, cache_dir=tmp_path, cache_limit=need - 1)
    StreamingMixture(windows, cache_dir=tmp_path, cache_limit=need)  # one shard: allowed


# -- the limit: eviction --------------------------------------------------------------------
def window_limit(out) -> int:
    """The README's guidance: 3 windows of shards per source."""
    m = Manifest.load(out)
    biggest = max(s.raw_bytes for n in m.source_names for s in m.split(n).shards)
    return biggest * 3 * 2 * len(m.source_names)


def count_fills(monkeypatch, log=None):
    """Wrap the one place a shard is fetched; count per (source, shard), in a file if given
    (DataLoader workers are forked after the wrapping, so they count too)."""
    fills = collections.Counter()
    fill = cache_mod.SplitStore._fill

    def counted(self, sh):
        if log is None:
            fills[(self.source, sh)] += 1
        else:
            with open(log, "a") as f:
                f.write(f"{self.source} {sh}\n")
        return fill(self, sh)

    monkeypatch.setattr(cache_mod.SplitStore, "_fill", counted)
    return fills


def test_a_limit_of_a_few_windows_fetches_each_shard_once_per_pass(windows, tmp_path, monkeypatch):
    fills = count_fills(monkeypatch)
    limit = window_limit(windows)
    reference = served(StreamingMixture(windows, cache_dir=tmp_path / "full"))
    fills.clear()
    peak = 0
    ds = StreamingMixture(windows, cache_dir=tmp_path / "c", cache_limit=limit)
    got = []
    for x in ds:
        got.append((x["index"], x["input_ids"].copy()))
        if x["index"] % 256 == 0:
            peak = max(peak, sum(f.stat().st_size for f in blk_files(tmp_path / "c")))
    assert [i for i, _ in got] == [i for i, _ in reference]
    assert all((a == b).all() for (_, a), (_, b) in zip(got, reference, strict=True))
    passes = {s.name: s.passes for s in ds.plan.sources}
    shards = {n: len(ds.manifest.split(n).shards) for n in passes}
    assert all(v >= 3 for v in passes.values()) and min(shards.values()) >= 12
    # each shard is fetched at most once per pass, and the limit made the cache evict
    assert max(c - passes[src] for (src, _), c in fills.items()) <= 0
    assert sum(fills.values()) > sum(shards.values())
    assert 0 < peak <= limit and len(blk_files(tmp_path / "c")) < sum(shards.values())


def test_workers_share_a_limited_cache(windows, tmp_path, monkeypatch):
    """Two DataLoader workers, one cache folder and a limit: the same batches as without a
    limit, each shard filled by one worker at most once per pass."""
    log = tmp_path / "fills.log"
    count_fills(monkeypatch, log)
    limit = window_limit(windows)
    batches = []
    for cache_dir, cache_limit in ((tmp_path / "full", None), (tmp_path / "c", limit)):
        ds = StreamingMixture(windows, cache_dir=cache_dir, batch_size=8, cache_limit=cache_limit)
        loader = DataLoader(ds, batch_size=8, num_workers=2)
        batches.append([(b["index"].tolist(), b["input_ids"].sum().item()) for b in loader])
        if cache_limit is None:
            log.unlink()
    assert batches[0] == batches[1] and len(batches[0]) == 24_000 // 8
    fills = collections.Counter(log.read_text().split("\n")[:-1])
    passes = {s.name: s.passes for s in ds.plan.sources}
    assert max(c - passes[key.split()[0]] for key, c in fills.items()) <= 0
    assert sum(fills.values()) > sum(len(ds.manifest.split(n).shards) for n in passes)


def test_a_shard_evicted_while_mapped_reads_on_then_is_refetched(windows, tmp_path, monkeypatch):
    fills = count_fills(monkeypatch)
    ds = StreamingMixture(windows, cache_dir=tmp_path / "c", source="web")
    store = ds._store("web")
    before = store.tokens(np.arange(10))
    other = np.arange(10) + store.bounds[1]  # blocks of shard 1
    path = store.shard_path(0)
    mapped = store._maps[0]
    path.unlink()  # what another process's eviction does
    assert (store.tokens(np.arange(10)) == before).all()  # the mapping still reads the file
    assert (mapped.tokens[:10] == before).all() and fills[("web", 0)] == 1
    # Mappings are re-checked after this process's fills and every second: one still being
    # read is kept (no second fetch), one left unread since the last check is let go.
    store.cache_limit.touch()
    store.tokens(other)
    assert store._maps[0] is mapped
    store.cache_limit.touch()
    store.tokens(other)
    assert 0 not in store._maps
    assert (store.tokens(np.arange(10)) == before).all() and fills[("web", 0)] == 2
    assert path.exists()


def test_crashed_fillers_and_the_previous_layout_leave_nothing_behind(windows, tmp_path):
    ds = StreamingMixture(windows, cache_dir=tmp_path / "c", source="web", cache_limit="1GiB")
    store = ds._store("web")
    store.cache.mkdir(parents=True)
    stale = store.cache / f".{store.shard_path(0).name}.abc123"
    stale.write_bytes(b"half a shard")
    old_layout = [store.cache / "blocks.npy", store.cache / "shard-000000-0123456789abcdef.ready"]
    for path in old_layout:
        path.write_bytes(b"")
    reserve = tmp_path / "c" / ".reserve"
    reserve.mkdir()
    (reserve / "999999999999-dead").write_text("")  # a reservation nobody holds
    store.tokens(np.arange(3))
    assert not stale.exists() and list(reserve.iterdir()) == []
    assert not any(path.exists() for path in old_layout)


# -- full disks ----------------------------------------------------------------------------
def test_a_full_disk_is_an_error_not_a_crash(windows, tmp_path):
    with mounted(tmp_path / "small", "-t", "tmpfs", "-o", "size=64k") as disk:
        ds = StreamingMixture(windows, cache_dir=disk)
        with pytest.raises(OutputError, match=r"cannot fill the shard cache \(No space left"):
            list(ds)
        assert not list(disk.rglob(".shard-*"))  # no partial file left


def test_simulated_full_disk_while_filling(windows, tmp_path, monkeypatch):
    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(cache_mod.os, "fsync", no_space)
    with pytest.raises(OutputError, match=r"c/[0-9a-f]{16}/[a-z]+/train: cannot fill the shard"):
        next(iter(StreamingMixture(windows, cache_dir=tmp_path / "c")))
    assert not blk_files(tmp_path / "c") and not list((tmp_path / "c").rglob(".shard-*"))
