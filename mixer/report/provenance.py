"""Provenance: which input records a block, a sample or a training step was made of.

``pieces(out, sample=I)`` or ``pieces(out, step=S, rank=R, batch_size=B, ...)`` lists, per
block served there, every piece of a document in it, in block order: its source, input file,
record, the character range of the record's text it holds, its tokens, and whether the
document continues in another block (``cut``). The split's provenance table
(`mixer.artifacts.origins`) gives the documents of a block in O(log documents); the record is
re-read from the input and encoded again with the build's tokenizer to find the characters,
so nothing per token is stored.
"""

from __future__ import annotations

import os

import numpy as np

from mixer.artifacts.fetch import cache_root, fetch
from mixer.artifacts.manifest import Manifest
from mixer.artifacts.origins import FILENAME, OriginsTable
from mixer.errors import OutputError, UsageError
from mixer.plan import Plan

#: What ``record`` counts, per unit kind and file type (docs/provenance.md).
RECORD_KINDS = {".parquet": "row", ".json": "item", "hf": "example", "line": "line"}


def sample_block(plan: Plan, i: int) -> tuple[str, int]:
    """(source, train block) served at global sample ``i``: the one place a sample is mapped
    to a block, in O(log) (so a plan's journal can reroute it later)."""
    if not 0 <= i < plan.total:
        raise UsageError(f"--sample {i:,} is outside the plan's [0, {plan.total:,})")
    s, k = plan.locate(i)
    return plan.sources[s].name, int(plan.block_ids(s, [k])[0])


def step_samples(
    step: int, rank: int, batch_size: int, world_size: int = 1, grad_accum: int = 1
) -> list[int]:
    """The global samples rank ``rank`` trains on in optimizer step ``step``: global batch
    g = samples [g*B*W, (g+1)*B*W), rank r its r-th B-slice, ``grad_accum`` batches a step."""
    if not 0 <= rank < world_size:
        raise UsageError(f"--rank {rank} is not below --world-size {world_size}")
    out = []
    for g in range(step * grad_accum, (step + 1) * grad_accum):
        first = g * batch_size * world_size + rank * batch_size
        out += range(first, first + batch_size)
    return out


def open_table(manifest: Manifest, source: str, split: str, cache_dir=None) -> OriginsTable:
    """The split's provenance table; one line naming the fix for a build made without one."""
    rec = manifest.split(source, split)
    if rec.origins is None:
        raise OutputError(
            f"{manifest.location}: this build has no provenance (it was built before mixer"
            " recorded where documents come from); rebuild it with `mixer build` to get one"
        )
    cache = cache_root(cache_dir) / manifest.fingerprint[:16]
    rel = f"sources/{source}/{split}/{FILENAME}"
    path = fetch(manifest.location, rel, cache / rel, within=cache)
    if path.stat().st_size != rec.origins.bytes:
        raise OutputError(
            f"{path}: {path.stat().st_size:,} bytes, the manifest says {rec.origins.bytes:,}"
            " (truncated or altered); run `mixer verify` or rebuild"
        )
    table = OriginsTable(path)
    if rec.padding is not None:  # best-fit: blocks are found in the stream of real tokens
        from mixer.serve.padding import BlockPadding

        pads = BlockPadding(manifest, split, cache).array(source)
        table.padding_before = np.concatenate([[0], np.cumsum(pads)])
    return table


def block_pieces(
    manifest: Manifest, table: OriginsTable, source: str, split: str, block: int
) -> list[dict]:
    """The pieces of the split's block ``block`` from the table alone (no input read): each
    with ``doc`` (the row `document_pieces` needs) and ``span`` (its tokens in the document)."""
    L = manifest.seq_len
    first, last = block * L, (block + 1) * L
    if table.padding_before is not None:  # the table counts real tokens only (best-fit)
        before = table.padding_before
        first, last = first - int(before[block]), last - int(before[block + 1])
    out = []
    inputs = manifest.sources[source].inputs
    for doc in table.documents(first, last):
        a, b = max(first, doc["start"]), min(last, doc["start"] + doc["tokens"])
        unit = table.unit(doc["unit"])
        if inputs.hf is not None:
            unit["file"] = inputs.hf["path"]
        else:
            unit["file"] = _input_path(inputs, unit["file"], manifest.location)
        out.append(
            {
                "source": source,
                "split": split,
                "block": block,
                "file": unit["file"] if not unit["kind"].startswith("hf") else _hf_name(unit),
                "record": _record(table, unit, doc["record"]),
                "kind": _kind(table, unit),
                "tokens": b - a,
                "cut": a > doc["start"] or b < doc["start"] + doc["tokens"],
                "span": (a - doc["start"], b - doc["start"]),
                "doc": doc,
                "unit": unit,
            }
        )
    return out


def _input_path(inputs, i: int, where: str) -> str:
    """The path of the source's ``i``-th input file, as the manifest lists it."""
    files = inputs.files or ()
    if not 0 <= i < len(files):
        raise OutputError(
            f"{where}: the provenance table names input {i}, the manifest lists"
            f" {len(files)}; rebuild"
        )
    return files[i].path


def _kind(table: OriginsTable, unit: dict) -> str:
    from mixer.builder.reread import record_kind

    return record_kind(unit, table.meta["reading"]["txt_mode"])


def _record(table: OriginsTable, unit: dict, where: int) -> int | None:
    """The record as a user finds it: a line or paragraph's first line (from 1) of the file,
    a row of a Parquet file or an example of a dataset (from 0), an item of a JSON array
    (from 0); None for a text file read whole (the file is the record)."""
    kind = _kind(table, unit)
    if kind == "file":
        return None
    if kind in ("line", "paragraph"):
        return unit["base"] + where
    return unit["base"] + where - 1


def _hf_name(unit: dict) -> str:
    shard = f" shard {unit['start']}" if unit["kind"] == "hf-shard" else ""
    return f"hf:{unit['file']}{shard}"


class Provenance:
    """The pieces of blocks of one build: tables opened once, records re-read once."""

    def __init__(self, manifest: Manifest, cache_dir: str | os.PathLike | None = None):
        from mixer.report.origin_text import Texts

        self.manifest, self.cache_dir = manifest, cache_dir
        self.texts = Texts(manifest, cache_dir)
        self.tables: dict[tuple[str, str], OriginsTable] = {}

    def block(self, source: str, split: str, block: int) -> list[dict]:
        """The pieces of a block, as `pieces` returns them (without ``sample``)."""
        rec = self.manifest.split(source, split)
        if not 0 <= block < rec.blocks:
            raise UsageError(
                f"{source}/{split} has {rec.blocks:,} blocks; --index {block} is out of range"
            )
        key = (source, split)
        if key not in self.tables:
            self.tables[key] = open_table(self.manifest, source, split, self.cache_dir)
        table = self.tables[key]
        return [
            public(p, self.texts.piece(table, p))
            for p in block_pieces(self.manifest, table, source, split, block)
        ]


def pieces(
    out: str | os.PathLike,
    *,
    sample: int | None = None,
    step: int | None = None,
    rank: int = 0,
    batch_size: int | None = None,
    world_size: int = 1,
    grad_accum: int = 1,
    cache_dir: str | os.PathLike | None = None,
) -> list[dict]:
    """Every piece of a document in the blocks served at global sample ``sample``, or to rank
    ``rank`` in optimizer step ``step`` (which needs ``batch_size``): dicts with ``sample``,
    ``block``, ``source``, ``file``, ``record``, ``chars``, ``tokens``, ``cut`` (and ``kind``,
    ``text``, ``note``), in serving order (docs/provenance.md)."""
    from mixer.artifacts.planfile import load_plan
    from mixer.serve.cache import open_build

    manifest = open_build(str(out), cache_dir)
    plan = load_plan(manifest)
    samples = served_samples(plan, sample, step, rank, batch_size, world_size, grad_accum)
    return served_pieces(Provenance(manifest, cache_dir), plan, samples)


def served_pieces(prov: Provenance, plan: Plan, samples: list[int]) -> list[dict]:
    """The pieces of the blocks served at ``samples``, each with its ``sample``."""
    out = []
    for i in samples:
        source, block = sample_block(plan, i)
        out += [{"sample": i, **p} for p in prov.block(source, "train", block)]
    return out


def served_samples(
    plan: Plan, sample, step, rank: int, batch_size, world_size: int, grad_accum: int
) -> list[int]:
    """The samples of ``--sample`` or ``--step``; one-line UsageErrors for the options."""
    if (sample is None) == (step is None):
        raise UsageError("give --sample N, or --step S with --rank and --batch-size")
    if sample is not None:
        return [sample]
    if batch_size is None:
        raise UsageError("--step needs --batch-size (and --world-size, --grad-accum if not 1)")
    samples = step_samples(step, rank, batch_size, world_size, grad_accum)
    if samples[-1] >= plan.total:
        raise UsageError(
            f"--step {step} ends at sample {samples[-1]:,}, beyond the plan's {plan.total:,}"
            " samples; check --batch-size, --world-size and --grad-accum"
        )
    return samples


def public(p: dict, found: dict) -> dict:
    """A piece as printed and returned: the table's fields and what re-reading found."""
    keys = ("block", "source", "split", "file", "record", "kind", "tokens", "cut")
    return {**{k: p[k] for k in keys}, **found}
