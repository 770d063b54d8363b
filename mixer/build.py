"""`mixer build`: recipe -> work units -> token spill files -> packed MDS shards -> manifest.

Phases: (1) load the tokenizer and plan the units (any error here is a recipe mistake, nothing
is written); (2) hash the inputs and tokenize every unit in the executor, spilling ids to a
temporary folder next to the output; (3) per source, stream the spill files in unit order,
route each document to train or validation by its text hash, pack and write MDS shards;
(4) write the manifest and publish the folder with a rename. Results are merged in unit order,
so the bytes written do not depend on ``workers``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from rich.console import Console

from mixer import __version__
from mixer.errors import InputError, MixerError, RecipeError
from mixer.executor import LocalExecutor, default_workers, emit, worker_state
from mixer.manifest import FORMAT, Manifest
from mixer.pack import Packer
from mixer.planfile import save_plan, train_plan
from mixer.progress import BuildProgress
from mixer.recipe import Recipe, SourceSpec, ValidationSpec
from mixer.shards import ShardWriter
from mixer.sources import Unit, plan_units
from mixer.tokenizer import Encoder, TokenizerInfo, load_tokenizer, sha256_file
from mixer.work import DOC_DTYPE, UnitResult, load_record, run_unit, unit_paths
from mixer.workdir import BuildDir, write_error

CHUNK_DOCS = 1 << 16  # documents routed and packed per step in the merge phase ...
CHUNK_TOKENS = 1 << 24  # ... and tokens (64 MiB of uint32): the merge's memory bound
HIST_BINS = 40  # document-length histogram: bin k counts lengths in [2^k, 2^(k+1))


@dataclass(frozen=True, kw_only=True)
class _Task:
    unit: Unit
    spec: SourceSpec
    work_dir: Path
    strict: bool
    keep_smallest: int
    key: str


def _setup(tokenizer_json: str, bos_id, eos_id, dtype: str) -> dict:
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
    tok = load_tokenizer(recipe.tokenizer)
    units = {s.name: plan_units(s) for s in recipe.sources}
    enabled = console.is_terminal if show_progress is None else show_progress
    with BuildDir(Path(recipe.output)) as bd:
        try:
            bar = BuildProgress(_totals(units), console, enabled)
            manifest, reused, num_units = _build_into(
                bd.work, recipe, tok, units, workers or default_workers(), strict, bar
            )
            seconds = time.perf_counter() - started
            _report(console, manifest, seconds, reused, num_units)
            bd.publish()
        except MixerError:
            bd.discard()
            raise
        except OSError as e:
            raise write_error(e, bd.work) from None
    return Manifest.load(recipe.output)


def _totals(units: dict[str, list[Unit]]) -> dict[str, int]:
    return {name: sum(u.size for u in us) for name, us in units.items()}


def _build_into(
    work: Path,
    recipe: Recipe,
    tok: TokenizerInfo,
    units: dict[str, list[Unit]],
    workers: int,
    strict: bool,
    bar: BuildProgress,
) -> tuple[Manifest, int, int]:
    """The whole build inside ``work``: (manifest, units reused, units in all)."""
    for stale in ("sources", "tokenizer"):  # from a merge an earlier run did not finish
        shutil.rmtree(work / stale, ignore_errors=True)
    setup = functools.partial(_setup, tok.json, tok.bos_id, tok.eos_id, tok.dtype)
    results: dict[tuple[str, int], UnitResult] = {}
    with bar, LocalExecutor(workers, setup, on_event=bar.update) as ex:
        files = [f for s in recipe.sources for f in s.files]
        hashes = dict(zip(files, ex.map(sha256_file, files), strict=True))
        tasks = []
        for s in recipe.sources:
            for u in units[s.name]:
                key = _unit_key(u, s, tok, strict, hashes)
                done = load_record(work, u, key)
                if done is None:
                    keep = s.validation.docs or 0
                    tasks.append(
                        _Task(
                            unit=u,
                            spec=s,
                            work_dir=work,
                            strict=strict,
                            keep_smallest=keep,
                            key=key,
                        )
                    )
                else:
                    results[u.source, u.index] = done
                    bar.update(u.source, done.documents, done.tokens, done.bytes)
        for r in ex.map(_run, tasks):
            results[r.source, r.index] = r
    reused = len(results) - len(tasks)
    sources = {
        s.name: _merge_source(
            recipe,
            s,
            units[s.name],
            [results[s.name, u.index] for u in units[s.name]],
            tok,
            work,
            hashes,
        )
        for s in recipe.sources
    }
    shutil.rmtree(work / "units", ignore_errors=True)
    manifest = _write_manifest(recipe, tok, sources, work)
    save_plan(train_plan(manifest, recipe.to_dict()["mixture"]), work)
    return manifest, reused, len(results)


def _unit_key(
    unit: Unit, spec: SourceSpec, tok: TokenizerInfo, strict: bool, hashes: dict[str, str]
) -> str:
    """What a unit's output depends on: reuse a finished unit only if all of it is unchanged."""
    parts = {
        "unit": unit.__dict__,
        "input": hashes.get(unit.path),
        "hf": spec.hf.__dict__ if spec.hf else None,
        "reading": [spec.text_field, spec.encoding, spec.txt_mode],
        "validation": [bool(spec.validation.active), spec.validation.docs or 0],
        "tokenizer": [tok.fingerprint, tok.bos_id, tok.eos_id, tok.dtype],
        "strict": strict,
        "mixer": __version__,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _val_threshold(val: ValidationSpec, results: list[UnitResult]) -> int | None:
    """Documents whose hash is <= this go to validation (None: no validation split).

    ``docs: N`` takes the N smallest hashes over the whole source; identical texts share a
    hash, so duplicates of a held-out document are held out too (no train/val leakage).
    """
    if val.fraction:
        return min(int(val.fraction * 2**64), 2**64) - 1
    if val.docs:
        smallest = np.sort(np.concatenate([r.smallest for r in results]))
        return int(smallest[min(val.docs, smallest.size) - 1]) if smallest.size else None
    return None


class _Split:
    """One split of one source being written: packer, shard writer and counters."""

    def __init__(self, recipe: Recipe, tok: TokenizerInfo, folder: Path):
        self.packer = Packer(recipe.seq_len, tok.dtype)
        self.writer = ShardWriter(
            folder, seq_len=recipe.seq_len, dtype=tok.dtype, shard_size=recipe.shard_size
        )
        self.hist = np.zeros(HIST_BINS, np.int64)

    def feed(self, tokens: np.ndarray, lengths: np.ndarray, continues: bool, whole) -> None:
        """Documents' tokens (the first continuing the previous feed's last if ``continues``);
        ``whole`` are the full lengths of the documents that start here (for the histogram)."""
        if lengths.size:
            self.writer.write(self.packer.feed(tokens, lengths, continues=continues))
        if len(whole):
            bins = np.minimum(np.log2(whole).astype(np.int64), HIST_BINS - 1)
            self.hist += np.bincount(bins, minlength=HIST_BINS)

    def finish(self, remainder: str, pad_id: int) -> dict:
        last, dropped, padding = self.packer.finish(remainder, pad_id)
        self.writer.write(last)
        shards = self.writer.finish()
        return {
            "documents": self.packer.num_documents,
            "tokens": self.packer.num_tokens,
            "blocks": self.writer.num_blocks,
            "dropped_tokens": dropped,
            "padding_tokens": padding,
            "shards": shards,
            "doc_length_log2_hist": np.trim_zeros(self.hist, "b").tolist(),
        }


def _merge_source(
    recipe: Recipe,
    spec: SourceSpec,
    units: list[Unit],
    results: list[UnitResult],
    tok: TokenizerInfo,
    work: Path,
    hashes: dict[str, str],
) -> dict:
    skipped: dict[str, int] = {}
    examples: list[list[str]] = []
    for r in results:
        for reason, n in r.skipped.items():
            skipped[reason] = skipped.get(reason, 0) + n
        examples += [list(e) for e in r.examples]
    kept = sum(r.documents for r in results)
    if kept == 0:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(skipped.items())) or "no input records"
        raise InputError(
            f"sources.{spec.name}: no document kept ({counts}); check the files and text_field"
            f" ({spec.text_field!r})"
        )
    threshold = _val_threshold(spec.validation, results)
    root = work / "sources" / spec.name
    train, val = _Split(recipe, tok, root / "train"), _Split(recipe, tok, root / "val")
    for unit in units:
        tok_path, doc_path = unit_paths(work, unit)
        for tokens, lengths, doc_hashes, cont, whole in _chunks(tok_path, doc_path, tok.dtype):
            if threshold is None:
                is_val = np.zeros(len(doc_hashes), bool)
            else:
                is_val = doc_hashes <= threshold
            tok_val = np.repeat(is_val, lengths)
            starts = is_val[1:] if cont else is_val  # the documents that start in this chunk
            first_val = bool(is_val[0])
            train.feed(tokens[~tok_val], lengths[~is_val], cont and not first_val, whole[~starts])
            val.feed(tokens[tok_val], lengths[is_val], cont and first_val, whole[starts])
    record = {
        "weight": spec.weight,
        "inputs": _inputs(spec, hashes, len(units)),
        "validation": {"docs": spec.validation.docs, "fraction": spec.validation.fraction},
        "skipped": dict(sorted(skipped.items())),
        "skipped_examples": examples[:5],
        "train": train.finish(recipe.remainder, tok.pad_id),
        "val": val.finish(recipe.remainder, tok.pad_id),
    }
    record["train"]["skipped"] = record["skipped"]  # a skipped document never reaches a split
    record["val"]["skipped"] = {}
    return record


def _chunks(tok_path: Path, doc_path: Path, dtype: str):
    """A unit's spill files as (tokens, lengths, hashes, continues, whole): at most CHUNK_DOCS
    documents and CHUNK_TOKENS tokens at a time; a longer document comes alone, in slices
    (``continues``: the first slice continues the previous chunk's last document; ``whole``:
    full lengths of the documents starting in the chunk). Plain reads, not a memory map, so
    the merge's resident memory is one chunk, whatever the size of the unit."""
    dtype = np.dtype(dtype)
    num_docs = doc_path.stat().st_size // DOC_DTYPE.itemsize
    with open(tok_path, "rb") as toks, open(doc_path, "rb") as docs_file:

        def read_tokens(n: int) -> np.ndarray:
            return np.fromfile(toks, dtype, count=n)

        a = 0
        while a < num_docs:
            head = np.fromfile(docs_file, DOC_DTYPE, count=min(CHUNK_DOCS, num_docs - a))
            lengths_all = head["length"].astype(np.int64)
            take = int(np.searchsorted(np.cumsum(lengths_all), CHUNK_TOKENS, side="right"))
            if take == 0:  # one document longer than CHUNK_TOKENS: in slices
                n, h = int(lengths_all[0]), head["hash"][:1].copy()
                for s in range(0, n, CHUNK_TOKENS):
                    m = min(CHUNK_TOKENS, n - s)
                    whole = lengths_all[:1] if s == 0 else lengths_all[:0]
                    yield read_tokens(m), np.array([m]), h, s > 0, whole
                take = 1
            else:
                lengths = lengths_all[:take]
                yield read_tokens(int(lengths.sum())), lengths, head["hash"][:take], False, lengths
            a += take
            docs_file.seek(a * DOC_DTYPE.itemsize)  # re-read what this chunk did not take


def _inputs(spec: SourceSpec, hashes: dict[str, str], num_units: int) -> dict:
    if spec.hf is not None:
        return {"hf": dict(spec.hf.__dict__), "units": num_units}
    files = [{"path": f, "bytes": os.path.getsize(f), "sha256": hashes[f]} for f in spec.files]
    return {"files": files, "units": num_units}


def _write_manifest(recipe: Recipe, tok: TokenizerInfo, sources: dict, work: Path) -> Manifest:
    tok_dir = work / "tokenizer"
    tok_dir.mkdir()
    (tok_dir / "tokenizer.json").write_text(tok.json, encoding="utf-8")
    if tok.kind == "tiktoken":
        shutil.copyfile(tok.file, tok_dir / Path(tok.file).name)
    if recipe.path and os.path.isfile(recipe.path):
        shutil.copyfile(recipe.path, work / "recipe.yaml")
    data = {
        "format": FORMAT,
        "mixer_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "name": recipe.name,
        "seed": recipe.seed,
        "seq_len": recipe.seq_len,
        "packing": recipe.packing,
        "remainder": recipe.remainder,
        "recipe": recipe.to_dict(),
        "tokenizer": {
            **tok.to_manifest(),
            "files": {p.name: sha256_file(p) for p in sorted(tok_dir.iterdir())},
        },
        "sources": sources,
    }
    manifest = Manifest(data, work)
    manifest.save()
    return manifest


def _report(
    console: Console, manifest: Manifest, seconds: float, reused: int, num_units: int
) -> None:
    for name, src in manifest.data["sources"].items():
        if src["skipped"]:
            counts = ", ".join(f"{k} {v}" for k, v in src["skipped"].items())
            where = "; ".join(f"{r} at {loc}" for r, loc in src["skipped_examples"])
            console.print(
                f"[yellow]warning[/]: {name}: skipped {counts} (first: {where})",
                highlight=False,
                soft_wrap=True,
            )
        for split in ("train", "val"):
            s = src[split]
            if s["documents"] and not s["blocks"]:
                console.print(
                    f"[yellow]warning[/]: {name}/{split}: {s['tokens']} tokens make no block of"
                    f" {manifest.seq_len}; they were dropped (use `remainder: pad` to keep them)",
                    highlight=False,
                    soft_wrap=True,
                )
    total = sum(
        s[sp]["blocks"] for s in manifest.data["sources"].values() for sp in ("train", "val")
    )
    note = f" (reused {reused} of {num_units} finished units)" if reused else ""
    console.print(
        f"built {len(manifest.data['sources'])} sources, {total:,} blocks in {seconds:.1f}s{note}",
        highlight=False,
    )
