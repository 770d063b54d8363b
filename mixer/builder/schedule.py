"""Which unit to start next: every source's units in order, a source under a take's only as far as
its take is likely to need.

A source with a take that stops reading (tokens, documents, auto) is planned lazily
(`mixer.builder.units.iter_units`: a file is statted and a parquet footer opened only when its
units are reached) and throttled: before any of its units is in, one unit per worker is
started; then more only while the units in flight are expected (at the rate per input byte of
the units taken so far) to bring less than 1.25 times what the take still lacks. So a 2 GB
file of which the plan needs 50 MB is read to a little past 50 MB, in time proportional to
that. Which units run ahead depends on timing; which documents are taken does not
(`mixer.builder.cut`), and a unit's output never depends on it either.

Units finished by an earlier run (completion records) are handed to the merge as they are
reached, without running; so are those a source under a take kept from its previous build
(`mixer.builder.take_reuse.unit_cache`): raising a take tokenizes only the units beyond the old
one.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Iterator

from mixer.builder.merge import SourceMerge
from mixer.builder.spill import UnitResult
from mixer.builder.take_measure import Take
from mixer.builder.units import Unit
from mixer.recipe import SourceSpec

AHEAD = 1.25  # in flight: up to this times what a take still lacks, by the rate so far


class Schedule:
    """The feed of the executor's ``map`` (`mixer.builder.executors`): tasks in order, None to
    wait for results. ``load(spec, unit)`` gives a finished unit's result (or None). Each
    result goes to its source's merge; ``built[name]`` is a source's record fields once its
    merge is done."""

    def __init__(
        self,
        sources: list[SourceSpec],
        units: dict[str, Iterable[Unit]],
        merges: dict[str, SourceMerge],
        takes: dict[str, Take],
        workers: int,
        load: Callable[[SourceSpec, Unit], UnitResult | None],
    ):
        self.sources = [s for s in sources if s.name in units]
        self.iters = {s.name: iter(units[s.name]) for s in self.sources}
        self.planned = dict.fromkeys(self.iters, 0)
        self.merges, self.takes, self.workers = merges, takes, workers
        self.load = load
        self.inflight: collections.deque[tuple[SourceSpec, Unit]] = collections.deque()
        self.retry: collections.deque[tuple[SourceSpec, Unit]] = collections.deque()
        self.flying = {n: [0, 0] for n in self.iters}  # per source: units and bytes in flight
        self.reused = 0
        self.built: dict[str, dict] = {}
        for name in self.iters:
            self._check(name)  # a source of no unit

    def restart(self) -> None:
        """The executor was replaced (the encoder check failed): run the units in flight again."""
        self.retry.extend(self.inflight)
        self.inflight.clear()
        self.flying = {n: [0, 0] for n in self.iters}

    def feed(self, make_task: Callable[[SourceSpec, Unit], object]) -> Iterator[object]:
        while True:
            if self.retry:
                spec, unit = self.retry.popleft()
            else:
                got = self._next()
                if got is None:
                    if not self.inflight:
                        return
                    yield None  # wait: a take decides after the next result
                    continue
                spec, unit = got
            self.inflight.append((spec, unit))
            self.flying[unit.source][0] += 1
            self.flying[unit.source][1] += unit.size
            yield make_task(spec, unit)

    def result(self, result: UnitResult) -> tuple[SourceSpec, Unit]:
        """The next result from the executor (they come in the order tasks were handed out)."""
        spec, unit = self.inflight.popleft()
        assert (unit.source, unit.index) == (result.source, result.index)
        self.flying[unit.source][0] -= 1
        self.flying[unit.source][1] -= unit.size
        self._take(unit, result)
        return spec, unit

    def _take(self, unit: Unit, result: UnitResult) -> None:
        self.merges[unit.source].add(unit, result)
        self._check(unit.source)

    def _check(self, name: str) -> None:
        merge = self.merges[name]
        if merge.done and name not in self.built:
            self.built[name] = merge.finish()

    def _next(self) -> tuple[SourceSpec, Unit] | None:
        for spec in self.sources:
            name = spec.name
            while self.iters.get(name) is not None and self.merges[name].wants:
                if not self._may_start(name):
                    break
                unit = next(self.iters[name], None)
                if unit is None:
                    self.iters[name] = None
                    self.merges[name].end(self.planned[name])
                    self._check(name)
                    break
                self.planned[name] += 1
                r = self.load(spec, unit)
                if r is None:
                    return spec, unit
                self.reused += 1
                self._take(unit, r)
        return None

    def _may_start(self, name: str) -> bool:
        take = self.takes.get(name)
        if take is None or not take.stops:
            return True
        units, size = self.flying[name]
        if not units:
            return True
        merge = self.merges[name]
        done_size = sum(u.size for u, _, _ in merge.accepted)
        if not done_size:
            return units < self.workers
        rate = merge.cut.meter.value / done_size
        return rate * size < AHEAD * merge.cut.missing
