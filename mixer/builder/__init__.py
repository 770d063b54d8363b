"""`mixer build`: recipe -> work units -> token spill files -> packed MDS shards -> manifest.

Phases: (1) decide, per source, whether its blocks can be reused (same key in the output being
replaced, or a ``from:`` build) or must be built; load the tokenizer and plan the units of the
sources to build (any error here is a recipe mistake, nothing is written); (2) tokenize every
unit in the executor, spilling ids to a temporary folder next to the output; (3) per source,
stream the spill files in unit order into packed MDS shards (`mixer.builder.merge`), and link the
reused sources' shards; (4) write the manifest and the plan and publish the folder with a
rename. Results are merged in unit order, so the bytes written do not depend on the executor.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from mixer.artifacts.manifest import Manifest
from mixer.artifacts.planfile import save_plan, train_plan
from mixer.builder import budgeted, reuse
from mixer.builder.budget import Budget, budgets
from mixer.builder.executors import default_workers, emit, worker_state
from mixer.builder.merge import SourceMerge
from mixer.builder.outdir import BuildDir, write_error
from mixer.builder.progress import BuildProgress
from mixer.builder.record import encoder_record, report, source_record, write_manifest
from mixer.builder.schedule import Schedule
from mixer.builder.spill import UnitResult, unit_key
from mixer.builder.tokenizer import BuildTokenizer, Encoder, Ids, TokenizerInfo
from mixer.builder.tokenizer import BuildTokenizer as open_tokenizer
from mixer.builder.tokenizing import reused_loader, tokenize
from mixer.builder.units import Unit, iter_units, plan_units
from mixer.builder.worker import run_unit
from mixer.errors import EngineError, MixerError, RecipeError
from mixer.recipe import Recipe, SourceSpec


@dataclass(frozen=True, kw_only=True)
class _Task:
    unit: Unit
    spec: SourceSpec
    work_dir: Path
    strict: bool
    keep_smallest: int
    limit: tuple[str, float] | None = None  # a budget's (measure, amount): stop the unit there


def _setup(tokenizer_json: str | None, ids: Ids, spec) -> dict:
    """A worker's encoder: loaded from ``spec`` (gigatoken's or tiktoken's), else `tokenizers`
    from the JSON."""
    kw = {"bos_id": ids.bos_id, "eos_id": ids.eos_id, "dtype": ids.dtype}
    if spec is not None:
        return {"encoder": spec.load(**kw)}
    return {"encoder": Encoder(tokenizer_json, **kw)}


def _run(task: _Task) -> UnitResult:
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


def build(
    recipe: Recipe,
    *,
    workers: int | None = None,
    strict: bool = False,
    console: Console | None = None,
    show_progress: bool | None = None,
    encoder: str | None = None,
    engine: str = "local",
    address: str | None = None,
) -> Manifest:
    """Build ``recipe`` into ``recipe.output``; returns the published manifest.

    ``encoder``: the CLI's ``--encoder``, over the recipe's ``tokenizer.encoder``.
    A user mistake found while building (``--strict`` input, an empty source, an impossible
    plan) discards the work; a crash or a kill keeps it, and the rerun reuses every finished
    unit whose inputs are unchanged.
    """
    console = console or Console(stderr=True)
    if recipe.output is None:
        raise RecipeError(f"{recipe.path}: output: missing; set `output:` or pass --output")
    started = time.perf_counter()
    ident = reuse.tokenizer_identity(recipe)
    takes = budgets(recipe)
    decisions = _decide(recipe, reuse.previous(Path(recipe.output)), ident, takes)
    todo = [s for s in recipe.sources if decisions[s.name].linked is None]
    tok = None
    if todo or any(m.tokenizer.identity != ident for m, _ in _linked(decisions)):
        tok = open_tokenizer(recipe.tokenizer)
    for s in recipe.sources:
        if s.reuse:
            summary = _tok_summary(tok.info if tok else None, decisions)
            reuse.check_compatible(recipe, s, decisions[s.name].linked[0], summary)
    # a budgeted source is planned lazily: only the files it reaches are opened
    units = {s.name: iter_units(s) if s.take else plan_units(s) for s in todo}
    if show_progress is None:
        mode = "bars" if console.is_terminal else "log"
    else:
        mode = "bars" if show_progress else "off"
    with BuildDir(Path(recipe.output)) as bd:
        try:
            bar = BuildProgress(
                _totals(units), {n: _count(u) for n, u in units.items()}, console, mode
            )
            manifest, reused, num_units = _build_into(
                bd.work,
                recipe,
                tok,
                ident,
                decisions,
                units,
                workers or _auto_workers(todo),
                strict,
                bar,
                _asked(recipe, encoder),
                (engine, address),
                takes,
            )
            report(console, manifest, time.perf_counter() - started, reused, num_units, decisions)
            bd.publish()
        except EngineError:
            raise  # work lost by the executor: the finished units are kept, as in a crash
        except MixerError:
            _keep_units(recipe, bd.work, todo, takes)  # what was tokenized stays reusable
            bd.discard()
            raise
        except OSError as e:
            raise write_error(e, bd.work) from None
    return Manifest.load(recipe.output)


def _decide(
    recipe: Recipe, prev: Manifest | None, ident: dict, takes: dict[str, Budget]
) -> dict[str, reuse.Decision]:
    known = reuse.known_inputs(prev)
    decisions = {}
    for s in recipe.sources:
        if s.reuse:
            decisions[s.name] = reuse.Decision(linked=reuse.reference(recipe, s))
            continue
        if s.take is not None:  # no input hashed: see mixer.builder.budgeted
            linked = budgeted.linkable(prev, recipe, s, ident, takes[s.name])
            decisions[s.name] = reuse.Decision(linked=linked)
            continue
        inputs = reuse.stat_inputs(s, known) if s.files else []
        key = reuse.source_key(recipe, s, inputs, ident)
        decisions[s.name] = reuse.Decision(
            key=key, inputs=inputs, linked=reuse.find([prev] if prev else [], key)
        )
    return decisions


def _linked(decisions: dict[str, reuse.Decision]):
    return [d.linked for d in decisions.values() if d.linked is not None]


def _tok_summary(tok: TokenizerInfo | None, decisions: dict[str, reuse.Decision]) -> dict:
    if tok is not None:
        return {
            "fingerprint": tok.fingerprint,
            "dtype": tok.dtype,
            "bos_id": tok.bos_id,
            "eos_id": tok.eos_id,
        }
    t = _linked(decisions)[0][0].tokenizer
    return {"fingerprint": t.fingerprint, "dtype": t.dtype, "bos_id": t.bos_id, "eos_id": t.eos_id}


#: Inputs smaller than this are tokenized in the main process unless ``--workers`` says
#: otherwise: starting a worker (an interpreter, imports, the vocabulary) costs about half a
#: second, about what one core takes to encode this much text.
SMALL_INPUT = 8 << 20


def _auto_workers(todo: list[SourceSpec]) -> int:
    """The default number of workers: all cores, or 1 for a small input read from files."""
    if all(s.hf is None for s in todo) and sum(_file_bytes(s) for s in todo) < SMALL_INPUT:
        return 1
    return default_workers()


def _file_bytes(spec: SourceSpec) -> int:
    return sum(os.path.getsize(f) for f in spec.files)


def _totals(units: dict) -> dict[str, int | None]:
    """Bytes to read per source, for progress (None: a budgeted source, it stops on its own)."""
    return {n: sum(u.size for u in us) if isinstance(us, list) else None for n, us in units.items()}


def _count(units) -> int | None:
    return len(units) if isinstance(units, list) else None


def _keep_units(recipe: Recipe, work: Path, todo: list[SourceSpec], takes: dict) -> None:
    built = [s.name for s in todo if s.take is not None]
    budgeted.keep_units(Path(recipe.output), work, built, list(takes))


def _build_into(
    work: Path,
    recipe: Recipe,
    tok: BuildTokenizer | None,
    ident: dict,
    decisions: dict[str, reuse.Decision],
    units: dict,
    workers: int,
    strict: bool,
    bar: BuildProgress,
    encoder: tuple[str, str],
    engine: tuple[str, str | None],
    takes: dict[str, Budget],
) -> tuple[Manifest, int, int]:
    """The whole build inside ``work``: (manifest, units reused, units in all)."""
    for stale in ("sources", "tokenizer"):  # from a merge an earlier run did not finish
        shutil.rmtree(work / stale, ignore_errors=True)
    todo = [s for s in recipe.sources if s.name in units]
    budgeted.restore_units(Path(recipe.output), work, [s.name for s in todo if s.take])
    hashes = {f.path: f.sha256 for d in decisions.values() for f in d.inputs or []}
    merges = {
        s.name: SourceMerge(
            recipe, s, _count(units[s.name]), tok.ids.dtype, tok.ids.pad_id, work, takes.get(s.name)
        )
        for s in todo
    }
    limits = {n: (b.measure, b.amount) for n, b in takes.items() if b.stops}

    def key(spec: SourceSpec, unit: Unit) -> str:
        given = hashes if spec.take is None or not spec.files else _identity(unit.path)
        return unit_key(unit, spec, tok.info, strict, given)

    def make_task(spec: SourceSpec, unit: Unit) -> _Task:
        b = takes.get(spec.name)
        return _Task(
            unit=unit,
            spec=spec,
            work_dir=work,
            strict=strict,
            keep_smallest=spec.validation.docs or 0,
            limit=(b.measure, b.amount) if b is not None and b.stops else None,
        )

    schedule = Schedule(todo, units, merges, takes, workers, reused_loader(work, key, limits, bar))
    verdict = tokenize(
        work,
        recipe,
        tok,
        schedule,
        {s.name: _first_units(s, units[s.name]) for s in todo},
        key,
        workers=workers,
        bar=bar,
        encoder=encoder,
        engine=engine,
        run=_run,
        setup=lambda ids, fast: functools.partial(
            _setup, None if fast else tok.info.json, ids, fast
        ),
        make_task=make_task,
    )
    records, used = {}, {}
    for s in recipe.sources:
        d = decisions[s.name]
        if d.linked is None:
            records[s.name] = source_record(
                recipe, s, d, schedule.built[s.name], merges[s.name], ident
            )
            used[s.name] = encoder_record(verdict, s.name)
        else:
            src, name = d.linked
            reuse.link_source(src, name, work, s.name)
            records[s.name] = dataclasses.replace(src.sources[name], weight=s.weight)
            used[s.name] = (src.encoders or {}).get(name)
    budgeted.check_taken(recipe, records, takes)
    _keep_units(recipe, work, todo, takes)
    shutil.rmtree(work / "units", ignore_errors=True)
    used = {k: v for k, v in used.items() if v is not None}
    manifest = write_manifest(
        recipe, tok.info if tok else None, ident, decisions, records, work, used or None
    )
    save_plan(train_plan(manifest, recipe.to_dict()["mixture"]), work)
    return manifest, schedule.reused, sum(schedule.planned.values())


def _asked(recipe: Recipe, cli: str | None) -> tuple[str, str]:
    """(the encoder asked for, where: for messages)."""
    if cli is not None:
        return cli, f"--encoder {cli}"
    return recipe.tokenizer.encoder, f"{recipe.path}: tokenizer.encoder: {recipe.tokenizer.encoder}"


def _identity(path: str) -> dict[str, str]:
    return {path: budgeted.input_identity(path)}


def _first_units(spec: SourceSpec, units) -> list[Unit]:
    """A source's first units, for the encoder check (a lazy source planned again for them)."""
    return units[:4] if isinstance(units, list) else list(itertools.islice(iter_units(spec), 4))
