"""One work unit, inside a build worker: documents -> token ids -> the unit's spill files
(`mixer.builder.spill`), appended batch by batch: a worker holds one batch (at most
``BATCH_CHARS`` characters) at a time, whatever the size of the unit.

With a ``take`` budget the worker may stop before the unit's end: once what the unit alone
contributes reaches the whole budget (`mixer.builder.budget.Meter`, a lower bound), no document
after it can be taken. The limit is the budget itself, not what is still missing when the unit
starts, so a unit's output never depends on timing.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from mixer.builder.budget import Meter
from mixer.builder.lines import CONTINUES, PIECE_CHARS, Cursor
from mixer.builder.readers import REASONS, read_unit
from mixer.builder.spill import (
    DOC_DTYPE,
    UnitResult,
    doc_hash,
    hash_digest,
    text_hashes,
    unit_paths,
)
from mixer.builder.text import split_text
from mixer.builder.tokenizer import Encoder
from mixer.builder.units import Unit
from mixer.errors import InputError
from mixer.recipe import SourceSpec

BATCH_CHARS = 1 << 20  # characters of text per encode_batch call (its memory: ~40 bytes a token)
BATCH_DOCS = 4096
MAX_EXAMPLES = 5  # skip locations kept per unit (and printed per source)


def run_unit(
    unit: Unit,
    spec: SourceSpec,
    encoder: Encoder,
    work_dir: Path,
    *,
    strict: bool,
    keep_smallest: int,
    progress=None,
    limit: tuple[str, float] | None = None,
) -> UnitResult:
    """Read, tokenize and spill one unit; ``progress(*event)`` per batch and at the end. The
    caller writes the completion record (`mixer.builder.spill.save_record`) once it has the
    result. ``limit``: (measure, amount) of a ``take`` budget that ends the unit early."""
    w = _UnitWriter(unit, spec, encoder, work_dir, strict, keep_smallest, progress)
    if limit is not None:
        w.meter, w.limit = Meter(limit[0], spec.validation), limit[1]
    with w.tok_file, w.doc_file:
        for where, text, reason in read_unit(unit, spec, w.cursor):
            if reason is None and w.open_doc is None and len(text) <= PIECE_CHARS:
                w.add(text, where)  # a whole document: the common case
            elif reason == CONTINUES:
                w.piece(text, where, last=False)
            elif reason is None:
                if w.open_doc is None:
                    w.long_text(text, where)
                else:
                    w.piece(text, where, last=True)
            else:
                w.skip(reason, where)
            if w.stopped:
                break
        early = w.stopped  # (the last flush may reach the limit at the unit's end: complete)
        w.flush()
    res = w.res
    res.complete, res.limit = not early, None if limit is None else limit[1]
    res.bytes = unit.size if res.complete else unit.bytes_to(w.cursor.pos) or 0
    res.smallest = w.smallest if keep_smallest else None
    if progress:
        progress("unit", unit.source, unit.index, res.documents, res.tokens, res.bytes)
    return res


class _Doc:
    """A document read in pieces: its running hash, tokens so far, where they start in the spill."""

    def __init__(self):
        self.hash = hashlib.blake2b(digest_size=8)
        self.length = 0
        self.token_start: int | None = None


class _UnitWriter:
    """Batches texts, encodes them, appends tokens and document records to the spill files.

    A batch holds at most BATCH_CHARS characters whatever the size of a document: a long
    document arrives (or is cut) in pieces that share one BOS, one EOS, one hash and one record.
    Whole documents (nearly all) cost one append each; only pieces carry per-item bookkeeping
    (``parts``), so a batch of whole documents is recorded with array operations.
    """

    def __init__(self, unit, spec, encoder, work_dir, strict, keep_smallest, progress):
        self.unit, self.encoder, self.strict, self.progress = unit, encoder, strict, progress
        self.keep_smallest = keep_smallest
        self.hashing = spec.validation.active or spec.take is not None
        self.cursor = Cursor()
        self.meter: Meter | None = None
        self.limit, self.stopped = 0.0, False
        self.res = UnitResult(source=unit.source, index=unit.index)
        self.tok_path, self.doc_path = unit_paths(work_dir, unit)
        self.tok_path.parent.mkdir(parents=True, exist_ok=True)
        self.tok_file = open(self.tok_path, "wb")  # noqa: SIM115 (closed by run_unit)
        self.doc_file = open(self.doc_path, "wb")  # noqa: SIM115
        self.smallest = np.empty(0, np.uint64)
        self.texts: list[str] = []
        self.wheres: list[int] = []
        self.ends: list[int] = []  # where the reader was after each text
        self.parts: dict[int, tuple[bool, bool, _Doc]] = {}  # batch index -> a piece's place
        self.chars = 0
        self.spilled = 0  # tokens in the spill file
        self.open_doc: _Doc | None = None  # a document whose last piece has not come yet

    def skip(self, reason: str, where: int) -> None:
        """A bad document reported by the reader (which may end a document read in part)."""
        if self.open_doc is not None:
            self._drop(self.open_doc)
        self._count(reason, where)

    def _count(self, reason: str, where: int) -> None:
        if self.strict:
            raise InputError(
                f"{self.unit.locate(where)}: {REASONS[reason]} ({reason}); fix the input, or"
                " build without --strict to skip and count such documents"
            )
        self.res.skipped[reason] += 1
        if len(self.res.examples) < MAX_EXAMPLES:
            self.res.examples.append((reason, self.unit.locate(where)))

    def long_text(self, text: str, where: int) -> None:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            self._count("invalid_unicode", where)
            return
        pieces = split_text(text)
        for p in pieces[:-1]:
            self.piece(p, where, last=False)
        self.piece(pieces[-1], where, last=True)

    def add(self, text: str, where: int) -> None:
        """A whole document (no document is open)."""
        self.texts.append(text)
        self.wheres.append(where)
        self.ends.append(self.cursor.pos)
        self.chars += len(text)
        if self.chars >= BATCH_CHARS or len(self.texts) >= BATCH_DOCS:
            self.flush()

    def piece(self, text: str, where: int, *, last: bool) -> None:
        first = self.open_doc is None
        if first and last:
            return self.add(text, where)
        doc = self.open_doc
        if first:
            doc = self.open_doc = _Doc()
        if self.hashing:
            doc.hash.update(text.encode("utf-8", "surrogatepass"))
        if last:
            self.open_doc = None
        self.parts[len(self.texts)] = (first, last, doc)
        self.add(text, where)

    def _keep(self, keep: list[bool]) -> None:
        """Keep only the batch items where ``keep`` (rare: a dropped document)."""
        index = np.cumsum(keep) - 1
        self.parts = {int(index[i]): part for i, part in self.parts.items() if keep[i]}
        self.texts = [t for t, k in zip(self.texts, keep, strict=True) if k]
        self.wheres = [w for w, k in zip(self.wheres, keep, strict=True) if k]
        self.ends = [e for e, k in zip(self.ends, keep, strict=True) if k]
        self.chars = sum(map(len, self.texts))

    def _drop(self, doc: _Doc) -> None:
        """Forget a document read in part: its pieces in the batch and in the spill file."""
        if self.open_doc is doc:
            self.open_doc = None
        self._keep([self.parts.get(i, (0, 0, None))[2] is not doc for i in range(len(self.texts))])
        if doc.token_start is not None:
            self.tok_file.flush()
            self.tok_file.truncate(doc.token_start * self.encoder.dtype.itemsize)
            self.tok_file.seek(0, os.SEEK_END)
            self.res.tokens -= self.spilled - doc.token_start
            self.spilled = doc.token_start

    def flush(self) -> None:
        """Encode and spill the batch."""
        if not self.texts:
            return
        first = last = None
        if self.parts:
            first, last = np.ones(len(self.texts), bool), np.ones(len(self.texts), bool)
            for i, (f, la, _) in self.parts.items():
                first[i], last[i] = f, la
        try:
            ids, lengths = self.encoder.encode(self.texts, first, last)
        except TypeError:  # tokenizers refuses str with lone surrogates (JSON "\ud800")
            self._drop_invalid_unicode()
            return self.flush()
        self.tok_file.write(ids)
        if self.parts or not lengths.all():
            rec = self._records(lengths)
        else:  # whole documents only
            rec = np.empty(len(lengths), DOC_DTYPE)
            rec["length"], rec["end"] = lengths, self.ends
            rec["hash"] = text_hashes(self.texts) if self.hashing else 0
        self.spilled += ids.size
        self.res.tokens += int(ids.size)
        self.doc_file.write(rec)
        if self.keep_smallest and len(rec):
            both = np.concatenate([self.smallest, rec["hash"]])
            self.smallest = np.sort(both)[: self.keep_smallest]
        self.res.documents += len(rec)
        if self.progress:
            self.progress("batch", self.unit.source, len(rec), int(ids.size))
        self.texts, self.wheres, self.ends, self.parts, self.chars = [], [], [], {}, 0
        if self.meter is not None:
            self.meter.add(rec["hash"], rec["length"])
            self.stopped = self.open_doc is None and self.meter.value >= self.limit

    def _records(self, lengths: np.ndarray) -> np.ndarray:
        """Document records of a batch holding pieces or empty documents, item by item."""
        offsets = (self.spilled + np.cumsum(lengths) - lengths).tolist()
        docs, hashes, ends = [], [], []
        for i, (text, n) in enumerate(zip(self.texts, lengths.tolist(), strict=True)):
            part = self.parts.get(i)
            if part is None:  # a whole document
                if n == 0:  # nothing to train on, and no BOS/EOS to add
                    self._count("empty", self.wheres[i])
                    continue
                docs.append(n)
                hashes.append(doc_hash(text) if self.hashing else 0)
                ends.append(self.ends[i])
                continue
            f, la, doc = part
            if f:
                doc.token_start = offsets[i]
            doc.length += n
            if la:
                docs.append(doc.length)
                hashes.append(hash_digest(doc.hash) if self.hashing else 0)
                ends.append(self.ends[i])
        rec = np.empty(len(docs), DOC_DTYPE)
        rec["length"], rec["hash"], rec["end"] = docs, hashes, ends
        return rec

    def _drop_invalid_unicode(self) -> None:
        keep, bad_docs = [], []
        for i, text in enumerate(self.texts):
            try:
                text.encode("utf-8")
                keep.append(True)
            except UnicodeEncodeError:
                keep.append(False)
                self._count("invalid_unicode", self.wheres[i])
                if i in self.parts:
                    bad_docs.append(self.parts[i][2])
        self._keep(keep)
        for doc in bad_docs:  # a document with a bad piece goes whole
            self._drop(doc)
