"""``origins.bin``: a split's provenance table, the documents of the split in packing order.

Per document: its work unit (whose file, as its index in the source's files in the manifest,
kind, first byte or row, and the lines or rows of the file before it are in a small unit
table), the record number the reader gave it inside the unit, and its tokens (BOS/EOS
included, as packed). Blocks are the split's tokens cut every
``seq_len``, so the documents of block b are found by a binary search on the cumulative token
counts: nothing per block or per token is stored. Every ``CHECKPOINT``-th document also keeps
the decompressed byte offset (and the unit's lines before it) where re-reading can start to
find it, so a record of a line-based file is re-read after at most ``CHECKPOINT - 1`` others.

Layout: ``MAGIC``, then chunks of ``CHUNK_DOCS`` documents, each one zstd frame of byte-shuffled
columns in the narrowest unsigned type (unit and record as deltas: about 2 bytes a document in
all, `docs/provenance.md`), then the footer (one zstd frame: a JSON header, then the chunk and
unit arrays it describes), then the footer's offset as 8 bytes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from mixer.artifacts.manifest import ORIGINS_FILE, OriginsRecord
from mixer.errors import OutputError
from mixer.identity import sha256_file

FILENAME = ORIGINS_FILE
MAGIC = b"MXORIGIN"
FORMAT = 1
CHUNK_DOCS = 8192  # documents per compressed chunk: a query decompresses one (~100 KiB)
CHECKPOINT = 32  # documents between re-read offsets (a multiple divides CHUNK_DOCS)
KINDS = ("file", "range", "rowgroup", "hf-shard", "hf-rows")  # `mixer.builder.units.Unit.kind`
_COLUMNS = ("unit", "record", "tokens")  # per document
_MARKS = ("offset", "lines")  # per checkpoint
_UINTS = (np.uint8, np.uint16, np.uint32, np.uint64)
MAX_FOOTER_BYTES = 1 << 30  # a footer decompresses to at most this (a file made elsewhere)


# -- columns --------------------------------------------------------------------------------
def _pack_column(values: np.ndarray) -> bytes:
    """A uint64 column in its narrowest type, byte-shuffled (byte k of every value together:
    the high bytes, mostly zero, compress to nothing); 1 byte of type code first."""
    top = int(values.max()) if values.size else 0
    code = next(i for i, t in enumerate(_UINTS) if top <= np.iinfo(t).max)
    narrow = values.astype(_UINTS[code])
    shuffled = narrow.view(np.uint8).reshape(-1, narrow.itemsize).T.tobytes()
    return bytes([code]) + shuffled


def _unpack_column(buf: memoryview, n: int) -> tuple[np.ndarray, int]:
    """(the uint64 column of ``n`` values at the start of ``buf``, bytes used)."""
    t = np.dtype(_UINTS[buf[0]])
    size = n * t.itemsize
    raw = np.frombuffer(buf[1 : 1 + size], np.uint8).reshape(t.itemsize, n).T.copy()
    return raw.view(t).reshape(n).astype(np.uint64), 1 + size


def _deltas(unit: np.ndarray, record: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit as steps from the previous document's; record as steps within a unit (both >= 0:
    units are packed in order, records increase inside a unit)."""
    du = np.diff(unit, prepend=np.uint64(0))
    same = np.concatenate([[False], unit[1:] == unit[:-1]])
    dr = record - np.where(same, np.concatenate([[0], record[:-1]]), 0).astype(np.uint64)
    return du, dr


def encode_chunk(rows: dict[str, np.ndarray], zstd) -> bytes:
    """One chunk's columns (``_COLUMNS`` per document, ``_MARKS`` per checkpoint), compressed."""
    du, dr = _deltas(rows["unit"], rows["record"])
    n = len(du)
    parts = [np.uint32(n).tobytes(), _pack_column(du), _pack_column(dr)]
    parts += [_pack_column(rows["tokens"])]
    parts += [_pack_column(rows[m]) for m in _MARKS]
    return zstd.compress(b"".join(parts))


def decode_chunk(blob: bytes, zstd) -> dict[str, np.ndarray]:
    buf = memoryview(zstd.decompress(blob, max_output_size=CHUNK_DOCS * 41 + 64))
    n = int(np.frombuffer(buf[:4], np.uint32)[0])
    at, out = 4, {}
    for name in (*_COLUMNS, *_MARKS):
        size = n if name in _COLUMNS else -(-n // CHECKPOINT)
        out[name], used = _unpack_column(buf[at:], size)
        at += used
    unit = np.cumsum(out["unit"], dtype=np.uint64)
    record = out["record"].copy()
    runs = np.flatnonzero(np.diff(unit, prepend=np.uint64(2**63)))  # each a run of one unit
    for a, b in zip(runs.tolist(), [*runs[1:].tolist(), n], strict=True):
        record[a:b] = np.cumsum(record[a:b], dtype=np.uint64)
    out["unit"], out["record"] = unit, record
    return out


# -- footer ---------------------------------------------------------------------------------
def encode_footer(meta: dict, arrays: dict[str, np.ndarray], zstd) -> bytes:
    """``meta`` (JSON) plus named uint64 arrays, one zstd frame."""
    head = {**meta, "arrays": [[k, len(v)] for k, v in arrays.items()]}  # in body order
    text = json.dumps(head, sort_keys=True).encode("utf-8")
    body = b"".join(np.ascontiguousarray(v, "<u8").tobytes() for v in arrays.values())
    return zstd.compress(np.uint32(len(text)).tobytes() + text + body)


def decode_footer(blob: bytes, zstd) -> tuple[dict, dict[str, np.ndarray]]:
    buf = zstd.decompress(blob, max_output_size=MAX_FOOTER_BYTES)
    n = int(np.frombuffer(buf[:4], np.uint32)[0])
    meta = json.loads(buf[4 : 4 + n].decode("utf-8"))
    arrays, at = {}, 4 + n
    for name, size in meta["arrays"]:
        arrays[name] = np.frombuffer(buf, "<u8", count=size, offset=at)
        at += 8 * size
    return meta, arrays


def _marks(unit: np.ndarray, record: np.ndarray) -> np.ndarray:
    """Per checkpoint (every ``CHECKPOINT``-th row), the row whose offset it keeps: among the
    rows of its group in the unit of its first row, the one of the least record, so that
    re-reading from there finds each of them (in packing order: the first row itself)."""
    n = unit.size
    groups = -(-n // CHECKPOINT)
    pad = groups * CHECKPOINT - n
    u = np.concatenate([unit, np.full(pad, unit[-1] if n else 0, np.uint64)])
    r = np.concatenate([record, np.full(pad, np.iinfo(np.uint64).max, np.uint64)])
    u, r = u.reshape(groups, CHECKPOINT), r.reshape(groups, CHECKPOINT)
    key = np.where(u == u[:, :1], r, np.iinfo(np.uint64).max)
    return np.arange(groups) * CHECKPOINT + np.argmin(key, axis=1)


class OriginsWriter:
    """Writes a split's origins.bin as its documents are packed (bounded memory: one chunk)."""

    def __init__(self, path: Path, reading: dict):
        import zstandard

        self.path, self.reading = Path(path), reading
        self._zstd = zstandard.ZstdCompressor(level=3)
        self._f = open(self.path, "wb")  # noqa: SIM115 (closed by finish)
        self._f.write(MAGIC)
        self.units: dict[str, list[int]] = {"u_file": [], "u_kind": [], "u_start": [], "u_base": []}
        self.unit_ids: dict[int, int] = {}  # the source's unit index -> row of the unit table
        self.chunks: dict[str, list[int]] = {"c_offset": [], "c_tokens": []}
        self._pending: list[dict[str, np.ndarray]] = []
        self._count = self.documents = self.tokens = 0

    def unit(self, index: int, file: int, kind: str, start: int, base: int) -> None:
        """Register a work unit: ``file`` its file's index in the source's list (no path is
        stored: the table's bytes do not depend on where the inputs are), ``base`` the lines or
        rows of its file before it."""
        self.unit_ids[index] = len(self.units["u_file"])
        row = (file, KINDS.index(kind), start, base)
        for key, v in zip(self.units, row, strict=True):
            self.units[key].append(v)

    def add(self, unit: int, origins: np.ndarray, tokens: np.ndarray) -> None:
        """Documents of unit ``unit`` (its spill's origin records and token counts), in order."""
        self.add_rows(self.rows(unit, origins, tokens))

    def rows(self, unit: int, origins: np.ndarray, tokens: np.ndarray) -> dict[str, np.ndarray]:
        """The table's rows of documents of unit ``unit`` (for `add_rows`)."""
        return {
            "unit": np.full(len(origins), self.unit_ids[unit], np.uint64),
            "record": origins["record"].astype(np.uint64),
            "tokens": tokens.astype(np.uint64),
            "offset": origins["offset"].astype(np.uint64),
            "lines": origins["lines"].astype(np.uint64),
        }

    def add_rows(self, rows: dict[str, np.ndarray]) -> None:
        """Documents in packing order (best-fit reorders a window's documents, so units and
        records may go back: their deltas wrap around in uint64 and decode back exactly)."""
        n = len(rows["unit"])
        while n:
            take = min(n, CHUNK_DOCS - self._count)
            self._pending.append({k: v[:take] for k, v in rows.items()})
            rows = {k: v[take:] for k, v in rows.items()}
            n -= take
            self._count += take
            if self._count == CHUNK_DOCS:
                self._flush()

    def _flush(self) -> None:
        if not self._count:
            return
        rows = {k: np.concatenate([p[k] for p in self._pending]) for k in self._pending[0]}
        marks = _marks(rows["unit"], rows["record"])
        for m in _MARKS:
            rows[m] = rows[m][marks]
        self.chunks["c_offset"].append(self._f.tell())
        self.chunks["c_tokens"].append(self.tokens)
        self._f.write(encode_chunk(rows, self._zstd))
        self.documents += self._count
        self.tokens += int(rows["tokens"].sum())
        self._pending, self._count = [], 0

    def finish(self) -> OriginsRecord:
        self._flush()
        meta = {
            "format": FORMAT,
            "documents": self.documents,
            "tokens": self.tokens,
            "reading": self.reading,
        }
        at = self._f.tell()
        arrays = {k: np.array(v, np.uint64) for k, v in {**self.chunks, **self.units}.items()}
        self._f.write(encode_footer(meta, arrays, self._zstd))
        self._f.write(np.uint64(at).tobytes())
        self._f.close()
        return OriginsRecord(
            file=self.path.name, bytes=os.path.getsize(self.path), sha256=sha256_file(self.path)
        )


class OriginsTable:
    """A split's origins.bin, read: the documents of a token range, in O(log documents)."""

    def __init__(self, path: Path):
        import zstandard

        self.path = Path(path)
        self._zstd = zstandard.ZstdDecompressor()
        self.padding_before = None  # best-fit: padding of the blocks before each (and all)
        try:
            with open(self.path, "rb") as f:
                if f.read(len(MAGIC)) != MAGIC:
                    raise ValueError("not an origins table")
                size = f.seek(0, os.SEEK_END)
                f.seek(size - 8)
                at = int(np.frombuffer(f.read(8), "<u8")[0])
                if not len(MAGIC) <= at <= size - 8:
                    raise ValueError("footer offset out of range")
                f.seek(at)
                self.meta, self.arrays = decode_footer(f.read(size - 8 - at), self._zstd)
            self._ends = np.append(self.arrays["c_offset"][1:], at).astype(np.int64)
            self.meta["reading"]["txt_mode"]  # noqa: B018 (present, or the table is not ours)
            for group in (("c_offset", "c_tokens"), ("u_file", "u_kind", "u_start", "u_base")):
                if len({len(self.arrays[k]) for k in group}) > 1:
                    raise ValueError("columns of different lengths")
        except (OSError, ValueError, KeyError, TypeError, zstandard.ZstdError) as e:
            raise OutputError(f"{self.path}: unreadable provenance table ({e}); rebuild") from None

    def _chunk(self, c: int) -> dict[str, np.ndarray]:
        import zstandard

        a, b = int(self.arrays["c_offset"][c]), int(self._ends[c])
        try:
            with open(self.path, "rb") as f:
                f.seek(a)
                rows = decode_chunk(f.read(max(b - a, 0)), self._zstd)
            if len(rows["tokens"]) > CHUNK_DOCS or not rows["tokens"].all():
                raise ValueError("a chunk's documents do not fit the format")
            return rows
        except (OSError, ValueError, IndexError, KeyError, zstandard.ZstdError) as e:
            raise OutputError(f"{self.path}: unreadable provenance table ({e}); rebuild") from None

    def documents(self, first: int, last: int) -> list[dict]:
        """The documents overlapping tokens [first, last) of the split, in order: each a dict
        of unit row, record, tokens, token ``start`` in the split, index, and its checkpoint's
        (index, offset, lines)."""
        starts = self.arrays["c_tokens"]
        c = max(int(np.searchsorted(starts, first, side="right")) - 1, 0)
        out: list[dict] = []
        while c < len(starts) and int(starts[c]) < last:
            rows = self._chunk(c)
            ends = int(starts[c]) + np.cumsum(rows["tokens"].astype(np.int64))
            lo = int(np.searchsorted(ends, first, side="right"))
            hi = int(np.searchsorted(ends - rows["tokens"].astype(np.int64), last, side="left"))
            for i in range(lo, hi):
                mark = i // CHECKPOINT
                out.append(
                    {
                        "index": c * CHUNK_DOCS + i,
                        "unit": int(rows["unit"][i]),
                        "record": int(rows["record"][i]),
                        "tokens": int(rows["tokens"][i]),
                        "start": int(ends[i] - rows["tokens"][i]),
                        "mark": c * CHUNK_DOCS + mark * CHECKPOINT,
                        "mark_unit": int(rows["unit"][mark * CHECKPOINT]),
                        "offset": int(rows["offset"][mark]),
                        "lines": int(rows["lines"][mark]),
                    }
                )
            c += 1
        return out

    def unit(self, row: int) -> dict:
        a = self.arrays
        if not 0 <= row < len(a["u_kind"]) or int(a["u_kind"][row]) >= len(KINDS):
            raise OutputError(f"{self.path}: unreadable provenance table (unit {row}); rebuild")
        return {
            "file": int(a["u_file"][row]),
            "kind": KINDS[int(a["u_kind"][row])],
            "start": int(a["u_start"][row]),
            "base": int(a["u_base"][row]),
        }
