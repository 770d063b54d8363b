"""The plan: a frozen record of what a mixture serves, and random access into it.

The served sequence is a pure function of (per-source block counts, weights, total, seed):
allocation by largest remainder (`mixer.plan.allocate`), the even interleave
(`mixer.plan.interleave`), passes of keyed permutations (`mixer.plan.passes`). ``counts(m)``
and ``locate(i)`` cost O(S^2) integer operations, whatever i.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from mixer.errors import PlanError
from mixer.identity import digest
from mixer.plan import interleave
from mixer.plan.allocate import allocate, largest_total_without_repeats
from mixer.plan.passes import PassOrder, name_key, pass_order
from mixer.typed import from_json, to_json

FORMAT = 1


@dataclass(frozen=True, kw_only=True)
class SourcePlan:
    name: str
    weight: float
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

    # -- identity -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": FORMAT, **to_json(self)}

    @classmethod
    def from_dict(cls, d: dict) -> Plan:
        """Typed and checked (FieldError names the first field that does not fit)."""
        return from_json(
            cls, {k: v for k, v in d.items() if k not in ("format", "fingerprint")}, "plan"
        )

    @cached_property
    def fingerprint(self) -> str:
        return digest(self.to_dict())

    @cached_property
    def _n(self) -> list[int]:
        return [s.num_samples for s in self.sources]

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
        return interleave.counts_many(self._n, self.total, ms)

    def order(self, starts, length: int) -> tuple[np.ndarray, np.ndarray]:
        """(sources, ks) of the global samples [a, a + length) for each a in ``starts``."""
        return interleave.order(self._n, self.total, starts, length)

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
        """The same samples of one source alone, in the same order (orders are keyed by name)."""
        src = next((s for s in self.sources if s.name == name), None)
        if src is None:
            known = ", ".join(s.name for s in self.sources)
            raise PlanError(f"no source {name!r} in the plan (sources: {known})")
        return replace(self, total=src.num_samples, sources=(src,))

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
        """How often the padded last block is among the first c samples of source s."""
        src = self.sources[s]
        full, rest = divmod(c, src.num_blocks)
        if rest == 0:
            return full
        last = src.num_blocks - 1
        return full + int(self._pass(s, full).inverse(np.array([last]))[0] < rest)


def make_plan(
    *,
    manifest: str,
    split: str,
    seed: int,
    seq_len: int,
    names: list[str],
    weights: list[float],
    blocks: list[int],
    shard_sizes: list[tuple[int, ...]],
    padding: list[int],
    total: int | None = None,
    max_epochs: float | None = None,
    shuffle: str = "blocks",
    window: int = 8,
) -> Plan:
    """Allocate, check and freeze a plan; PlanError names the source, the numbers and fixes."""
    for name, b in zip(names, blocks, strict=True):
        if b == 0:
            raise PlanError(
                f"sources.{name}: no {split} blocks to serve (too little text for one block of"
                f" {seq_len} tokens); add data, lower seq_len, or use `remainder: pad`"
            )
    if total is None:
        total = largest_total_without_repeats(weights, blocks)
    counts = allocate(weights, total)
    srcs = tuple(
        SourcePlan(
            name=nm,
            weight=w,
            num_blocks=b,
            num_samples=c,
            shard_sizes=tuple(ss),
            padding_tokens=pad,
        )
        for nm, w, b, c, ss, pad in zip(
            names, weights, blocks, counts, shard_sizes, padding, strict=True
        )
    )
    if max_epochs is not None:
        for s in srcs:
            if s.epochs > max_epochs:
                need = int(s.num_samples / max_epochs) + 1
                raise PlanError(
                    f"sources.{s.name}: the plan repeats it {s.epochs:.2f} times ({s.num_samples:,}"
                    f" samples from {s.num_blocks:,} blocks), more than mixture.max_epochs"
                    f" {max_epochs:g}; lower its weight or the total, give it >= {need:,} blocks of"
                    " data, or raise max_epochs"
                )
    return Plan(
        manifest=manifest,
        split=split,
        seed=seed,
        seq_len=seq_len,
        total=total,
        sources=srcs,
        shuffle=shuffle,
        window=window,
    )
