"""Pure index math of a mixture: allocation, even interleave, passes, permutations, slicing.

The served sequence is a pure function of (per-source block counts, weights, total, seed):

* **Allocation**: N samples split into per-source counts n_s by largest remainder on the
  normalized weights (exact rationals; the counts sum to N; ties go to the earlier source).
* **Interleave**: sample k of source s sits at key (k + 1/2) / n_s; the global order sorts all
  samples by (key, source). Keys are compared exactly in integers, never as floats (at 10^9
  samples doubles cannot tell neighbours apart).
  Bound: any prefix is all keys below some x plus some of the samples whose key is exactly x,
  so each count is c_s = x n_s + e_s with e_s in [-1/2, 1/2]; with m = sum c_t and w_s = n_s/N,
  c_s - m w_s = e_s (1 - w_s) - w_s sum_{t != s} e_t, hence |c_s - m w_s| <= 1/2 + w_s (S-2)/2
  for S sources: under 1 sample in any 2- or 3-source mixture, and for a 5% source among up to
  21. Tests check it on random plans and compare with Megatron's greedy interleave.
* **Passes**: source s serves its B_s blocks in passes of a fresh permutation each; sample k is
  position k mod B_s of pass k // B_s. Permutations are keyed Feistel networks (`mixer.plan.passes`),
  optionally shard-aware: shuffle shards, then blocks within a window of shards.
* **Random access**: ``counts(m)`` and ``locate(i)`` cost O(S^2) integer operations, whatever i.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from functools import cached_property, lru_cache

import numpy as np

from mixer.errors import PlanError
from mixer.plan.passes import Feistel, round_keys

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
        d = asdict(self)
        d["sources"] = [{**asdict(s), "shard_sizes": list(s.shard_sizes)} for s in self.sources]
        return {"format": FORMAT, **d}

    @classmethod
    def from_dict(cls, d: dict) -> Plan:
        d = {k: v for k, v in d.items() if k not in ("format", "fingerprint")}
        sources = tuple(
            SourcePlan(**{**s, "shard_sizes": tuple(s["shard_sizes"])}) for s in d.pop("sources")
        )
        return cls(**d, sources=sources)

    @cached_property
    def fingerprint(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

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

    def locate(self, i: int) -> tuple[int, int]:
        """(source index, k): global sample i is sample k of that source."""
        if not 0 <= i < self.total:
            raise PlanError(f"sample {i} is outside the plan's [0, {self.total})")
        src, ks = self.order([i], 1)
        return int(src[0]), int(ks[0])

    def counts_many(self, ms) -> np.ndarray:
        """``counts(m)`` for an array of m, vectorized: shape [len(ms), num_sources]."""
        n = np.asarray(self._n, np.int64)
        N = self.total
        exact64 = 2 * N * max(N, 1) < 1 << 62  # else Python ints (object arrays): slower, exact
        dt = np.int64 if exact64 else object
        ms = np.asarray(ms, dt).reshape(-1, 1)
        n = n.astype(dt)
        c = np.minimum(n, (2 * ms * n + N) // (2 * N))
        d = ms[:, 0] - c.sum(axis=1)
        while (d > 0).any():  # add each row's next smallest key
            rows = np.flatnonzero(d > 0)
            s = self._extreme(c[rows], n, smallest=True)
            c[rows, s] += 1
            d[rows] -= 1
        while (d < 0).any():  # drop each row's largest key
            rows = np.flatnonzero(d < 0)
            s = self._extreme(c[rows] - 1, n, smallest=False)
            c[rows, s] -= 1
            d[rows] += 1
        return c.astype(np.int64)

    @staticmethod
    def _extreme(k: np.ndarray, n: np.ndarray, smallest: bool) -> np.ndarray:
        """Per row, the source whose key (k + 1/2)/n is smallest (or largest), exactly.

        Sources with no such sample (k >= n, or k < 0) are never chosen; ties go to the lower
        source for the smallest and to the higher source for the largest, matching (key, source).
        """
        rows = np.arange(k.shape[0])
        valid = (k < n) & (k >= 0)
        best = np.argmax(valid, axis=1)
        for s in range(k.shape[1]):
            kb, nb = k[rows, best], n[best]
            a, b = (2 * k[:, s] + 1) * nb, (2 * kb + 1) * n[s]
            better = (a < b) if smallest else (a >= b)
            best = np.where(valid[:, s] & better & (s != best), s, best)
        return best

    def order(self, starts, length: int) -> tuple[np.ndarray, np.ndarray]:
        """(sources, ks) of the global samples [a, a + length) for each a in ``starts``, in order.

        Vectorized: the per-source counts at both ends of every range come from
        :meth:`counts_many`; inside a range, samples are sorted by key. Floats order the keys
        monotonically (a correctly rounded division never inverts two rationals) but may tie
        distinct ones, so equal-float neighbours are checked exactly.
        """
        starts = np.asarray(starts, np.int64)
        num_src = len(self.sources)
        ca, cb = self.counts_many(starts), self.counts_many(starts + length)
        cnt = (cb - ca).ravel()
        total = int(cnt.sum())
        group = np.repeat(np.arange(cnt.size), cnt)
        offset = np.arange(total) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        ks = np.repeat(ca.ravel(), cnt) + offset
        src, rng = group % num_src, group // num_src
        n = np.asarray(self._n, np.int64)
        keyf = (2 * ks + 1) / (2.0 * n[src])
        idx = np.lexsort((src, keyf, rng))
        src, ks, keyf, rng = src[idx], ks[idx], keyf[idx], rng[idx]
        same = (keyf[1:] == keyf[:-1]) & (rng[1:] == rng[:-1])
        tie = np.flatnonzero(same & (src[1:] != src[:-1]))
        if tie.size and not _exactly_ordered(ks, src, n, tie):
            key = [_Key(int(k), int(n[s]), int(s)) for k, s in zip(ks, src, strict=True)]
            idx = np.array(sorted(range(total), key=lambda i: (int(rng[i]), key[i])), np.int64)
            src, ks = src[idx], ks[idx]
        return src, ks

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

    def _pass(self, s: int, p: int) -> _PassOrder:
        src = self.sources[s]
        return _pass_order(
            self.shuffle, self.window, self.seed, _name_key(src.name), p, src.shard_sizes
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


class _Key:
    """Exact key (k + 1/2) / n of a sample, ordered by (key, source)."""

    __slots__ = ("k", "n", "s")

    def __init__(self, k: int, n: int, s: int):
        self.k, self.n, self.s = k, n, s

    def __lt__(self, other: _Key) -> bool:
        a, b = (2 * self.k + 1) * other.n, (2 * other.k + 1) * self.n
        return a < b or (a == b and self.s < other.s)


def _exactly_ordered(ks, src, n, tie) -> bool:
    """True if each equal-float neighbour pair (tie, tie + 1) is in exact (key, source) order."""
    if int(n.max()) < 1 << 31:  # (2k + 1) * n < 2^63: exact in int64
        lhs = (2 * ks[tie] + 1) * n[src[tie + 1]]
        rhs = (2 * ks[tie + 1] + 1) * n[src[tie]]
        return bool(((lhs < rhs) | ((lhs == rhs) & (src[tie] < src[tie + 1]))).all())
    return all(
        _Key(int(ks[t]), int(n[src[t]]), int(src[t]))
        < _Key(int(ks[t + 1]), int(n[src[t + 1]]), int(src[t + 1]))
        for t in tie
    )


class _PassOrder:
    """The order of one pass over a source's blocks: position -> block and back."""

    def __init__(self, mode: str, window: int, keys: tuple[int, ...], shard_sizes: tuple[int, ...]):
        self.mode, self.keys = mode, keys
        self.num_blocks = int(sum(shard_sizes))
        if mode == "blocks":
            self._f = Feistel(self.num_blocks, round_keys(*keys))
        elif mode == "shards":
            self._shards(window, shard_sizes)

    def _shards(self, window: int, shard_sizes: tuple[int, ...]) -> None:
        sizes = np.asarray(shard_sizes, np.int64)
        rng = np.random.Generator(np.random.Philox(np.random.SeedSequence([*self.keys, 1])))
        order = rng.permutation(sizes.size)  # O(shards), never O(blocks)
        self._shard_start = np.concatenate([[0], np.cumsum(sizes)])[:-1]
        self._order = order
        self._rank = np.argsort(order)  # where each shard sits in the pass
        self._pos_start = np.concatenate([[0], np.cumsum(sizes[order])])  # pass position of shard
        self._win_start = self._pos_start[np.arange(0, order.size, window)]
        self._win_size = np.diff(np.append(self._win_start, self.num_blocks))

    def _window_feistel(self, w: int) -> Feistel:
        return Feistel(int(self._win_size[w]), round_keys(*self.keys, 2, w))

    def _in_windows(self, x: np.ndarray, inverse: bool) -> np.ndarray:
        win = np.searchsorted(self._win_start, x, side="right") - 1
        out = np.empty_like(x)
        for w in np.unique(win):
            sel = win == w
            f = self._window_feistel(int(w))
            inner = x[sel] - self._win_start[w]
            out[sel] = (f.inverse(inner) if inverse else f.forward(inner)) + self._win_start[w]
        return out

    def forward(self, pos: np.ndarray) -> np.ndarray:
        pos = np.asarray(pos, np.int64)
        if self.mode == "none":
            return pos.copy()
        if self.mode == "blocks":
            return self._f.forward(pos)
        shuffled = self._in_windows(pos, inverse=False)  # a position in shuffled-shard order
        k = np.searchsorted(self._pos_start, shuffled, side="right") - 1
        return self._shard_start[self._order[k]] + (shuffled - self._pos_start[k])

    def inverse(self, block: np.ndarray) -> np.ndarray:
        block = np.asarray(block, np.int64)
        if self.mode == "none":
            return block.copy()
        if self.mode == "blocks":
            return self._f.inverse(block)
        shard = np.searchsorted(self._shard_start, block, side="right") - 1
        rank = self._rank[shard]
        shuffled = self._pos_start[rank] + (block - self._shard_start[shard])
        return self._in_windows(shuffled, inverse=True)


def _name_key(name: str) -> int:
    """A source's permutation key: its name, so adding or removing a source reorders no other."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")


@lru_cache(maxsize=64)
def _pass_order(
    mode: str, window: int, seed: int, source_key: int, p: int, shard_sizes: tuple[int, ...]
) -> _PassOrder:
    return _PassOrder(mode, window, (seed, source_key, p), shard_sizes)


# -- making a plan ------------------------------------------------------------------------
def _integer_weights(weights: list[float]) -> list[int]:
    """The weights as exact integers with the same ratios (floats are exact binary fractions)."""
    fw = [Fraction(w) for w in weights]
    scale = math.lcm(*(f.denominator for f in fw))
    return [int(f * scale) for f in fw]


def allocate(weights: list[float], total: int) -> list[int]:
    """Largest-remainder split of ``total`` by ``weights`` (exact; ties to the earlier source)."""
    iw = _integer_weights(weights)
    wsum = sum(iw)
    counts = [total * w // wsum for w in iw]
    rema = [total * w % wsum for w in iw]
    order = sorted(range(len(iw)), key=lambda s: (-rema[s], s))
    for s in order[: total - sum(counts)]:
        counts[s] += 1
    return counts


def largest_total_without_repeats(weights: list[float], blocks: list[int]) -> int:
    """The largest N whose allocation gives no source more samples than it has blocks.

    Every N with N w_s / W <= B_s for all s is fine (then n_s <= ceil(quota) <= B_s); an N with
    N w_s / W >= B_s + 1 for some s is not (n_s >= floor(quota)). Between the two bounds the
    allocation is checked downward (largest remainder is not monotone in N).
    """
    iw = _integer_weights(weights)
    wsum = sum(iw)
    low = min(b * wsum // w for b, w in zip(blocks, iw, strict=True))
    n = min((b + 1) * wsum // w for b, w in zip(blocks, iw, strict=True))
    while n > low and any(c > b for c, b in zip(allocate(weights, n), blocks, strict=True)):
        n -= 1
    return n


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


# -- ranks, workers, batches ---------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Slicing:
    """Which global samples a rank serves, from global sample ``start`` on.

    Global batch g is samples [start + g*B*W, start + (g+1)*B*W); rank r takes the B samples
    from start + g*B*W + r*B. With ``drop_last`` (training), a final global batch that is not
    complete is not served, so every rank yields the same number of batches (a rank that waits
    for another hangs the job): at most B*W - 1 samples at the end of the plan are left out.
    Without it (validation), the final global batch is cut where the plan ends: ranks past the
    end get nothing and one rank may get a short batch; every sample is served exactly once.
    """

    start: int
    total: int
    batch: int
    world: int
    rank: int
    drop_last: bool = True

    def __post_init__(self) -> None:
        assert 0 <= self.rank < self.world and self.batch >= 1 and 0 <= self.start <= self.total

    @property
    def num_batches(self) -> int:
        full, rest = divmod(self.total - self.start, self.batch * self.world)
        return full + int(not self.drop_last and rest > self.rank * self.batch)

    def batch_start(self, g: int) -> int:
        return self.start + g * self.batch * self.world + self.rank * self.batch

    def batch_len(self, g: int) -> int:
        return min(self.batch, self.total - self.batch_start(g))

    @property
    def num_samples(self) -> int:
        n = self.num_batches
        return 0 if n == 0 else (n - 1) * self.batch + self.batch_len(n - 1)

    def global_seen(self, batches_done: int) -> int:
        """Global samples consumed once every rank has taken ``batches_done`` batches."""
        return min(self.total, self.start + batches_done * self.batch * self.world)
