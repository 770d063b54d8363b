"""Does replay protect a model from forgetting? A small, complete continued pre-training run.

A tiny GPT-2 (0.54M parameters, random init, CPU, fp32) is pretrained on English only, then
trained further on Chinese with 0, 1, 2, 5, 10 and 20% English replay, with the replay share
set while training by a ReplayController (budgets 0.1 and 0.2 nats), and in a variant on a
tiny Chinese corpus repeated 11 times. Every run trains through mixer's serving (a plain loop over
``DataLoader(StreamingMixture(out, batch_size=B), batch_size=B)``) on a build of the recipes in
recipes/forgetting/, and measures the loss on each source's held-out blocks
(``StreamingMixture(out, split="val", source=NAME)``) as it goes. Run by hand (about 25
minutes on two idle cores; ``--quick`` is a smoke run of under a minute):

    python tools/forgetting_demo.py --plot docs/forgetting.png --json docs/forgetting.json

It prints the table README shows, and writes the curves and the numbers (JSON) and the plot.
Jobs (one per seed and run) run side by side in ``--workers`` processes of one thread each:
the numbers do not depend on the number of workers.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing
import os
import platform
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # mixer, from a fresh clone

from forgetting import builds, report  # noqa: E402
from forgetting.train import Job, Model  # noqa: E402

# (curve, run whose build holds it, source): where each held-out set is read
EVALS = {"en": ("pretrain", "en"), "zh": ("replay-5", "zh"), "poems": ("repeat-5", "poems")}


def options(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    p.add_argument("--steps", type=int, default=250, help="continued pre-training steps")
    p.add_argument("--pretrain-steps", type=int, default=500, help="English pretraining steps")
    p.add_argument("--batch-size", type=int, default=16, help="blocks of 128 tokens per step")
    p.add_argument("--lr", type=float, default=1e-3, help="continued pre-training peak lr")
    p.add_argument("--pretrain-lr", type=float, default=2e-3, help="pretraining peak lr")
    p.add_argument("--eval-every", type=int, default=10, help="steps between held-out losses")
    p.add_argument("--eval-blocks", type=int, default=None, help="cap per held-out set")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--out", type=Path, default=Path("out/forgetting"), help="work folder")
    p.add_argument("--json", type=Path, default=None, help="default: OUT/forgetting.json")
    p.add_argument("--plot", type=Path, default=None, help="default: OUT/forgetting.png")
    p.add_argument("--quick", action="store_true", help="a smoke run: 2 seeds, a few steps")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="no training: the table, verdicts and plot again from --json's results",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.steps, args.pretrain_steps = 2, 8, 12
        args.eval_every, args.eval_blocks = 4, 16
    args.json = args.json or args.out / "forgetting.json"
    args.plot = args.plot or args.out / "forgetting.png"
    return args


def make_builds(args) -> dict[tuple[str, int], str]:
    """Every (run, seed) build, pretraining included: {(run name, seed): output folder}."""
    folder, built, outs = args.out / "builds", {}, {}
    for seed in range(args.seeds):
        samples = args.pretrain_steps * args.batch_size
        data = builds.derive("pretrain.yaml", seed=seed, samples=samples, replay=None, built=built)
        outs["pretrain", seed] = builds.build(data, folder, f"pretrain-s{seed}", built)
        for run in builds.RUNS:
            samples = args.steps * args.batch_size
            data = builds.derive(
                run.recipe, seed=seed, samples=samples, replay=run.replay, built=built
            )
            outs[run.name, seed] = builds.build(data, folder, f"{run.name}-s{seed}", built)
    return outs


def jobs_for(args, outs, seed: int) -> tuple[Job, list[Job]]:
    """The pretraining job of a seed, and the continued jobs that start from its weights."""
    common = dict(
        evals={k: (outs[run, 0], src) for k, (run, src) in EVALS.items()},
        model=Model(),
        seed=seed,
        batch_size=args.batch_size,
        cache_dir=str(args.out / "cache"),
        eval_blocks=args.eval_blocks,
    )
    ckpt = args.out / "checkpoints" / f"pretrain-s{seed}.pt"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    pre = Job(
        name=f"pretrain/seed-{seed}",
        build=outs["pretrain", seed],
        lr=args.pretrain_lr,
        warmup=20,
        eval_every=0,  # measured once, at the end: the "before" of every continued run
        save=str(ckpt),
        **common,
    )
    cont = [
        Job(
            name=f"{run.name}/seed-{seed}",
            build=outs[run.name, seed],
            lr=args.lr,
            warmup=10,
            eval_every=args.eval_every,
            init=str(ckpt),
            controller=run.controller,
            **common,
        )
        for run in builds.RUNS
    ]
    return pre, cont


def train_all(args, outs) -> dict[str, dict]:
    """Run every job in a pool; a seed's continued jobs start when its pretraining ends."""
    from forgetting.train import run

    results, waiting = {}, {}
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that may hold threads
    with cf.ProcessPoolExecutor(max_workers=args.workers, mp_context=ctx) as pool:
        pending = set()
        for seed in range(args.seeds):
            pre, cont = jobs_for(args, outs, seed)
            waiting[pre.name] = cont
            pending.add(pool.submit(run, pre))
        while pending:
            done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                r = fut.result()
                results[r["name"]] = r
                print(
                    f"  {r['name']:<18} English {r['en'][0]:.2f} -> {r['en'][-1]:.2f},"
                    f" Chinese {r['zh'][0]:.2f} -> {r['zh'][-1]:.2f}"
                    f"  ({r['seconds']:.0f} s)",
                    flush=True,
                )
                pending |= {pool.submit(run, job) for job in waiting.pop(r["name"], [])}
    return results


def main(argv: list[str] | None = None) -> None:
    import json

    from mixer.errors import MixerError

    args = options(argv)
    if args.report_only:
        doc = json.loads(args.json.read_text())
        doc["controller"] = report.verdicts(doc)
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
        report.plot(doc, args.plot)
        print(report.table(doc))
        return
    started = time.perf_counter()
    print(f"building {args.seeds * (1 + len(builds.RUNS))} mixer outputs in {args.out}/builds")
    try:
        outs = make_builds(args)
    except MixerError as e:  # a recipe mistake, e.g. --steps beyond continue.yaml's max_epochs
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    built_s = time.perf_counter() - started
    print(f"training {args.seeds * (1 + len(builds.RUNS))} jobs in {args.workers} processes")
    results = train_all(args, outs)
    import torch
    import transformers

    settings = {
        "command": shlex.join(["python", "tools/forgetting_demo.py", *sys.argv[1:]]),
        "seeds": list(range(args.seeds)),
        "pretrain_steps": args.pretrain_steps,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "seq_len": Model().seq_len,
        "lr": args.lr,
        "pretrain_lr": args.pretrain_lr,
        "eval_every": args.eval_every,
        "eval_blocks": args.eval_blocks,
        "model": dict(Model().__dict__),
        "parameters": results["pretrain/seed-0"]["parameters"],
        "workers": args.workers,
        "build_seconds": round(built_s, 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "cpu_seconds": round(sum(r["cpu_seconds"] for r in results.values()), 1),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
    }
    plans = {run.name: builds.plan_summary(outs[run.name, 0]) for run in builds.RUNS}
    doc = report.summarize(settings, builds.RUNS, plans, results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=1) + "\n")
    report.plot(doc, args.plot)
    print()
    print(report.table(doc))
    print(
        f"\n{settings['wall_seconds']:.0f} s in all ({built_s:.0f} s building);"
        f" wrote {args.json} and {args.plot}"
    )


if __name__ == "__main__":
    main()
