"""Skipped blocks: a source's served samples mapped past the ranges of its numbering skipped.

A source's samples are numbered k = 0, 1, 2, ... across the whole plan (k is position k mod B of
pass k // B). A skip passes over a range [k0, k1) of that numbering: the source's c-th served
sample is then the c-th k outside every skipped range. With the ranges merged and sorted, g_j =
a_j - (lengths of the ranges before j) is the served index at which range j starts, and
k = c + (lengths of the ranges with g_j <= c): one binary search per sample.
"""

from __future__ import annotations

import numpy as np


class Skipped:
    """One source's skipped ranges, merged: maps served indices c to numbering k."""

    def __init__(self, ranges):
        merged: list[list[int]] = []
        for a, b in sorted((int(a), int(b)) for a, b in ranges if b > a):
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        self.ranges = [tuple(r) for r in merged]
        lengths = np.array([b - a for a, b in self.ranges], np.int64)
        self._cum = np.concatenate([[0], np.cumsum(lengths)])
        self._g = np.array([a for a, _ in self.ranges], np.int64) - self._cum[:-1]

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def k_of(self, c) -> np.ndarray:
        """The numbering of served samples c (an array), past every skipped range."""
        c = np.asarray(c, np.int64)
        if not self.ranges:
            return c
        return c + self._cum[np.searchsorted(self._g, c, side="right")]

    def passed_before(self, k: int) -> int:
        """Skipped numbers below k."""
        return sum(min(b, k) - a for a, b in self.ranges if a < k)
