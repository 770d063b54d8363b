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

import functools
import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from mixer import __version__
from mixer.artifacts.manifest import Manifest
from mixer.artifacts.planfile import save_plan, train_plan
from mixer.build import reuse
from mixer.build import tiktoken_fast as backend
from mixer.build.executors import LocalExecutor, RayExecutor, default_workers, emit, worker_state
from mixer.build.merge import merge_source
from mixer.build.outdir import BuildDir, write_error
from mixer.build.progress import BuildProgress
from mixer.build.readers import read_unit
from mixer.build.record import report, write_manifest
from mixer.build.tiktoken_fast import TiktokenEncoder, TiktokenSpec
from mixer.build.tokenizer import Encoder, TokenizerInfo, load_tokenizer
from mixer.build.units import Unit, plan_units
from mixer.build.worker import UnitResult, load_record, run_unit
from mixer.errors import MixerError, RecipeError, TokenizerError
from mixer.recipe import Recipe, SourceSpec


@dataclass(frozen=True, kw_only=True)
class _Task:
    unit: Unit
    spec: SourceSpec
    work_dir: Path
    strict: bool
    keep_smallest: int
    key: str


def _setup(tokenizer_json: str, bos_id, eos_id, dtype: str, fast: TiktokenSpec | None) -> dict:
    if fast is not None:
        return {"encoder": TiktokenEncoder(fast, bos_id=bos_id, eos_id=eos_id, dtype=dtype)}
    return {"encoder": Encoder(tokenizer_json, bos_id=bos_id, eos_id=eos_id, dtype=dtype)}


def _run(task: _Task) -> UnitResult:
    return run_unit(
        task.unit,
        task.spec,
        worker_state()["encoder"],
        task.work_dir,
        strict=task.strict,
        keep_smallest=task.keep_smallest,
        key=task.key,
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
    if todo or any(m.data["tokenizer"].get("identity") != ident for m, _ in _linked(decisions)):
        tok = load_tokenizer(recipe.tokenizer)
    for s in recipe.sources:
        if s.reuse:
            reuse.check_compatible(
                recipe, s, decisions[s.name].linked[0], _tok_summary(tok, decisions)
            )
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
                workers or default_workers(),
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
    return _linked(decisions)[0][0].data["tokenizer"]


def _totals(units: dict[str, list[Unit]]) -> dict[str, int]:
    return {name: sum(u.size for u in us) for name, us in units.items()}


def _build_into(
    work: Path,
    recipe: Recipe,
    tok: TokenizerInfo | None,
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
    hashes = {f["path"]: f["sha256"] for d in decisions.values() for f in d.inputs or []}
    results, reused = _tokenize(
        work, recipe, tok, units, hashes, workers, strict, bar, encoder, *engine
    )
    records = {}
    for s in recipe.sources:
        d = decisions[s.name]
        if d.linked is None:
            got = [results[s.name, u.index] for u in units[s.name]]
            rec = merge_source(recipe, s, units[s.name], got, tok.dtype, tok.pad_id, work)
            inputs = {"hf": dict(s.hf.__dict__)} if s.hf else {"files": d.inputs}
            records[s.name] = {
                "weight": s.weight,
                "key": d.key,
                "inputs": {**inputs, "units": len(units[s.name])},
                **rec,
            }
        else:
            src, name = d.linked
            reuse.link_source(src, name, work, s.name)
            records[s.name] = {**src.data["sources"][name], "weight": s.weight}
    shutil.rmtree(work / "units", ignore_errors=True)
    manifest = write_manifest(recipe, tok, ident, decisions, records, work)
    save_plan(train_plan(manifest, recipe.to_dict()["mixture"]), work)
    return manifest, reused, len(results)


def _tokenize(work, recipe, tok, units, hashes, workers, strict, bar, encoder, engine, address):
    """Run every unit not finished by an earlier run; ({(source, unit): result}, reused)."""
    results: dict[tuple[str, int], UnitResult] = {}
    if not units:
        return results, 0
    if encoder == "tokenizers":
        fast, how = None, "encoding with tokenizers (as asked)"
    else:
        fast, how = backend.choose(tok, recipe.tokenizer.pattern, _samples(recipe, units))
        if fast is None and encoder == "tiktoken":
            raise TokenizerError(f"--encoder tiktoken: cannot be used: {how}")
    bar.note(how)
    setup = functools.partial(_setup, tok.json, tok.bos_id, tok.eos_id, tok.dtype, fast)
    tasks = []
    for s in recipe.sources:
        for u in units.get(s.name, []):
            key = _unit_key(u, s, tok, strict, hashes)
            done = load_record(work, u, key)
            if done is None:
                tasks.append(
                    _Task(
                        unit=u,
                        spec=s,
                        work_dir=work,
                        strict=strict,
                        keep_smallest=s.validation.docs or 0,
                        key=key,
                    )
                )
            else:
                results[u.source, u.index] = done
                bar.update("unit", u.source, u.index, done.documents, done.tokens, done.bytes)
    if engine == "ray":
        executor = RayExecutor(address, setup, num_cpus=workers)
    else:
        executor = LocalExecutor(workers, setup, on_event=bar.update)
    with bar, executor as ex:
        for r in ex.map(_run, tasks):
            results[r.source, r.index] = r
            if engine == "ray":  # Ray tasks report when they are done
                bar.update("unit", r.source, r.index, r.documents, r.tokens, r.bytes)
    return results, len(results) - len(tasks)


def _samples(recipe: Recipe, units: dict[str, list[Unit]], chars: int = 200_000) -> list[str]:
    """The first documents of each source to build (about ``chars`` characters each), for
    the check that the fast encoding backend gives the same ids."""
    out = []
    for s in recipe.sources:
        got = 0
        for u in units.get(s.name, [])[:4]:
            for _, text, reason in read_unit(u, s):
                if reason is None and _valid(text):
                    out.append(text[:20_000])
                    got += len(out[-1])
                if got >= chars:
                    break
            if got >= chars:
                break
    return out


def _valid(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:  # lone surrogates: the workers count and skip them
        return False


def _unit_key(
    unit: Unit, spec: SourceSpec, tok: TokenizerInfo, strict: bool, hashes: dict[str, str]
) -> str:
    """What a unit's output depends on: reuse a finished unit only if all of it is unchanged."""
    parts = {
        "unit": unit.__dict__,
        "input": hashes.get(unit.path),
        "hf": spec.hf.__dict__ if spec.hf else None,
        "reading": [spec.text_field, spec.encoding, spec.txt_mode, spec.max_document_bytes],
        "validation": [bool(spec.validation.active), spec.validation.docs or 0],
        "tokenizer": [tok.fingerprint, tok.bos_id, tok.eos_id, tok.dtype],
        "strict": strict,
        "mixer": __version__,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
