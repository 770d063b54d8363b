"""Low-level reading shared by the readers: lines of a (compressed) file in bounded memory,
and the checks every document's text passes."""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator

from mixer.builder.units import Unit
from mixer.errors import InputError
from mixer.recipe import file_kind

Item = tuple[int, "str | None", "str | None"]  # (where, text, reason)
CONTINUES = "+"  # the reason of a piece of a document whose next piece follows
PIECE_CHARS = 1 << 20  # long documents are read and tokenized in pieces of about this size


class Cursor:
    """Where a reader is after the item it last yielded: a byte offset of the file as stored
    (of the compressed bytes for .gz/.zst: what was read from disk) or a row number. The worker
    stores it as each document's ``end``: where reading could stop after that document.

    For line-based files it also keeps ``offset``, the same place in the file's decompressed
    bytes, and ``lines``, the lines of the unit read so far: where a document's origin says
    reading can start again to find it (`mixer.builder.reread`)."""

    __slots__ = ("pos", "offset", "lines")

    def __init__(self) -> None:
        self.pos = self.offset = self.lines = 0


class Unreadable(Exception):
    def __init__(self, where: int):
        self.where = where


def open_binary(path: str):
    """(the file's bytes, decompressed if need be; the file on disk, for its position)."""
    kind = file_kind(path)
    raw = open(path, "rb")  # noqa: SIM115 (closed with the wrapper)
    if kind == ".jsonl.gz":
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw
    if kind == ".jsonl.zst":
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(raw, closefd=True)
        return io.BufferedReader(reader), raw
    return raw, raw


def read_lines(
    unit: Unit, limit: int, cursor: Cursor | None = None
) -> Iterator[tuple[int, bytes | None]]:
    """(line number within the unit, raw line) for the lines that start inside the unit; a line
    longer than ``limit`` bytes comes as None, read through in bounded memory."""
    n = 0
    cursor = cursor or Cursor()
    try:
        f, raw = open_binary(unit.path)
        with f, raw:
            if unit.start > 0:
                f.seek(unit.start - 1)
                if f.read(1) != b"\n":
                    skip_line(f)  # that line belongs to the previous unit
            pos, stop = (f.tell() if unit.start > 0 else 0), unit.stop
            cursor.offset = pos
            plain, readline = raw is f, f.readline  # locals: this loop runs once per line
            while not 0 <= stop <= pos:
                line = readline(limit + 1)
                if not line:
                    break
                n += 1
                pos += len(line)
                if len(line) > limit and not line.endswith(b"\n"):
                    pos += skip_line(f)
                    cursor.pos, cursor.offset, cursor.lines = _at(pos, f, raw), pos, n
                    yield n, None
                    continue
                cursor.pos = pos if plain else raw.tell()
                cursor.offset, cursor.lines = pos, n
                if n == 1 and unit.start == 0 and line.startswith(b"\xef\xbb\xbf"):
                    line = line[3:]  # a UTF-8 byte order mark
                yield n, line
    except stream_errors() as e:  # truncated or corrupt .gz / .zst
        if isinstance(e, FileNotFoundError):
            raise InputError(f"{unit.path}: the input file disappeared during the build") from None
        raise Unreadable(n + 1) from None


def _at(pos: int, f, raw) -> int:
    """The cursor's ``pos``: ``pos`` in an uncompressed file, what was read from disk else."""
    return pos if raw is f else raw.tell()


def skip_line(f) -> int:
    """Read to the end of the current line, 1 MiB at a time; the bytes read."""
    skipped = 0
    while chunk := f.readline(1 << 20):
        skipped += len(chunk)
        if chunk.endswith(b"\n"):
            break
    return skipped


def stream_errors() -> tuple[type[Exception], ...]:
    import zstandard

    return (OSError, EOFError, ValueError, zstandard.ZstdError)


def check_text(text: str, limit: int | None = None) -> tuple[str | None, str | None]:
    if limit is not None and len(text) > limit:
        return None, "too_long"
    if not text or text.isspace():
        return None, "empty"
    if "\x00" in text:
        return None, "binary"
    return text, None
