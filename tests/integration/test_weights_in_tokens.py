"""``mixture.weights_in: tokens`` on a real build whose sources are padded unevenly (two
best-fit sources with their own windows, one concat): every 1% of the plan serves each
source's weight of the loss tokens within ±0.05 percentage points; ``mixer stats`` shows
both shares; the default stays a plan in samples, byte for byte."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mixer.artifacts.ledger import block_loss
from mixer.artifacts.manifest import Manifest
from mixer.artifacts.planfile import load_plan
from tests.helpers import build_demo
from tests.unit.test_plan_tokens import loss_shares

pytestmark = pytest.mark.integration
WEIGHTS = {"books": 0.5, "web": 0.2, "zh": 0.3}


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    root = tmp_path_factory.mktemp("tokens")
    out = build_demo(
        root,
        WEIGHTS,
        seq_len=32,
        packing="bestfit",
        packing_window=16,
        mixture={"samples": 400_000, "weights_in": "tokens", "max_epochs": 1000},
    )
    recipe = json.loads((out / "manifest.json").read_text())["recipe"]
    assert recipe["mixture"]["weights_in"] == "tokens"
    return out


def test_loss_token_shares_are_the_weights_at_every_percent(out):
    manifest = Manifest.load(out)
    plan = load_plan(manifest)
    names = [s.name for s in plan.sources]
    loss = [block_loss(manifest, n) for n in names]
    means = [float(x.mean()) for x in loss]
    assert max(means) - min(means) > 1  # uneven padding: equal samples are not equal tokens
    prefixes = [p * plan.total // 100 for p in range(1, 101)]
    shares = loss_shares(plan, loss, prefixes)
    want = np.array([WEIGHTS[n] for n in names])
    assert np.abs(shares - want).max() <= 0.0005
    samples = np.array([s.num_samples for s in plan.sources]) / plan.total
    assert np.abs(samples - want).max() > 0.001  # the samples' shares are not the weights


def test_stats_shows_both_shares(cli, out):
    result = cli("stats", out, "--json")
    assert result.exit_code == 0, result.output
    s = json.loads(result.output)
    for name, src in s["sources"].items():
        assert src["loss_share"] == pytest.approx(WEIGHTS[name], abs=0.0005)
    table = cli("stats", out)
    assert table.exit_code == 0 and "weights in loss tokens: 1,000 segments" in table.output
    assert "loss %" in table.output


def test_the_default_plan_is_in_samples(tmp_path):
    out = build_demo(tmp_path, WEIGHTS, seq_len=32, mixture={"samples": 1000})
    plan = json.loads((out / "plan.json").read_text())
    recipe = json.loads((out / "manifest.json").read_text())["recipe"]
    assert "weights_in" not in plan and "phases" not in plan
    assert "weights_in" not in recipe["mixture"]


def test_counts_at_leaves_best_fit_padding_out(cli, out, tmp_path):
    """Tokens consumed per source, as `counts_at` and `stats --at-sample` say, are the real
    tokens of the samples served (seq_len less num_padding), counted by iteration."""
    import itertools

    from mixer import StreamingMixture

    ds = StreamingMixture(out, cache_dir=tmp_path)
    got = {n: {"samples": 0, "tokens": 0} for n in WEIGHTS}
    for x in itertools.islice(ds, 3000):
        got[x["source"]]["samples"] += 1
        got[x["source"]]["tokens"] += 32 - x["num_padding"]
    assert ds.counts_at(3000) == got
    result = cli("stats", out, "--json", "--at-sample", 3000)
    assert json.loads(result.output)["consumed"] == got
