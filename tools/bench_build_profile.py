"""Where a build's time goes: timers around each phase of one in-process `mixer build`.

Used by tools/bench_build.py. The build runs with ``--workers 1`` in this process, so every
phase runs here, one after the other, and the timers add up to the build's time: read/parse
(inside the readers), encode, hash (validation hashes), batch + spill (the worker's own work
around encoding), completion records, merge read, route + pack, shard assembly, shard
compress + write + sha256, tokenizer load, encoder check, manifest + plan, publish. Wrapping a
function in a timer costs well under a microsecond a call: the wrapped calls are per batch,
per chunk or per shard, except the reader's, which are per document (its wrapper's own cost
is counted in read/parse, so that figure is an upper bound).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class Timers:
    """Exclusive time per phase: a timed call's time goes to its phase minus the time of the
    timed calls inside it (those go to theirs), so the phases add up to the whole. Inside an
    ``absorb`` phase, inner timers are off (the encoder check's encoding is the check's)."""

    def __init__(self):
        self.seconds: Counter = Counter()
        self._stack: list[float] = []  # per open timer: time of the timed calls inside it
        self._absorbing = 0

    def _run(self, phase: str, step, absorb: bool):
        if self._absorbing:
            return step()
        self._stack.append(0.0)
        self._absorbing += absorb
        t = time.perf_counter()
        try:
            return step()
        finally:
            elapsed = time.perf_counter() - t
            self._absorbing -= absorb
            self.seconds[phase] += elapsed - self._stack.pop()
            if self._stack:
                self._stack[-1] += elapsed

    def wrap(self, owner, name: str, phase: str, *, generator=False, absorb=False) -> None:
        """Time ``owner.name`` (a function, method or generator function) under ``phase``."""
        real = getattr(owner, name)
        run = self._run
        if generator:

            @functools.wraps(real)
            def timed(*a, **k):
                it = real(*a, **k)
                done = object()
                while (item := run(phase, lambda: next(it, done), absorb)) is not done:
                    yield item

        else:

            @functools.wraps(real)
            def timed(*a, **k):
                return run(phase, lambda: real(*a, **k), absorb)

        setattr(owner, name, timed)


class _Inline:
    """The completion records' background thread, run inline: phases stay one after the other."""

    def __init__(self, *a, **k):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, *a, **k):
        from concurrent.futures import Future

        f = Future()
        f.set_result(fn(*a, **k))
        return f


def _instrument() -> Timers:
    import mixer.artifacts.shards as shards
    import mixer.builder.encoders as encoders
    import mixer.builder.gigatoken_fast as giga
    import mixer.builder.merge as merge
    import mixer.builder.orchestrate as build
    import mixer.builder.outdir as outdir
    import mixer.builder.reuse as reuse
    import mixer.builder.run_units as tokenize
    import mixer.builder.task as task
    import mixer.builder.tiktoken_fast as fast
    import mixer.builder.tokenizer as tokenizer
    import mixer.builder.worker as worker

    t = Timers()
    t.wrap(build, "run_build", "other (units, bookkeeping, ...)")
    t.wrap(worker, "read_unit", "read/parse (readers)", generator=True)
    t.wrap(fast.TiktokenEncoder, "encode", "encode")
    t.wrap(giga.GigatokenEncoder, "encode", "encode")
    t.wrap(tokenizer.Encoder, "encode", "encode")
    t.wrap(worker, "text_hashes", "hash (validation)")
    t.wrap(worker._UnitWriter, "flush", "worker: batch + spill")
    t.wrap(task, "run_unit", "worker: per document")
    t.wrap(tokenize, "save_record", "completion records (fsync)")
    t.wrap(merge, "_chunks", "merge: read spill", generator=True)
    t.wrap(merge.SourceMerge, "_pack", "merge: route + pack")
    t.wrap(shards.ShardWriter, "write", "shards: assemble")
    t.wrap(shards.ShardWriter, "_flush", "shards: compress (zstd) + write + sha256")
    tokenize.ThreadPoolExecutor = _Inline
    t.wrap(tokenizer, "read_tiktoken_ranks", "tokenizer: read ranks")
    t.wrap(fast, "read_tiktoken_ranks", "worker setup: read ranks")
    t.wrap(tokenizer, "load_tokenizer", "tokenizer: tokenizer.json")
    t.wrap(encoders, "first", "encoder check", absorb=True)
    t.wrap(encoders, "choose", "encoder check", absorb=True)
    t.wrap(encoders, "sample_texts", "encoder check", absorb=True)
    t.wrap(build, "write_manifest", "manifest + plan")
    t.wrap(build, "save_plan", "manifest + plan")
    t.wrap(outdir.BuildDir, "publish", "publish (fsync, rename)")
    t.wrap(reuse, "sha256_file", "hash inputs (sha256)")
    return t


def profile(recipe: Path, out: Path) -> dict:
    """Seconds and shares per phase of one in-process build with one worker."""
    import mixer.builder as build
    from mixer.recipe import load_recipe

    t = _instrument()
    shutil.rmtree(out, ignore_errors=True)
    r = load_recipe(recipe)
    r = type(r)(**{**r.__dict__, "output": str(out)})
    started = time.perf_counter()
    build.build(r, workers=1, show_progress=False)
    total = time.perf_counter() - started
    phases = sorted(t.seconds.items(), key=lambda kv: -kv[1])
    return {
        "total_s": round(total, 2),
        "phases": {k: [round(v, 2), f"{100 * v / total:.1f}%"] for k, v in phases},
    }


def fixed_costs(recipe: Path, out: Path, first: bool = False) -> dict:
    """The fixed cost of a small build: the whole command (median of 3 fresh processes) and its
    parts: interpreter start, imports, then the phases of an in-process run. ``first``: each
    run with an empty mixer cache (a tiktoken file's first build converts its vocabulary)."""
    import atexit
    import tempfile

    def environ() -> dict:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        if first:
            env["MIXER_CACHE"] = tempfile.mkdtemp(prefix="mixer-bench-cache-")
            atexit.register(shutil.rmtree, env["MIXER_CACHE"], ignore_errors=True)
        return env

    def wall(args: list[str]) -> float:
        runs = []
        for _ in range(3):
            shutil.rmtree(out, ignore_errors=True)
            t = time.perf_counter()
            subprocess.run(args, cwd=REPO, env=environ(), check=True, capture_output=True)
            runs.append(time.perf_counter() - t)
        return sorted(runs)[1]

    py = [sys.executable]
    command = wall(py + ["-m", "mixer.cli", "build", str(recipe), "-o", str(out), "--no-progress"])
    start = wall(py + ["-c", "pass"])
    imports = wall(py + ["-c", "import mixer.cli, mixer.builder"]) - start
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[3]);"
        "from tools.bench_build_profile import phases;"
        "print(json.dumps(phases(sys.argv[1], sys.argv[2])))"
    )
    got = subprocess.run(
        py + ["-c", code, str(recipe), str(out), str(REPO)],
        cwd=REPO,
        env=environ(),
        check=True,
        capture_output=True,
        text=True,
    )
    import json

    return {
        "command_s": round(command, 2),
        "python_start_s": round(start, 2),
        "imports_s": round(imports, 2),
        **json.loads(got.stdout.strip().splitlines()[-1]),
    }


def phases(recipe: str, out: str) -> dict:
    """Phases of one in-process build (a fresh interpreter, default workers)."""
    import mixer.builder as build
    from mixer.recipe import load_recipe

    t = _instrument()
    shutil.rmtree(out, ignore_errors=True)
    r = load_recipe(Path(recipe))
    r = type(r)(**{**r.__dict__, "output": out})
    started = time.perf_counter()
    build.build(r, show_progress=False)
    got = {k: round(v, 3) for k, v in sorted(t.seconds.items(), key=lambda kv: -kv[1])}
    return {"build_s": round(time.perf_counter() - started, 3), "phases": got}
