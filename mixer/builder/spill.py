"""A work unit's spill files and completion record: what a worker leaves for the merge.

A unit writes ``NNNNNN.tokens`` (its documents' ids, BOS/EOS included, concatenated) and
``NNNNNN.docs`` (per document: the uint64 hash that decides the validation split and a
``take: fraction`` sample, its length in tokens, and ``end``: where reading could stop after it,
a byte of the file as stored or a row, see `mixer.builder.lines.Cursor`) and ``NNNNNN.origins``
(per document: the record number the reader gave it, and the decompressed byte offset and lines
read where reading can start again to find it: the provenance table's rows,
`mixer.builder.origins`) into the build's temporary folder; the completion record, written
last, makes a rerun reuse the unit.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mixer.artifacts.manifest import BLOCKS_FORMAT
from mixer.builder.tokenizer import TokenizerInfo
from mixer.builder.units import Unit
from mixer.identity import digest
from mixer.recipe import SourceSpec

DOC_DTYPE = np.dtype([("hash", "<u8"), ("length", "<u8"), ("end", "<u8")])
ORIGIN_DTYPE = np.dtype([("record", "<u8"), ("offset", "<u8"), ("lines", "<u8")])
#: The spill's layout for reuse: a finished unit of an older layout is tokenized again.
SPILL_LAYOUT = 2  # 2: with .origins


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
    complete: bool = True  # read to its end (False: stopped at a `take` budget's limit)
    limit: float | None = None  # that limit: an incomplete unit is reused under the same one
    lines: int = 0  # lines read (line-based files): where the file's next unit's lines start

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


def origin_path(work_dir: Path, unit: Unit) -> Path:
    return work_dir / "units" / unit.source / f"{unit.index:06d}.origins"


def record_path(work_dir: Path, unit: Unit) -> Path:
    return work_dir / "units" / unit.source / f"{unit.index:06d}.done"


def load_record(
    work_dir: Path, unit: Unit, key: str, limit: float | None = None
) -> UnitResult | None:
    """The result of a unit finished by an earlier (interrupted) run with the same key (and,
    for a unit stopped at a budget's limit, the same limit)."""
    try:
        rec = json.loads(record_path(work_dir, unit).read_text())
    except (OSError, ValueError):
        return None
    tok_path, doc_path = unit_paths(work_dir, unit)
    origins = origin_path(work_dir, unit)
    if rec.get("key") != key or not all(p.exists() for p in (tok_path, doc_path, origins)):
        return None
    result = UnitResult.from_json(rec["result"])
    if not result.complete and result.limit != limit:  # cut short for another budget
        return None
    itemsize = rec["itemsize"]
    if (
        tok_path.stat().st_size != result.tokens * itemsize
        or doc_path.stat().st_size != result.documents * DOC_DTYPE.itemsize
        or origins.stat().st_size != result.documents * ORIGIN_DTYPE.itemsize
    ):
        return None
    return result


def save_record(work_dir: Path, unit: Unit, key: str, result: UnitResult, itemsize: int) -> None:
    """Completion record, written last: its presence means the spill files are whole. Written by
    the process that collects results (not the worker), so a worker never waits on a disk
    flush between units."""
    for p in (*unit_paths(work_dir, unit), origin_path(work_dir, unit)):
        fd = os.open(p, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    path = record_path(work_dir, unit)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"key": key, "itemsize": itemsize, "result": result.to_json()}))
    os.replace(tmp, path)


def doc_hash(text: str) -> int:
    """Stable 64-bit hash of a document's text: decides its split on any machine, in any order."""
    return hash_digest(hashlib.blake2b(text.encode("utf-8"), digest_size=8))


def hash_digest(h) -> int:
    return int.from_bytes(h.digest(), "little")


def text_hashes(texts: list[str]) -> np.ndarray:
    """:func:`doc_hash` of many texts at once, as uint64."""
    digests = b"".join(hashlib.blake2b(t.encode("utf-8"), digest_size=8).digest() for t in texts)
    return np.frombuffer(digests, "<u8")


def unit_key(
    unit: Unit, spec: SourceSpec, tok: TokenizerInfo, strict: bool, hashes: dict[str, str]
) -> str:
    """What a unit's output depends on: reuse a finished unit only if all of it is unchanged."""
    parts: dict = {
        "unit": unit.__dict__,
        "input": hashes.get(unit.path),
        "hf": spec.hf.__dict__ if spec.hf else None,
        "reading": [spec.text_field, spec.encoding, spec.txt_mode, spec.max_document_bytes],
        "validation": [bool(spec.validation.active), spec.validation.docs or 0],
        "tokenizer": [tok.fingerprint, tok.bos_id, tok.eos_id, tok.dtype],
        "strict": strict,
        "blocks_format": BLOCKS_FORMAT,
        "spill": SPILL_LAYOUT,
    }
    if spec.take is not None:
        parts["take"] = "hashed"  # every document's hash is spilled (not only validation's)
    return digest(parts)
