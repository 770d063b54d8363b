"""Recording where every packed document came from: the merge's side of the provenance table
(`mixer.artifacts.origins`).

The merge packs a source's units in unit order and routes each document to train or
validation (and drops those a ``take`` budget does not take); the same routing, applied here
to the units' ``.origins`` spill files, writes each split's table in the very order its
documents are packed. A unit reused from an earlier run brings its spill, so its rows are
the ones it had; a unit's numbering (lines or rows of its file before it) is carried from the
units before it in the same file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from mixer.artifacts.manifest import OriginsRecord
from mixer.artifacts.origins import FILENAME, OriginsWriter
from mixer.builder.spill import DOC_DTYPE, ORIGIN_DTYPE, UnitResult, origin_path, unit_paths
from mixer.builder.units import Unit
from mixer.recipe import SourceSpec

CHUNK = 1 << 16  # documents routed per step (3 x 24 bytes each)


def reading(spec: SourceSpec) -> dict:
    """What re-reading a record needs of the source (stored in the table: a source linked
    into another build keeps it)."""
    return {
        "text_field": spec.text_field,
        "encoding": spec.encoding,
        "txt_mode": spec.txt_mode,
        "max_document_bytes": spec.max_document_bytes,
    }


class Reordered:
    """A split's table whose documents are laid out in another order than they come (best
    fit): rows are held until the packer says their order (`order`), then written in it."""

    def __init__(self, writer: OriginsWriter):
        self.writer = writer
        self._rows: list[dict[str, np.ndarray]] = []
        self._held = 0
        self._orders: list[np.ndarray] = []  # of the next documents, from `_first` on
        self._first = 0

    def unit(self, *args) -> None:
        self.writer.unit(*args)

    def add(self, unit: int, origins: np.ndarray, tokens: np.ndarray) -> None:
        self._rows.append(self.writer.rows(unit, origins, tokens))
        self._held += len(origins)
        self._write()

    def order(self, order: np.ndarray) -> None:
        """The layout order of the next ``len(order)`` documents (split indices)."""
        if order.size:
            self._orders.append(order)
            self._write()

    def _write(self) -> None:
        while self._orders and self._held >= self._orders[0].size:
            order = self._orders.pop(0)
            rows = {k: np.concatenate([r[k] for r in self._rows]) for k in self._rows[0]}
            at = order - self._first
            self.writer.add_rows({k: v[at] for k, v in rows.items()})
            self._rows = [{k: v[order.size :] for k, v in rows.items()}]
            self._held -= order.size
            self._first += order.size

    def finish(self) -> OriginsRecord:
        assert not self._orders and self._held == 0, "every document packed"
        return self.writer.finish()


class SourceOrigins:
    """The train and validation tables of one source being merged."""

    def __init__(self, spec: SourceSpec, root: Path, reorder: bool = False):
        self.splits = {
            split: OriginsWriter(root / split / FILENAME, reading(spec))
            for split in ("train", "val")
        }
        if reorder:
            self.splits = {k: Reordered(w) for k, w in self.splits.items()}
        self._before: dict[str, int] = {}  # per file: lines or rows of the units taken so far
        self._files = {path: i for i, path in enumerate(spec.files)}

    def add(
        self,
        work: Path,
        unit: Unit,
        result: UnitResult,
        taken: int | None,
        route: Callable[[np.ndarray], dict[str, np.ndarray]],
    ) -> None:
        """A unit's documents (the first ``taken``), routed by ``route(hashes)`` to splits."""
        base = self._before.get(unit.path, 0) if unit.kind in ("range", "rowgroup") else 0
        base = unit.start if unit.kind == "hf-rows" else base
        if unit.kind == "range":
            self._before[unit.path] = base + result.lines
        elif unit.kind == "rowgroup":
            self._before[unit.path] = base + unit.stop
        for w in self.splits.values():
            w.unit(unit.index, self._files.get(unit.path, 0), unit.kind, unit.start, base)
        _, doc_path = unit_paths(work, unit)
        num = doc_path.stat().st_size // DOC_DTYPE.itemsize
        num = num if taken is None else min(num, taken)
        with open(doc_path, "rb") as docs, open(origin_path(work, unit), "rb") as origins:
            for a in range(0, num, CHUNK):
                n = min(CHUNK, num - a)
                rec = np.fromfile(docs, DOC_DTYPE, count=n)
                org = np.fromfile(origins, ORIGIN_DTYPE, count=n)
                for split, mask in route(rec["hash"]).items():
                    if mask.any():
                        self.splits[split].add(unit.index, org[mask], rec["length"][mask])

    def finish(self) -> dict[str, OriginsRecord]:
        return {split: w.finish() for split, w in self.splits.items()}
