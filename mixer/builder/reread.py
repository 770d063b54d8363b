"""Re-reading one document of a build from its input, as the build read it, for provenance.

A document's origin (`mixer.artifacts.origins`) names its unit, its record number in the unit
and a place where reading can start again (a decompressed byte offset and the unit's lines
before it). The record is found by running the build's own reader from there, so the text is
the text the build tokenized, pieces included (`mixer.builder.worker`): a line of JSON or text
is found after at most 31 other records; a compressed file (.gz, .zst) is read from its start, a
JSON array file too, a Parquet record read from its row group alone, a
dataset's example by index (a streaming dataset's shard read up to it).
"""

from __future__ import annotations

import os

from mixer.builder.lines import CONTINUES, PIECE_CHARS, check_text
from mixer.builder.readers import _is_json_array, read_unit
from mixer.builder.text import split_text
from mixer.builder.units import Unit
from mixer.recipe import HFSpec, SourceSpec, file_kind


class Changed(Exception):
    """The input no longer holds the document where the build found it."""


def source_spec(reading: dict, path: str, hf: dict | None) -> SourceSpec:
    return SourceSpec(
        name="provenance",
        weight=None,
        files=() if hf else (path,),
        hf=HFSpec(**hf) if hf else None,
        text_field=reading["text_field"],
        encoding=reading["encoding"],
        txt_mode=reading["txt_mode"],
        max_document_bytes=reading["max_document_bytes"],
    )


def document_pieces(reading: dict, unit: dict, doc: dict, hf: dict | None) -> list[str]:
    """The texts the build encoded for document ``doc`` (a row of `OriginsTable.documents`) of
    ``unit`` (`OriginsTable.unit`, with ``file`` its path), of a source read from files or the
    dataset ``hf``: one, or the pieces of a long document; Changed if the input does not hold
    it any more."""
    spec = source_spec(reading, unit["file"], hf)
    kind = unit["kind"]
    if kind == "rowgroup":
        return _pieces(_parquet_row(spec, unit, doc["record"]))
    if kind.startswith("hf"):
        return _pieces(_hf_example(spec, unit, doc["record"]))
    if doc["mark_unit"] == doc["unit"] and not _compressed(unit["file"]):
        start, before = doc["offset"], doc["lines"]
    else:  # the checkpoint is in an earlier unit (or the file is compressed): from its start
        start, before = (unit["start"] if kind == "range" else 0), 0
    again = Unit(
        source=spec.name,
        index=0,
        kind="range" if start > 0 else "file",
        path=unit["file"],
        start=start,
        size=os.path.getsize(unit["file"]),
    )
    return _collect(read_unit(again, spec), doc["record"] - before)


def record_kind(unit: dict, txt_mode: str) -> str:
    """What a unit's reader numbers: ``line``, ``paragraph``, ``file`` (a text file read
    whole), ``item`` (of a JSON array), ``row`` (Parquet) or ``example`` (a dataset)."""
    if unit["kind"].startswith("hf"):
        return "example"
    kind = file_kind(unit["file"])
    if kind == ".parquet":
        return "row"
    if kind == ".txt":
        return txt_mode if txt_mode in ("file", "paragraph") else "line"
    if kind == ".json" and unit["kind"] == "file":
        try:
            return "item" if _is_json_array(unit["file"]) else "line"
        except OSError:
            return "line"
    return "line"


def _compressed(path: str) -> bool:
    """A .jsonl.gz or .jsonl.zst file: its stream cannot seek, it is read from its start (such
    files are never cut into units, so the unit's start is the file's)."""
    return file_kind(path) in (".jsonl.gz", ".jsonl.zst")


def _collect(items, where: int) -> list[str]:
    """The pieces of the document the reader numbers ``where``, as the worker cuts them."""
    texts: list[str] = []
    for n, text, reason in items:
        if n < where and not texts:
            continue
        if n != where or reason not in (None, CONTINUES):
            raise Changed(f"record {where} is not a document any more")
        texts.append(text)
        if reason is None:
            break
    else:
        raise Changed("the record is gone")
    if len(texts) == 1:
        return _pieces(texts[0])
    return texts


def _pieces(text: str | None) -> list[str]:
    if text is None:
        raise Changed("the record is not a document any more")
    return [text] if len(text) <= PIECE_CHARS else split_text(text)


def _parquet_row(spec: SourceSpec, unit: dict, record: int) -> str | None:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(unit["file"])
    column = pf.read_row_group(unit["start"], columns=[spec.text_field]).column(0)
    if not 1 <= record <= len(column):
        raise Changed(f"row group {unit['start']} has no row {record}")
    text = column[record - 1].as_py()
    return check_text(text, spec.max_document_bytes)[0] if isinstance(text, str) else None


def _hf_example(spec: SourceSpec, unit: dict, record: int) -> str | None:
    from mixer.builder.units import load_hf

    ds = load_hf(spec)
    if unit["kind"] == "hf-shard":
        part = ds.shard(num_shards=ds.num_shards, index=unit["start"])
        row = next((r for n, r in enumerate(part, 1) if n == record), None)
    else:
        i = unit["start"] + record - 1
        row = ds[i] if i < len(ds) else None
    text = None if row is None else row.get(spec.text_field)
    return check_text(text, spec.max_document_bytes)[0] if isinstance(text, str) else None
