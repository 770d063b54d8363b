"""`mixer build`, step by step: recipe -> work units -> token spill files -> packed MDS shards
-> manifest and plan, published with one rename.

(1) decide, per source, whether its blocks are linked from a built source or built here
(`mixer.builder.decide`); load the tokenizer and plan the units of the sources to build (any
error here is a recipe mistake, nothing is written); (2) tokenize every unit in the executor,
spilling ids next to the output (`mixer.builder.run_units`); (3) per source, stream the spill
files in unit order into packed MDS shards (`mixer.builder.merge`), and link the others'
shards; (4) write the manifest and the plan, and publish. Results are merged in unit order, so
the bytes written do not depend on the executor. The steps share one frozen `Build`.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from mixer.artifacts.manifest import Manifest
from mixer.artifacts.planfile import save_plan, train_plan
from mixer.builder import decide, encoders, reuse, take_reuse
from mixer.builder.executors import auto_workers
from mixer.builder.merge import SourceMerge
from mixer.builder.outdir import BuildDir, write_error
from mixer.builder.progress import BuildProgress
from mixer.builder.record import encoder_record, source_record, write_manifest
from mixer.builder.run_units import reused_loader, tokenize
from mixer.builder.schedule import Schedule
from mixer.builder.spill import unit_key
from mixer.builder.take_measure import Take, resolve_takes
from mixer.builder.task import Task, run_task, worker_setup
from mixer.builder.tokenizer import BuildTokenizer
from mixer.builder.units import Unit, iter_units, plan_units
from mixer.errors import EngineError, MixerError, RecipeError
from mixer.recipe import Recipe, SourceSpec


@dataclass(frozen=True, kw_only=True)
class Built:
    """What a build did, for its summary (`mixer.report.built`)."""

    manifest: Manifest
    seconds: float
    reused: int  # finished units reused from an earlier, interrupted run
    num_units: int
    linked: tuple[str, ...]  # sources whose blocks were linked from another build


@dataclass(frozen=True, kw_only=True)
class Build:
    """One build's settings and decisions, shared by its steps."""

    recipe: Recipe
    work: Path  # the folder being written, renamed into place at the end
    tok: BuildTokenizer | None  # None: every source linked from builds with this tokenizer
    ident: dict  # the tokenizer's identity (known before loading it)
    decisions: dict[str, reuse.Decision]
    units: dict  # per source to build: its units (a list, or an iterator under a take)
    takes: dict[str, Take]
    workers: int
    strict: bool
    encoder: tuple[str, str]  # the encoder asked for, and where (for messages)
    engine: tuple[str, str | None]  # --engine, --address
    bar: BuildProgress

    @property
    def todo(self) -> list[SourceSpec]:
        return [s for s in self.recipe.sources if s.name in self.units]

    @functools.cached_property
    def hashes(self) -> dict[str, str]:
        return {f.path: f.sha256 for d in self.decisions.values() for f in d.inputs or []}

    def unit_key(self, spec: SourceSpec, unit: Unit) -> str:
        """A unit's completion-record key (a file read under a take: its size and time)."""
        given = self.hashes if spec.take is None or not spec.files else _identity(unit.path)
        return unit_key(unit, spec, self.tok.info, self.strict, given)

    def stop(self, name: str) -> tuple[str, float] | None:
        """Where a unit of source ``name`` stops reading: its take's (measure, amount)."""
        b = self.takes.get(name)
        return (b.measure, b.amount) if b is not None and b.stops else None

    def task(self, spec: SourceSpec, unit: Unit) -> Task:
        keep = spec.validation.docs or 0
        return Task(
            unit=unit,
            spec=spec,
            work_dir=self.work,
            strict=self.strict,
            keep_smallest=keep,
            limit=self.stop(spec.name),
        )


def build(recipe: Recipe, **options) -> Manifest:
    """Build ``recipe`` into ``recipe.output``; the published manifest (see `run_build`)."""
    return run_build(recipe, **options).manifest


def run_build(
    recipe: Recipe,
    *,
    workers: int | None = None,
    strict: bool = False,
    console: Console | None = None,
    show_progress: bool | None = None,
    encoder: str | None = None,
    engine: str = "local",
    address: str | None = None,
) -> Built:
    """Build ``recipe`` into ``recipe.output``: the published manifest and what the build did.

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
    takes = resolve_takes(recipe)
    decisions = decide.decide(recipe, reuse.previous(Path(recipe.output)), ident, takes)
    todo = [s for s in recipe.sources if decisions[s.name].linked is None]
    tok = None
    foreign = any(s.reuse for s in recipe.sources)  # its recorded tokenizer is not trusted
    if todo or foreign or any(m.tokenizer.identity != ident for m, _ in decide.linked(decisions)):
        tok = BuildTokenizer(recipe.tokenizer)
    decide.check_from(recipe, tok.info if tok else None, decisions)
    # a source under a take is planned lazily: only the files it reaches are opened
    units = {s.name: iter_units(s) if s.take else plan_units(s) for s in todo}
    mode = ("bars" if console.is_terminal else "log") if show_progress is None else None
    mode = mode or ("bars" if show_progress else "off")
    with BuildDir(Path(recipe.output)) as bd:
        bar = BuildProgress(_totals(units), {n: _count(u) for n, u in units.items()}, console, mode)
        b = Build(
            recipe=recipe,
            work=bd.work,
            tok=tok,
            ident=ident,
            decisions=decisions,
            units=units,
            takes=takes,
            workers=workers or auto_workers(todo),
            strict=strict,
            encoder=encoders.asked(recipe, encoder),
            engine=(engine, address),
            bar=bar,
        )
        reused, num_units = _publish(b, bd)
    seconds = time.perf_counter() - started
    linked = tuple(n for n, d in decisions.items() if d.linked is not None)
    manifest = Manifest.load(recipe.output)
    return Built(
        manifest=manifest, seconds=seconds, reused=reused, num_units=num_units, linked=linked
    )


def _totals(units: dict) -> dict[str, int | None]:
    """Bytes to read per source, for progress (None: a source under a take stops on its own)."""
    return {n: sum(u.size for u in us) if isinstance(us, list) else None for n, us in units.items()}


def _count(units) -> int | None:
    return len(units) if isinstance(units, list) else None


def _keep_units(b: Build) -> None:
    built = [s.name for s in b.todo if s.take is not None]
    take_reuse.keep_units(Path(b.recipe.output), b.work, built, list(b.takes))


def _publish(b: Build, bd: BuildDir) -> tuple[int, int]:
    """Build into ``bd`` and publish it: (units reused, units in all). A user mistake discards
    the folder, keeping the units a take read; a crash keeps everything for the rerun."""
    try:
        _, reused, num_units = _build_into(b)
        bd.publish()
    except EngineError:
        raise  # work lost by the executor: the finished units are kept, as in a crash
    except MixerError:
        _keep_units(b)  # what was tokenized stays reusable
        bd.discard()
        raise
    except OSError as e:
        raise write_error(e, bd.work) from None
    return reused, num_units


def _build_into(b: Build) -> tuple[Manifest, int, int]:
    """The whole build inside ``b.work``: (manifest, units reused, units in all)."""
    for stale in ("sources", "tokenizer"):  # from a merge an earlier run did not finish
        shutil.rmtree(b.work / stale, ignore_errors=True)
    take_reuse.restore_units(Path(b.recipe.output), b.work, [s.name for s in b.todo if s.take])
    schedule, merges, verdict = _tokenize(b)
    records, used = {}, {}
    for s in b.recipe.sources:
        d = b.decisions[s.name]
        if d.linked is None:
            built = schedule.built[s.name]
            records[s.name] = source_record(b.recipe, s, d, built, merges[s.name], b.ident)
            used[s.name] = (encoder_record(verdict, s.name), merges[s.name].ledger)
        else:
            src, name = d.linked
            reuse.link_source(src, name, b.work, s.name)
            records[s.name] = dataclasses.replace(src.sources[name], weight=s.weight)
            used[s.name] = ((src.encoders or {}).get(name), (src.ledger or {}).get(name))
    take_reuse.check_taken(b.recipe, records, b.takes)
    _keep_units(b)
    shutil.rmtree(b.work / "units", ignore_errors=True)
    tok = b.tok.info if b.tok else None
    manifest = write_manifest(b.recipe, tok, b.ident, b.decisions, records, b.work, used)
    save_plan(train_plan(manifest, b.recipe.to_dict()["mixture"]), b.work)
    return manifest, schedule.reused, sum(schedule.planned.values())


def _tokenize(b: Build):
    """Step 2 and 3: every unit run (or its finished result reused) and merged in unit order."""
    merges = {
        s.name: SourceMerge(
            b.recipe,
            s,
            _count(b.units[s.name]),
            b.tok.ids.dtype,
            b.tok.ids.pad_id,
            b.work,
            b.takes.get(s.name),
        )
        for s in b.todo
    }
    limits = {n: (t.measure, t.amount) for n, t in b.takes.items() if t.stops}
    load = reused_loader(b.work, b.unit_key, limits, b.bar)
    schedule = Schedule(b.todo, b.units, merges, b.takes, b.workers, load)
    json = None if b.tok is None else b.tok.info.json
    verdict = tokenize(
        b.work,
        b.recipe,
        b.tok,
        schedule,
        {s.name: _first_units(s, b.units[s.name]) for s in b.todo},
        b.unit_key,
        workers=b.workers,
        bar=b.bar,
        encoder=b.encoder,
        engine=b.engine,
        run=run_task,
        setup=lambda ids, fast, loaded: functools.partial(
            worker_setup, None if fast else json, ids, fast, loaded
        ),
        make_task=b.task,
    )
    return schedule, merges, verdict


def _identity(path: str) -> dict[str, str]:
    return {path: take_reuse.input_identity(path)}


def _first_units(spec: SourceSpec, units) -> list[Unit]:
    """A source's first units, for the encoder check (a lazy source planned again for them)."""
    return units[:4] if isinstance(units, list) else list(itertools.islice(iter_units(spec), 4))
