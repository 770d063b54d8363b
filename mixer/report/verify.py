"""Checking an output against its manifest: cheaply (sizes) or fully (hashes, every block)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from mixer.artifacts.buildfile import sha256_checked
from mixer.artifacts.fetch import inside
from mixer.artifacts.manifest import SPLITS, Manifest
from mixer.artifacts.shards import bad_starts, index_problems, read_shard_file
from mixer.errors import MixerError, OutputError


def check_files(manifest: Manifest) -> None:
    """Every shard present with its recorded size (a stat each): OutputError naming the first
    that is missing or truncated. Local builds only; remote shards are checked when fetched."""
    if manifest.location != str(manifest.root):
        return
    for shard, path in _shards(manifest):
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise OutputError(f"{path}: shard is missing; rebuild or restore the output") from None
        if size != shard.bytes:
            raise OutputError(
                f"{path}: shard has {size:,} bytes, the manifest says {shard.bytes:,}"
                " (truncated or altered); run `mixer verify` or rebuild"
            )


def verify(root: str | os.PathLike) -> tuple[list[str], dict]:
    """(problems, totals) of a full check: manifest and plan fingerprints, tokenizer files,
    every shard's sha256, its blocks decoded and checked, counts against the manifest."""
    problems: list[str] = []
    try:
        manifest = Manifest.load(root)
    except OutputError as e:
        return [str(e)], {}
    totals = {"shards": 0, "blocks": 0, "manifest": manifest.fingerprint}
    try:
        from mixer.artifacts.planfile import load_plan

        totals["plan"] = load_plan(manifest).fingerprint  # to pin: StreamingMixture(expect=)
    except MixerError as e:
        problems.append(str(e))
    problems += _tokenizer_problems(manifest)
    for name in manifest.source_names:
        for split in SPLITS:
            problems += _split_problems(manifest, name, split, totals)
    return problems, totals


def _tokenizer_problems(manifest: Manifest) -> Iterator[str]:
    folder = manifest.root / "tokenizer"
    for name, digest in manifest.tokenizer.files.items():
        path = folder / name
        if not path.exists():
            yield f"{path}: tokenizer file is missing"
        elif problem := _outside(path, manifest):
            yield problem
        else:
            try:
                same = sha256_checked(path, manifest.root, "a tokenizer file") == digest
            except OutputError as e:
                yield str(e)
                continue
            if not same:
                yield f"{path}: tokenizer file was altered (sha256 differs from the manifest)"


def _split_problems(manifest: Manifest, name: str, split: str, totals: dict) -> list[str]:
    rec = manifest.split(name, split)
    folder = manifest.split_dir(name, split)
    index = folder / "index.json"
    problems = index_problems(index, rec, manifest.seq_len, manifest.dtype, manifest.root)
    listed = {s.file for s in rec.shards} | {"index.json"}
    if rec.origins is not None:
        listed.add(rec.origins.file)
        problems += _origins_problems(manifest, folder / rec.origins.file, rec.origins.sha256)
    if rec.padding is not None:  # best-fit's per-block padding: checked as the table is
        listed.add(rec.padding.file)
        problems += _origins_problems(
            manifest, folder / rec.padding.file, rec.padding.sha256, "padding file"
        )
    if folder.is_dir():
        problems += [
            f"{folder / f}: unexpected file" for f in sorted(set(os.listdir(folder)) - listed)
        ]
    blocks = 0
    for shard in rec.shards:
        path = folder / shard.file
        if not path.exists():
            problems.append(f"{path}: shard is missing")
            continue
        if problem := _outside(path, manifest):
            problems.append(problem)
            continue
        try:
            if sha256_checked(path, manifest.root, "a shard") != shard.sha256:
                problems.append(f"{path}: sha256 differs from the manifest (corrupted or altered)")
                continue
            reader = read_shard_file(
                path,
                seq_len=manifest.seq_len,
                dtype=manifest.dtype,
                raw_bytes=shard.raw_bytes,
                root=manifest.root,
            )
        except OutputError as e:
            problems.append(str(e))
            continue
        problems += _block_problems(manifest, path, reader, shard.samples)
        blocks += len(reader)
        totals["shards"] += 1
    totals["blocks"] += blocks
    if blocks != rec.blocks and not any("shard" in p for p in problems):
        problems.append(f"{folder}: {blocks} blocks, the manifest says {rec.blocks}")
    return problems


def _origins_problems(
    manifest: Manifest, path: Path, sha256: str, what: str = "provenance table"
) -> list[str]:
    """The provenance table (or padding file): present, inside the build, with the
    manifest's sha256."""
    if not path.exists():
        return [f"{path}: {what} is missing"]
    if problem := _outside(path, manifest):
        return [problem]
    try:
        if sha256_checked(path, manifest.root, f"a {what}") != sha256:
            return [f"{path}: sha256 differs from the manifest (corrupted or altered)"]
    except OutputError as e:  # a link, a FIFO, a folder: not a regular file of the build
        return [str(e)]
    return []


def _block_problems(manifest: Manifest, path: Path, reader, samples: int) -> list[str]:
    problems = []
    if len(reader) != samples:
        problems.append(f"{path}: {len(reader)} blocks, the manifest says {samples}")
    ids = reader.all_ids()
    vocab = manifest.tokenizer.vocab_size
    if ids.size and int(ids.max()) >= vocab:
        problems.append(f"{path}: token id {int(ids.max())} >= vocabulary size {vocab}")
    block = bad_starts(*reader.all_starts(), manifest.seq_len)
    if block is not None:
        problems.append(f"{path}: block {block} has invalid document starts")
    return problems


def _outside(path: Path, manifest: Manifest) -> str | None:
    """A problem if ``path`` resolves outside the build (a symbolic link out of it)."""
    try:
        inside(path, manifest.root, "a file of the build")
    except OutputError as e:
        return str(e)
    return None


def _shards(manifest: Manifest):
    for name in manifest.source_names:
        for split in SPLITS:
            folder = manifest.split_dir(name, split)
            for shard in manifest.split(name, split).shards:
                yield shard, folder / shard.file
