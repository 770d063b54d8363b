"""`mixer build`: recipe -> work units -> token spill files -> packed MDS shards -> manifest.

Phases: (1) decide, per source, whether its blocks can be reused (same key in the output being
replaced, or a ``from:`` build) or must be built; load the tokenizer and plan the units of the
sources to build (any error here is a recipe mistake, nothing is written); (2) tokenize every
unit in the executor, spilling ids to a temporary folder next to the output; (3) per source,
stream the spill files in unit order into packed MDS shards (`mixer.build.merge`), and link the
reused sources' shards; (4) write the manifest and the plan and publish the folder with a
rename. Results are merged in unit order, so the bytes written do not depend on the executor.
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from mixer.artifacts.manifest import Inputs, Manifest, SourceRecord
from mixer.artifacts.planfile import save_plan, train_plan
from mixer.build import reuse
from mixer.build.executors import default_workers, emit, worker_state
from mixer.build.merge import SourceMerge
from mixer.build.outdir import BuildDir, write_error
from mixer.build.progress import BuildProgress
from mixer.build.record import report, write_manifest
from mixer.build.tiktoken_fast import TiktokenEncoder, TiktokenSpec
from mixer.build.tokenizer import BuildTokenizer, Encoder, Ids, TokenizerInfo
from mixer.build.tokenizer import BuildTokenizer as open_tokenizer
from mixer.build.tokenizing import tokenize
from mixer.build.units import Unit, plan_units
from mixer.build.worker import UnitResult, run_unit
from mixer.errors import MixerError, RecipeError
from mixer.recipe import Recipe, SourceSpec


@dataclass(frozen=True, kw_only=True)
class _Task:
    unit: Unit
    spec: SourceSpec
    work_dir: Path
    strict: bool
    keep_smallest: int


def _setup(tokenizer_json: str | None, ids: Ids, fast: TiktokenSpec | None) -> dict:
    """A worker's encoder: tiktoken from ``fast``, else `tokenizers` from the JSON."""
    kw = {"bos_id": ids.bos_id, "eos_id": ids.eos_id, "dtype": ids.dtype}
    if fast is not None:
        return {"encoder": TiktokenEncoder(fast, **kw)}
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
    )


def build(
    recipe: Recipe,
    *,
    workers: int | None = None,
    strict: bool = False,
    console: Console | None = None,
    show_progress: bool | None = None,
    encoder: str = "auto",
    engine: str = "local",
    address: str | None = None,
) -> Manifest:
    """Build ``recipe`` into ``recipe.output``; returns the published manifest.

    A user mistake found while building (``--strict`` input, an empty source, an impossible
    plan) discards the work; a crash or a kill keeps it, and the rerun reuses every finished
    unit whose inputs are unchanged.
    """
    console = console or Console(stderr=True)
    if recipe.output is None:
        raise RecipeError(f"{recipe.path}: output: missing; set `output:` or pass --output")
    started = time.perf_counter()
    ident = reuse.tokenizer_identity(recipe)
    decisions = _decide(recipe, reuse.previous(Path(recipe.output)), ident)
    todo = [s for s in recipe.sources if decisions[s.name].linked is None]
    tok = None
    if todo or any(m.tokenizer.identity != ident for m, _ in _linked(decisions)):
        tok = open_tokenizer(recipe.tokenizer)
    for s in recipe.sources:
        if s.reuse:
            summary = _tok_summary(tok.info if tok else None, decisions)
            reuse.check_compatible(recipe, s, decisions[s.name].linked[0], summary)
    units = {s.name: plan_units(s) for s in todo}
    if show_progress is None:
        mode = "bars" if console.is_terminal else "log"
    else:
        mode = "bars" if show_progress else "off"
    with BuildDir(Path(recipe.output)) as bd:
        try:
            bar = BuildProgress(
                _totals(units), {n: len(u) for n, u in units.items()}, console, mode
            )
            manifest, reused, num_units = _build_into(
                bd.work,
                recipe,
                tok,
                ident,
                decisions,
                units,
                workers or _auto_workers(units),
                strict,
                bar,
                encoder,
                (engine, address),
            )
            report(console, manifest, time.perf_counter() - started, reused, num_units, decisions)
            bd.publish()
        except MixerError:
            bd.discard()
            raise
        except OSError as e:
            raise write_error(e, bd.work) from None
    return Manifest.load(recipe.output)


def _decide(recipe: Recipe, prev: Manifest | None, ident: dict) -> dict[str, reuse.Decision]:
    known = reuse.known_inputs(prev)
    decisions = {}
    for s in recipe.sources:
        if s.reuse:
            decisions[s.name] = reuse.Decision(linked=reuse.reference(recipe, s))
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


def _auto_workers(units: dict[str, list[Unit]]) -> int:
    """The default number of workers: all cores, or 1 for a small input read from files."""
    every = [u for us in units.values() for u in us]
    if all(not u.kind.startswith("hf") for u in every) and sum(u.size for u in every) < SMALL_INPUT:
        return 1
    return default_workers()


def _totals(units: dict[str, list[Unit]]) -> dict[str, int]:
    return {name: sum(u.size for u in us) for name, us in units.items()}


def _build_into(
    work: Path,
    recipe: Recipe,
    tok: BuildTokenizer | None,
    ident: dict,
    decisions: dict[str, reuse.Decision],
    units: dict[str, list[Unit]],
    workers: int,
    strict: bool,
    bar: BuildProgress,
    encoder: str,
    engine: tuple[str, str | None] = ("local", None),
) -> tuple[Manifest, int, int]:
    """The whole build inside ``work``: (manifest, units reused, units in all)."""
    for stale in ("sources", "tokenizer"):  # from a merge an earlier run did not finish
        shutil.rmtree(work / stale, ignore_errors=True)
    hashes = {f.path: f.sha256 for d in decisions.values() for f in d.inputs or []}
    merges = {
        name: SourceMerge(recipe, spec, units[name], tok.ids.dtype, tok.ids.pad_id, work)
        for spec in recipe.sources
        if (name := spec.name) in units
    }
    built: dict[str, dict] = {}

    def finished(result: UnitResult) -> None:  # every unit, in unit order, as soon as it is in
        merge = merges[result.source]
        merge.add(result)
        if merge.done:
            built[result.source] = merge.finish()

    def make_task(spec: SourceSpec, unit: Unit) -> _Task:
        keep = spec.validation.docs or 0
        return _Task(unit=unit, spec=spec, work_dir=work, strict=strict, keep_smallest=keep)

    reused, num_units = tokenize(
        work,
        recipe,
        tok,
        units,
        hashes,
        workers=workers,
        strict=strict,
        bar=bar,
        encoder=encoder,
        engine=engine,
        run=_run,
        setup=lambda ids, fast: functools.partial(
            _setup, None if fast else tok.info.json, ids, fast
        ),
        make_task=make_task,
        finished=finished,
    )
    records = {}
    for s in recipe.sources:
        d = decisions[s.name]
        if d.linked is None:
            inputs = Inputs(
                units=len(units[s.name]),
                hf=dict(s.hf.__dict__) if s.hf else None,
                files=None if s.hf else tuple(d.inputs),
            )
            records[s.name] = SourceRecord(
                weight=s.weight, key=d.key, inputs=inputs, **built[s.name]
            )
        else:
            src, name = d.linked
            reuse.link_source(src, name, work, s.name)
            records[s.name] = dataclasses.replace(src.sources[name], weight=s.weight)
    shutil.rmtree(work / "units", ignore_errors=True)
    manifest = write_manifest(recipe, tok.info if tok else None, ident, decisions, records, work)
    save_plan(train_plan(manifest, recipe.to_dict()["mixture"]), work)
    return manifest, reused, num_units
