"""Online weights (`mixer.serve.online`) and the controllers: exact, replayable, checked."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mixer.errors import PlanError, StateError, UsageError
from mixer.integrations.controllers import LossProportionalController, ReplayController
from mixer.plan import make_plan
from mixer.serve.online import Online

NAMES = ["books", "web", "zh"]


def big_plan(total=1_000_000):
    return make_plan(
        manifest="m" * 64,
        split="train",
        seed=3,
        seq_len=8,
        names=NAMES,
        blocks=[400_000, 50_000, 300_000],
        shard_sizes=[(100_000,) * 4, (50_000,), (150_000,) * 2],
        padding=[0, 0, 0],
        weights=[0.65, 0.05, 0.3],
        total=total,
        max_epochs=10,
    )


def test_a_hundred_changes_replay_from_the_state_and_every_segment_is_exact():
    rng = np.random.default_rng(0)
    online = Online(big_plan())
    ats = np.sort(rng.choice(np.arange(1, 1_000_000), 100, replace=False)).tolist()
    for at in ats:
        w = rng.uniform(0, 1, 3).round(3)
        w[rng.integers(0, 3)] += 0.01
        online.add(at, dict(zip(NAMES, map(float, w), strict=True)), position=at)
    state = json.loads(json.dumps(online.state()))  # as saved
    again = Online(big_plan())
    again.replace(state)
    assert again.plan.fingerprint == online.plan.fingerprint  # the same order, from the state
    plan = online.plan
    bounds = [*ats, plan.total]
    counts = plan.counts_many(bounds)
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        w = np.array([online.changes[i][1][n] for n in NAMES])
        got = counts[i + 1] - counts[i]
        assert np.all(np.abs(got - (b - a) * w / w.sum()) <= 1), (i, got)  # within 1, per segment
    assert len(json.dumps(state)) < 100 * 64  # ~55 bytes per change with three sources


def test_bad_changes_are_one_line_errors():
    online = Online(big_plan(1000))
    with pytest.raises(PlanError, match=r"set_weights: no source 'nope' in the build"):
        online.add(10, {"nope": 1.0}, position=0)
    with pytest.raises(PlanError, match=r"set_weights: web=-1 must be a finite number >= 0"):
        online.add(10, {"web": -1}, position=0)
    with pytest.raises(PlanError, match=r"every source would have weight 0"):
        online.add(10, {"books": 0, "web": 0, "zh": 0}, position=0)
    with pytest.raises(UsageError, match=r"at sample 5 is in the past: 8 samples were served"):
        online.add(5, {"web": 0.5}, position=8)
    online.add(20, {"web": 0.5}, position=8)
    with pytest.raises(UsageError, match=r"the last change is at 20"):
        online.add(15, {"web": 0.5}, position=8)
    with pytest.raises(StateError, match=r"journal\[0\]: 'x' is not a source"):
        online.replace([[3, {"x": 1.0}]])
    with pytest.raises(StateError, match=r"journal\[1\]: expected \[sample >= 9"):
        online.replace([[9, {"web": 1.0}], [3, {"web": 1.0}]])


def test_replay_controller_keeps_the_old_loss_within_its_budget():
    ctl = ReplayController(old="web", weights={"books": 0.7, "zh": 0.3}, budget=0.1)
    assert ctl(0, {"eval_web_loss": 3.0}) == pytest.approx(
        {"books": 0.95 * 0.7, "zh": 0.95 * 0.3, "web": 0.05}
    )
    w = ctl(100, {"eval_web_loss": 3.2})  # +0.2 > budget: more replay
    assert w["web"] == pytest.approx(0.075) and sum(w.values()) == pytest.approx(1)
    assert ctl(200, {"eval_web_loss": 3.08}) is None  # within the budget, above its half: hold
    w = ctl(300, {"eval_web_loss": 3.01})  # well within: less replay
    assert w["web"] == pytest.approx(0.06)
    for step in range(10):
        ctl(400 + step, {"eval_web_loss": 9.0})
    assert ctl.share == 0.25  # clipped to the bounds
    assert ctl(500, {"other": 1.0}) is None  # no old-domain loss: no change
    with pytest.raises(ValueError, match="bounds"):
        ReplayController(old="web", weights={"web": 1.0})


def test_loss_proportional_controller_follows_excess_loss():
    ctl = LossProportionalController(sources=("books", "web"), smooth=0.0, floor=0.1)
    assert ctl(0, {"eval_books_loss": 2.0, "eval_web_loss": 3.0}) is None  # the baseline
    w = ctl(1, {"eval_books_loss": 2.1, "eval_web_loss": 3.3})
    assert w["web"] == pytest.approx(0.75) and w["books"] == pytest.approx(0.25)
    w = ctl(2, {"eval_books_loss": 1.9, "eval_web_loss": 3.3})  # books improved: the floor
    assert w["books"] == pytest.approx(0.1 / 1.1)
