"""Where the documents taken from a source under a take end: decided in the merging process,
unit by unit in unit order, over the document records the units spilled (never in finishing
order), so the same documents are taken for any number of workers and either engine."""

from __future__ import annotations

import hashlib

import numpy as np

from mixer.artifacts.manifest import TakeRecord
from mixer.builder.take_measure import Meter, Take, taken_mask
from mixer.builder.units import Unit
from mixer.recipe import ValidationSpec


class Cut:
    """Feed it each unit's document records in unit order (`take`) until ``done``."""

    def __init__(self, take: Take, validation: ValidationSpec):
        self.target = take
        self.meter = Meter(take.measure if take.stops else "tokens", validation)
        self.sha = hashlib.sha256()
        self.done = False
        self.units = 0
        self.stopped: str | None = None
        self.bytes_read: int | None = 0

    @property
    def missing(self) -> float:
        """What the take still lacks (in its measure), over the units taken so far."""
        return max(0.0, self.target.amount - self.meter.value) if self.target.stops else 1.0

    def take(self, unit: Unit, rec: np.ndarray) -> int:
        """How many of this unit's records are taken (a prefix; with ``fraction`` all of them,
        the sample being a function of each record's hash: `take.taken_mask`)."""
        assert not self.done
        hashes, lengths = rec["hash"], rec["length"]
        self.units += 1
        if not self.target.stops:
            keep = taken_mask(hashes, self.target.amount)
            self.meter.add(hashes[keep], lengths[keep])
            self._select(hashes[keep], lengths[keep])
            self._read(unit.whole_bytes)
            return len(rec)
        n = self.meter.reach(hashes, lengths, self.target.amount)
        k = len(rec) if n is None else n
        self._select(hashes[:k], lengths[:k])
        if n is None:
            self._read(unit.whole_bytes)
        else:
            end = int(rec["end"][n - 1])
            self.done, self.stopped = True, unit.stopped_at(end)
            self._read(unit.bytes_to(end))
        return k

    def _select(self, hashes: np.ndarray, lengths: np.ndarray) -> None:
        self.sha.update(np.stack([hashes, lengths], axis=1).astype("<u8").tobytes())

    def _read(self, nbytes: int | None) -> None:
        if nbytes is None or self.bytes_read is None:
            self.bytes_read = None  # a dataset: its bytes are not seen
        else:
            self.bytes_read += nbytes

    def val_threshold(self) -> int | None:
        """Validation ``docs: N`` among the documents taken: hashes <= this are held out."""
        low = self.meter.low
        return int(low[:, 0].max()) if len(low) else None

    def record(self, take_dict) -> TakeRecord:
        b = self.target
        return TakeRecord(
            budget=take_dict,  # the serialized key keeps its older word
            measure=b.measure,
            amount=b.amount,
            documents=self.meter.documents,
            tokens=self.meter.tokens,
            units=self.units,
            stopped=self.stopped,
            exhausted=b.stops and not self.done,
            bytes_read=self.bytes_read,
            selection=self.sha.hexdigest(),
            need=b.need,
        )
