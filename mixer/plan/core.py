"""The plan: a frozen record of what a mixture serves, and random access into it.

The served sequence is a pure function of (per-source block counts, weights or phases, total,
seed): allocation by largest remainder (`mixer.plan.allocate`) per phase
(`mixer.plan.phases`), the even interleave (`mixer.plan.interleave`), passes of keyed
permutations (`mixer.plan.passes`). ``counts(m)`` and ``locate(i)`` cost O(log P + S^2)
integer operations, whatever i.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from mixer.errors import PlanError
from mixer.identity import digest
from mixer.plan.limits import phase_label
from mixer.plan.passes import PassOrder, name_key, pass_order
from mixer.plan.phases import Amendment, Phase
from mixer.plan.segments import Segments
from mixer.plan.skips import Skipped
from mixer.typed import from_json, to_json

FORMAT = 1


@dataclass(frozen=True, kw_only=True)
class SourcePlan:
    name: str
    weight: float  # the recipe's weight; with phases, its share of the whole plan (n_s / N)
    num_blocks: int  # blocks available (train blocks of the split)
    num_samples: int  # n_s: samples this source contributes to the plan
    shard_sizes: tuple[int, ...]  # blocks per shard, in shard order
    padding_tokens: int = 0  # padding in the source's last block (remainder: pad)

    @property
    def passes(self) -> int:
        return -(-self.num_samples // self.num_blocks) if self.num_blocks else 0

    @property
    def epochs(self) -> float:
        return self.num_samples / self.num_blocks if self.num_blocks else float("inf")


@dataclass(frozen=True, kw_only=True)
class Plan:
    manifest: str  # fingerprint of the manifest the plan was made for
    split: str
    seed: int
    seq_len: int
    total: int
    sources: tuple[SourcePlan, ...]
    shuffle: str = "blocks"
    window: int = 8  # shards per shuffle window (shuffle: shards)
    phases: tuple[Phase, ...] = ()  # none: one set of weights for the whole plan
    journal: tuple[Amendment, ...] = ()  # amendments and skips made since the build
    base: str | None = None  # the fingerprint of the plan before its first amendment
    weights_in: str | None = None  # "tokens": phases are shares of loss tokens (None: samples)

    # -- identity -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The plan.json record; a plan without phases has no ``phases`` key (as before them)."""
        return {"format": FORMAT, **to_json(self)}

    @classmethod
    def from_dict(cls, d: dict) -> Plan:
        """Typed and checked (FieldError names the first field that does not fit)."""
        body = {k: v for k, v in d.items() if k not in ("format", "fingerprint")}
        return from_json(cls, body, "plan")

    @cached_property
    def fingerprint(self) -> str:
        return digest(self.to_dict())

    @cached_property
    def _n(self) -> list[int]:
        return [s.num_samples for s in self.sources]

    # -- phases ---------------------------------------------------------------------------
    @cached_property
    def spans(self) -> tuple[Phase, ...]:
        """The plan's phases, or one phase spanning the whole plan when it has none."""
        if self.phases:
            return self.phases
        w = tuple(s.weight for s in self.sources)
        return (Phase(name=None, until=None, end=self.total, weights=w, counts=tuple(self._n)),)

    @cached_property
    def _segments(self) -> Segments:
        spans = self.spans
        return Segments(
            [p.counts for p in spans], [p.end for p in spans], [p.offset for p in spans]
        )

    @cached_property
    def skipped(self) -> tuple[Skipped, ...]:
        """Per source, the ranges of its numbering that skips passed over."""
        ranges: list[list] = [[] for _ in self.sources]
        names = {s.name: i for i, s in enumerate(self.sources)}
        for e in self.journal:
            for name, r in (e.passed or {}).items():
                ranges[names[name]].append(r)
        return tuple(Skipped(r) for r in ranges)

    def lineage(self, p: int) -> str:
        """What fixes the samples [0, p) (`mixer.plan.journal`): a resume state's identity."""
        from mixer.plan.journal import lineage

        return lineage(self, p)

    def consumed(self) -> list[int]:
        """Per source, how far its passes advance over the whole plan: its samples served, plus
        the blocks skips passed over among them (what the repetition guard counts)."""
        pairs = zip(self.skipped, self.sources, strict=True)
        return [int(sk.k_of(s.num_samples)) for sk, s in pairs]

    def phase_of(self, i: int) -> int:
        """The phase holding global sample i (0 without phases; the last one for i = N)."""
        return int(self._segments.phase_of(i))

    def phase_range(self, p: int) -> tuple[int, int]:
        """[start, end) of phase p in the global sequence."""
        return int(self._segments.starts[p]), int(self._segments.ends[p])

    def phase_label(self, p: int) -> str:
        """``phases[1] (main)``: how reports and errors name a phase (its recipe key)."""
        return phase_label(p, self.spans[p].name)

    # -- interleave -----------------------------------------------------------------------
    def counts(self, m: int) -> list[int]:
        """Samples of each source among the first m of the global sequence (exact)."""
        if not 0 <= m <= self.total:
            raise PlanError(f"sample count {m} is outside the plan's [0, {self.total}]")
        # All samples with key <= m/N (k + 1/2 <= m n_s / N: an exact integer floor), then the
        # few next-smallest (or largest) keys to make exactly m; see counts_many.
        return self.counts_many([m])[0].tolist()

    def counts_many(self, ms) -> np.ndarray:
        """``counts(m)`` for an array of m, vectorized: shape [len(ms), num_sources]."""
        return self._segments.counts_many(ms)

    def order(self, starts, length: int) -> tuple[np.ndarray, np.ndarray]:
        """(sources, ks) of the global samples [a, a + length) for each a in ``starts``.

        k counts a source's samples over the whole plan, across phases: sample k of source s
        is position k mod B_s of its pass k // B_s (``block_ids``).
        """
        src, ks = self._segments.order(starts, length)
        for s, sk in enumerate(self.skipped):
            if sk:
                sel = src == s
                ks[sel] = sk.k_of(ks[sel])
        return src, ks

    def locate(self, i: int) -> tuple[int, int]:
        """(source index, k): global sample i is sample k of that source."""
        if not 0 <= i < self.total:
            raise PlanError(f"sample {i} is outside the plan's [0, {self.total})")
        src, ks = self.order([i], 1)
        return int(src[0]), int(ks[0])

    # -- passes and permutations ----------------------------------------------------------
    def block_ids(self, s: int, ks: np.ndarray) -> np.ndarray:
        """Block index (within source s's split) served as sample k of source s."""
        src = self.sources[s]
        ks = np.asarray(ks, np.int64)
        passes, pos = np.divmod(ks, src.num_blocks)
        out = np.empty_like(ks)
        for p in np.unique(passes):
            sel = passes == p
            out[sel] = self._pass(s, int(p)).forward(pos[sel])
        return out

    def _pass(self, s: int, p: int) -> PassOrder:
        src = self.sources[s]
        return pass_order(
            self.shuffle, self.window, self.seed, name_key(src.name), p, src.shard_sizes
        )

    def restrict(self, name: str) -> Plan:
        """The same samples of one source alone, in the same order (orders are keyed by name;
        a source's samples are numbered over the whole plan, so phases need not be kept)."""
        src = next((s for s in self.sources if s.name == name), None)
        if src is None:
            known = ", ".join(s.name for s in self.sources)
            raise PlanError(f"no source {name!r} in the plan (sources: {known})")
        skips = tuple(  # its own skipped ranges only (the order is the source's alone)
            replace(e, passed={name: e.passed[name]})
            for e in self.journal
            if e.passed and name in e.passed
        )
        return replace(self, total=src.num_samples, sources=(src,), phases=(), journal=skips)

    # -- accounting -----------------------------------------------------------------------
    def counts_at(self, m: int) -> dict[str, dict[str, int]]:
        """{source: {"samples", "tokens"}} for the first m global samples (tokens: no padding)."""
        out = {}
        for s, c in enumerate(self.counts(m)):
            src = self.sources[s]
            tokens = c * self.seq_len
            if src.padding_tokens and c:
                tokens -= src.padding_tokens * self._padded_served(s, c)
            out[src.name] = {"samples": c, "tokens": tokens}
        return out

    def _padded_served(self, s: int, c: int) -> int:
        """How often the padded last block is among the first c samples served of source s.

        Served samples are k in [0, c + skipped) less the ranges skips passed over."""
        sk = self.skipped[s]
        end = int(sk.k_of(c))  # the first c served are k in [0, end), less the skipped ranges
        return self._padded_between(s, 0, end) - sum(
            self._padded_between(s, a, min(b, end)) for a, b in sk.ranges if a < end
        )

    def _padded_between(self, s: int, k0: int, k1: int) -> int:
        return self._padded_before(s, k1) - self._padded_before(s, k0)

    def _padded_before(self, s: int, k: int) -> int:
        """How often the padded last block is among positions [0, k) of source s's passes."""
        src = self.sources[s]
        full, rest = divmod(k, src.num_blocks)
        if rest == 0:
            return full
        last = src.num_blocks - 1
        return full + int(self._pass(s, full).inverse(np.array([last]))[0] < rest)
