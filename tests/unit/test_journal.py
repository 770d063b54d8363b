"""Amendments and skips (`mixer.plan.journal`): exact for any sequence of them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mixer.errors import PlanError
from mixer.plan import PhaseWeights, make_plan
from mixer.plan.allocate import allocate
from mixer.plan.journal import amend, lineage, skip
from mixer.plan.phases import Amendment

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


def served(plan):
    """(source, block, pass) of every global sample, from the plan's random access."""
    if plan.total == 0:
        return (np.zeros(0, np.int64),) * 4
    src, ks = plan.order([0], plan.total)
    blocks = np.empty_like(ks)
    for s in np.unique(src):
        sel = src == s
        blocks[sel] = plan.block_ids(int(s), ks[sel])
    passes = ks // np.array([p.num_blocks for p in plan.sources])[src]
    return src, blocks, passes, ks


@st.composite
def plans(draw):
    n = draw(st.integers(2, 4))
    blocks = [draw(st.integers(1, 25)) for _ in range(n)]
    shard_sizes = [tuple(_split(b, draw(st.integers(1, 4)))) for b in blocks]
    weights = [draw(st.integers(1, 9)) / 10 for _ in range(n)]
    phased = draw(st.booleans())
    args = {"weights": weights}
    if phased:
        w2 = [draw(st.integers(0, 9)) / 10 for _ in range(n)]
        w2[0] = max(w2[0], 0.1)
        args = {
            "phases": [
                PhaseWeights(weights=tuple(weights), until=0.4),
                PhaseWeights(weights=tuple(w2)),
            ]
        }
    total = draw(st.integers(10, 240))
    plan = make_plan(
        manifest="m" * 64,
        split="train",
        seed=draw(st.integers(0, 5)),
        seq_len=8,
        names=[f"s{i}" for i in range(n)],
        blocks=blocks,
        shard_sizes=shard_sizes,
        padding=[0] * n,
        total=total,
        shuffle=draw(st.sampled_from(["blocks", "shards"])),
        window=2,
        **args,
    )
    return plan


def _split(b: int, parts: int) -> list[int]:
    parts = min(parts, b)
    base, rest = divmod(b, parts)
    return [base + (i < rest) for i in range(parts)]


@st.composite
def steps(draw, n_sources):
    out = []
    for _ in range(draw(st.integers(1, 5))):
        if draw(st.booleans()):
            w = [draw(st.integers(0, 9)) / 10 for _ in range(n_sources)]
            if not any(w):
                w[draw(st.integers(0, n_sources - 1))] = 0.5
            out.append(("amend", draw(st.floats(0, 1)), draw(st.integers(-20, 60)), w))
        else:
            out.append(("skip", draw(st.floats(0, 1)), draw(st.integers(1, 30)), None))
    return out


def entry(kind, at, end=None):
    return Amendment(at=at, kind=kind, end=end)


@SETTINGS
@given(data=st.data())
def test_any_sequence_of_amendments_and_skips_is_exact(data):
    plan = data.draw(plans())
    skips = []  # (at, source, set of k passed over)
    for kind, frac, size, w in data.draw(steps(len(plan.sources))):
        before = served(plan)
        at = int(frac * plan.total)
        if kind == "amend":
            total = max(at, plan.total + size)
            new = amend(plan, at=at, entry=entry("amend", at), weights=w, total=total)
            _check_amended(plan, new, at, w, before)
            skips = [x for x in skips if x[0] < at]  # replaced: those blocks are served again
        else:
            if at >= plan.total:
                continue
            end = min(plan.total, at + size)
            last = max((e.at for e in plan.journal), default=0)
            if at < last:  # before a later change: refused, nothing changes
                with pytest.raises(PlanError, match="amend at .* first"):
                    skip(plan, start=at, end=end, entry=entry("skip", at, end))
                continue
            new = skip(plan, start=at, end=end, entry=entry("skip", at, end))
            _check_skipped(plan, new, at, end, before, skips)
        plan = new
        _check_passes(plan, skips)


def _check_amended(old, new, at, w, before):
    after = served(new)
    for a, b in zip(before, after, strict=True):
        assert np.array_equal(a[:at], b[:at])  # the prefix never changes
    n = new.total - at
    src = after[0][at:]
    counts = np.bincount(src, minlength=len(w))
    assert counts.tolist() == allocate(w, n)  # the segment's counts are exact
    active = int((counts > 0).sum())
    for s in range(len(w)):  # every prefix of the segment within the interleave's bound of
        c = np.cumsum(src == s)  # its share: 1/2 + w (S - 2)/2, under 1 for up to 3 sources
        ws = counts[s] / max(n, 1)
        share = np.arange(1, n + 1) * ws
        assert np.all(np.abs(c - share) <= 0.5 + ws * max(active - 2, 0) / 2 + 1e-9)
    assert (
        new.counts_many([new.total])[0].tolist() == np.bincount(after[0], minlength=len(w)).tolist()
    )
    assert new.lineage(at) == old.lineage(at)
    if at < old.total and new.journal[-1].at == at:
        assert new.lineage(at + 1) != old.lineage(at + 1)


def _check_skipped(old, new, a, b, before, skips):
    after = served(new)
    assert np.array_equal(before[0], after[0])  # the source at every position is unchanged
    for x, y in zip(before, after, strict=True):
        assert np.array_equal(x[:a], y[:a])
    src, _, _, ks = before
    for s in range(len(old.sources)):
        gone = set(ks[a:b][src[a:b] == s].tolist())
        skips.append((a, s, gone))
        ks_new = after[3][after[0] == s]  # no sample of s ever serves what [a, b) would have
        assert not set(ks_new.tolist()) & gone
    m = np.arange(0, old.total + 1)
    assert np.array_equal(old.counts_many(m), new.counts_many(m))


def _check_passes(plan, skips):
    src, blocks, passes, ks = served(plan)
    for s, p in enumerate(plan.sources):
        sel = src == s
        k = ks[sel]
        assert np.all(np.diff(k) > 0)  # numbering only moves forward
        gone = set().union(*(g for _, t, g in skips if t == s))
        assert not set(k.tolist()) & gone
        # every k up to the last served is served or was skipped: none left out
        if k.size:
            assert set(range(int(k[-1]) + 1)) <= set(k.tolist()) | gone
        for q in np.unique(passes[sel]):  # no block twice within a pass
            bs = blocks[sel][passes[sel] == q]
            assert len(set(bs.tolist())) == bs.size
        assert p.num_samples == int(sel.sum())


def two_sources():
    return make_plan(
        manifest="m" * 64,
        split="train",
        seed=1,
        seq_len=8,
        names=["a", "b"],
        blocks=[10, 10],
        shard_sizes=[(10,), (10,)],
        padding=[0, 0],
        weights=[0.5, 0.5],
        total=18,
    )


def test_lineage_of_an_unsteered_plan_is_its_fingerprint():
    plan = two_sources()
    assert lineage(plan, 18) == plan.fingerprint
    new = amend(plan, at=6, entry=entry("amend", 6), weights=[0.2, 0.8])
    assert new.base == plan.fingerprint and new.lineage(6) == plan.fingerprint
    again = amend(new, at=4, entry=entry("amend", 4), weights=[0.9, 0.1])  # roll back further
    assert [e.at for e in again.journal] == [4] and again.lineage(5) != new.lineage(5)


def test_bad_amendments_are_one_line_errors():
    plan = two_sources()
    with pytest.raises(PlanError, match=r"outside the plan's \[0, 18\]"):
        amend(plan, at=19, entry=entry("amend", 19), weights=[1, 1])
    with pytest.raises(PlanError, match="weights must be >= 0 with one > 0"):
        amend(plan, at=3, entry=entry("amend", 3), weights=[0, 0])
    with pytest.raises(PlanError, match="non-empty"):
        skip(plan, start=5, end=5, entry=entry("skip", 5, 5))
    with pytest.raises(PlanError, match=r"repeats it"):
        amend(plan, at=3, entry=entry("amend", 3), weights=[1, 0], total=40, limits=[1.0, 1.0])
