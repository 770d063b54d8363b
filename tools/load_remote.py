"""Load test: many processes serving one s3:// build at once, under a cache limit.

Run by hand: ``python tools/load_remote.py [--procs 16] [--workers 2] [--seconds 60]``. Needs
the test extras (moto, boto3).

It builds the demo's web source locally (blocks of 16 tokens in shards of 8 KiB: many shards;
``shuffle: shards`` with a window of 2, as for a remote build),
serves it from a local moto S3 server, and starts ``--procs`` processes at once, each a
data-parallel rank of ``--procs`` serving the s3:// build through a
``DataLoader(num_workers=--workers)`` with a ``cache_limit`` of a third of the build's unpacked
size (so shards are evicted and fetched again all the time), all sharing one cache folder, as
the ranks of one torchrun job on a machine do. Each rank serves for ``--seconds`` from its
first batch (epochs over its slice again and again) and compares every batch with the same
batch served from the local build: any failure (an exception, a differing token) is counted.
It prints per rank the batches, samples and failures, and the totals. Memory: each rank
~430 MB and each worker ~290 MB resident (torch and streaming imports): 16 x 2 needs ~16 GB.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BATCH = 8


def rank_main(rank: int, world: int, args, url: str, local: str, cache: str, limit: int, q):
    """One rank: serve its slice from S3 for ``seconds``; compare each batch with the local."""
    import numpy as np
    from torch.utils.data import DataLoader

    from mixer import StreamingMixture

    batches = samples = failures = 0
    first_error = ""
    end = None  # the clock starts at the first batch: imports and startup are not the load
    while end is None or time.monotonic() < end:
        try:
            remote = StreamingMixture(
                url,
                batch_size=BATCH,
                rank=rank,
                world_size=world,
                cache_dir=cache,
                cache_limit=limit,
                position_ids=False,
            )
            mine = StreamingMixture(
                local,
                batch_size=BATCH,
                rank=rank,
                world_size=world,
                cache_dir=f"{cache}-local-{rank}",
                position_ids=False,
            )
            loader = DataLoader(remote, batch_size=BATCH, num_workers=args.workers)
            want = DataLoader(mine, batch_size=BATCH)
            for got, ref in zip(loader, want, strict=True):
                same = np.array_equal(got["input_ids"].numpy(), ref["input_ids"].numpy())
                same = same and got["index"].tolist() == ref["index"].tolist()
                failures += not same
                batches += 1
                samples += len(got["index"])
                end = end or time.monotonic() + args.seconds
                if time.monotonic() >= end:
                    break
        except Exception as e:  # noqa: BLE001 (counted and reported: this is a load test)
            failures += 1
            first_error = first_error or f"{type(e).__name__}: {str(e)[:200]}"
            end = end or time.monotonic() + args.seconds
    q.put((rank, batches, samples, failures, first_error))


def run(procs: int, workers: int, seconds: float, work: Path) -> dict:
    """Build, upload, serve from ``procs`` ranks; the totals (also used by the test)."""
    import boto3
    from moto.server import ThreadedMotoServer

    from tests.helpers import build_demo

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    out = build_demo(
        work, {"web": 1}, seq_len=16, shard_size="8KiB", mixture={"shuffle": "shards", "window": 2}
    )
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(
        S3_ENDPOINT_URL=f"http://{host}:{port}",
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_DEFAULT_REGION="us-east-1",
    )
    client = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT_URL"])
    client.create_bucket(Bucket="data")
    for path in sorted(out.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), "data", f"load/{path.relative_to(out)}")
    from mixer.artifacts.manifest import Manifest

    rec = Manifest.load(out).split("web")
    unpacked = sum(s.raw_bytes + s.bytes for s in rec.shards)
    biggest = max(s.raw_bytes + s.bytes for s in rec.shards)
    limit = max(unpacked // 3, 8 * biggest)
    args = argparse.Namespace(seconds=seconds, workers=workers)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    started = time.monotonic()
    ranks = [
        ctx.Process(
            target=rank_main,
            args=(r, procs, args, "s3://data/load", str(out), str(work / "cache"), limit, q),
        )
        for r in range(procs)
    ]
    for p in ranks:
        p.start()
    results, deadline = [], time.monotonic() + seconds + 1800  # startup: 16 x torch imports
    while len(results) < procs and time.monotonic() < deadline:
        try:
            results.append(q.get(timeout=10))
        except Exception:  # noqa: BLE001 (queue.Empty: look for ranks that died)
            if not any(p.is_alive() for p in ranks):
                break
    for p in ranks:
        p.join(timeout=60)
        if p.is_alive():
            p.kill()
    lost = sorted(set(range(procs)) - {r[0] for r in results})
    results += [(r, 0, 0, 1, f"no report (exit code {ranks[r].exitcode})") for r in lost]
    results.sort()
    server.stop()
    return {
        "ranks": results,
        "wall": time.monotonic() - started,
        "build_bytes": unpacked,
        "cache_limit": limit,
        "shards": len(rec.shards),
        "batches": sum(r[1] for r in results),
        "samples": sum(r[2] for r in results),
        "failures": sum(r[3] for r in results),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=60)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mixer-load-"))
    try:
        res = run(a.procs, a.workers, a.seconds, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for rank, batches, samples, failures, error in res["ranks"]:
        print(
            f"rank {rank:2d}: {batches:6,} batches {samples:8,} samples {failures} failures {error}"
        )
    print(
        f"{a.procs} processes x {a.workers} workers, {a.seconds:g} s each ({res['wall']:.0f} s"
        f" wall): {res['batches']:,} batches, {res['samples']:,} samples, {res['failures']}"
        f" failures; build {res['build_bytes']:,} bytes in {res['shards']} shards, cache_limit"
        f" {res['cache_limit']:,}"
    )


if __name__ == "__main__":
    main()
