"""Reusing built sources: a source whose key is unchanged is linked, not tokenized again.

A source's key covers everything its blocks depend on: its inputs' content hashes, how they
are read, the validation policy, the tokenizer's identity and the packing. Input hashes are
carried over from the previous manifest while a file's size and modification time are
unchanged (as make and git do), so a rebuild that only changes weights, the total or the seed
reads no input and no shard: it links the shards and re-plans.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from mixer.artifacts.buildfile import read_checked
from mixer.artifacts.fetch import inside
from mixer.artifacts.manifest import BLOCKS_FORMAT, MAX_RECORD_BYTES, InputFile, Manifest
from mixer.artifacts.shards import index_problems
from mixer.errors import OutputError, RecipeError
from mixer.identity import digest, sha256_file
from mixer.recipe import Recipe, SourceSpec


@dataclass(kw_only=True)
class Decision:
    """Per source: built here (with its key and inputs) or linked from a built source."""

    key: str | None = None
    inputs: list[InputFile] | None = None
    linked: tuple[Manifest, str] | None = None


def stat_inputs(spec: SourceSpec, known: dict[str, InputFile]) -> list[InputFile]:
    """A source's files with their size, time and hash; a hash is computed only for a file not
    in ``known`` with the same size and modification time."""
    out = []
    for path in spec.files:
        st = os.stat(path)
        rec = known.get(path)
        same = rec and rec.sha256 and (rec.bytes, rec.mtime_ns) == (st.st_size, st.st_mtime_ns)
        sha = rec.sha256 if same else sha256_file(path)
        out.append(InputFile(path=path, bytes=st.st_size, mtime_ns=st.st_mtime_ns, sha256=sha))
    return out


def tokenizer_identity(recipe: Recipe) -> dict:
    """What determines the ids, without loading the tokenizer (a file hash, a hub name)."""
    t = recipe.tokenizer
    ident = {
        k: getattr(t, k)
        for k in ("kind", "pattern", "revision", "bos", "eos", "bos_token", "eos_token")
    }
    ident["file"] = t.location if t.kind == "hf" else sha256_file(t.location)
    return ident


def source_key(recipe: Recipe, spec: SourceSpec, inputs: list[InputFile], tok: dict) -> str:
    return settings_key(recipe, spec, tok, inputs=[i.sha256 for i in inputs])


def settings_key(recipe: Recipe, spec: SourceSpec, tok: dict, **inputs) -> str:
    """A source's key: ``inputs`` (what identifies what it read) and every setting its blocks
    depend on."""
    parts = {
        **inputs,
        "hf": spec.hf.__dict__ if spec.hf else None,
        "reading": [spec.text_field, spec.encoding, spec.txt_mode, spec.max_document_bytes],
        "validation": spec.validation.__dict__,
        "tokenizer": tok,
        "packing": _packing(recipe, spec),
        "blocks_format": BLOCKS_FORMAT,
    }
    return digest(parts)


def _packing(recipe: Recipe, spec: SourceSpec) -> list:
    """What the packing of a source's blocks depends on (concat: as before best-fit existed,
    so concat sources keep their keys)."""
    packing, window = recipe.packing_of(spec)
    out = [recipe.seq_len, packing, recipe.remainder, recipe.shard_size]
    return out if window is None else [*out, window]


def previous(out: Path) -> Manifest | None:
    """The manifest of the output being replaced, if it is a sound build."""
    try:
        return Manifest.load(out)
    except OutputError:
        return None


def known_inputs(manifest: Manifest | None) -> dict[str, InputFile]:
    if manifest is None:
        return {}
    return {f.path: f for src in manifest.sources.values() for f in src.inputs.files or ()}


def find(candidates: list[Manifest], key: str) -> tuple[Manifest, str] | None:
    """A built source with this key, in the first candidate that has one, and provenance (a
    source built before mixer recorded it is built again, to get it)."""
    for m in candidates:
        for name, src in m.sources.items():
            if src.key == key and src.train.origins is not None:
                return m, name
    return None


def reference(recipe: Recipe, spec: SourceSpec) -> tuple[Manifest, str]:
    """The build and source a ``from:`` source points to."""
    try:
        m = Manifest.load(spec.reuse)
    except OutputError as e:
        raise RecipeError(f"{recipe.path}: sources.{spec.name}.from: {e}") from None
    name = spec.reuse_source or spec.name
    if name not in m.sources:
        known = ", ".join(m.sources)
        raise RecipeError(
            f"{recipe.path}: sources.{spec.name}.from: {spec.reuse} has no source {name!r}"
            f" (it has {known}); name it with `source:`"
        )
    try:  # before any work: linked again, and checked again, when the build publishes
        for split in ("train", "val"):
            linkable(m, name, split)
        check_tokenizer_files(m)
    except OutputError as e:
        raise RecipeError(f"{recipe.path}: sources.{spec.name}.from: {e}") from None
    return m, name


def check_tokenizer_files(m: Manifest) -> None:
    """A linked build's tokenizer fingerprint recomputed from its tokenizer.json (the sha256
    of the JSON its blocks were made with): its recorded fingerprint and identity are fields
    anyone can write, its files are what it carries into this output."""
    path = m.root / "tokenizer" / "tokenizer.json"
    data = read_checked(path, m.root, "a tokenizer file", limit=MAX_RECORD_BYTES)
    if hashlib.sha256(data).hexdigest() != m.tokenizer.fingerprint:
        raise OutputError(
            f"{path}: does not match the manifest's tokenizer fingerprint (altered, or the"
            " manifest was written for another tokenizer); refused, rebuild that build"
        )


def check_compatible(recipe: Recipe, spec: SourceSpec, other: Manifest, tok) -> None:
    """Refuse mixing blocks that differ in tokenizer, seq_len, dtype or BOS/EOS policy."""
    mine = {
        "seq_len": recipe.seq_len,
        "tokenizer fingerprint": tok["fingerprint"],
        "dtype": tok["dtype"],
        "bos_id": tok["bos_id"],
        "eos_id": tok["eos_id"],
    }
    theirs = {
        "seq_len": other.seq_len,
        "tokenizer fingerprint": other.tokenizer.fingerprint,
        "dtype": other.dtype,
        "bos_id": other.tokenizer.bos_id,
        "eos_id": other.tokenizer.eos_id,
    }
    for what, value in mine.items():
        if theirs[what] != value:
            raise RecipeError(
                f"{recipe.path}: sources.{spec.name}.from: {other.root} was built with"
                f" {what} {theirs[what]}, this recipe uses {value}; rebuild that source with"
                " this recipe's tokenizer and seq_len, or use its files here"
            )


def link_source(src: Manifest, name: str, work: Path, new_name: str) -> None:
    """The built shards of ``name`` in ``src``, hard-linked (copied across file systems)."""
    for split in ("train", "val"):
        target = work / "sources" / new_name / split
        target.mkdir(parents=True, exist_ok=True)
        for path in linkable(src, name, split):
            try:
                os.link(path, target / path.name)
            except OSError:
                shutil.copy2(path, target / path.name)


def linkable(src: Manifest, name: str, split: str) -> list[Path]:
    """The files of a built split that reuse links: only those its manifest lists (index.json
    and the shards), each a regular file inside that build with its declared size, with an
    index.json that agrees with the manifest. So a build made elsewhere can bring no other
    file (a symbolic link to a private file, say) into this output. Reads no shard, as reuse
    promises (their hashes are checked when they are served or verified)."""
    rec = src.split(name, split)
    folder = src.split_dir(name, split)
    where = f"{src.root}: sources.{name}.{split}"
    problems = index_problems(folder / "index.json", rec, src.seq_len, src.dtype, src.root)
    if problems:
        raise OutputError(f"{where}: {problems[0]}; rebuild that build")
    sizes = {s.file: s.bytes for s in rec.shards}
    if rec.origins is not None:  # the provenance table goes with its blocks
        sizes[rec.origins.file] = rec.origins.bytes
    return [_own_file(folder / f, src.root, sizes.get(f), where) for f in ["index.json", *sizes]]


def copy_tokenizer(src: Manifest, dest: Path) -> None:
    """The tokenizer files ``src``'s manifest lists, each checked against its sha256."""
    dest.mkdir()
    for f, sha in src.tokenizer.files.items():
        path = src.root / "tokenizer" / f
        data = read_checked(path, src.root, "a tokenizer file", limit=MAX_RECORD_BYTES)
        if hashlib.sha256(data).hexdigest() != sha:
            raise OutputError(f"{path}: tokenizer file was altered (sha256 differs); rebuild it")
        (dest / f).write_bytes(data)


def _own_file(path: Path, root: Path, size: int | None, where: str) -> Path:
    """``path`` if it is a regular file (not a link) inside ``root`` of ``size`` bytes."""
    inside(path, root, "a file of the build")
    try:
        st = path.lstat()
    except FileNotFoundError:
        raise OutputError(f"{path}: missing from the build; rebuild {root}") from None
    if not stat.S_ISREG(st.st_mode):
        raise OutputError(f"{path}: not a regular file ({where}); refused")
    if size is not None and st.st_size != size:
        raise OutputError(f"{path}: {st.st_size:,} bytes, the manifest says {size:,}; refused")
    return path
