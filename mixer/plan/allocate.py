"""Allocation: N samples split into per-source counts by largest remainder, exactly."""

from __future__ import annotations

import math
from fractions import Fraction


def integer_weights(weights) -> list[int]:
    """The weights as exact integers with the same ratios (floats are exact binary fractions)."""
    fw = [Fraction(w) for w in weights]
    scale = math.lcm(*(f.denominator for f in fw))
    return [int(f * scale) for f in fw]


def allocate(weights, total: int) -> list[int]:
    """Largest-remainder split of ``total`` by ``weights`` (exact; ties to the earlier source).

    A weight of 0 gets 0 samples: only positive remainders are rounded up, and fewer samples
    are missing after the floors than there are sources with a positive remainder.
    """
    return allocate_int(integer_weights(weights), total)


def allocate_int(iw: list[int], total: int) -> list[int]:
    """:func:`allocate` on weights already made exact integers by :func:`integer_weights`."""
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
    iw = integer_weights(weights)
    wsum = sum(iw)
    used = [(b, w) for b, w in zip(blocks, iw, strict=True) if w]  # weight 0: never served
    low = min(b * wsum // w for b, w in used)
    n = min((b + 1) * wsum // w for b, w in used)
    while n > low and any(c > b for c, b in zip(allocate_int(iw, n), blocks, strict=True)):
        n -= 1
    return n
