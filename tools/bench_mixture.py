"""Serving benchmark: StreamingMixture beside a memmap ceiling and mosaicml-streaming.

Run by hand (never a timed test): ``python tools/bench_mixture.py [--blocks 30000] [--reps 3]``;
``--sizes MB`` instead compares the serving cache's bytes with the token bytes.
It builds three sources of 2048-token blocks with ``mixer build`` (generated text, ~60M tokens),
then measures, in one run and over the same blocks, the median of ``--reps`` repetitions of:

* memmap: the blocks in one ``[n, 2048]`` uint16 ``.npy``, read in random order (the ceiling),
  directly and through ``DataLoader(num_workers=2, batch_size=8)``;
* streaming: mosaicml-streaming's ``StreamingDataset`` with one ``Stream`` per source and the
  same proportions (the peer), directly;
* mixer: ``StreamingMixture``, directly and through the same DataLoader;
* resume: the time from ``load_state_dict`` at sample 10^6 to the first sample, for both;
* scale: opening a 10^9-sample plan over sources of 10^8 blocks (time, peak memory);
* proportions: the share of the 5% source two-thirds into an epoch, for both.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SEQ = 2048
WEIGHTS = {"books": 0.6, "web": 0.35, "replay": 0.05}


def make_corpus(root: Path, blocks: int) -> Path:
    """Three JSONL sources of generated words, sized to give about ``blocks`` blocks in all."""
    rng = random.Random(0)
    words = [f"w{i}" for i in range(5000)]
    for name, w in WEIGHTS.items():
        share = max(w, 0.2)  # the small source still gets enough blocks for a long plan
        path = root / name / "data.jsonl"
        path.parent.mkdir(parents=True)
        target = int(blocks * share / sum(max(x, 0.2) for x in WEIGHTS.values()) * SEQ)
        with open(path, "w") as f:
            n = 0
            while n < target:
                k = rng.randint(50, 3000)
                f.write(json.dumps({"text": " ".join(rng.choices(words, k=k))}) + "\n")
                n += k  # about one token per word with a word-level vocabulary
    return root


def make_tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {f"w{i}": i + 1 for i in range(5000)} | {"<|endoftext|>": 0, "[UNK]": 5001}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(["<|endoftext|>"])
    tok.save(str(path))


def build(root: Path, blocks: int) -> Path:
    from mixer.builder import build as run
    from mixer.recipe import parse_recipe

    make_corpus(root, blocks)
    make_tokenizer(root / "tok.json")
    recipe = parse_recipe(
        {
            "seq_len": SEQ,
            "tokenizer": {"path": "tok.json"},
            "sources": {n: {"files": f"{n}/*.jsonl", "weight": w} for n, w in WEIGHTS.items()},
            "mixture": {"samples": 2_000_000},
        },
        base_dir=root,
        output=str(root / "out"),
    )
    t = time.perf_counter()
    run(recipe, show_progress=False)
    print(f"built {root / 'out'} in {time.perf_counter() - t:.0f}s")
    return root / "out"


def dense_copy(out: Path, cache: Path) -> Path:
    """All train blocks in one [n, SEQ] uint16 array: the memmap ceiling's file."""
    from mixer.artifacts.manifest import Manifest
    from mixer.serve.cache import SplitStore

    m = Manifest.load(out)
    parts = []
    for name in m.source_names:
        store = SplitStore(
            root=str(out),
            cache=cache / m.fingerprint[:16],
            source=name,
            split="train",
            record=m.split(name),
            seq_len=SEQ,
            dtype=m.dtype,
        )
        parts.append(store.tokens(np.arange(len(store))))
    path = cache / "all.npy"
    np.save(path, np.concatenate(parts))
    return path


class MemmapDataset:
    """The ceiling: random rows of a memmap as int64 ``input_ids`` (split between DataLoader
    workers); with ``same_fields``, samples shaped like StreamingMixture's (position ids 0..L-1,
    a source name, an index), so that a DataLoader moves the same bytes for both."""

    def __init__(self, path: Path, n: int, same_fields: bool = False):
        self.path, self.n, self.same_fields = path, n, same_fields

    def __iter__(self):
        import torch

        info = torch.utils.data.get_worker_info()
        w, nw = (info.id, info.num_workers) if info else (0, 1)
        mm = np.load(self.path, mmap_mode="r")
        order = np.random.default_rng(0).integers(0, mm.shape[0], self.n)
        positions = np.arange(mm.shape[1], dtype=np.int64)
        for i in order[w::nw]:
            if self.same_fields:
                yield {
                    "input_ids": mm[i].astype(np.int64),
                    "position_ids": positions.copy(),
                    "source": "books",
                    "index": int(i),
                }
            else:
                yield {"input_ids": mm[i].astype(np.int64)}


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (DataLoader workers)."""
    me, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def rate(iterable, n: int) -> tuple[float, float]:
    """(samples per second, CPU microseconds per sample) over the first n samples (or batches
    x their size). CPU time counts the DataLoader's workers too (they are joined before it is
    read), and is less sensitive than wall time to other load on the machine."""
    c, t = cpu_seconds(), time.perf_counter()
    got = 0
    it = iter(iterable)
    for x in it:
        got += len(x["input_ids"]) if getattr(x["input_ids"], "ndim", 1) == 2 else 1
        if got >= n:
            break
    wall = time.perf_counter() - t
    del it  # shuts the workers down
    return got / wall, (cpu_seconds() - c) / got * 1e6


def median_of(reps: int, fn) -> float:
    return statistics.median(fn() for _ in range(reps))


def bench(out: Path, cache: Path, n: int, reps: int) -> dict:
    from streaming import Stream, StreamingDataset
    from torch.utils.data import DataLoader, IterableDataset

    from mixer import StreamingMixture
    from mixer.artifacts.manifest import Manifest

    dense = dense_copy(out, cache)  # also fills the mixture's shard cache

    class MM(MemmapDataset, IterableDataset):
        pass

    # Interleaved repetitions, so that load from elsewhere on the machine hits all alike.
    runs: dict[str, list[float]] = {}
    loader = lambda ds: DataLoader(ds, batch_size=8, num_workers=2)  # noqa: E731
    cases = {
        "memmap": lambda: rate(MM(dense, n), n),
        "memmap_same_fields": lambda: rate(MM(dense, n, same_fields=True), n),
        "mixer": lambda: rate(StreamingMixture(out, cache_dir=cache), n),
        "memmap_loader": lambda: rate(loader(MM(dense, n)), n),
        "memmap_same_fields_loader": lambda: rate(loader(MM(dense, n, same_fields=True)), n),
        "mixer_loader": lambda: rate(
            loader(StreamingMixture(out, cache_dir=cache, batch_size=8)), n
        ),
        "mixer_loader_no_position_ids": lambda: rate(
            loader(StreamingMixture(out, cache_dir=cache, batch_size=8, position_ids=False)), n
        ),
    }
    cpu: dict[str, list[float]] = {}
    for _ in range(reps):
        for name, case in cases.items():
            r, c = case()
            runs.setdefault(name, []).append(r)
            cpu.setdefault(name, []).append(c)
    res = {name: statistics.median(v) for name, v in runs.items()}
    res |= {f"{name}_cpu_us": statistics.median(v) for name, v in cpu.items()}

    def peer():
        streams = [
            Stream(local=str(out / "sources" / s / "train"), proportion=w)
            for s, w in WEIGHTS.items()
        ]
        return StreamingDataset(
            streams=streams, shuffle=True, batch_size=8, shuffle_seed=1, epoch_size=2_000_000
        )

    res["streaming"] = median_of(reps, lambda: rate(peer(), max(n // 10, 500))[0])

    def resume_mixer():
        ds = StreamingMixture(out, cache_dir=cache, batch_size=8)
        t = time.perf_counter()
        ds.load_state_dict({"samples_seen": 1_000_000})
        next(iter(ds))
        return time.perf_counter() - t

    def resume_peer():
        ds = peer()
        t = time.perf_counter()
        ds.load_state_dict(
            {
                "epoch": 0,
                "sample_in_epoch": 1_000_000,
                "num_canonical_nodes": 1,
                "shuffle_seed": 1,
                "initial_physical_nodes": 1,
            }
        )
        next(iter(ds))
        return time.perf_counter() - t

    # disk each reads from: the dense copy, our cache, the peer's local folders (it unpacks
    # each zstd shard beside it)
    res["disk_memmap_bytes"] = dense.stat().st_size
    res["disk_mixer_cache_bytes"] = sum(f.stat().st_size for f in cache.rglob("shard-*.blk"))
    res["disk_streaming_bytes"] = sum(
        f.stat().st_size for s in WEIGHTS for f in (out / "sources" / s / "train").iterdir()
    )
    res["mixer_train_token_bytes"] = sum(
        s.samples * SEQ * 2 for n in WEIGHTS for s in Manifest.load(out).split(n).shards
    )
    res["resume_mixer_s"] = median_of(reps, resume_mixer)
    res["resume_streaming_s"] = median_of(max(1, reps // 2), resume_peer)
    # share of the 5% source two-thirds into the first 30,000 samples
    ds = StreamingMixture(out, cache_dir=cache)
    res["mixer_replay_share"] = ds.counts_at(20_000)["replay"]["samples"] / 20_000
    it = iter(peer())
    first = [next(it) for _ in range(20_000)]
    res["streaming_replay_share"] = _peer_share(out, first)
    return res


def _peer_share(out: Path, samples: list) -> float:
    """Which source each of the peer's samples came from, by matching block content."""
    from mixer.artifacts.manifest import Manifest
    from mixer.artifacts.shards import read_shard_file

    m = Manifest.load(out)
    replay = set()
    for shard in m.split("replay").shards:
        r = read_shard_file(m.split_dir("replay", "train") / shard.file, seq_len=SEQ, dtype=m.dtype)
        replay |= {r.block(i).input_ids.tobytes() for i in range(len(r))}
    return sum(np.asarray(x["input_ids"]).tobytes() in replay for x in samples) / len(samples)


def cache_sizes(root: Path, mb: int) -> dict:
    """Serving-cache bytes against token bytes, every split filled: the demo recipe (its
    8,192-id tokenizer: uint16 ids, 256-token blocks) and tools/bench_build.py's corpus of
    ``mb`` MB with Qwen's vocabulary (151,646 ids: uint32, 2048-token blocks)."""
    from mixer.artifacts.manifest import Manifest
    from mixer.builder import build as run
    from mixer.recipe import load_recipe
    from mixer.serve.cache import SplitStore
    from tools.bench_build import make_corpus
    from tools.bench_build import write_recipe as qwen_recipe

    make_corpus(root / "qwen", mb)
    recipes = {
        "demo": load_recipe(REPO / "recipes" / "demo.yaml", output=str(root / "demo")),
        "qwen": load_recipe(qwen_recipe(root / "qwen"), output=str(root / "qwen" / "out")),
    }
    res = {}
    for name, recipe in recipes.items():
        run(recipe, show_progress=False)
        m = Manifest.load(recipe.output)
        blocks = 0
        for source in m.source_names:
            for split in ("train", "val"):
                rec = m.split(source, split)
                args = dict(source=source, split=split, record=rec, seq_len=m.seq_len)
                store = SplitStore(root=recipe.output, cache=root / "cache", dtype=m.dtype, **args)
                store.tokens(np.arange(len(store)))  # fills every shard
                blocks += len(store)
        item = np.dtype(m.dtype).itemsize
        token_bytes = blocks * m.seq_len * item
        cache = sum(f.stat().st_size for f in (root / "cache").rglob("shard-*.blk"))
        old = blocks * 2 * m.seq_len * max(item, 2)  # [blocks, 2, seq_len] of the wider type
        res[f"{name}_tokens"] = token_bytes // item
        res[f"{name}_dtype"] = m.dtype
        res[f"{name}_build_shard_bytes"] = sum(
            s.bytes
            for n in m.source_names
            for sp in ("train", "val")
            for s in m.split(n, sp).shards
        )
        res[f"{name}_token_bytes"] = token_bytes
        res[f"{name}_cache_bytes"] = cache
        res[f"{name}_cache_ratio"] = round(cache / token_bytes, 4)
        res[f"{name}_previous_layout_bytes"] = old
        res[f"{name}_previous_layout_ratio"] = round(old / token_bytes, 4)
        shutil.rmtree(root / "cache")
    return res


def plan_scale() -> dict:
    """Open a 10^9-sample plan over 10^8-block sources in a fresh process: time and memory."""
    code = f"""
import time, sys, numpy as np
sys.path.insert(0, {str(REPO)!r})
t = time.perf_counter()
from mixer.plan import make_plan
p = make_plan(manifest="x", split="train", seed=1, seq_len=2048, names=["a", "b", "c"],
              weights=[0.6, 0.35, 0.05], blocks=[10**8, 10**8, 10**8],
              shard_sizes=[tuple([32768] * 3051 + [10**8 - 32768 * 3051])] * 3,
              padding=[0, 0, 0], total=10**9)
s, k = p.order([987_654_321], 8)
ids = [p.block_ids(int(x), [int(y)]) for x, y in zip(s, k)]
c = p.counts_at(999_999_999)
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]
print(time.perf_counter() - t, int(hwm) / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds, mib = map(float, out.stdout.split())
    return {"plan_1e9_open_s": seconds, "plan_1e9_process_peak_rss_mib": mib}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=30_000)
    ap.add_argument("--samples", type=int, default=20_000, help="samples timed per measurement")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--keep", help="reuse/keep the build in this folder")
    ap.add_argument(
        "--sizes",
        type=int,
        metavar="MB",
        help="instead: cache size against token bytes (the demo, and MB of text with Qwen's ids)",
    )
    args = ap.parse_args()
    if args.sizes:
        with tempfile.TemporaryDirectory(prefix="mixer-sizes-") as tmp:
            print(json.dumps(cache_sizes(Path(tmp), args.sizes), indent=2))
        return
    root = Path(args.keep or tempfile.mkdtemp(prefix="mixer-bench-"))
    out = root / "out" if (root / "out" / "plan.json").exists() else build(root, args.blocks)
    res = bench(out, root / "cache", args.samples, args.reps) | plan_scale()
    res["ratio_direct"] = res["mixer"] / res["memmap"]
    res["ratio_direct_same_fields"] = res["mixer"] / res["memmap_same_fields"]
    res["ratio_loader"] = res["mixer_loader"] / res["memmap_loader"]
    res["ratio_loader_same_fields"] = res["mixer_loader"] / res["memmap_same_fields_loader"]
    res["ratio_loader_no_position_ids"] = res["mixer_loader_no_position_ids"] / res["memmap_loader"]
    res["ratio_vs_streaming"] = res["mixer"] / res["streaming"]
    for name in ("memmap", "memmap_same_fields", "memmap_loader", "memmap_same_fields_loader"):
        ours = "mixer_loader" if name.endswith("loader") else "mixer"
        res[f"cpu_ratio_{name}"] = res[f"{name}_cpu_us"] / res[f"{ours}_cpu_us"]
    print(json.dumps({k: round(v, 4) for k, v in res.items()}, indent=2))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {rss:.0f} MiB, cpus: {os.cpu_count()}")


if __name__ == "__main__":
    main()
