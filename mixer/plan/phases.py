"""Phases: a mixture whose weights change over training (replay while the LR re-warms, the main
phase, an annealing phase on the best data).

Phase p covers the global samples [e_(p-1), e_p) with e_p = floor(until_p * N), e_(-1) = 0, and
the last phase ends at N. ``until`` is read as the decimal written: 0.29 is 29/100, so it ends
a 100-sample phase at 29, where the double nearest 0.29 (or 0.29 * 100 in doubles,
28.999999999999996) would give 28. Per phase:

- allocation: largest remainder of the phase's length by its weights (a source left out of a
  phase gets 0 samples in it), so the counts of a phase sum to its length exactly;
- the even interleave inside the phase, with its prefix bound as a phase-local statement: for
  the first m samples of phase p, |c_s - m w_ps| <= 1/2 + w_ps (S_p - 2)/2, with w_ps = n_ps/L_p
  and S_p the sources the phase serves;
- a source's samples are numbered across phases: its k-th sample overall is position k mod B_s
  of pass k // B_s, so its passes continue over boundaries and no block is served twice before
  its pass ends.

Random access: a binary search over the P boundaries, then the interleave's O(S^2) arithmetic
inside the phase, plus the source's samples in earlier phases: O(log P + S^2), never O(N).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from mixer.plan.allocate import allocate_int, integer_weights, largest_total_without_repeats


@dataclass(frozen=True, kw_only=True)
class PhaseWeights:
    """One phase as asked: its weights (one per source, 0 = left out) and where it ends."""

    weights: tuple[float, ...]
    until: float | None = None  # fraction of the plan where it ends; None for the last phase
    name: str | None = None


@dataclass(frozen=True, kw_only=True)
class Phase:
    """One phase as planned (a record of plan.json): it starts where the previous one ends."""

    name: str | None
    until: float | None
    end: int  # the global sample where the phase ends (exclusive)
    weights: tuple[float, ...]  # per source, in plan order; 0: left out of the phase
    counts: tuple[int, ...]  # samples of each source in the phase's interleave (largest remainder)
    # Written only by amendments (`mixer.plan.journal`): the phase serves the positions
    # [offset, offset + its length) of its interleave (absent: 0, so all of it unless cut short)
    offset: int | None = None


@dataclass(frozen=True, kw_only=True)
class Amendment:
    """One entry of a plan's journal: a change made at global sample ``at`` (plan.json).

    ``kind`` "amend": from ``at`` the plan serves ``weights`` (or the phases of a new recipe)
    up to ``total``; "skip": the blocks the plan would have served in [at, end) are passed
    over: ``passed[source]`` is the range [k0, k1) of the source's numbering they held (its
    sample k is position k mod B of pass k // B). ``before`` is the fingerprint of the plan it
    was made on, ``time`` an ISO date.
    """

    at: int
    kind: str  # "amend" | "skip"
    end: int | None = None  # skip: the range's end (exclusive)
    total: int | None = None  # amend: the plan's total after it
    weights: dict[str, float] | None = None  # amend --weights: per source
    recipe: str | None = None  # amend --recipe: the recipe file as given
    passed: dict[str, tuple[int, int]] | None = None  # skip: per source, [k0, k1) passed over
    added: tuple[str, ...] = ()  # sources that enter at ``at``
    manifest: str | None = None  # the manifest before, when the amendment changed it
    note: str | None = None
    time: str | None = None
    before: str | None = None


@dataclass(frozen=True, kw_only=True)
class Allocation:
    """How many samples of each source a mixture plans: per phase, and in all."""

    total: int
    ends: tuple[int, ...]  # per phase, exclusive; the last is ``total``
    counts: tuple[tuple[int, ...], ...]  # [phase][source]

    @property
    def starts(self) -> tuple[int, ...]:
        return (0, *self.ends[:-1])

    @property
    def per_source(self) -> tuple[int, ...]:
        return tuple(int(sum(c)) for c in zip(*self.counts, strict=True))


def fraction_of(until: float) -> Fraction:
    """``until`` as the decimal it was written as (its shortest round-tripping repr)."""
    return Fraction(repr(float(until)))


def phase_ends(untils: list[float | None], total: int) -> tuple[int, ...]:
    """e_p = floor(until_p * N) exactly for every phase but the last, which ends at N."""
    return (*(math.floor(fraction_of(u) * total) for u in untils[:-1]), total)


def planned_samples(
    *,
    weights=None,
    phases: list[PhaseWeights] | None = None,
    blocks=None,
    total: int | None = None,
) -> Allocation:
    """Samples of each source that a mixture plans, per phase and in all (pure arithmetic).

    Give ``weights`` (one phase) or ``phases``; ``total`` N, or ``blocks`` (per source) for the
    default: the largest N at which no source repeats over the whole plan. This is what
    ``make_plan`` allocates, so a caller that must know the counts before a plan exists (a
    read budget per source) gets the same numbers.
    """
    if phases is None:
        phases = [PhaseWeights(weights=tuple(weights))]
    if total is None:
        total = largest_total_phased(phases, blocks)
    ends = phase_ends([p.until for p in phases], total)
    counts = []
    for p, start, end in zip(phases, (0, *ends[:-1]), ends, strict=True):
        counts.append(tuple(allocate_int(integer_weights(p.weights), end - start)))
    return Allocation(total=total, ends=ends, counts=tuple(counts))


def largest_total_phased(phases: list[PhaseWeights], blocks) -> int:
    """The largest N whose phases give no source more samples than it has blocks, in all.

    With d_p the fraction of the plan in phase p and o_ps = w_ps / W_p, a source's count is
    within E_s = sum_p (o_ps + 1) of rho_s N, rho_s = sum_p d_p o_ps (each phase's length is
    within 1 of d_p N, each count within 1 of its quota, both strictly). So every N with
    rho_s N + E_s <= B_s for all s is fine, every N with rho_s N - E_s >= B_s for some s is not,
    and the N between are checked downward (O(E_s / rho_s) allocations of P phases).
    """
    if len(phases) == 1:
        return largest_total_without_repeats(list(phases[0].weights), list(blocks))
    bounds = [fraction_of(p.until) for p in phases[:-1]] + [Fraction(1)]
    share = [b - a for a, b in zip([Fraction(0), *bounds[:-1]], bounds, strict=True)]
    iws = [integer_weights(p.weights) for p in phases]
    lows, highs = [], []
    for s, b in enumerate(blocks):
        o = [Fraction(iw[s], sum(iw)) for iw in iws]
        rho = sum(d * x for d, x in zip(share, o, strict=True))
        if rho == 0:
            continue  # never served: it cannot repeat
        err = sum(x + 1 for x in o if x)
        lows.append(max(0, math.floor((b - err) / rho)))
        highs.append(math.ceil((b + err) / rho))
    low, n = min(lows), min(highs) - 1
    untils = [p.until for p in phases]
    while n > low:
        ends = phase_ends(untils, n)
        got = [0] * len(blocks)
        for iw, a, e in zip(iws, (0, *ends[:-1]), ends, strict=True):
            got = [g + c for g, c in zip(got, allocate_int(iw, e - a), strict=True)]
        if all(g <= b for g, b in zip(got, blocks, strict=True)):
            break
        n -= 1
    return n
