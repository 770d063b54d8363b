"""Keyed permutations of [0, n) that are never materialized: a Feistel network with cycle walking.

``Feistel(n, key).forward(j)`` is a bijection of [0, n) evaluated on any array of positions in
O(len(j)) time and O(1) state, so a pass over 10^8 blocks costs no memory and position j of any
pass is one call. The network permutes [0, 4^h) with 4^h < 4n; values that land outside [0, n)
are walked through the network again (on average fewer than 4 times), which keeps it a
bijection of [0, n). Round keys come from ``numpy.random.SeedSequence`` over explicit entropy
(seed, source, pass, ...): nothing depends on time, process or worker.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np

ROUNDS = 6
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def round_keys(*entropy: int) -> np.ndarray:
    return np.random.SeedSequence([int(e) for e in entropy]).generate_state(ROUNDS, np.uint64)


def _mix(x: np.ndarray, key: np.uint64) -> np.ndarray:
    """splitmix64's finalizer on x ^ key: a fast, well-mixing round function."""
    z = x ^ key
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


class Feistel:
    def __init__(self, n: int, keys: np.ndarray):
        assert n >= 0
        self.n = int(n)
        self.keys = np.asarray(keys, np.uint64)
        bits = max(1, (max(self.n - 1, 1)).bit_length())
        self.half = (bits + 1) // 2
        self._mask = np.uint64((1 << self.half) - 1)

    def _rounds(self, x: np.ndarray, keys) -> np.ndarray:
        h = np.uint64(self.half)
        left, right = x >> h, x & self._mask
        with np.errstate(over="ignore"):
            for k in keys:
                left, right = right, left ^ (_mix(right, k) & self._mask)
        return (left << h) | right

    def _inverse_rounds(self, x: np.ndarray) -> np.ndarray:
        h = np.uint64(self.half)
        left, right = x >> h, x & self._mask
        with np.errstate(over="ignore"):
            for k in self.keys[::-1]:
                left, right = right ^ (_mix(left, k) & self._mask), left
        return (left << h) | right

    def _walk(self, j, step) -> np.ndarray:
        x = np.asarray(j, np.uint64).copy()
        if self.n <= 1:
            return x.astype(np.int64)
        x = step(x)
        out = x >= self.n
        while out.any():
            x[out] = step(x[out])
            out = x >= self.n
        return x.astype(np.int64)

    def forward(self, j) -> np.ndarray:
        """The permuted value of each position j (0 <= j < n)."""
        return self._walk(j, lambda x: self._rounds(x, self.keys))

    def inverse(self, v) -> np.ndarray:
        """The position of each value v: ``inverse(forward(j)) == j``."""
        return self._walk(v, self._inverse_rounds)


class PassOrder:
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


def name_key(name: str) -> int:
    """A source's permutation key: its name, so adding or removing a source reorders no other."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")


@lru_cache(maxsize=64)
def pass_order(
    mode: str, window: int, seed: int, source_key: int, p: int, shard_sizes: tuple[int, ...]
) -> PassOrder:
    return PassOrder(mode, window, (seed, source_key, p), shard_sizes)
