"""Random access across a plan's segments: its phases, and the pieces amendments and skips cut.

Segment p serves the global samples [a_p, b_p) as the interleave positions
[o_p, o_p + b_p - a_p) of the even interleave of its counts n_p (over L_p = sum(n_p)): a phase
as planned has o_p = 0 and b_p - a_p = L_p; a phase an amendment cut short ends early; the rest
of a phase is served from o_p > 0 when a later amendment cuts it again. A source's samples are
numbered across segments: segment p's first sample of source s is the source's c-th, c the
samples of s served before it (skips then map c to the pass position, `mixer.plan.skips`). So a
segment is a window on an interleave, and counts and order inside it are the interleave's at
both window ends (`mixer.plan.interleave`): O(log P + S^2) integer operations, whatever i.

Invariant (what a resume state's lineage relies on): the samples [0, i) depend only on the
segments that start before i, cut at i (`mixer.plan.journal.lineage`).
"""

from __future__ import annotations

import numpy as np

from mixer.plan import interleave


class Segments:
    """A plan's segments as arrays for random access."""

    def __init__(self, counts, ends, offsets=None):
        self.counts = [[int(c) for c in row] for row in counts]
        num_src = len(self.counts[0]) if self.counts else 0
        self.ends = np.asarray(ends, np.int64)
        self.starts = np.concatenate([[0], self.ends[:-1]]).astype(np.int64)
        self.total = int(self.ends[-1]) if len(self.ends) else 0
        self.lengths = [sum(row) for row in self.counts]  # L_p: the interleave's length
        self.offsets = [int(o or 0) for o in (offsets or [0] * len(self.counts))]
        self.simple = len(self.counts) == 1 and not self.offsets[0]
        # interleave counts at each segment's window start, and samples served in the window
        self.base = np.zeros((len(self.counts), num_src), np.int64)
        served = np.zeros_like(self.base)
        for p, row in enumerate(self.counts):
            o, n = self.offsets[p], int(self.ends[p] - self.starts[p])
            assert o >= 0 and o + n <= self.lengths[p], (p, o, n, self.lengths[p])
            if self.lengths[p]:
                ab = interleave.counts_many(row, self.lengths[p], [o, o + n])
                self.base[p], served[p] = ab[0], ab[1] - ab[0]
        zero = np.zeros((1, num_src), np.int64)
        self.served_before = np.vstack([zero, np.cumsum(served, 0)])  # [P + 1, S]

    def phase_of(self, i):
        """The segment holding global sample i (the last one for i = N), vectorized."""
        return np.minimum(np.searchsorted(self.ends, i, side="right"), len(self.counts) - 1)

    def _len(self, p: int) -> int:
        return int(self.ends[p] - self.starts[p])

    def counts_many(self, ms) -> np.ndarray:
        """Samples of each source served among the first m, for an array of m: [len(ms), S]."""
        if self.simple:
            return interleave.counts_many(self.counts[0], self.total, ms)
        ms = np.asarray(ms, np.int64).ravel()
        out = np.empty((ms.size, self.base.shape[1]), np.int64)
        phase = self.phase_of(ms)
        for p in np.unique(phase).tolist():
            sel = phase == p
            local = ms[sel] - self.starts[p] + self.offsets[p]
            c = interleave.counts_many(self.counts[p], self.lengths[p], local)
            out[sel] = c - self.base[p] + self.served_before[p]
        return out

    def order(self, starts, length: int) -> tuple[np.ndarray, np.ndarray]:
        """(sources, ks) of the samples [a, a + length) for each a in ``starts``, in order."""
        starts = np.asarray(starts, np.int64)
        if self.simple:
            return interleave.order(self.counts[0], self.total, starts, length)
        src = np.empty(starts.size * length, np.int64)
        ks = np.empty_like(src)
        if src.size == 0:
            return src, ks
        ends = starts + length
        base = np.arange(starts.size, dtype=np.int64) * length - starts  # out position of i - i
        first, last = self.phase_of(starts.min()), self.phase_of(ends.max() - 1)
        for p in range(int(first), int(last) + 1):  # each range cut at the segment boundaries
            a, b = self.starts[p], self.ends[p]
            lo, hi = np.clip(starts, a, b), np.clip(ends, a, b)
            sel = lo < hi
            if not sel.any():
                continue
            lo, hi, n = lo[sel], hi[sel], hi[sel] - lo[sel]
            shift = self.offsets[p] - a
            s, k = interleave.order_ranges(self.counts[p], self.lengths[p], lo + shift, hi + shift)
            pos = np.repeat(base[sel] + lo - (np.cumsum(n) - n), n) + np.arange(int(n.sum()))
            src[pos], ks[pos] = s, k - self.base[p][s] + self.served_before[p][s]
        return src, ks
