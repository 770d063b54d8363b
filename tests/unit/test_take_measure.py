"""`take:` arithmetic: auto never lets a plan repeat a budgeted source beyond its max_epochs;
the cut is the shortest prefix meeting the budget (checked against brute force)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mixer.builder.take_measure import Meter, auto_needs, held_out, taken_mask
from mixer.plan import make_plan
from mixer.recipe import ValidationSpec, parse_recipe
from tests.helpers import DATA, TOKENIZER


def _recipe(weights, phases, total, max_epochs, own, seq_len=64):
    sources = {}
    for i, w in enumerate(weights):
        s = {"files": str(DATA / "web" / "fortunes.jsonl")}
        if phases is None:
            s["weight"] = w
        if i == 0:
            s["take"] = "auto"
            if own is not None:
                s["max_epochs"] = own
        sources[f"s{i}"] = s
    mixture = {"samples": total}
    if max_epochs is not None:
        mixture["max_epochs"] = max_epochs
    if phases is not None:
        mixture["phases"] = phases
    data = {"seq_len": seq_len, "tokenizer": {"path": str(TOKENIZER)}, "sources": sources}
    return parse_recipe({**data, "mixture": mixture}, base_dir=DATA)


weights_st = st.lists(st.floats(0.01, 1.0), min_size=1, max_size=4)


@st.composite
def phases_st(draw, n):
    count = draw(st.integers(1, 3))
    untils = sorted(
        draw(st.lists(st.integers(1, 99), min_size=count - 1, max_size=count - 1, unique=True))
    )
    out = []
    for p in range(count):
        ws = {
            f"s{i}": draw(st.floats(0.01, 1.0)) for i in range(n) if draw(st.booleans()) or i == 0
        }
        ph = {"weights": ws}
        if p < count - 1:
            ph["until"] = untils[p] / 100
        out.append(ph)
    for i in range(n):  # every source in some phase
        out[-1]["weights"].setdefault(f"s{i}", 0.5)
    return out


@settings(max_examples=60, deadline=None)
@given(
    weights=weights_st,
    use_phases=st.booleans(),
    total=st.integers(100, 50_000),  # every phase (until k/100) covers a sample
    max_epochs=st.one_of(st.none(), st.floats(0.3, 5.0)),
    own=st.one_of(st.none(), st.floats(0.2, 3.0)),
    data=st.data(),
)
def test_auto_never_lets_the_plan_repeat_the_source_beyond_its_limit(
    weights, use_phases, total, max_epochs, own, data
):
    phases = data.draw(phases_st(len(weights))) if use_phases else None
    recipe = _recipe(weights, phases, total, max_epochs, own)
    need = auto_needs(recipe)["s0"]
    limit = own if own is not None else min(1.0, max_epochs or 1.0)
    assert need.max_epochs == limit
    names = [s.name for s in recipe.sources]
    blocks = [need.blocks + need.margin_blocks] + [10**9] * (len(names) - 1)
    mix = recipe.to_dict()["mixture"]
    kwargs = {"weights": [s.weight for s in recipe.sources]}
    if phases is not None:
        from mixer.artifacts.planfile import allocation_inputs

        kwargs = {"phases": allocation_inputs(mix, 64, names, {})["phases"]}
    plan = make_plan(
        manifest="m",
        split="train",
        seed=0,
        seq_len=64,
        names=names,
        blocks=[max(b, 1) for b in blocks],
        shard_sizes=[(max(b, 1),) for b in blocks],
        padding=[0] * len(names),
        total=total,
        max_epochs=max_epochs,
        source_max_epochs=[own] + [None] * (len(names) - 1),
        **kwargs,
    )  # no PlanError: the source's limit holds
    src = plan.sources[0]
    assert src.num_samples == need.samples
    assert src.epochs <= limit
    # and not wastefully: without the margin, the fewest blocks that do (or one more, where
    # samples / limit is a whole number only up to the float's rounding)
    assert need.blocks <= math.ceil(need.samples / limit) + 1


records = st.lists(
    st.tuples(st.integers(0, 2**64 - 1), st.integers(1, 500)), min_size=0, max_size=60
)


@settings(max_examples=200, deadline=None)
@given(
    units=st.lists(records, min_size=1, max_size=4),
    measure=st.sampled_from(["tokens", "documents", "train_tokens"]),
    validation=st.sampled_from(
        [ValidationSpec(), ValidationSpec(docs=3), ValidationSpec(fraction=0.3)]
    ),
    amount=st.integers(1, 20_000),
)
def test_the_cut_is_the_shortest_prefix_that_meets_the_take(units, measure, validation, amount):
    def value(prefix) -> int:  # brute force over the whole prefix
        h = np.array([x[0] for x in prefix], np.uint64)
        n = np.array([x[1] for x in prefix], np.uint64)
        if measure == "documents":
            return len(prefix)
        if measure == "tokens" or not validation.active:
            return int(n.sum())
        if validation.fraction:
            return int(n[h > np.uint64(int(validation.fraction * 2**64) - 1)].sum())
        return int(n.sum()) - held_out(h, n, validation.docs)[1]

    flat = [x for u in units for x in u]
    want = next((i + 1 for i in range(len(flat)) if value(flat[: i + 1]) >= amount), None)
    meter, taken = Meter(measure, validation), 0
    for u in units:
        h = np.array([x[0] for x in u], np.uint64)
        n = np.array([x[1] for x in u], np.uint64)
        got = meter.reach(h, n, amount)
        if got is not None:
            taken += got
            break
        taken += len(u)
    assert (taken if got is not None else None) == want
    # a worker's meter over its unit alone is a lower bound of what the unit adds to the
    # prefix, so a worker stopping at the budget never stops before the cut
    start = 0
    for u in units:
        alone = Meter(measure, validation)
        alone.add(np.array([x[0] for x in u], np.uint64), np.array([x[1] for x in u], np.uint64))
        end = start + len(u)
        assert alone.value <= value(flat[:end]) - value(flat[:start])
        start = end


def test_fraction_sample_is_independent_of_validation():
    h = np.random.default_rng(0).integers(0, 2**64, size=200_000, dtype=np.uint64)
    take = taken_mask(h, 0.25)
    val = h <= np.uint64(int(0.1 * 2**64))
    assert abs(take.mean() - 0.25) < 0.01
    assert abs(val[take].mean() - 0.1) < 0.01  # validation among the taken: still 10%
