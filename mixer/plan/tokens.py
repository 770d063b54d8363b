"""Shares in trained tokens (``mixture.weights_in: tokens``): how many samples each source
serves in each of a plan's fine segments so that its share of the *loss tokens* (labels
scored: per block ``seq_len - 1`` less its padding) follows its weight.

A block's loss tokens differ when blocks are padded (best-fit packing, `remainder: pad`), so
equal samples are no longer equal tokens. The middle of each source's k-th sample lies at
(T_s(k) + T_s(k + 1)) / 2 of its cumulative loss tokens; divided by the weight w_s, that is a
point on a common "token clock" (the middle, as the even interleave's k + 1/2, halves the
error of taking either end).
The first m samples of the plan are the m earliest points of all sources (ties by source),
and the plan is cut into ``SEGMENTS`` segments at the global samples ``g * N // SEGMENTS``,
each with those exact per-source counts (`mixer.plan.segments`: random access stays
O(log)). At a segment's end every source's loss tokens are within half a sample of w_s
times the clock, so at every 1% of training (a segment end when SEGMENTS is a multiple of 100)
the share of source s is w_s within about seq_len / (tokens so far): ±0.05 percentage
points once 1% of the plan holds 2,000 blocks (tests/unit/test_plan_tokens.py).

Pure numpy: the per-block loss tokens come from the build (`mixer.artifacts.planfile`).
Cost: the serving order of every source up to N samples, O(S N) integers, once per plan.
"""

from __future__ import annotations

import numpy as np

from mixer.plan.passes import name_key, pass_order

SEGMENTS = 1000


def served_loss(
    block_loss: np.ndarray, k: int, *, shuffle: str, window: int, seed: int, name: str, sizes
) -> np.ndarray:
    """Loss tokens of a source's samples 0..k-1, in serving order (pass p is the keyed
    permutation of its blocks, `mixer.plan.passes`)."""
    B = block_loss.size
    out = []
    for p in range(-(-k // B)):
        n = min(B, k - p * B)
        order = pass_order(shuffle, window, seed, name_key(name), p, tuple(sizes))
        out.append(block_loss[order.forward(np.arange(n, dtype=np.int64))])
    return np.concatenate(out) if out else np.empty(0, np.int64)


def horizon(block_loss: list[np.ndarray], weights: list[float], total: int) -> list[int]:
    """How many samples of each source to lay out: its expected count (weights over mean loss
    per block), 5% more and two passes, never more than ``total``. A pass's loss tokens sum
    to the same whatever its order, so a source's count is within a pass of the estimate;
    `token_counts` says when one ran out (then the caller lays out ``total``)."""
    mean = [float(b.mean()) if b.size else 0.0 for b in block_loss]
    rate = [w / m if w > 0 and m > 0 else 0.0 for w, m in zip(weights, mean, strict=True)]
    out = []
    for r, b in zip(rate, block_loss, strict=True):
        guess = total * r / sum(rate) if sum(rate) else 0.0
        out.append(min(total, int(guess * 1.05) + 2 * b.size + 16))
    return out


def token_counts(
    weights: list[float], total: int, losses: list[np.ndarray], segments: int = SEGMENTS
) -> tuple[list[tuple[int, ...]], list[int]]:
    """(per segment, each source's samples; the segments' ends) for ``total`` samples.

    ``losses[s]``: loss tokens of source s's samples in serving order, at least as many as it
    can be given (``total``, or fewer for a source whose later samples come after the first
    ``total`` points). A source of weight 0 serves nothing.
    """
    src, clock = [], []
    for s, (w, loss) in enumerate(zip(weights, losses, strict=True)):
        if w > 0 and loss.size:
            clock.append((np.cumsum(loss, dtype=np.float64) - loss / 2) / w)  # its middle
            src.append(np.full(loss.size, s, np.int64))
    S = len(weights)
    if not clock or total == 0:
        return [tuple([0] * S)], [total]
    src_all, clock_all = np.concatenate(src), np.concatenate(clock)
    first = np.lexsort((src_all, clock_all))[:total]  # the earliest points, ties by source
    if first.size < total or _ran_out(src_all[first], losses, weights, total):
        raise ValueError("laid out too few samples")  # the caller lays out `total` each
    ends = sorted({(g * total) // segments for g in range(1, segments + 1)} - {0})
    which = src_all[first]
    at = np.zeros((len(ends) + 1, S), np.int64)
    for s in range(S):
        at[1:, s] = np.searchsorted(np.flatnonzero(which == s), ends, side="left")
    counts = np.diff(at, axis=0)
    return [tuple(int(c) for c in row) for row in counts], list(ends)


def _ran_out(which: np.ndarray, losses, weights, total: int) -> bool:
    """A source whose laid-out samples were all taken (its next might have come earlier
    than others taken), unless it was laid out to ``total``."""
    taken = np.bincount(which, minlength=len(losses))
    return any(
        w > 0 and taken[s] >= loss.size and loss.size < total
        for s, (w, loss) in enumerate(zip(weights, losses, strict=True))
    )


def served_sum(plan, s: int, values: np.ndarray, c: int) -> int:
    """The sum of ``values[block]`` (one per block of source ``s``: its loss tokens, its
    padding) over the first ``c`` samples the plan serves of the source, exactly: the
    positions [0, k) of its passes less the ranges skips passed over (as
    `Plan._padded_served` counts its last block), each prefix whole passes then the first
    positions of the next: O(blocks)."""
    sk = plan.skipped[s]
    end = int(sk.k_of(c))
    total = _prefix(plan, s, values, end)
    for a, b in sk.ranges:
        if a < end:
            total -= _prefix(plan, s, values, min(b, end)) - _prefix(plan, s, values, a)
    return total


def _prefix(plan, s: int, values: np.ndarray, k: int) -> int:
    full, rest = divmod(k, plan.sources[s].num_blocks)
    part = plan._pass(s, full).forward(np.arange(rest, dtype=np.int64)) if rest else []
    return full * int(values.sum()) + int(values[part].sum())
