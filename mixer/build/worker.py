"""One work unit, inside a build worker: documents -> token ids -> the unit's spill files.

A unit writes ``NNNNNN.tokens`` (its documents' ids, BOS/EOS included, concatenated) and
``NNNNNN.docs`` (per document: the uint64 hash that decides the validation split, and its
length) into the build's temporary folder, appending batch by batch: a worker holds one batch
(at most ``BATCH_CHARS`` characters) at a time, whatever the size of the unit.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mixer.build.lines import CONTINUES, PIECE_CHARS
from mixer.build.readers import REASONS, read_unit
from mixer.build.text import split_text
from mixer.build.tokenizer import Encoder
from mixer.build.units import Unit
from mixer.errors import InputError
from mixer.recipe import SourceSpec

BATCH_CHARS = 1 << 20  # characters of text per encode_batch call (its memory: ~40 bytes a token)
BATCH_DOCS = 4096
MAX_EXAMPLES = 5  # skip locations kept per unit (and printed per source)
DOC_DTYPE = np.dtype([("hash", "<u8"), ("length", "<u8")])


@dataclass(kw_only=True)
class UnitResult:
    source: str
    index: int
    documents: int = 0
    tokens: int = 0
    bytes: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: list[tuple[str, str]] = field(default_factory=list)  # (reason, location)
    smallest: np.ndarray | None = None  # the unit's smallest doc hashes (validation `docs: N`)

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        d["skipped"] = dict(self.skipped)
        d["smallest"] = None if self.smallest is None else self.smallest.tolist()
        return d

    @classmethod
    def from_json(cls, d: dict) -> UnitResult:
        d = dict(d)
        d["skipped"] = Counter(d["skipped"])
        d["examples"] = [tuple(e) for e in d["examples"]]
        d["smallest"] = None if d["smallest"] is None else np.array(d["smallest"], np.uint64)
        return cls(**d)


def unit_paths(work_dir: Path, unit: Unit) -> tuple[Path, Path]:
    base = work_dir / "units" / unit.source / f"{unit.index:06d}"
    return base.with_suffix(".tokens"), base.with_suffix(".docs")


def record_path(work_dir: Path, unit: Unit) -> Path:
    return work_dir / "units" / unit.source / f"{unit.index:06d}.done"


def load_record(work_dir: Path, unit: Unit, key: str) -> UnitResult | None:
    """The result of a unit finished by an earlier (interrupted) run with the same key."""
    try:
        rec = json.loads(record_path(work_dir, unit).read_text())
    except (OSError, ValueError):
        return None
    tok_path, doc_path = unit_paths(work_dir, unit)
    if rec.get("key") != key or not tok_path.exists() or not doc_path.exists():
        return None
    result = UnitResult.from_json(rec["result"])
    itemsize = rec["itemsize"]
    if (
        tok_path.stat().st_size != result.tokens * itemsize
        or doc_path.stat().st_size != result.documents * DOC_DTYPE.itemsize
    ):
        return None
    return result


def _save_record(work_dir: Path, unit: Unit, key: str, result: UnitResult, itemsize: int) -> None:
    """Completion record, written last: its presence means the spill files are whole."""
    for p in unit_paths(work_dir, unit):
        fd = os.open(p, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    path = record_path(work_dir, unit)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"key": key, "itemsize": itemsize, "result": result.to_json()}))
    os.replace(tmp, path)


def doc_hash(text: str) -> int:
    """Stable 64-bit hash of a document's text: decides its split on any machine, in any order."""
    return _digest(hashlib.blake2b(text.encode("utf-8"), digest_size=8))


def _digest(h) -> int:
    return int.from_bytes(h.digest(), "little")


def run_unit(
    unit: Unit,
    spec: SourceSpec,
    encoder: Encoder,
    work_dir: Path,
    *,
    strict: bool,
    keep_smallest: int,
    key: str = "",
    progress=None,
) -> UnitResult:
    """Read, tokenize and spill one unit; ``progress(*event)`` per batch and at the end."""
    w = _UnitWriter(unit, spec, encoder, work_dir, strict, keep_smallest, progress)
    for where, text, reason in read_unit(unit, spec):
        if reason == CONTINUES:
            w.piece(text, where, last=False)
        elif reason is None:
            if w.open_doc is None and len(text) > PIECE_CHARS:
                w.long_text(text, where)
            else:
                w.piece(text, where, last=True)
        else:
            w.skip(reason, where)
    w.flush()
    res = w.res
    res.bytes = unit.size
    res.smallest = w.smallest if keep_smallest else None
    _save_record(work_dir, unit, key, res, encoder.dtype.itemsize)
    if progress:
        progress("unit", unit.source, unit.index, res.documents, res.tokens, unit.size)
    return res


class _Doc:
    """A document read in pieces: its running hash, tokens so far, where they start in the spill."""

    def __init__(self):
        self.hash = hashlib.blake2b(digest_size=8)
        self.length = 0
        self.token_start: int | None = None


class _UnitWriter:
    """Batches pieces of text, encodes them, appends tokens and document records to the spill.

    A batch holds at most BATCH_CHARS characters whatever the size of a document: a long
    document arrives (or is cut) in pieces that share one BOS, one EOS, one hash and one record.
    """

    def __init__(self, unit, spec, encoder, work_dir, strict, keep_smallest, progress):
        self.unit, self.encoder, self.strict, self.progress = unit, encoder, strict, progress
        self.keep_smallest, self.hashing = keep_smallest, spec.validation.active
        self.res = UnitResult(source=unit.source, index=unit.index)
        self.tok_path, self.doc_path = unit_paths(work_dir, unit)
        self.tok_path.parent.mkdir(parents=True, exist_ok=True)
        for p in (self.tok_path, self.doc_path):
            p.write_bytes(b"")
        self.smallest = np.empty(0, np.uint64)
        self.batch: list[tuple[str, int, bool, bool, _Doc | None]] = []
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

    def piece(self, text: str, where: int, *, last: bool) -> None:
        first = self.open_doc is None
        doc = self.open_doc
        if first and not last:
            doc = self.open_doc = _Doc()
        if doc is not None and self.hashing:
            doc.hash.update(text.encode("utf-8", "surrogatepass"))
        if last:
            self.open_doc = None
        self.batch.append((text, where, first, last, doc))
        self.chars += len(text)
        if self.chars >= BATCH_CHARS or len(self.batch) >= BATCH_DOCS:
            self.flush()

    def _drop(self, doc: _Doc) -> None:
        """Forget a document read in part: its pieces in the batch and in the spill file."""
        self.open_doc = None
        self.batch = [item for item in self.batch if item[4] is not doc]
        self.chars = sum(len(item[0]) for item in self.batch)
        if doc.token_start is not None:
            with open(self.tok_path, "r+b") as f:
                f.truncate(doc.token_start * self.encoder.dtype.itemsize)
            self.res.tokens -= self.spilled - doc.token_start
            self.spilled = doc.token_start

    def flush(self) -> None:
        if not self.batch:
            return
        first = np.array([item[2] for item in self.batch])
        last = np.array([item[3] for item in self.batch])
        try:
            ids, lengths = self.encoder.encode([item[0] for item in self.batch], first, last)
        except TypeError:  # tokenizers refuses str with lone surrogates (JSON "\ud800")
            self._drop_invalid_unicode()
            return self.flush()
        offsets = self.spilled + np.cumsum(lengths) - lengths
        with open(self.tok_path, "ab") as f:
            ids.tofile(f)
        self.spilled += ids.size
        self.res.tokens += int(ids.size)
        docs, hashes = [], []
        for (text, where, f, la, doc), n, off in zip(
            self.batch, lengths.tolist(), offsets.tolist(), strict=True
        ):
            if doc is None:  # a whole document
                if n == 0:  # nothing to train on, and no BOS/EOS to add
                    self._count("empty", where)
                    continue
                docs.append(n)
                hashes.append(doc_hash(text) if self.hashing else 0)
                continue
            if f:
                doc.token_start = off
            doc.length += n
            if la:
                docs.append(doc.length)
                hashes.append(_digest(doc.hash) if self.hashing else 0)
        rec = np.empty(len(docs), DOC_DTYPE)
        rec["length"], rec["hash"] = docs, hashes
        with open(self.doc_path, "ab") as f:
            rec.tofile(f)
        if self.keep_smallest and len(rec):
            self.smallest = np.sort(np.concatenate([self.smallest, rec["hash"]]))[
                : self.keep_smallest
            ]
        self.res.documents += len(docs)
        if self.progress:
            self.progress("batch", self.unit.source, len(docs), int(ids.size))
        self.batch, self.chars = [], 0

    def _drop_invalid_unicode(self) -> None:
        bad = []
        for item in self.batch:
            try:
                item[0].encode("utf-8")
            except UnicodeEncodeError:
                bad.append(item)
        for text, where, _, _, doc in bad:
            if doc is not None:
                self._drop(doc)
            else:
                self.batch = [item for item in self.batch if item[0] is not text]
            self._count("invalid_unicode", where)
