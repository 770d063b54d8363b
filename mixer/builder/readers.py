"""Reading documents: one reader per input type, over one work unit (`mixer.builder.units`).

Readers yield ``(where, text, reason)``: a document (``reason is None``) or a skip with its
reason; ``where`` is a line, record or row number that :meth:`Unit.locate` turns into
``file.jsonl:812`` only when a skip is reported.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

from mixer.builder.lines import Cursor, Item, Unreadable, check_text, read_lines
from mixer.builder.text import read_txt
from mixer.builder.units import Unit, load_hf
from mixer.recipe import SourceSpec, file_kind

#: Why a document was skipped (manifest ``skipped`` keys).
REASONS = {
    "malformed_json": "a line or record that is not valid JSON",
    "not_a_record": "a JSON value that is not an object",
    "missing_field": "a record without the text field (or with null)",
    "not_text": "a text field that is not a string",
    "undecodable": "bytes that are invalid in the source's encoding",
    "invalid_unicode": "text with lone surrogates (e.g. a JSON \\ud800 escape)",
    "empty": "an empty or whitespace-only document",
    "binary": "text with NUL bytes: binary data, not text",
    "too_long": "a line or paragraph longer than max_document_bytes",
    "unreadable_file": "a file (or its rest) that cannot be read: corrupt or truncated",
}


def read_unit(unit: Unit, spec: SourceSpec, cursor: Cursor | None = None) -> Iterator[Item]:
    """Documents and skips of one unit, in input order; ``cursor.pos`` is where the reader is
    after each item (`Cursor`)."""
    cursor = cursor or Cursor()
    if unit.kind.startswith("hf"):
        yield from _read_hf(unit, spec, cursor)
        return
    kind = file_kind(unit.path)
    try:
        if kind == ".parquet":
            yield from _read_parquet(unit, spec, cursor)
        elif kind == ".txt":
            yield from read_txt(unit, spec, cursor)
        elif kind == ".json" and _is_json_array(unit.path):
            yield from _read_json_array(unit, spec, cursor)
        else:
            yield from _read_json_lines(unit, spec, cursor)
    except Unreadable as e:
        yield e.where, None, "unreadable_file"


def _record_text(obj, field: str, limit: int) -> tuple[str | None, str | None]:
    if not isinstance(obj, dict):
        return None, "not_a_record"
    text = obj.get(field)
    if text is None:
        return None, "missing_field"
    if not isinstance(text, str):
        return None, "not_text"
    return check_text(text, limit)


def _read_json_lines(unit: Unit, spec: SourceSpec, cursor: Cursor) -> Iterator[Item]:
    utf8 = spec.encoding.replace("_", "-").lower() in ("utf-8", "utf8")
    field, limit = spec.text_field, spec.max_document_bytes
    for n, line in read_lines(unit, limit, cursor):
        if line is None:
            yield n, None, "too_long"
            continue
        if line.isspace():  # (never empty: read_lines yields whole lines)
            continue  # a blank line is not a record
        try:
            obj = json.loads(line if utf8 else line.decode(spec.encoding))
        except UnicodeDecodeError:
            yield n, None, "undecodable"
            continue
        except ValueError:
            yield n, None, "malformed_json"
            continue
        text = obj.get(field) if type(obj) is dict else None
        if type(text) is str and 0 < len(text) <= limit and not text.isspace() and "\0" not in text:
            yield n, text, None  # the common case, checked inline (once per document)
        else:
            yield n, *_record_text(obj, field, limit)


def _is_json_array(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"[")


def _read_json_array(unit: Unit, spec: SourceSpec, cursor: Cursor) -> Iterator[Item]:
    """A .json file holding one array of records, streamed record by record (ijson)."""
    import ijson

    n = 0
    with open(unit.path, "rb") as raw:
        f = raw if spec.encoding.lower() in ("utf-8", "utf8") else _Transcoder(raw, spec.encoding)
        try:
            for n, obj in enumerate(ijson.items(f, "item", use_float=True), 1):  # noqa: B007
                text, reason = _record_text(obj, spec.text_field, spec.max_document_bytes)
                cursor.pos = raw.tell()
                yield n, text, reason
        except (ijson.JSONError, UnicodeDecodeError, ValueError):
            yield n + 1, None, "malformed_json"


class _Transcoder:
    """A file in any encoding, read as UTF-8 bytes (ijson parses UTF-8 only)."""

    def __init__(self, raw, encoding: str):
        self._text = io.TextIOWrapper(raw, encoding=encoding, newline="")
        self._buf = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buf) < size:
            chunk = self._text.read(1 << 16)
            if not chunk:
                break
            self._buf += chunk.encode("utf-8")
        out, self._buf = (self._buf, b"") if size < 0 else (self._buf[:size], self._buf[size:])
        return out


def _read_parquet(unit: Unit, spec: SourceSpec, cursor: Cursor) -> Iterator[Item]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 0
    try:
        pf = pq.ParquetFile(unit.path)
        if spec.text_field not in pf.schema_arrow.names:
            for n in range(1, pf.metadata.row_group(unit.start).num_rows + 1):
                yield n, None, "missing_field"
            return
        column = pf.schema_arrow.field(spec.text_field)
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            rows = pf.metadata.row_group(unit.start).num_rows
            for n in range(1, rows + 1):
                yield n, None, "not_text"
            return
        batches = pf.iter_batches(
            batch_size=1024,
            row_groups=[unit.start] if unit.kind == "rowgroup" else None,
            columns=[spec.text_field],
        )
        for batch in batches:
            for text in batch.column(0).to_pylist():
                n += 1
                cursor.pos = n
                yield (
                    (n, None, "missing_field")
                    if text is None
                    else (n, *check_text(text, spec.max_document_bytes))
                )
    except (OSError, pa.ArrowException):
        raise Unreadable(n + 1) from None


def _read_hf(unit: Unit, spec: SourceSpec, cursor: Cursor) -> Iterator[Item]:
    ds = load_hf(spec)
    if unit.kind == "hf-shard":
        part = ds.shard(num_shards=ds.num_shards, index=unit.start)
    else:
        part = ds.select(range(unit.start, unit.stop))
    for n, row in enumerate(part, 1):
        cursor.pos = n
        text = row.get(spec.text_field)
        if text is None:
            yield n, None, "missing_field"
        elif not isinstance(text, str):
            yield n, None, "not_text"
        else:
            yield (n, *check_text(text, spec.max_document_bytes))
