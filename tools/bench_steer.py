"""Steering benchmark: `mixer amend` and `mixer skip` on a 10^8-sample plan, and random access
after them.

Run by hand (never a timed test): ``python tools/bench_steer.py [--samples 100000000]``. It
builds the demo recipe (recipes/demo.yaml: three real sources, 256-token blocks) with a plan of
``--samples`` samples, then measures the median of ``--reps`` repetitions of:

* amend: ``mixer.amend`` in-process (load, re-plan, write), and the ``mixer amend`` command
  (a new process: Python start and imports included);
* skip: ``mixer.skip`` in-process;
* lineage: a resume state's check on the steered plan (``load_state_dict`` at sample N/2);
* locate: the block of global sample i after the journal, for random i (microseconds each).
"""

from __future__ import annotations

import argparse
import json
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


def build(root: Path, samples: int) -> Path:
    import yaml

    from mixer.builder import build as run
    from mixer.recipe import load_recipe

    recipe = yaml.safe_load((REPO / "recipes" / "demo.yaml").read_text())
    recipe["mixture"] = {"samples": samples, "max_epochs": samples}
    recipe["sources"]["web"].pop("take", None)
    path = REPO / "recipes" / f".bench-steer-{samples}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    try:
        out = root / "out"
        run(load_recipe(path, output=str(out)), workers=1, show_progress=False)
    finally:
        path.unlink()
    return out


def timed(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=100_000_000)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    import mixer
    from mixer.artifacts.manifest import Manifest
    from mixer.artifacts.planfile import load_plan

    root = Path(tempfile.mkdtemp(prefix="mixer-bench-steer-"))
    try:
        out = build(root, args.samples)
        n = args.samples
        rng = np.random.default_rng(0)
        res = {"samples": n}
        ats = iter(sorted(rng.integers(n // 4, n // 2, 100).tolist(), reverse=True))
        res["amend_s"] = timed(
            lambda: mixer.amend(out, at_sample=next(ats), weights={"web": 0.1}), args.reps
        )
        cmd = [sys.executable, "-m", "mixer.cli", "amend", str(out), "--at-sample", str(n // 5)]
        res["amend_command_s"] = timed(
            lambda: subprocess.run([*cmd, "--weights", "web=0.2"], check=True, capture_output=True),
            args.reps,
        )
        starts = iter(sorted(rng.integers(n // 2, n - 1000, 100).tolist(), reverse=True))

        def skip():
            a = next(starts)
            mixer.skip(out, start=a, end=a + 512)

        res["skip_s"] = timed(skip, args.reps)
        plan = load_plan(Manifest.load(out))
        res["journal_entries"] = len(plan.journal)
        state = {"samples_seen": n // 2, "plan": plan.lineage(n // 2)}
        ds = mixer.StreamingMixture(out, batch_size=8, cache_dir=root / "cache")
        res["resume_check_s"] = timed(lambda: ds.load_state_dict(state), args.reps)
        idx = rng.integers(0, n, 1000)
        t = time.perf_counter()
        for i in idx.tolist():
            s, k = plan.locate(i)
            plan.block_ids(s, np.array([k]))
        res["locate_us"] = (time.perf_counter() - t) / idx.size * 1e6
        print(json.dumps(res, indent=2))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
