"""The tokenizing phase: every unit not finished by an earlier run goes to the executor (in the
order and as far as `mixer.builder.schedule` says), and each unit's result is handed on (to the
merge) in unit order as soon as it and those before it are in.

The encoder check (`mixer.builder.encoders`: the first candidate against the reference on
sample documents) and, for a tiktoken file, the reading of its tokenizer.json run here while
the workers already encode with the first candidate. Should the check fail, those first units
are encoded again with the encoder that passed before anything is kept: no completion record
and no merge happen before it passes.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from mixer.builder import encoders
from mixer.builder.executors import LocalExecutor, RayExecutor
from mixer.builder.progress import BuildProgress
from mixer.builder.schedule import Schedule
from mixer.builder.spill import (
    DOC_DTYPE,
    UnitResult,
    load_record,
    record_path,
    save_record,
    unit_paths,
)
from mixer.builder.take_measure import Meter
from mixer.builder.tokenizer import BuildTokenizer
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
    schedule: Schedule,
    samples: dict[str, list],
    key: Callable,
    *,
    workers: int,
    bar: BuildProgress,
    encoder: tuple[str, str],
    engine: tuple[str, str | None],
    run: Callable,
    setup: Callable,
    make_task: Callable,
) -> encoders.Verdict | None:
    """Run the schedule's units (``schedule.built`` then holds every source's merge); the
    encoder that ran and its check (None: nothing to build). ``encoder``: (the encoder asked
    for, where it was asked: for messages); ``samples``: each source's first units, for the
    check; ``key(spec, unit)`` a unit's completion-record key; ``setup(ids, spec, loaded)``
    gives a worker's setup (spec None: `tokenizers`; ``loaded``: this process's copy of the
    encoder, reused when the units run in this process), ``make_task(spec, unit)`` a task,
    ``run`` runs one in a worker."""
    if not schedule.sources:
        return None
    asked, label = encoder
    cand, why_not = encoders.first(tok, asked, label)
    itemsize = np.dtype(tok.ids.dtype).itemsize
    verdict = None
    # completion records are flushed to disk off the thread that merges (0.4 s of waiting on
    # the disk for 156 MB), and all of them before this returns
    with bar, ThreadPoolExecutor(1, thread_name_prefix="mixer-records") as records:

        def save(spec, unit, result):
            return records.submit(save_record, work, unit, key(spec, unit), result, itemsize)

        while True:
            gate = _Gate(bar)
            here = engine[0] != "ray" and workers == 1  # the units run in this process
            loaded = cand.encoder if here else None  # loaded once, not twice (0.15 s for Qwen)
            with _executor(engine, workers, setup(tok.ids, cand.spec, loaded), gate) as ex:
                fresh = ex.map(run, schedule.feed(make_task))  # the workers start at once
                if verdict is None:
                    needed = cand.name != encoders.reference_name(tok)
                    texts = encoders.sample_texts(recipe, samples) if needed else {}
                    verdict, notes = encoders.choose(tok, cand, asked, label, texts, why_not)
                    for note in notes:
                        bar.note(note)
                    again, cand = verdict.chosen.name != cand.name, verdict.chosen
                    if again:
                        schedule.restart()
                        continue  # leaving `with` stops the workers
                bar.note(verdict.message)
                gate.release()
                _collect(fresh, schedule, save, bar if engine[0] == "ray" else None)
                return verdict


def _collect(fresh, schedule: Schedule, save: Callable, bar: BuildProgress | None) -> None:
    """Each result handed on in unit order (``schedule.result``), its completion record written
    by ``save(spec, unit, result)`` (a future: on the records' thread). ``bar``: report each
    unit as it is taken (Ray tasks send no events of their own)."""
    saved: collections.deque = collections.deque()
    for r in fresh:
        s, u = schedule.inflight[0]
        saved.append(save(s, u, r))
        while saved and (saved[0].done() or len(saved) > 64):
            saved.popleft().result()  # a record not written (a full disk) fails here
        if bar is not None:
            bar.update("unit", r.source, r.index, r.documents, r.tokens, r.bytes)
        schedule.result(r)
    while saved:
        saved.popleft().result()


def reused_loader(work, key: Callable, limits: dict, bar: BuildProgress) -> Callable:
    """``load(spec, unit)``: the unit's result from an earlier run's completion record, shown
    on the progress bar, or None. ``limits``: per budgeted source, (measure, amount)."""

    def load(spec, unit) -> UnitResult | None:
        if not record_path(work, unit).exists():
            return None
        limit = limits.get(spec.name)
        r = load_record(work, unit, key(spec, unit), limit and limit[1])
        other = r is not None and limit is not None and r.limit != limit[1]
        if other and not _would_not_stop(work, unit, spec, limit):
            return None  # read whole under a larger budget: this one would stop it early
        if r is not None:
            bar.update("unit", unit.source, unit.index, r.documents, r.tokens, r.bytes)
        return r

    return load


def _would_not_stop(work, unit, spec, limit: tuple[str, float]) -> bool:
    """A unit read whole under another budget is what this one would read (the same bytes,
    skips included) only if the unit alone stays below this budget's limit."""
    _, doc_path = unit_paths(work, unit)
    rec = np.fromfile(doc_path, DOC_DTYPE)
    meter = Meter(limit[0], spec.validation)
    meter.add(rec["hash"], rec["length"])
    return meter.value < limit[1]


def _executor(engine: tuple[str, str | None], workers: int, setup, gate: _Gate):
    if engine[0] == "ray":
        return RayExecutor(engine[1], setup, num_cpus=workers)
    return LocalExecutor(workers, setup, on_event=gate)
