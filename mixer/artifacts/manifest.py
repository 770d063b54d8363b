"""manifest.json: what a build wrote, exactly, as typed records; its fingerprint; loading.

The manifest is the one record of a build: the recipe as resolved, the tokenizer's identity,
and per source and split the documents, tokens, blocks and shards (with their sha256). Its
``fingerprint`` is the digest of its canonical JSON without the creation time, so the same
inputs and recipe give the same fingerprint; ``to_dict()`` reproduces the JSON mixer wrote,
key for key (tests/integration/test_golden.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixer.artifacts.checks import ORIGINS_FILE as ORIGINS_FILE
from mixer.artifacts.ledger import LedgerRecord, check_ledger
from mixer.artifacts.records import (  # noqa: F401 (re-exported: where records are read)
    MAX_RECORD_BYTES,
    MAX_RECORD_VALUES,
    load_record,
    read_record,
    refused,
    write_atomic,
)
from mixer.errors import OutputError
from mixer.identity import digest
from mixer.typed import FieldError, from_json, to_json

FORMAT = 1  # the manifest's layout
#: The bytes a build writes for given inputs and recipe (tokenizing, packing, shards). Part of
#: every source's reuse key: bump it when a change writes other bytes, never for a release that
#: writes the same ones (which would re-tokenize every source for nothing).
BLOCKS_FORMAT = 1
FILENAME = "manifest.json"
SPLITS = ("train", "val")
#: Not part of the fingerprint: when, and with which encoder (the same ids whichever ran).
_VOLATILE = ("created", "fingerprint", "encoders", "ledger")


@dataclass(frozen=True, kw_only=True)
class ShardRecord:
    file: str  # the MDS shard's file name in its split's folder
    samples: int  # blocks in the shard
    bytes: int  # size of the (compressed) file
    raw_bytes: int  # size once decompressed
    sha256: str


@dataclass(frozen=True, kw_only=True)
class OriginsRecord:
    """A split's provenance table (`mixer.artifacts.origins`)."""

    file: str
    bytes: int
    sha256: str


PaddingRecord = OriginsRecord  # a best-fit split's padding.bin (`mixer.artifacts.ledger`)


@dataclass(frozen=True, kw_only=True)
class SplitRecord:
    documents: int
    tokens: int  # all packed tokens, the dropped tail included
    blocks: int
    dropped_tokens: int
    padding_tokens: int
    shards: tuple[ShardRecord, ...]
    doc_length_log2_hist: tuple[int, ...]  # bin k counts lengths in [2^k, 2^(k+1))
    skipped: dict[str, int]
    origins: OriginsRecord | None = None  # the provenance table (builds before it have none)
    padding: PaddingRecord | None = None  # per-block padding (best-fit splits only)


@dataclass(frozen=True, kw_only=True)
class InputFile:
    path: str
    bytes: int
    mtime_ns: int
    # the file's content hash; None for a source with `take` (no file is hashed whole: its
    # key covers the files read by size and time, its `take.selection` the documents taken)
    sha256: str | None = None


@dataclass(frozen=True, kw_only=True)
class Inputs:
    units: int
    files: tuple[InputFile, ...] | None = None  # a source read from files ...
    hf: dict[str, Any] | None = None  # ... or from a Hugging Face dataset


@dataclass(frozen=True, kw_only=True)
class ValidationRecord:
    docs: int | None
    fraction: float | None


@dataclass(frozen=True, kw_only=True)
class AutoNeed:
    """``take: auto``'s arithmetic: what the plan needs of the source."""

    samples: int  # the source's samples in the plan (all phases)
    max_epochs: float  # the repetitions allowed
    blocks: int  # ceil(samples / max_epochs): fewer train blocks would repeat it more
    margin_blocks: int  # taken beyond that, so that small plan changes need no rebuild
    train_tokens: int  # (blocks + margin_blocks) * seq_len: what reading stops at


@dataclass(frozen=True, kw_only=True)
class TakeRecord:
    """What a source with ``take`` took: the documents are a prefix of the source in unit
    order (``fraction``: a hash sample of all of it), the same on every rebuild."""

    budget: Any  # the recipe's `take`: "auto", {"tokens": T}, {"documents": D}, {"fraction": f}
    measure: str  # what stops reading: "tokens", "documents", "train_tokens"; "fraction": none
    amount: float  # the amount of `measure` to take (the fraction for "fraction")
    documents: int  # documents taken (train and validation)
    tokens: int  # their tokens
    units: int  # work units whose documents were taken (the last one perhaps in part)
    stopped: str | None  # where the last document taken ends; None: read to the end
    exhausted: bool  # the source ended before the budget was met
    bytes_read: int | None  # input bytes up to `stopped` (files; None for datasets)
    selection: str  # sha256 of the taken documents' (text hash, tokens) records, in order
    need: AutoNeed | None = None  # with take: auto


@dataclass(frozen=True, kw_only=True)
class SourceRecord:
    weight: float | None  # None when the recipe gives the weights per phase
    key: str  # what the blocks depend on (mixer.builder.reuse.source_key)
    inputs: Inputs
    validation: ValidationRecord
    skipped: dict[str, int]  # reason -> documents skipped
    skipped_examples: tuple[tuple[str, str], ...]  # (reason, location), the first few
    train: SplitRecord
    val: SplitRecord
    take: TakeRecord | None = None  # with `take:` in the recipe

    def split(self, name: str) -> SplitRecord:
        return self.train if name == "train" else self.val


@dataclass(frozen=True, kw_only=True)
class TokenizerFields:
    """A tokenizer's identity and the ids a build adds: the manifest's `TokenizerRecord`, and
    the build's loaded tokenizer (`mixer.builder.tokenizer.TokenizerInfo`)."""

    kind: str  # "path", "hf" or "tiktoken"
    name: str
    file: str
    file_sha256: str | None
    fingerprint: str  # digest of the tokenizer's canonical JSON: equal ids <=> equal fingerprint
    vocab_size: int
    bos: bool
    eos: bool
    bos_id: int | None
    eos_id: int | None
    pad_id: int
    dtype: str  # "uint16" when every id fits, else "uint32"


@dataclass(frozen=True, kw_only=True)
class TokenizerRecord(TokenizerFields):
    identity: dict[str, Any]  # what determines the ids, known before loading the tokenizer
    files: dict[str, str]  # tokenizer/ files of the output -> sha256


@dataclass(frozen=True, kw_only=True)
class EncoderRecord:
    """Which encoder built a source's ids (`mixer.builder.encoders`), and the check that it
    gives the reference's ids: the sample documents of the source and their tokens (0: the
    encoder is the reference)."""

    encoder: str  # "gigatoken", "tiktoken" or "tokenizers"
    version: str
    reference: str  # "tiktoken" for a tiktoken file, else "tokenizers"
    checked_documents: int
    checked_tokens: int


@dataclass(frozen=True, kw_only=True)
class Manifest:
    format: int
    mixer_version: str
    created: str
    name: str
    seed: int
    seq_len: int
    packing: str
    remainder: str
    recipe: dict[str, Any]  # the recipe as resolved (Recipe.to_dict())
    tokenizer: TokenizerRecord
    sources: dict[str, SourceRecord]
    # per source, the encoder that built it (a build older than this field: none)
    encoders: dict[str, EncoderRecord] | None = None
    # per source and split: cut documents, padding, loss tokens (outside the fingerprint,
    # `mixer.artifacts.ledger`; a build older than it: none)
    ledger: dict[str, dict[str, LedgerRecord]] | None = None
    fingerprint: str = ""
    # where it was read from (not part of the JSON): the folder holding manifest.json, and
    # where the shards are: that folder, or the remote URL it was fetched from
    root: Path = field(default=Path("."), compare=False, metadata={"runtime": True})
    location: str = field(default="", compare=False, metadata={"runtime": True})

    # -- identity and files ---------------------------------------------------------------
    def to_dict(self) -> dict:
        return to_json(self)

    @classmethod
    def from_dict(cls, data: dict, root: str | os.PathLike = ".", *, check=True) -> Manifest:
        """Typed and checked; FieldError names the first field that does not fit, `Refused`
        (a FieldError) the first value a reader will not act on (`mixer.artifacts.checks`;
        ``check=False``: typed only, for `load`, which compares the fingerprint first)."""
        m = from_json(cls, data, "manifest")
        if check:
            m.validate()
        return dataclasses.replace(m, root=Path(root), location=str(root))

    def validate(self) -> None:
        """Refused naming the first path, size or count no reader may rely on: names that
        are not one folder or file, sizes beyond the format, records that contradict."""
        from mixer.artifacts.checks import check_manifest

        check_manifest(self)
        check_ledger(self)

    def computed_fingerprint(self) -> str:
        return digest({k: v for k, v in self.to_dict().items() if k not in _VOLATILE})

    def sealed(self) -> Manifest:
        """This manifest with its fingerprint computed (before it is saved)."""
        return dataclasses.replace(self, fingerprint=self.computed_fingerprint())

    @classmethod
    def load(cls, out_dir: str | os.PathLike, where: str | None = None) -> Manifest:
        """The checked manifest of ``out_dir``; ``where`` names the build in errors (its URL
        when ``out_dir`` holds a downloaded copy)."""
        root = Path(out_dir)
        path = root / FILENAME
        if not root.is_dir():
            raise OutputError(f"{root}: no such output folder (run `mixer build` first)")
        if where is not None:
            path = f"{where.rstrip('/')}/{FILENAME}"
        missing = f"{where or root}: not a complete mixer build (no {FILENAME})"
        missing += "; rerun `mixer build`"
        data = load_record(root / FILENAME, path, "manifest", FORMAT, missing)
        try:
            manifest = cls.from_dict(data, root, check=False)
            if manifest.fingerprint != manifest.computed_fingerprint():
                raise OutputError(f"{path}: manifest was altered (fingerprint mismatch); rebuild")
            manifest.validate()  # a fingerprint proves it unchanged, not harmless
        except FieldError as e:
            raise refused(path, e, "manifest") from None
        except (RecursionError, UnicodeError) as e:  # nested too deeply; lone surrogates
            raise OutputError(f"{path}: unreadable manifest ({type(e).__name__})") from None
        return manifest

    def save(self) -> None:
        """Write manifest.json into ``root`` (atomically); the fingerprint must be sealed."""
        assert self.fingerprint == self.computed_fingerprint()
        write_atomic(
            self.root / FILENAME, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"
        )

    # -- accessors ------------------------------------------------------------------------
    @property
    def dtype(self) -> str:
        return self.tokenizer.dtype

    @property
    def source_names(self) -> list[str]:
        return list(self.sources)

    def split(self, source: str, split: str = "train") -> SplitRecord:
        if source not in self.sources:
            known = ", ".join(self.sources)
            raise OutputError(f"{self.root}: no source {source!r} (sources: {known})")
        if split not in SPLITS:
            raise OutputError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        return self.sources[source].split(split)

    def split_dir(self, source: str, split: str) -> Path:
        return self.root / "sources" / source / split
