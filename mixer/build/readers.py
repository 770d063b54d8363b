"""Reading documents: work units defined by the input, and one reader per input type.

A work unit is a whole file, a byte range of a large uncompressed line-based file, a parquet row
group, or a Hugging Face dataset shard (streaming) or row range. Units depend on the input only,
never on the number of workers, so any executor produces the same documents in the same order.

Readers yield ``(where, text, reason)``: a document (``reason is None``) or a skip with its
reason; ``where`` is a line, record or row number that :meth:`Unit.locate` turns into
``file.jsonl:812`` only when a skip is reported.
"""

from __future__ import annotations

import codecs
import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mixer.errors import InputError, RecipeError
from mixer.recipe import SourceSpec, file_kind

RANGE_BYTES = 32 << 20  # uncompressed .jsonl / line-mode .txt files are split every 32 MiB
HF_ROWS = 50_000  # rows per unit of a non-streaming Hugging Face dataset

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

Item = tuple[int, "str | None", "str | None"]  # (where, text, reason)
CONTINUES = "+"  # the reason of a piece of a document whose next piece follows
PIECE_CHARS = 1 << 20  # long documents are read and tokenized in pieces of about this size


@dataclass(frozen=True, kw_only=True)
class Unit:
    source: str
    index: int  # position in the source's unit order
    kind: str  # "file", "range", "rowgroup", "hf-shard", "hf-rows"
    path: str = ""  # the file, or the dataset's path for hf units
    start: int = 0  # byte offset, row group, shard index or first row
    stop: int = -1  # byte or row end (exclusive); -1: to the end
    size: int = 0  # bytes (files) or rows (hf) this unit covers, for progress

    def locate(self, where: int) -> str:
        """A human location for the ``where`` a reader yielded."""
        if self.kind in ("file", "range"):
            return f"{self.path}:{where + self._lines_before()}"
        if self.kind == "rowgroup":
            return f"{self.path} row group {self.start} row {where}"
        if self.kind == "hf-shard":
            return f"hf:{self.path} shard {self.start} row {where}"
        return f"hf:{self.path} row {self.start + where}"

    def _lines_before(self) -> int:
        """Lines of the file before this unit's first line (only computed for reports)."""
        if self.kind != "range" or self.start == 0:
            return 0
        count = 0
        with open(self.path, "rb") as f:
            remaining = self.start
            while remaining > 0:
                chunk = f.read(min(remaining, 1 << 24))
                count += chunk.count(b"\n")
                remaining -= len(chunk)
            f.seek(self.start - 1)
            ends_line = f.read(1) == b"\n"
        return count if ends_line else count + 1


def plan_units(spec: SourceSpec) -> list[Unit]:
    """The source's work units in reading order."""
    if spec.hf is not None:
        return _hf_units(spec)
    units: list[Unit] = []
    for path in spec.files:
        kind = file_kind(path)
        size = Path(path).stat().st_size
        splittable = kind == ".jsonl" or (kind == ".txt" and spec.txt_mode == "line")
        if kind == ".parquet":
            groups = _row_groups(path)
            if groups:
                units += [
                    Unit(
                        source=spec.name,
                        index=0,
                        kind="rowgroup",
                        path=path,
                        start=g,
                        size=size // groups,
                    )
                    for g in range(groups)
                ]
                continue
        if splittable and size > RANGE_BYTES:
            units += [
                Unit(
                    source=spec.name,
                    index=0,
                    kind="range",
                    path=path,
                    start=a,
                    stop=min(a + RANGE_BYTES, size),
                    size=min(RANGE_BYTES, size - a),
                )
                for a in range(0, size, RANGE_BYTES)
            ]
        else:
            units.append(Unit(source=spec.name, index=0, kind="file", path=path, size=size))
    return [Unit(**{**u.__dict__, "index": i}) for i, u in enumerate(units)]


def _row_groups(path: str) -> int:
    """Row groups of a parquet file; 0 if its footer cannot be read (the reader reports it)."""
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).num_row_groups
    except Exception:  # noqa: BLE001 (pyarrow raises several types for a broken file)
        return 0


def read_unit(unit: Unit, spec: SourceSpec) -> Iterator[Item]:
    """Documents and skips of one unit, in input order."""
    if unit.kind.startswith("hf"):
        yield from _read_hf(unit, spec)
        return
    kind = file_kind(unit.path)
    try:
        if kind == ".parquet":
            yield from _read_parquet(unit, spec)
        elif kind == ".txt":
            yield from _read_txt(unit, spec)
        elif kind == ".json" and _is_json_array(unit.path):
            yield from _read_json_array(unit, spec)
        else:
            yield from _read_json_lines(unit, spec)
    except _Unreadable as e:
        yield e.where, None, "unreadable_file"


class _Unreadable(Exception):
    def __init__(self, where: int):
        self.where = where


def _open_binary(path: str):
    kind = file_kind(path)
    if kind == ".jsonl.gz":
        return gzip.open(path, "rb")
    if kind == ".jsonl.zst":
        import zstandard

        raw = open(path, "rb")  # noqa: SIM115 (closed with the wrapper)
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, closefd=True))
    return open(path, "rb")  # noqa: SIM115


def _lines(unit: Unit, limit: int) -> Iterator[tuple[int, bytes | None]]:
    """(line number within the unit, raw line) for the lines that start inside the unit; a line
    longer than ``limit`` bytes comes as None, read through in bounded memory."""
    n = 0
    try:
        with _open_binary(unit.path) as f:
            if unit.start > 0:
                f.seek(unit.start - 1)
                if f.read(1) != b"\n":
                    _skip_line(f)  # that line belongs to the previous unit
            pos, stop = (f.tell() if unit.start > 0 else 0), unit.stop
            while not 0 <= stop <= pos:
                line = f.readline(limit + 1)
                if not line:
                    break
                n += 1
                pos += len(line)
                if len(line) > limit and not line.endswith(b"\n"):
                    pos += _skip_line(f)
                    yield n, None
                    continue
                if n == 1 and unit.start == 0 and line.startswith(b"\xef\xbb\xbf"):
                    line = line[3:]  # a UTF-8 byte order mark
                yield n, line
    except _stream_errors() as e:  # truncated or corrupt .gz / .zst
        if isinstance(e, FileNotFoundError):
            raise InputError(f"{unit.path}: the input file disappeared during the build") from None
        raise _Unreadable(n + 1) from None


def _skip_line(f) -> int:
    """Read to the end of the current line, 1 MiB at a time; the bytes read."""
    skipped = 0
    while chunk := f.readline(1 << 20):
        skipped += len(chunk)
        if chunk.endswith(b"\n"):
            break
    return skipped


def _stream_errors() -> tuple[type[Exception], ...]:
    import zstandard

    return (OSError, EOFError, ValueError, zstandard.ZstdError)


def _record_text(obj, field: str, limit: int) -> tuple[str | None, str | None]:
    if not isinstance(obj, dict):
        return None, "not_a_record"
    text = obj.get(field)
    if text is None:
        return None, "missing_field"
    if not isinstance(text, str):
        return None, "not_text"
    return _check_text(text, limit)


def _check_text(text: str, limit: int | None = None) -> tuple[str | None, str | None]:
    if limit is not None and len(text) > limit:
        return None, "too_long"
    if not text or text.isspace():
        return None, "empty"
    if "\x00" in text:
        return None, "binary"
    return text, None


def _read_json_lines(unit: Unit, spec: SourceSpec) -> Iterator[Item]:
    utf8 = spec.encoding.replace("_", "-").lower() in ("utf-8", "utf8")
    for n, line in _lines(unit, spec.max_document_bytes):
        if line is None:
            yield n, None, "too_long"
            continue
        if not line.strip():
            continue  # a blank line is not a record
        try:
            obj = json.loads(line if utf8 else line.decode(spec.encoding))
        except UnicodeDecodeError:
            yield n, None, "undecodable"
            continue
        except ValueError:
            yield n, None, "malformed_json"
            continue
        text, reason = _record_text(obj, spec.text_field, spec.max_document_bytes)
        yield n, text, reason


def _is_json_array(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"[")


def _read_json_array(unit: Unit, spec: SourceSpec) -> Iterator[Item]:
    """A .json file holding one array of records, streamed record by record (ijson)."""
    import ijson

    n = 0
    with open(unit.path, "rb") as raw:
        f = raw if spec.encoding.lower() in ("utf-8", "utf8") else _Transcoder(raw, spec.encoding)
        try:
            for n, obj in enumerate(ijson.items(f, "item", use_float=True), 1):  # noqa: B007
                text, reason = _record_text(obj, spec.text_field, spec.max_document_bytes)
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


def split_text(text: str, size: int = PIECE_CHARS) -> list[str]:
    """Cut a long text into pieces of about ``size`` characters, each cut just before a space
    that follows a non-space, where byte-level pre-tokenizers split anyway (so the pieces
    tokenize like the whole); a text without such a space is cut every ``size`` characters."""
    pieces, a = [], 0
    while len(text) - a > size:
        cut = text.rfind(" ", a + size // 2, a + size)
        while cut > a and text[cut - 1].isspace():
            cut = text.rfind(" ", a + size // 2, cut)
        cut = cut if cut > a else a + size
        pieces.append(text[a:cut])
        a = cut
    pieces.append(text[a:])
    return pieces


def _read_txt(unit: Unit, spec: SourceSpec) -> Iterator[Item]:
    if spec.txt_mode == "file":
        yield from _read_whole_file(unit, spec.encoding)
        return
    if spec.txt_mode == "line":
        for n, line in _lines(unit, spec.max_document_bytes):
            if line is None:
                yield n, None, "too_long"
                continue
            try:
                yield (n, *_check_text(line.rstrip(b"\r\n").decode(spec.encoding)))
            except UnicodeDecodeError:
                yield n, None, "undecodable"
        return
    yield from _paragraphs(unit, spec)


def _read_whole_file(unit: Unit, encoding: str) -> Iterator[Item]:
    """One document per file, streamed: a large file comes in pieces (CONTINUES) of about
    PIECE_CHARS, cut at spaces, so it is never held whole; a failure after the first piece
    drops the whole document (the worker discards the pieces it has)."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    text, start, seen = "", True, False
    try:
        with open(unit.path, "rb") as f:
            while chunk := f.read(PIECE_CHARS):
                if start and chunk.startswith(b"\xef\xbb\xbf"):
                    chunk = chunk[3:]
                start = False
                text += decoder.decode(chunk)
                if "\x00" in text:
                    yield 1, None, "binary"
                    return
                if len(text) > PIECE_CHARS:
                    *pieces, text = split_text(text, PIECE_CHARS)
                    for p in pieces:
                        seen = seen or not p.isspace()
                        yield 1, p, CONTINUES
            text += decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        yield 1, None, "undecodable"
        return
    if not seen and (not text or text.isspace()):
        yield 1, None, "empty"
    else:
        yield 1, text, None


def _paragraphs(unit: Unit, spec: SourceSpec) -> Iterator[Item]:
    """Blank-line separated paragraphs, each one document with its lines joined by newlines;
    a paragraph longer than max_document_bytes is skipped (too_long)."""
    lines: list[str] = []
    first, bad, size = 0, None, 0
    for n, raw in _lines(unit, spec.max_document_bytes):
        if raw is not None and not raw.strip():  # a blank line ends the paragraph
            if bad is not None or lines:
                yield (first, None, bad) if bad else (first, *_check_text("\n".join(lines)))
            lines, bad, size = [], None, 0
            continue
        if not lines and bad is None:
            first = n
        if bad is not None:
            continue
        size += spec.max_document_bytes + 1 if raw is None else len(raw)
        if size > spec.max_document_bytes:
            bad, lines = "too_long", []
            continue
        try:
            lines.append(raw.rstrip(b"\r\n").decode(spec.encoding))
        except UnicodeDecodeError:
            bad, lines = "undecodable", []
    if bad is not None or lines:
        yield (first, None, bad) if bad else (first, *_check_text("\n".join(lines)))


def _read_parquet(unit: Unit, spec: SourceSpec) -> Iterator[Item]:
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
                yield (
                    (n, None, "missing_field")
                    if text is None
                    else (n, *_check_text(text, spec.max_document_bytes))
                )
    except (OSError, pa.ArrowException):
        raise _Unreadable(n + 1) from None


def load_hf(spec: SourceSpec):
    """The source's Hugging Face dataset (streaming or not), or a one-line RecipeError."""
    import datasets

    hf = spec.hf
    try:
        return datasets.load_dataset(
            hf.path,
            hf.name,
            split=hf.split,
            data_files=hf.data_files,
            revision=hf.revision,
            streaming=hf.streaming,
        )
    except Exception as e:  # hub, network, builder and file errors all mean "cannot load"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RecipeError(
            f"sources.{spec.name}.hf: cannot load dataset {hf.path!r}: {first}"
        ) from None


def _hf_units(spec: SourceSpec) -> list[Unit]:
    ds = load_hf(spec)
    columns = ds.column_names
    if columns is not None and spec.text_field not in columns:
        raise RecipeError(
            f"sources.{spec.name}.text_field: {spec.text_field!r} is not a column of"
            f" {spec.hf.path!r} (columns: {', '.join(columns)})"
        )
    if spec.hf.streaming:
        return [
            Unit(source=spec.name, index=i, kind="hf-shard", path=spec.hf.path, start=i, size=1)
            for i in range(ds.num_shards)
        ]
    rows = len(ds)
    return [
        Unit(
            source=spec.name,
            index=i,
            kind="hf-rows",
            path=spec.hf.path,
            start=a,
            stop=min(a + HF_ROWS, rows),
            size=min(HF_ROWS, rows - a),
        )
        for i, a in enumerate(range(0, rows, HF_ROWS))
    ]


def _read_hf(unit: Unit, spec: SourceSpec) -> Iterator[Item]:
    ds = load_hf(spec)
    if unit.kind == "hf-shard":
        part = ds.shard(num_shards=ds.num_shards, index=unit.start)
    else:
        part = ds.select(range(unit.start, unit.stop))
    for n, row in enumerate(part, 1):
        text = row.get(spec.text_field)
        if text is None:
            yield n, None, "missing_field"
        elif not isinstance(text, str):
            yield n, None, "not_text"
        else:
            yield (n, *_check_text(text, spec.max_document_bytes))
