"""The end of a build: each source's record, and the manifest written into the work folder."""

from __future__ import annotations

import dataclasses
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

from mixer.artifacts.manifest import (
    FORMAT,
    EncoderRecord,
    Inputs,
    Manifest,
    SourceRecord,
    TokenizerRecord,
)
from mixer.builder import reuse, take_reuse
from mixer.builder.tokenizer import TokenizerInfo
from mixer.identity import sha256_file
from mixer.recipe import Recipe
from mixer.version import __version__


def write_manifest(
    recipe: Recipe,
    tok: TokenizerInfo | None,
    ident: dict,
    decisions: dict[str, reuse.Decision],
    sources: dict[str, SourceRecord],
    work: Path,
    used: dict[str, tuple] | None = None,
) -> Manifest:
    """Write the tokenizer files and the sealed manifest into ``work``; the manifest.
    ``used``: per source, (the encoder that built it, its ledger), both outside the
    fingerprint, either None if unknown (a source linked from an older build)."""
    used = used or {}
    encoders = {k: e for k, (e, _) in used.items() if e is not None} or None
    ledger = {k: led for k, (_, led) in used.items() if led is not None} or None
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
        ledger=ledger,
        root=work,
        location=str(work),
    ).sealed()
    manifest.save()
    return manifest


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
    """A built source's record: ``built`` the merge's fields; a source under a take lists the
    files it read, unhashed (`mixer.builder.take_reuse`)."""
    if spec.take is None:
        inputs = Inputs(
            units=merge.total,
            hf=dict(spec.hf.__dict__) if spec.hf else None,
            files=None if spec.hf else tuple(decision.inputs),
        )
        return SourceRecord(weight=spec.weight, key=decision.key, inputs=inputs, **built)
    files = take_reuse.read_files([u.path for u, _, _ in merge.accepted]) if spec.files else None
    inputs = Inputs(
        units=len(merge.accepted), hf=dict(spec.hf.__dict__) if spec.hf else None, files=files
    )
    key = take_reuse.take_key(recipe, spec, files or (), ident)
    return SourceRecord(weight=spec.weight, key=key, inputs=inputs, **built)
