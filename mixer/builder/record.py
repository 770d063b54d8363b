"""The end of a build: the manifest written into the work folder, and the summary printed."""

from __future__ import annotations

import dataclasses
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console

from mixer import __version__
from mixer.artifacts.manifest import (
    FORMAT,
    EncoderRecord,
    Inputs,
    Manifest,
    SourceRecord,
    TokenizerRecord,
)
from mixer.builder import budgeted, reuse
from mixer.builder.tokenizer import TokenizerInfo
from mixer.identity import sha256_file
from mixer.recipe import Recipe


def write_manifest(
    recipe: Recipe,
    tok: TokenizerInfo | None,
    ident: dict,
    decisions: dict[str, reuse.Decision],
    sources: dict[str, SourceRecord],
    work: Path,
    encoders: dict[str, EncoderRecord] | None = None,
) -> Manifest:
    """Write the tokenizer files and the sealed manifest into ``work``; the manifest.
    ``encoders``: which encoder built each source (outside the fingerprint)."""
    tok_dir = work / "tokenizer"
    if tok is not None:
        tok_dir.mkdir()
        (tok_dir / "tokenizer.json").write_text(tok.json, encoding="utf-8")
        if tok.kind == "tiktoken":
            shutil.copyfile(tok.file, tok_dir / Path(tok.file).name)
    else:  # every source reused from builds with this very tokenizer
        src = next(d.linked for d in decisions.values() if d.linked)[0]
        reuse.copy_tokenizer(src, tok_dir)  # the listed files only, hashes checked
    if recipe.path and os.path.isfile(recipe.path):
        shutil.copyfile(recipe.path, work / "recipe.yaml")
    files = {p.name: sha256_file(p) for p in sorted(tok_dir.iterdir())}
    if tok is not None:
        tokenizer = TokenizerRecord(**tok.to_manifest(), identity=ident, files=files)
    else:
        tokenizer = dataclasses.replace(src.tokenizer, files=files)
    manifest = Manifest(
        format=FORMAT,
        mixer_version=__version__,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        name=recipe.name,
        seed=recipe.seed,
        seq_len=recipe.seq_len,
        packing=recipe.packing,
        remainder=recipe.remainder,
        recipe=recipe.to_dict(),
        tokenizer=tokenizer,
        sources=sources,
        encoders=encoders,
        root=work,
        location=str(work),
    ).sealed()
    manifest.save()
    return manifest


def report(
    console: Console,
    manifest: Manifest,
    seconds: float,
    reused: int,
    num_units: int,
    decisions: dict[str, reuse.Decision],
) -> None:
    for name, src in manifest.sources.items():
        if src.skipped and decisions[name].linked is None:
            counts = ", ".join(f"{k} {v}" for k, v in src.skipped.items())
            where = "; ".join(f"{r} at {loc}" for r, loc in src.skipped_examples)
            console.print(
                f"[yellow]warning[/]: {name}: skipped {counts} (first: {where})",
                highlight=False,
                soft_wrap=True,
            )
        for split in ("train", "val"):
            s = src.split(split)
            if s.documents and not s.blocks:
                console.print(
                    f"[yellow]warning[/]: {name}/{split}: {s.tokens} tokens make no block of"
                    f" {manifest.seq_len}; they were dropped (use `remainder: pad` to keep them)",
                    highlight=False,
                    soft_wrap=True,
                )
        if src.take is not None and decisions[name].linked is None:
            from mixer.report.stats import taken_line  # the words `mixer stats` prints
            from mixer.typed import to_json

            line = taken_line(to_json(src.take))
            console.print(f"{name}: {line}", highlight=False, soft_wrap=True)
    total = sum(s.train.blocks + s.val.blocks for s in manifest.sources.values())
    linked = [n for n, d in decisions.items() if d.linked is not None]
    notes = []
    if reused:
        notes.append(f"reused {reused} of {num_units} finished units")
    if linked:
        notes.append(f"reused built source{'s' * (len(linked) > 1)} {', '.join(linked)}")
    note = f" ({'; '.join(notes)})" if notes else ""
    console.print(
        f"built {len(manifest.sources)} sources, {total:,} blocks in {seconds:.1f}s{note}",
        highlight=False,
    )


def encoder_record(verdict, source: str) -> EncoderRecord:
    """What encoded ``source`` (`mixer.builder.encoders.Verdict`) and the size of its check."""
    docs, tokens = verdict.checked.get(source, (0, 0))
    return EncoderRecord(
        encoder=verdict.chosen.name,
        version=verdict.chosen.version,
        reference=verdict.reference,
        checked_documents=docs,
        checked_tokens=tokens,
    )


def source_record(recipe, spec, decision, built: dict, merge, ident) -> SourceRecord:
    """A built source's record: ``built`` the merge's fields; a budgeted source lists the
    files it read, unhashed (`mixer.builder.budgeted`)."""
    if spec.take is None:
        inputs = Inputs(
            units=merge.total,
            hf=dict(spec.hf.__dict__) if spec.hf else None,
            files=None if spec.hf else tuple(decision.inputs),
        )
        return SourceRecord(weight=spec.weight, key=decision.key, inputs=inputs, **built)
    files = budgeted.read_files([u.path for u, _, _ in merge.accepted]) if spec.files else None
    inputs = Inputs(
        units=len(merge.accepted), hf=dict(spec.hf.__dict__) if spec.hf else None, files=files
    )
    key = budgeted.budget_key(recipe, spec, files or (), ident)
    return SourceRecord(weight=spec.weight, key=key, inputs=inputs, **built)
