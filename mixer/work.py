"""One work unit, inside a build worker: documents -> token ids -> the unit's spill files.

A unit writes ``NNNNNN.tokens`` (its documents' ids, BOS/EOS included, concatenated) and
``NNNNNN.docs`` (per document: the uint64 hash that decides the validation split, and its
length) into the build's temporary folder, appending batch by batch: a worker holds one batch
(at most ``BATCH_CHARS`` characters) at a time, whatever the size of the unit.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mixer.errors import InputError
from mixer.recipe import SourceSpec
from mixer.sources import REASONS, Unit, read_unit
from mixer.tokenizer import Encoder

BATCH_CHARS = 4 << 20  # characters of text per encode_batch call
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


def unit_paths(work_dir: Path, unit: Unit) -> tuple[Path, Path]:
    base = work_dir / "units" / unit.source / f"{unit.index:06d}"
    return base.with_suffix(".tokens"), base.with_suffix(".docs")


def doc_hash(text: str) -> int:
    """Stable 64-bit hash of a document's text: decides its split on any machine, in any order."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def run_unit(
    unit: Unit,
    spec: SourceSpec,
    encoder: Encoder,
    work_dir: Path,
    *,
    strict: bool,
    keep_smallest: int,
    progress=None,
) -> UnitResult:
    """Read, tokenize and spill one unit; ``progress(source, docs, tokens, bytes)`` per batch."""
    res = UnitResult(source=unit.source, index=unit.index)
    tok_path, doc_path = unit_paths(work_dir, unit)
    tok_path.parent.mkdir(parents=True, exist_ok=True)
    hashing = spec.validation.active
    smallest = np.empty(0, np.uint64)
    texts: list[str] = []
    wheres: list[int] = []
    chars = 0

    def skip(reason: str, where: int) -> None:
        if strict:
            raise InputError(
                f"{unit.locate(where)}: {REASONS[reason]} ({reason}); fix the input, or build"
                " without --strict to skip and count such documents"
            )
        res.skipped[reason] += 1
        if len(res.examples) < MAX_EXAMPLES:
            res.examples.append((reason, unit.locate(where)))

    def flush() -> None:
        nonlocal smallest, chars
        ok, ok_where = texts, wheres
        try:
            ids, lengths = encoder.encode(ok)
        except TypeError:  # tokenizers refuses str with lone surrogates (JSON "\ud800")
            ok, ok_where = _valid_unicode(texts, wheres, skip)
            ids, lengths = encoder.encode(ok)
        if not lengths.all():  # a text that tokenizes to nothing, with no BOS/EOS to add
            for where in np.asarray(ok_where)[lengths == 0]:
                skip("empty", int(where))
            ok = [t for t, n in zip(ok, lengths, strict=True) if n]
            lengths = lengths[lengths > 0]
        docs = np.empty(len(ok), DOC_DTYPE)
        docs["length"] = lengths
        docs["hash"] = [doc_hash(t) for t in ok] if hashing else 0
        with open(tok_path, "ab") as f:
            ids.tofile(f)
        with open(doc_path, "ab") as f:
            docs.tofile(f)
        if keep_smallest:
            smallest = np.sort(np.concatenate([smallest, docs["hash"]]))[:keep_smallest]
        res.documents += len(ok)
        res.tokens += int(lengths.sum())
        if progress:
            progress(unit.source, len(ok), int(lengths.sum()), 0)
        texts.clear()
        wheres.clear()
        chars = 0

    for p in (tok_path, doc_path):
        p.write_bytes(b"")
    for where, text, reason in read_unit(unit, spec):
        if reason is not None:
            skip(reason, where)
            continue
        texts.append(text)
        wheres.append(where)
        chars += len(text)
        if chars >= BATCH_CHARS or len(texts) >= BATCH_DOCS:
            flush()
    if texts:
        flush()
    res.bytes = unit.size
    res.smallest = smallest if keep_smallest else None
    if progress:
        progress(unit.source, 0, 0, unit.size)
    return res


def _valid_unicode(texts: list[str], wheres: list[int], skip) -> tuple[list[str], list[int]]:
    ok, ok_where = [], []
    for t, where in zip(texts, wheres, strict=True):
        try:
            t.encode("utf-8")
        except UnicodeEncodeError:
            skip("invalid_unicode", where)
            continue
        ok.append(t)
        ok_where.append(where)
    return ok, ok_where
