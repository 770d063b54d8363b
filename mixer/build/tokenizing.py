"""The tokenizing phase: every unit not finished by an earlier run goes to the executor, and
each unit's result is handed on (to the merge) in unit order as soon as it and those before it
are in.

The encoder check (tiktoken against `tokenizers` on sample documents, `mixer.build.tiktoken_fast`)
and, for a tiktoken file, the building of its tokenizer.json take about 1.5 s for Qwen's
vocabulary: they run here while the workers already encode with tiktoken. Should the check
fail, those first units are encoded again with `tokenizers` before anything is kept: no
completion record and no merge happen before it passes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from mixer.build import tiktoken_fast as backend
from mixer.build.executors import LocalExecutor, RayExecutor
from mixer.build.progress import BuildProgress
from mixer.build.tokenizer import BuildTokenizer
from mixer.build.worker import UnitResult, load_record, record_path, save_record, unit_key
from mixer.errors import TokenizerError
from mixer.recipe import Recipe


class _Gate:
    """Progress events of a speculative run: held until the encoder check passes, dropped if
    it fails (those units are encoded again)."""

    def __init__(self, bar: BuildProgress):
        self.bar, self.held, self.open = bar, [], False
        self._lock = threading.Lock()

    def __call__(self, *event) -> None:
        with self._lock:
            if self.open:
                self.bar.update(*event)
            else:
                self.held.append(event)

    def release(self) -> None:
        with self._lock:
            self.open = True
            for event in self.held:
                self.bar.update(*event)
            self.held = []


def tokenize(
    work,
    recipe: Recipe,
    tok: BuildTokenizer,
    units: dict,
    hashes: dict[str, str],
    *,
    workers: int,
    strict: bool,
    bar: BuildProgress,
    encoder: str,
    engine: tuple[str, str | None],
    run: Callable,
    setup: Callable,
    make_task: Callable,
    finished: Callable[[UnitResult], None],
) -> tuple[int, int]:
    """Run the units; (units reused from an earlier run, units in all). ``setup(ids, spec)``
    gives a worker's setup (spec None: `tokenizers`), ``make_task(spec, unit)`` a task, ``run``
    runs one in a worker."""
    order = [(s, u) for s in recipe.sources for u in units.get(s.name, [])]
    if not order:
        return 0, 0
    fast, how = backend.fast_encoder(tok, encoder)
    keys = None
    if any(record_path(work, u).exists() for _, u in order):  # a rerun: which units are done?
        keys = _keys(order, tok, strict, hashes)
    done: dict[tuple[str, int], UnitResult] = {}
    tasks = []
    for s, u in order:
        r = load_record(work, u, keys[u.source, u.index]) if keys else None
        if r is None:
            tasks.append(make_task(s, u))
        else:
            done[u.source, u.index] = r
            bar.update("unit", u.source, u.index, r.documents, r.tokens, r.bytes)
    attempts = [fast.spec, None] if fast is not None else [None]
    with bar:
        for spec in attempts:
            gate = _Gate(bar)
            executor = _executor(engine, workers, setup(tok.ids, spec), gate)
            with executor as ex:
                fresh = ex.map(run, tasks)  # the workers start at once
                if spec is not None:
                    ok, how = backend.verify(tok.info, fast, backend.sample_texts(recipe, units))
                    if not ok:
                        if encoder == "tiktoken":
                            raise TokenizerError(f"--encoder tiktoken: cannot be used: {how}")
                        bar.note(how)
                        how = ""
                        continue  # leaving `with` stops the workers
                if how:
                    bar.note(how)
                gate.release()
                keys = keys or _keys(order, tok, strict, hashes)
                itemsize = np.dtype(tok.ids.dtype).itemsize
                for _, u in order:
                    r = done.get((u.source, u.index))
                    if r is None:
                        r = next(fresh)
                        save_record(work, u, keys[u.source, u.index], r, itemsize)
                        if engine[0] == "ray":  # Ray tasks report when they are done
                            bar.update("unit", r.source, r.index, r.documents, r.tokens, r.bytes)
                    finished(r)
                return len(done), len(order)
    raise AssertionError("unreachable: the last attempt uses tokenizers")


def _keys(order, tok: BuildTokenizer, strict: bool, hashes: dict[str, str]) -> dict:
    return {(u.source, u.index): unit_key(u, s, tok.info, strict, hashes) for s, u in order}


def _executor(engine: tuple[str, str | None], workers: int, setup, gate: _Gate):
    if engine[0] == "ray":
        return RayExecutor(engine[1], setup, num_cpus=workers)
    return LocalExecutor(workers, setup, on_event=gate)
