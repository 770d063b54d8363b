"""Work units: how a source's input is cut into independent pieces of work.

A work unit is a whole file, a byte range of a large uncompressed line-based file, a parquet row
group, or a Hugging Face dataset shard (streaming) or row range. Units depend on the input only,
never on the number of workers, so any executor produces the same documents in the same order.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mixer.errors import RecipeError
from mixer.recipe import SourceSpec, file_kind

#: Uncompressed .jsonl and line-mode .txt files are split every 8 MiB: about half a second of one
#: core's work, so the last units of a build leave a core idle for well under a second, while
#: a unit's fixed cost (a task, two spill files, a completion record) stays around 1%.
RANGE_BYTES = 8 << 20
HF_ROWS = 50_000  # rows per unit of a non-streaming Hugging Face dataset


@dataclass(frozen=True, kw_only=True)
class Unit:
    source: str
    index: int  # position in the source's unit order
    kind: str  # "file", "range", "rowgroup", "hf-shard", "hf-rows"
    path: str = ""  # the file, or the dataset's path for hf units
    start: int = 0  # byte offset, row group, shard index or first row
    stop: int = -1  # byte or row end (exclusive; a row group's rows); -1: to the end
    size: int = 0  # bytes (files) or rows (hf) this unit covers, for progress

    def stopped_at(self, end: int) -> str:
        """Where a document ends, from its ``end`` position (`mixer.builder.spill`): a byte of a
        file (of the compressed file for .gz/.zst), a row of a row group or of a dataset."""
        if self.kind in ("file", "range"):
            return f"{self.path} byte {end:,}"
        return self._row(end)

    @property
    def whole_bytes(self) -> int | None:
        """Input bytes of the whole unit (None for datasets)."""
        return None if self.kind.startswith("hf") else self.size

    def bytes_to(self, end: int) -> int | None:
        """Input bytes of this unit read up to position ``end`` (rows: the row group's share;
        None for datasets, whose bytes are not seen)."""
        if self.kind in ("file", "range"):
            return end - self.start
        if self.kind == "rowgroup":
            return self.size * end // max(self.stop, 1)
        return None

    def locate(self, where: int) -> str:
        """A human location for the ``where`` a reader yielded."""
        if self.kind in ("file", "range"):
            return f"{self.path}:{where + self._lines_before()}"
        return self._row(where)

    def _row(self, n: int) -> str:
        """Row ``n`` (from 1) of a row group, a dataset shard or a dataset's row range."""
        if self.kind == "rowgroup":
            return f"{self.path} row group {self.start} row {n:,}"
        if self.kind == "hf-shard":
            return f"hf:{self.path} shard {self.start} row {n:,}"
        return f"hf:{self.path} row {self.start + n:,}"

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
    return list(iter_units(spec))


def iter_units(spec: SourceSpec) -> Iterator[Unit]:
    """The source's work units in reading order, planned one file at a time: a source with
    ``take`` stats and opens only the files it reaches."""
    if spec.hf is not None:
        yield from _hf_units(spec)
        return
    index = 0
    for path in spec.files:
        for u in _file_units(spec, path):
            yield dataclasses.replace(u, index=index)
            index += 1


def _file_units(spec: SourceSpec, path: str) -> list[Unit]:
    kind = file_kind(path)
    size = Path(path).stat().st_size
    splittable = kind == ".jsonl" or (kind == ".txt" and spec.txt_mode == "line")
    unit = functools.partial(Unit, source=spec.name, index=0, path=path)
    if kind == ".parquet" and (rows := _row_groups(path)):
        size_each = size // len(rows)
        return [unit(kind="rowgroup", start=g, stop=n, size=size_each) for g, n in enumerate(rows)]
    if splittable and size > RANGE_BYTES:
        return [
            unit(
                kind="range",
                start=a,
                stop=min(a + RANGE_BYTES, size),
                size=min(RANGE_BYTES, size - a),
            )
            for a in range(0, size, RANGE_BYTES)
        ]
    return [unit(kind="file", size=size)]


def _row_groups(path: str) -> list[int]:
    """Rows of each row group of a parquet file; [] if its footer cannot be read (the reader
    reports it)."""
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path).metadata
        return [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
    except Exception:  # noqa: BLE001 (pyarrow raises several types for a broken file)
        return []


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
