"""``weights_in: tokens``: each source's share of loss tokens is its weight, within ±0.05
percentage points at every 1% of the plan, however unevenly its blocks are padded."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mixer.plan import make_plan
from mixer.plan.tokens import served_loss

L = 64


def _plan(block_loss, weights, total, shuffle="blocks"):
    sizes = [(b.size // 2, b.size - b.size // 2) for b in block_loss]
    return make_plan(
        manifest="m",
        split="train",
        seed=5,
        seq_len=L,
        names=[f"s{i}" for i in range(len(weights))],
        blocks=[b.size for b in block_loss],
        shard_sizes=sizes,
        padding=[0] * len(weights),
        weights=weights,
        total=total,
        max_epochs=1e9,
        shuffle=shuffle,
        block_loss=block_loss,
    )


def loss_shares(plan, block_loss, prefixes):
    """Per prefix, each source's share of the loss tokens served (from the plan's counts and
    each source's blocks in serving order, `Plan.block_ids`, not the planner's arithmetic)."""
    counts = plan.counts_many(prefixes)
    cum = []
    for s, src in enumerate(plan.sources):
        blocks = plan.block_ids(s, np.arange(src.num_samples))
        cum.append(np.concatenate([[0], np.cumsum(block_loss[s][blocks])]))
    served = np.array([[c[n] for c, n in zip(cum, row, strict=True)] for row in counts])
    return served / np.maximum(served.sum(axis=1, keepdims=True), 1)


@settings(max_examples=6, deadline=None)
@given(
    pads=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), min_size=2, max_size=4),
    raw=st.lists(st.integers(1, 20), min_size=4, max_size=4),
    blocks=st.integers(50, 400),
    shuffle=st.sampled_from(["blocks", "shards"]),
)
def test_loss_token_shares_hold_at_every_percent(pads, raw, blocks, shuffle):
    rng = np.random.default_rng(len(pads) * 1000 + blocks)
    block_loss = [
        (L - 1 - rng.integers(lo, max(lo, hi) + 1, blocks)).astype(np.int64) for lo, hi in pads
    ]
    weights = [w / sum(raw[: len(pads)]) for w in raw[: len(pads)]]
    total = 400_000  # 1% of it: 4,000 samples, so half a sample is < 0.05% of the tokens
    plan = _plan(block_loss, weights, total, shuffle)
    assert plan.total == total and plan.weights_in == "tokens"
    prefixes = [p * total // 100 for p in range(1, 101)]
    shares = loss_shares(plan, block_loss, prefixes)
    assert np.abs(shares - np.array(weights)).max() <= 0.0005


def test_samples_shares_differ_when_padding_differs():
    """Equal weights, one source's blocks padded to half: samples are not split evenly (63
    loss tokens a block against 31), loss tokens are."""
    block_loss = [np.full(100, L - 1, np.int64), np.full(100, (L - 1) // 2, np.int64)]
    plan = _plan(block_loss, [0.5, 0.5], 100_000)
    n = [s.num_samples for s in plan.sources]
    assert abs(n[1] / n[0] - 63 / 31) < 0.01
    shares = loss_shares(plan, block_loss, [plan.total])[0]
    assert np.abs(shares - 0.5).max() < 1e-4


def test_served_loss_follows_the_passes():
    loss = np.arange(10, dtype=np.int64)
    got = served_loss(loss, 25, shuffle="blocks", window=8, seed=1, name="a", sizes=(4, 6))
    assert got.size == 25 and sorted(got[:10].tolist()) == list(range(10))
    assert sorted(got[10:20].tolist()) == list(range(10))
