"""A unit's task as a worker runs it: the worker's encoder, set up once per worker, and the
call that reads, tokenizes and spills the unit (`mixer.builder.worker`). Tasks are small and
picklable: a spawned worker or a Ray task gets the unit's description, never its data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mixer.builder.executors import emit, worker_state
from mixer.builder.spill import UnitResult
from mixer.builder.tokenizer import Encoder, Ids
from mixer.builder.units import Unit
from mixer.builder.worker import run_unit
from mixer.recipe import SourceSpec


@dataclass(frozen=True, kw_only=True)
class Task:
    unit: Unit
    spec: SourceSpec
    work_dir: Path
    strict: bool
    keep_smallest: int
    limit: tuple[str, float] | None = None  # a take's (measure, amount): stop the unit there


def worker_setup(tokenizer_json: str | None, ids: Ids, spec, loaded: Encoder | None = None) -> dict:
    """A worker's encoder: ``loaded`` with the build's BOS/EOS (in this process), else loaded
    from ``spec`` (gigatoken's or tiktoken's), else `tokenizers` from the JSON."""
    kw = {"bos_id": ids.bos_id, "eos_id": ids.eos_id, "dtype": ids.dtype}
    if loaded is not None:
        return {"encoder": loaded.with_ids(**kw)}
    if spec is not None:
        return {"encoder": spec.load(**kw)}
    return {"encoder": Encoder(tokenizer_json, **kw)}


def run_task(task: Task) -> UnitResult:
    return run_unit(
        task.unit,
        task.spec,
        worker_state()["encoder"],
        task.work_dir,
        strict=task.strict,
        keep_smallest=task.keep_smallest,
        progress=emit,
        limit=task.limit,
    )
