"""Keyed permutations of [0, n) that are never materialized: a Feistel network with cycle walking.

``Feistel(n, key).forward(j)`` is a bijection of [0, n) evaluated on any array of positions in
O(len(j)) time and O(1) state, so a pass over 10^8 blocks costs no memory and position j of any
pass is one call. The network permutes [0, 4^h) with 4^h < 4n; values that land outside [0, n)
are walked through the network again (on average fewer than 4 times), which keeps it a
bijection of [0, n). Round keys come from ``numpy.random.SeedSequence`` over explicit entropy
(seed, source, pass, ...): nothing depends on time, process or worker.
"""

from __future__ import annotations

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
