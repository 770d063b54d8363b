"""Phases: per-phase exact counts, the phase-local prefix bound, passes that continue across
boundaries, random access, resume and slicing across boundaries, and one phase = no phases."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mixer.errors import PlanError
from mixer.plan import PhaseWeights, Plan, Slicing, allocate, planned_samples
from tests.unit.test_plan import plan_of


def phased(phases, blocks, total=None, **kw):
    return plan_of(None, total, blocks, phases=phases, **kw)


@st.composite
def phased_plans(draw, max_total=1500, min_phases=1):
    """Plans of 1-5 sources in 1-4 phases; every phase non-empty (untils k/100, N >= 100)."""
    S = draw(st.integers(1, 5))
    P = draw(st.integers(min_phases, 4))
    cuts = sorted(draw(st.sets(st.integers(1, 99), min_size=P - 1, max_size=P - 1)))
    weight = st.one_of(st.just(0.0), st.floats(0.001, 10, allow_nan=False))
    phases = []
    for p in range(P):
        w = draw(st.lists(weight, min_size=S, max_size=S))
        assume(any(w))
        until = cuts[p] / 100 if p < P - 1 else None
        phases.append(PhaseWeights(weights=tuple(w), until=until, name=f"p{p}"))
    blocks = draw(st.lists(st.integers(1, 60), min_size=S, max_size=S))
    total = draw(st.integers(100, max_total))
    return phased(phases, blocks, total)


def oracle(plan: Plan) -> tuple[list[int], list[int]]:
    """The sequence built independently: per phase, all keys (k + 1/2)/n_ps sorted exactly as
    Fractions (ties to the lower source), k numbered on from the source's earlier phases."""
    src, ks, seen = [], [], [0] * len(plan.sources)
    for ph in plan.phases or plan.spans:
        keys = sorted(
            (Fraction(2 * k + 1, 2 * n), s) for s, n in enumerate(ph.counts) for k in range(n)
        )
        for _, s in keys:
            src.append(s)
            ks.append(seen[s])
            seen[s] += 1
    return src, ks


def spans(plan):
    return [plan.phase_range(p) for p in range(len(plan.spans))]


@settings(max_examples=150, deadline=None)
@given(plan=phased_plans())
def test_phase_counts_are_exact_and_the_sequence_matches_the_exact_oracle(plan):
    src, ks = plan.order([0], plan.total)
    want_src, want_ks = oracle(plan)
    assert src.tolist() == want_src and ks.tolist() == want_ks
    assert [p.end for p in plan.spans][-1] == plan.total
    for (a, b), ph in zip(spans(plan), plan.spans, strict=True):
        assert sum(ph.counts) == b - a  # counts per phase sum to the phase's length
        assert list(ph.counts) == allocate(list(ph.weights), b - a)  # largest remainder
        assert np.bincount(src[a:b], minlength=len(plan.sources)).tolist() == list(ph.counts)
    assert [s.num_samples for s in plan.sources] == [
        sum(c) for c in zip(*(p.counts for p in plan.spans), strict=True)
    ]


@settings(max_examples=150, deadline=None)
@given(plan=phased_plans())
def test_the_prefix_bound_holds_inside_every_phase(plan):
    """For the first m samples of phase p: |c_s - m w_ps| <= 1/2 + w_ps (S_p - 2)/2."""
    src, _ = plan.order([0], plan.total)
    for (a, b), ph in zip(spans(plan), plan.spans, strict=True):
        shares = np.asarray(ph.counts) / (b - a)
        present = int((shares > 0).sum())
        counts = np.cumsum(np.eye(len(shares))[src[a:b]], axis=0)
        ideal = np.arange(1, b - a + 1)[:, None] * shares[None, :]
        dev = np.abs(counts - ideal).max(axis=0)
        assert (dev <= 0.5 + shares * (present - 2) / 2 + 1e-9).all()


@settings(max_examples=100, deadline=None)
@given(plan=phased_plans(), data=st.data())
def test_passes_continue_across_phases(plan, data):
    """A source's k-th sample overall is position k mod B_s of pass k // B_s: over any window
    of its samples, no block repeats within a pass, and each full pass is every block once."""
    src, ks = plan.order([0], plan.total)
    for s, sp in enumerate(plan.sources):
        mine = ks[src == s]
        assert mine.tolist() == list(range(sp.num_samples))  # numbered on across boundaries
        ids = plan.block_ids(s, mine)
        for p in range(sp.passes):
            one = ids[p * sp.num_blocks : (p + 1) * sp.num_blocks]
            assert len(set(one.tolist())) == one.size
            if one.size == sp.num_blocks:
                assert sorted(one.tolist()) == list(range(sp.num_blocks))
        if mine.size:
            lo = data.draw(st.integers(0, mine.size - 1))
            hi = data.draw(st.integers(lo, mine.size))
            window = mine[lo:hi]
            for p in np.unique(window // sp.num_blocks):
                got = plan.block_ids(s, window[window // sp.num_blocks == p])
                assert len(set(got.tolist())) == got.size


@settings(max_examples=60, deadline=None)
@given(plan=phased_plans(max_total=400), data=st.data())
def test_counts_at_equals_iterating_locate(plan, data):
    seen = np.zeros(len(plan.sources), np.int64)
    stops = set(data.draw(st.lists(st.integers(0, plan.total), max_size=6)))
    stops |= {a for a, _ in spans(plan)} | {plan.total}
    for i in range(plan.total + 1):
        if i in stops:
            got = plan.counts_at(i)
            assert [got[s.name]["samples"] for s in plan.sources] == seen.tolist()
            assert plan.counts(i) == seen.tolist()
            assert plan.counts_many([i, i]).tolist() == [seen.tolist()] * 2
        if i < plan.total:
            s, k = plan.locate(i)
            assert k == seen[s]  # locate agrees with the sequence's numbering
            seen[s] += 1


@settings(max_examples=100, deadline=None)
@given(
    plan=phased_plans(),
    data=st.data(),
    batch=st.integers(1, 9),
    world=st.integers(1, 4),
    workers=st.integers(1, 3),
)
def test_resume_and_slicing_across_boundaries(plan, data, batch, world, workers):
    """Resume at any sample (inside a phase, on a boundary) with any batch, world size and
    DataLoader workers: ranks and workers serve disjoint samples that together are exactly the
    uninterrupted sequence from there."""
    src, ks = plan.order([0], plan.total)
    bounds = [a for a, _ in spans(plan)]
    start = data.draw(st.one_of(st.integers(0, plan.total), st.sampled_from(bounds)))
    served = {}
    for rank in range(world):
        sl = Slicing(start=start, total=plan.total, batch=batch, world=world, rank=rank)
        for worker in range(workers):
            mine = np.arange(worker, sl.num_batches, workers, dtype=np.int64)
            if not mine.size:
                continue
            s2, k2 = plan.order(sl.batch_start(mine), batch)
            index = (sl.batch_start(mine)[:, None] + np.arange(batch)).ravel()
            for i, s, k in zip(index.tolist(), s2.tolist(), k2.tolist(), strict=True):
                assert i not in served
                served[i] = (s, k)
    full = (plan.total - start) // (batch * world) * batch * world
    assert sorted(served) == list(range(start, start + full))
    assert all(served[i] == (src[i], ks[i]) for i in served)


@settings(max_examples=100, deadline=None)
@given(
    weights=st.lists(st.floats(0.001, 10, allow_nan=False), min_size=1, max_size=6),
    total=st.one_of(st.none(), st.integers(1, 3000)),
    blocks=st.lists(st.integers(1, 300), min_size=6, max_size=6),
)
def test_one_phase_is_the_plan_without_phases(weights, total, blocks):
    blocks = blocks[: len(weights)]
    one = phased([PhaseWeights(weights=tuple(weights), name="all")], blocks, total)
    plain = plan_of(weights, total, blocks)
    assert one.to_dict() == plain.to_dict() and one.fingerprint == plain.fingerprint
    assert "phases" not in plain.to_dict()  # plan.json as before phases existed
    a, b = one.order([0], one.total), plain.order([0], plain.total)
    assert a[0].tolist() == b[0].tolist() and a[1].tolist() == b[1].tolist()


@settings(max_examples=100, deadline=None)
@given(plan=phased_plans(), data=st.data())
def test_the_default_total_is_the_largest_without_repeats(plan, data):
    phases = [PhaseWeights(weights=p.weights, until=p.until) for p in plan.spans]
    blocks = data.draw(st.lists(st.integers(1, 400), min_size=len(plan.sources)))
    blocks = (blocks * len(plan.sources))[: len(plan.sources)]
    n = planned_samples(phases=phases, blocks=blocks).total

    def fits(total):
        counts = planned_samples(phases=phases, total=total).per_source
        return all(c <= b for c, b in zip(counts, blocks, strict=True))

    assert fits(n)
    assert not any(fits(m) for m in range(n + 1, n + 300))


def test_boundaries_are_the_decimals_written():
    """until 0.29 of 100 samples ends at 29: 0.29 * 100 in doubles is 28.999999999999996, and
    the double nearest 0.29 is below it, so either would end the phase at 28."""
    phases = [
        PhaseWeights(weights=(1, 0), until=0.29),
        PhaseWeights(weights=(0, 1), until=0.57),
        PhaseWeights(weights=(1, 1)),
    ]
    plan = phased(phases, [100, 100], total=100)
    assert spans(plan) == [(0, 29), (29, 57), (57, 100)]
    assert [p.counts for p in plan.phases] == [(29, 0), (0, 28), (22, 21)]
    src = plan.order([0], 100)[0].tolist()
    assert src[:29] == [0] * 29 and src[29:57] == [1] * 28 and src[57:61] == [0, 1, 0, 1]
    assert [plan.phase_of(i) for i in (0, 28, 29, 56, 57, 99, 100)] == [0, 0, 1, 1, 2, 2, 2]
    assert plan.phase_label(1) == "phases[1]"


def test_plan_records_round_trip_and_restrict_keeps_the_source_order():
    phases = [
        PhaseWeights(weights=(0.8, 0.2, 0), until=0.05, name="warm-up"),
        PhaseWeights(weights=(0.5, 0.4, 0.1), until=0.9),
        PhaseWeights(weights=(0, 0.3, 0.7), name="anneal"),
    ]
    plan = phased(phases, [50, 30, 20], total=400, padding=[3, 0, 0])
    d = plan.to_dict()
    assert [p["end"] for p in d["phases"]] == [20, 360, 400]
    assert d["phases"][0] == {
        "name": "warm-up",
        "until": 0.05,
        "end": 20,
        "weights": [0.8, 0.2, 0],
        "counts": [16, 4, 0],
    }
    again = Plan.from_dict(d)
    assert again == plan and again.fingerprint == plan.fingerprint
    src, ks = plan.order([0], plan.total)
    for s, name in enumerate(("s0", "s1", "s2")):
        alone = plan.restrict(name)
        mine = ks[src == s]
        assert alone.total == mine.size and not alone.phases
        got = alone.order([0], alone.total)[1]
        assert alone.block_ids(0, got).tolist() == plan.block_ids(s, mine).tolist()
    # counts_at's tokens subtract the padded block each time it is served, across phases
    served_last = int((plan.block_ids(0, ks[:250][src[:250] == 0]) == 49).sum())
    c = plan.counts_at(250)["s0"]
    assert served_last and c["tokens"] == 16 * c["samples"] - 3 * served_last


def test_plan_errors_name_the_phase_and_the_numbers():
    warm = PhaseWeights(weights=(1, 1), until=0.05, name="warm-up")
    with pytest.raises(
        PlanError,
        match=r"^mixture\.phases\[0\] \(warm-up\): covers no sample \(it ends at sample 0 of 10,"
        r" where it starts\); raise mixture\.samples or move `until`",
    ):
        phased([warm, PhaseWeights(weights=(1, 1))], [5, 5], total=10)
    three = [warm, PhaseWeights(weights=(1, 0), until=0.5), PhaseWeights(weights=(1, 9))]
    # s1: 25 + 0 + 450 = 475 samples of 100 blocks; the last phase takes it from 0.25 to 4.75
    with pytest.raises(
        PlanError,
        match=r"^sources\.s1: the plan repeats it 4\.75 times \(475 samples from 100 blocks\),"
        r" more than mixture\.max_epochs 4; mixture\.phases\[2\] \(samples 500-999\) takes it"
        r" from 0\.25 to 4\.75 times; lower its weight there or the total, give it >= 119"
        r" blocks of data, or raise max_epochs$",
    ):
        phased(three, [1000, 100], total=1000, max_epochs=4)
    # a source's own max_epochs overrides the mixture's, both ways
    phased(three, [1000, 100], total=1000, max_epochs=4, own=[None, 5])
    with pytest.raises(
        PlanError,
        match=r"^sources\.s0: the plan repeats it 0\.95 times \(525 samples from 550 blocks\),"
        r" more than sources\.s0\.max_epochs 0\.5; mixture\.phases\[1\] \(samples 50-499\)"
        r" takes it from 0\.05 to 0\.86 times",
    ):
        phased(three, [550, 100], total=1000, max_epochs=5, own=[0.5, None])
    # without phases: the message as before, with the source's own key
    with pytest.raises(PlanError, match=r"more than sources\.s0\.max_epochs 2; lower its weight"):
        phased([PhaseWeights(weights=(1, 1))], [10, 10], total=60, own=[2, None])
    with pytest.raises(PlanError, match=r"mixture\.phases\[1\]: `until` must be in \(0\.5, 1\)"):
        phased([three[1], three[1], three[2]], [5, 5], total=10)
    with pytest.raises(PlanError, match=r"mixture\.phases\[1\]: weights must be >= 0 with one"):
        phased([three[1], PhaseWeights(weights=(0, 0))], [5, 5], total=10)


def test_a_billion_sample_phased_plan_is_arithmetic():
    """10^9 samples in three phases: random access near the end costs kilobytes, not an index."""
    import tracemalloc

    tracemalloc.start()
    phases = [
        PhaseWeights(weights=(0.8, 0.2, 0), until=0.05),
        PhaseWeights(weights=(0.6, 0.35, 0.05), until=0.9),
        PhaseWeights(weights=(0.7, 0, 0.3)),
    ]
    plan = phased(phases, [10**8] * 3, total=10**9)
    a = 900_000_000 - 2048  # a range across the annealing boundary
    src, ks = plan.order([a], 4096)
    for j in (0, 2047, 2048, 4095):
        assert plan.locate(a + j) == (src[j], ks[j])
    for s in range(3):
        plan.block_ids(s, ks[src == s])
    before, after = plan.counts(a + 2048), plan.counts(a + 4096)
    assert [y - x for x, y in zip(before, after, strict=True)] == [1434, 0, 614]  # 0.7 / 0.3
    assert plan.counts(10**9) == [s.num_samples for s in plan.sources]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 20 * 2**20, f"peak {peak / 2**20:.1f} MiB"
