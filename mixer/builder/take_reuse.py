"""The build's side of takes: whether a source under a take can be linked from the output
being replaced, its reuse key, the units it keeps for the next build, the plan check.

A source under a take has a reuse key covering its settings, its take (``auto`` as such: the amount
follows the plan) and the files it read up to where it stopped, by size and modification time:
no input is hashed whole (hashing a 2 GB file of which 50 MB are read would cost more than the
build). What was taken is fixed by the manifest's ``take.selection``, a sha256 of the taken
documents' text hashes and token counts in order, which a rebuild reproduces exactly. Files
past the stop may change or be added freely: they were not read.

Its work units (spill files and completion records) are kept next to the output, in
``.OUT.units/NAME/``, so that raising the take (or a plan that needs more under ``auto``)
tokenizes only the units beyond those already read; deleting that folder only costs that.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

from mixer.artifacts.manifest import InputFile, Manifest, SourceRecord
from mixer.artifacts.planfile import planned_counts
from mixer.builder.reuse import settings_key
from mixer.builder.take_measure import Take
from mixer.errors import PlanError
from mixer.recipe import Recipe, SourceSpec


def input_identity(path: str) -> str:
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}"


def read_files(paths: list[str]) -> tuple[InputFile, ...]:
    """The files a source under a take read (up to its stop), by size and time, not hashed."""
    out = []
    for p in dict.fromkeys(paths):
        st = os.stat(p)
        out.append(InputFile(path=p, bytes=st.st_size, mtime_ns=st.st_mtime_ns))
    return tuple(out)


def take_key(recipe: Recipe, spec: SourceSpec, files, tok: dict) -> str:
    read = [[f.bytes, f.mtime_ns] for f in files]
    return settings_key(recipe, spec, tok, take=spec.take.to_dict(), read=read)


def linkable(
    prev: Manifest | None, recipe: Recipe, spec: SourceSpec, tok: dict, take: Take
) -> tuple[Manifest, str] | None:
    """The previous build's source, if it took what this recipe would take: same settings and
    take, the files it read unchanged and still first in the list (all of them when it ran
    out of input), and, under ``auto``, enough train blocks for this plan."""
    rec = prev.sources.get(spec.name) if prev is not None else None
    if rec is None or rec.take is None or rec.train.origins is None:
        return None  # (a build without provenance is built again, to get it)
    files = rec.inputs.files or ()
    if tuple(f.path for f in files) != spec.files[: len(files)]:
        return None
    if rec.take.exhausted and len(files) != len(spec.files):
        return None  # it read everything; there is more now
    for f in files:
        try:
            st = os.stat(f.path)
        except OSError:
            return None
        if (st.st_size, st.st_mtime_ns) != (f.bytes, f.mtime_ns):
            return None
    if take_key(recipe, spec, files, tok) != rec.key:
        return None
    if take.need is not None and not rec.take.exhausted and rec.train.blocks < take.need.blocks:
        return None  # auto: the plan needs more now
    return prev, spec.name


def unit_cache(out: Path) -> Path:
    return out.parent / f".{out.name}.units"


def restore_units(out: Path, work: Path, names: list[str]) -> None:
    """Put the units kept by the last build of these sources under a take back into ``work``."""
    for name in names:
        src, dst = unit_cache(out) / name, work / "units" / name
        if src.is_dir() and not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.rename(src, dst)


def keep_units(out: Path, work: Path, names: list[str], with_take: list[str]) -> None:
    """Move the units of the sources under a take just built out of ``work`` into the cache, and
    drop the cache of sources no longer under a take."""
    cache = unit_cache(out)
    for name in names:
        src = work / "units" / name
        if src.is_dir():
            cache.mkdir(exist_ok=True)
            shutil.rmtree(cache / name, ignore_errors=True)
            os.rename(src, cache / name)
    if cache.is_dir():
        for stale in cache.iterdir():
            if stale.name not in with_take:
                shutil.rmtree(stale, ignore_errors=True)
        if not any(cache.iterdir()):
            cache.rmdir()


def check_taken(recipe: Recipe, records: dict[str, SourceRecord], takes: dict) -> None:
    """Refuse a plan that repeats a source with a fixed take beyond its max_epochs, saying
    how much more to take (the plan's own check would only say "add data")."""
    total = recipe.mixture.samples or recipe.mixture.tokens
    if total is None:
        return  # the total is the largest without repeats: nothing to refuse
    names = list(records)
    counts = planned_counts(
        recipe.to_dict()["mixture"],
        recipe.seq_len,
        {n: records[n].weight for n in names},
        {n: records[n].train.blocks for n in names},
    ).per_source
    for name, samples in zip(names, counts, strict=True):
        spec, rec = recipe.source(name), records[name]
        limit = spec.max_epochs or recipe.mixture.max_epochs
        if name not in takes or limit is None or rec.take.exhausted:
            continue
        blocks = rec.train.blocks
        need = math.ceil(samples / limit)
        if samples <= limit * blocks:
            continue
        raise PlanError(_more(recipe, spec, rec, samples, limit, need))


def _more(recipe, spec, rec, samples: int, limit: float, need: int) -> str:
    t, blocks = rec.take, rec.train.blocks
    scale = need / blocks
    if spec.take.tokens is not None:
        more = f"take.tokens to about {math.ceil(t.tokens * scale * 1.01):,}"
    elif spec.take.documents is not None:
        more = f"take.documents to about {math.ceil(t.documents * scale * 1.01):,}"
    else:
        more = f"take.fraction to about {min(1.0, spec.take.fraction * scale * 1.01):.4g}"
    return (
        f"sources.{spec.name}.take: {spec.take.describe()} gave {blocks:,} train blocks; the"
        f" plan's {samples:,} samples of it at max_epochs {limit:g} need {need:,}"
        f" ({(need - blocks) * recipe.seq_len:,} more train tokens); raise {more}, or use"
        " take: auto"
    )
