"""The merge phase: a source's spill files, in unit order, routed to train or validation by
each document's text hash, packed into blocks and written as MDS shards, while the build's
later units are still being tokenized."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from mixer.artifacts.manifest import ValidationRecord
from mixer.builder.cut import Cut
from mixer.builder.origins import SourceOrigins
from mixer.builder.spill import DOC_DTYPE, UnitResult, unit_paths
from mixer.builder.split_pack import SplitPack
from mixer.builder.take_measure import Take, taken_mask
from mixer.builder.units import Unit
from mixer.errors import InputError
from mixer.recipe import Recipe, SourceSpec, ValidationSpec

CHUNK_DOCS = 1 << 16  # documents routed and packed per step ...
CHUNK_TOKENS = 1 << 24  # ... and tokens (64 MiB of uint32): the merge's memory bound


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


class SourceMerge:
    """Packs one source's units into shards as they finish, in unit order, while later units
    are still being tokenized: the merge overlaps the tokenizing instead of following it.

    With ``validation: docs: N`` the split threshold depends on every unit taken (the N
    smallest hashes of the source), so such a source is packed once its last unit is in. With
    a ``take`` budget (``cut``), each unit's taken documents are decided as it comes, in unit
    order (`mixer.builder.cut`); once the budget is met the source is closed and later units are
    ignored. ``units`` is the number of units, or None until `end` says it (a budgeted source
    plans its units lazily).
    """

    def __init__(
        self,
        recipe: Recipe,
        spec: SourceSpec,
        units: int | None,
        dtype: str,
        pad_id: int,
        work: Path,
        budget: Take | None = None,
    ):
        self.recipe, self.spec, self.dtype, self.pad_id = recipe, spec, dtype, pad_id
        self.work, self.total = work, units
        self.cut = Cut(budget, spec.validation) if budget is not None else None
        self.fraction = budget.amount if budget is not None and not budget.stops else None
        self.pending: dict[int, tuple[Unit, UnitResult]] = {}
        self.accepted: list[tuple[Unit, UnitResult, int | None]] = []  # (unit, result, taken)
        self.closed = units == 0  # no unit will be taken any more
        self.packed = 0
        self.threshold = None if spec.validation.docs else _val_threshold(spec.validation, [])
        root = work / "sources" / spec.name
        self.train = SplitPack(recipe, spec, dtype, pad_id, root / "train")
        self.val = SplitPack(recipe, spec, dtype, pad_id, root / "val")
        bestfit = recipe.packing_of(spec)[0] == "bestfit"
        self.origins = SourceOrigins(spec, root, reorder=bestfit)  # where each document came from

    def add(self, unit: Unit, result: UnitResult) -> None:
        """A finished unit (any order): takes and packs every unit whose predecessors are in."""
        if self.closed:
            return  # past the budget's end: read ahead, not taken
        self.pending[result.index] = (unit, result)
        while not self.closed and len(self.accepted) in self.pending:
            unit, res = self.pending.pop(len(self.accepted))
            taken = None
            if self.cut is not None:
                _, doc_path = unit_paths(self.work, unit)
                taken = self.cut.take(unit, np.fromfile(doc_path, DOC_DTYPE))
            self.accepted.append((unit, res, taken))
            self.closed = bool(self.cut and self.cut.done) or len(self.accepted) == self.total
        self.pending = {} if self.closed else self.pending
        self._pack_ready()

    def end(self, units: int) -> None:
        """The source has ``units`` units in all (its lazy planning ran out)."""
        self.total = units
        if len(self.accepted) == units:
            self.closed = True
            self._pack_ready()

    @property
    def wants(self) -> bool:
        """More units may be taken (the budget is not met, the source not exhausted)."""
        return not self.closed

    def _splits(self):
        return (("train", self.train), ("val", self.val))

    @property
    def done(self) -> bool:
        return self.closed and self.packed == len(self.accepted)

    def _pack_ready(self) -> None:
        if self.spec.validation.docs and self.threshold is None:
            if not self.closed:
                return
            if self.cut is not None:
                self.threshold = self.cut.val_threshold()
            else:
                self.threshold = _val_threshold(
                    self.spec.validation, [r for _, r, _ in self.accepted]
                )
        while self.packed < len(self.accepted):
            unit, res, taken = self.accepted[self.packed]
            self._pack(unit, taken)
            self.origins.add(self.work, unit, res, taken, self._route)
            self._orders()
            self.packed += 1

    def _orders(self) -> None:
        """Best-fit: the layout orders of the documents packed so far, to the tables."""
        for name, split in (("train", self.train), ("val", self.val)):
            for order in split.orders:
                self.origins.splits[name].order(order)
            split.orders.clear()

    def _route(self, hashes: np.ndarray) -> dict[str, np.ndarray]:
        """Which documents (by text hash) go to train and which to validation (neither: not
        taken by a ``take: fraction`` sample)."""
        keep = taken_mask(hashes, self.fraction)
        if self.threshold is None:
            return {"train": keep, "val": np.zeros_like(keep)}
        is_val = keep & (hashes <= self.threshold)
        return {"train": keep & ~is_val, "val": is_val}

    def _pack(self, unit: Unit, taken: int | None) -> None:
        tok_path, doc_path = unit_paths(self.work, unit)
        for tokens, lengths, hashes, cont, whole in _chunks(tok_path, doc_path, self.dtype, taken):
            routed = self._route(hashes)
            for split, m in ((self.train, routed["train"]), (self.val, routed["val"])):
                starts = m[1:] if cont else m  # the documents that start in this chunk
                split.feed(
                    tokens[np.repeat(m, lengths)], lengths[m], cont and bool(m[0]), whole[starts]
                )

    def finish(self) -> dict:
        """The fields of the source's SourceRecord but weight, key and inputs (every unit
        packed); InputError naming the files if the source kept no document or no block."""
        assert self.done
        spec = self.spec
        units = [u for u, _, _ in self.accepted]
        results = [r for _, r, _ in self.accepted]
        skipped: dict[str, int] = {}
        examples: list[tuple[str, str]] = []
        for r in results:
            for reason, n in r.skipped.items():
                skipped[reason] = skipped.get(reason, 0) + n
            examples += [tuple(e) for e in r.examples]
        kept = self.cut.meter.documents if self.cut else sum(r.documents for r in results)
        if kept == 0:
            why = _why_none(units, skipped, examples)
            if read := sum(r.documents for r in results):
                why = f"take: {spec.take.describe()} kept none of the {read:,} read"
            raise InputError(
                f"sources.{spec.name}: no document kept ({why});"
                f" check the files and text_field ({spec.text_field!r})"
            )
        skipped = dict(sorted(skipped.items()))
        ends = {n: s.close(self.recipe.remainder, self.pad_id) for n, s in self._splits()}
        self._orders()
        origins = self.origins.finish()
        # a skipped document never reaches a split: the train split carries the counts
        train, ledger = self.train.finish(*ends["train"], skipped)
        train = dataclasses.replace(train, origins=origins["train"])
        if train.blocks == 0:
            raise InputError(
                f"sources.{spec.name}: {train.documents:,} training documents of"
                f" {train.tokens:,} tokens (in {_files(units)}) make no block of"
                f" {self.recipe.seq_len} tokens; add text, lower seq_len, or use `remainder: pad`"
            )
        out = {
            "validation": ValidationRecord(
                docs=spec.validation.docs, fraction=spec.validation.fraction
            ),
            "skipped": skipped,
            "skipped_examples": tuple(examples[:5]),
            "train": train,
        }
        val, val_ledger = self.val.finish(*ends["val"], {})
        out["val"] = dataclasses.replace(val, origins=origins["val"])
        self.ledger = {"train": ledger, "val": val_ledger}  # beside the record (the manifest's)
        if self.cut is not None:
            out["take"] = self.cut.record(spec.take.to_dict())
        return out


def _files(units: list[Unit], most: int = 3) -> str:
    """The input files (or dataset) of a source's units, for messages: 'a.jsonl (0 bytes), …'."""
    seen = list(dict.fromkeys((u.path, u.size if u.kind == "file" else None) for u in units))
    names = [f"{p} ({n:,} bytes)" if n is not None else p for p, n in seen[:most]]
    return ", ".join(names) + (f" and {len(seen) - most} more" if len(seen) > most else "")


def _why_none(units: list[Unit], skipped: dict[str, int], examples: list) -> str:
    """Why a source kept no document: the skips and where, or the files that held no record."""
    if not skipped:
        return f"no record in {_files(units)}"
    counts = ", ".join(f"{k} {v}" for k, v in sorted(skipped.items()))
    where = "; ".join(f"{r} at {loc}" for r, loc in examples[:3])
    return f"{counts}: {where}"


def _chunks(tok_path: Path, doc_path: Path, dtype: str, taken: int | None = None):
    """A unit's spill files as (tokens, lengths, hashes, continues, whole): at most CHUNK_DOCS
    documents and CHUNK_TOKENS tokens at a time; a longer document comes alone, in slices
    (``continues``: the first slice continues the previous chunk's last document; ``whole``:
    full lengths of the documents starting in the chunk). Plain reads, not a memory map, so
    the merge's resident memory is one chunk, whatever the size of the unit."""
    dtype = np.dtype(dtype)
    num_docs = doc_path.stat().st_size // DOC_DTYPE.itemsize
    num_docs = num_docs if taken is None else min(num_docs, taken)  # a budget's prefix
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
