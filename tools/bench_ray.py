"""Ray cluster scaling: the same build on a real cluster of 1 and of 2 nodes (1 CPU each),
and with the local engine, interleaved.

Run by hand: ``python tools/bench_ray.py [--mb 40] [--reps 3] [--tokenizer qwen]``. The
corpus is tools/bench_build.py's; the cluster is tools/ray_cluster.py's (each node a ``ray
start`` process on this machine, token authentication on). Between runs the second node is
stopped or started again, so both sizes see the same machine load. Prints medians (and every
run) as JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tools.bench_build import build as local_build  # noqa: E402
from tools.bench_build import make_corpus, write_recipe  # noqa: E402
from tools.ray_cluster import build as cluster_build  # noqa: E402
from tools.ray_cluster import local_cluster  # noqa: E402


def ray_build(cluster, recipe: Path, out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    proc = cluster_build(cluster, recipe, out, 2, "--no-progress")
    log = proc.communicate()[0]
    if proc.returncode:
        raise RuntimeError(log)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=40)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--tokenizer", default="qwen")
    ap.add_argument("--keep", help="reuse/keep the corpus in this folder")
    args = ap.parse_args()
    root = Path(args.keep or tempfile.mkdtemp(prefix="mixer-bench-ray-"))
    if not (root / "zh").exists():
        make_corpus(root, args.mb)
    recipe = write_recipe(root, kind=args.tokenizer)
    runs: dict[str, list[float]] = {}
    with local_cluster(root / "ray-logs", nodes=2, cpus=1) as cluster:
        for _ in range(args.reps):
            runs.setdefault("ray_2_nodes", []).append(ray_build(cluster, recipe, root / "out"))
            cluster.kill(cluster.nodes[1])
            cluster.nodes[1].wait()
            cluster.nodes.pop()
            cluster.wait_for(1)
            while cluster.alive_nodes() > 1:  # the head notices the node's death
                time.sleep(1)
            runs.setdefault("ray_1_node", []).append(ray_build(cluster, recipe, root / "out"))
            cluster.add_node(1)
            for w in (1, 2):
                got = local_build(recipe, root / "out-local", w)["s"]
                runs.setdefault(f"local_w{w}", []).append(got)
    res = {"text_mb": args.mb, "tokenizer": args.tokenizer}
    for name, rs in runs.items():
        res[name] = {"s": round(statistics.median(rs), 2), "runs_s": [round(r, 2) for r in rs]}
    res["scaling_1_to_2_nodes"] = round(res["ray_1_node"]["s"] / res["ray_2_nodes"]["s"], 2)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
