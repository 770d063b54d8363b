"""Plain-text inputs: a document per file (streamed in pieces), per line, or per paragraph."""

from __future__ import annotations

import codecs
from collections.abc import Iterator

from mixer.builder.lines import CONTINUES, PIECE_CHARS, Cursor, Item, check_text, read_lines
from mixer.builder.units import Unit
from mixer.recipe import SourceSpec


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


def read_txt(unit: Unit, spec: SourceSpec, cursor: Cursor) -> Iterator[Item]:
    if spec.txt_mode == "file":
        cursor.pos = unit.size  # one document: it ends where the file does
        yield from _read_whole_file(unit, spec.encoding)
        return
    if spec.txt_mode == "line":
        for n, line in read_lines(unit, spec.max_document_bytes, cursor):
            if line is None:
                yield n, None, "too_long"
                continue
            try:
                yield (n, *check_text(line.rstrip(b"\r\n").decode(spec.encoding)))
            except UnicodeDecodeError:
                yield n, None, "undecodable"
        return
    yield from _paragraphs(unit, spec, cursor)


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


def _paragraphs(unit: Unit, spec: SourceSpec, cursor: Cursor) -> Iterator[Item]:
    """Blank-line separated paragraphs, each one document with its lines joined by newlines;
    a paragraph longer than max_document_bytes is skipped (too_long)."""
    lines: list[str] = []
    first, bad, size = 0, None, 0
    for n, raw in read_lines(unit, spec.max_document_bytes, cursor):
        if raw is not None and not raw.strip():  # a blank line ends the paragraph
            if bad is not None or lines:
                yield (first, None, bad) if bad else (first, *check_text("\n".join(lines)))
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
        yield (first, None, bad) if bad else (first, *check_text("\n".join(lines)))
