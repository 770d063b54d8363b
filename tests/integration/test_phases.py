"""A phased build (recipes/phases-demo.yaml) through the CLI and StreamingMixture: stats table,
JSON and plot per phase, inspect, the repetition guard per source, resume across a boundary."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from mixer import StreamingMixture
from mixer.artifacts.manifest import Manifest
from mixer.artifacts.planfile import load_plan
from tests.helpers import REPO, demo_recipe

RECIPE = REPO / "recipes" / "phases-demo.yaml"
BOUNDS = [(0, 100), (100, 1800), (1800, 2000)]  # 2,000 samples; until 0.05 and 0.9


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    from click.testing import CliRunner

    from mixer.cli import main

    out = tmp_path_factory.mktemp("phases") / "out"
    result = CliRunner().invoke(main, ["build", str(RECIPE), "-o", str(out), "-w", "1"])
    assert result.exit_code == 0, result.output
    return out


def stats_json(cli, *args) -> dict:
    result = cli("stats", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_the_plan_follows_the_recipe_phases(out):
    plan = load_plan(Manifest.load(out))
    assert [plan.phase_range(p) for p in range(3)] == BOUNDS
    assert [p.name for p in plan.phases] == ["warm-up", "main", "anneal"]
    src, _ = plan.order([0], plan.total)
    names = [s.name for s in plan.sources]
    for (a, b), ph in zip(BOUNDS, plan.phases, strict=True):
        got = np.bincount(src[a:b], minlength=len(names)).tolist()
        assert got == list(ph.counts)
        weights = dict(zip(names, ph.weights, strict=True))
        assert {n for n, w in weights.items() if w} == {
            n for n, c in zip(names, got, strict=True) if c
        }
    assert plan.phases[2].counts[names.index("zh")] == 0  # annealing leaves zh out


def test_stats_json_has_a_phases_list(cli, out):
    s = stats_json(cli, out)
    assert [(p["start"], p["end"]) for p in s["phases"]] == BOUNDS
    assert [p["name"] for p in s["phases"]] == ["warm-up", "main", "anneal"]
    assert [p["until"] for p in s["phases"]] == [0.05, 0.9, None]
    warm, main, anneal = s["phases"]
    assert warm["sources"]["web"] == {
        "weight": 0.25,
        "samples": 25,
        "share": 0.25,
        "epochs": round(25 / s["sources"]["web"]["blocks"], 6),
    }
    assert anneal["sources"]["zh"]["weight"] == 0 and anneal["sources"]["zh"]["samples"] == 0
    for name, src in s["sources"].items():
        assert src["weight"] is None  # the phases hold the weights
        assert sum(p["sources"][name]["samples"] for p in s["phases"]) == src["samples"]
        assert anneal["sources"][name]["epochs"] == src["epochs"]
    for p in s["phases"]:
        assert sum(x["samples"] for x in p["sources"].values()) == p["samples"]
    zh = next(w for w in s["warnings"] if w.startswith("zh is repeated"))
    assert "(more than 4, phases[1] (main) takes it past 4)" in zh


def test_stats_at_a_sample_says_its_phase_and_matches_iteration(cli, out, tmp_path):
    ds = StreamingMixture(out, cache_dir=tmp_path)
    samples = [x["source"] for _, x in zip(range(1850), ds, strict=False)]
    for n, phase in ((0, 0), (99, 0), (100, 1), (1799, 1), (1800, 2), (1850, 2), (2000, 2)):
        s = stats_json(cli, out, "--at-sample", n)
        assert s["at_phase"] == phase
        if n <= 1850:
            got = {k: v["samples"] for k, v in s["consumed"].items()}
            assert got == {k: samples[:n].count(k) for k in got}
    result = cli("stats", out, "--at-step", 45, "--batch-size", 4, "--world-size", 10)
    assert result.exit_code == 0, result.output
    assert "consumed by sample 1,800 (in phases[2] (anneal), samples 1,800-1,999): " in (
        result.output
    )


def test_stats_table_has_a_row_block_per_phase(cli, out):
    result = cli("stats", out)
    assert result.exit_code == 0, result.output
    text = result.output
    assert "3 phases over 2,000 samples" in text
    lines = text.splitlines()
    for label, span in (
        ("phases[0] (warm-up)", "0-99"),
        ("phases[1] (main)", "100-1,799"),
        ("phases[2] (anneal)", "1,800-1,999"),
        ("whole plan", "0-1,999"),
    ):
        row = next(line for line in lines if label in line)
        assert span in row
    anneal = lines.index(next(line for line in lines if "phases[2] (anneal)" in line))
    rows = [[c.strip() for c in line.split("│")] for line in lines[anneal : anneal + 3]]
    assert ["zh", "-", "0", "0.0", "4.86"] in [r[3:8] for r in rows]  # left out of annealing
    assert "warning: zh is repeated 4.9 times (more than 4, phases[1] (main) takes it past 4)" in (
        text
    )


def test_plot_draws_shares_per_phase_and_the_boundaries(cli, out, tmp_path):
    from mixer.report.plot import plot

    path = tmp_path / "mix.png"
    result = cli("stats", out, "--plot", path)
    assert result.exit_code == 0, result.output
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    m = Manifest.load(out)
    plan = load_plan(m)
    fig = plot(m, plan, tmp_path / "again.png")
    ax = fig.axes[0]
    assert ax.get_title() == "Share of samples per source within each phase (dotted: phase weight)"
    lines = {line.get_label(): line for line in ax.get_lines()}
    vertical = [
        line.get_xdata()[0] for line in ax.get_lines() if line.get_xdata()[0] == line.get_xdata()[1]
    ]
    assert sorted(vertical) == [100, 1800]
    assert [t.get_text() for t in ax.texts] == [plan.phase_label(p) for p in range(3)]
    for s, src in enumerate(plan.sources):
        line = lines[f"{src.name} ({src.epochs:.2f} epochs)"]
        x, y = line.get_xdata(), line.get_ydata()
        for (a, b), ph in zip(BOUNDS, plan.phases, strict=True):
            last = np.flatnonzero(x == b)[0]  # the phase's last point, before the NaN break
            assert y[last] == pytest.approx(ph.counts[s] / (b - a))
            assert np.isnan(y[last + 1])


def test_inspect_a_sample_says_its_phase(cli, out, tmp_path):
    plan = load_plan(Manifest.load(out))
    s, k = plan.locate(1850)
    result = cli("inspect", out, "--sample", 1850)
    assert result.exit_code == 0, result.output
    name = plan.sources[s].name
    assert result.output.startswith(
        f"sample 1,850 of 2,000, in phases[2] (anneal) (samples 1,800-1,999): {name}, its sample"
        f" {k:,} of"
    )


def test_a_source_over_its_own_max_epochs_fails_the_build_naming_the_phase(cli, out, tmp_path):
    """Rebuilt into the same output (its sources are reused: no tokenizing), with books limited
    to 3 passes: refused, and the previous output is left as it was."""
    recipe = yaml.safe_load(RECIPE.read_text())
    recipe["sources"]["books"]["max_epochs"] = 3
    for src in recipe["sources"].values():
        src["files"] = str(REPO / "recipes" / src["files"])
    recipe["tokenizer"]["path"] = str(REPO / "recipes" / "data" / "tokenizer.json")
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    before = Manifest.load(out).fingerprint
    result = cli("build", path, "-o", out, "-w", "1", "--no-progress")
    assert result.exit_code == 2, result.output
    assert (
        "error: sources.books: the plan repeats it 3.15 times (1,140 samples from 362 blocks),"
        " more than sources.books.max_epochs 3; mixture.phases[2] (anneal) (samples"
        " 1,800-1,999) takes it from 2.71 to 3.15 times; lower its weight there or the total,"
        " give it >= 381 blocks of data, or raise max_epochs"
    ) in result.output
    assert Manifest.load(out).fingerprint == before


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The demo's sources in 32-token blocks, every weight in ``mixture.phases``."""
    from mixer.builder import build
    from mixer.recipe import parse_recipe

    root = tmp_path_factory.mktemp("small")
    recipe = demo_recipe(root, {"books": 1, "web": 1, "zh": 1}, seed=7, seq_len=32)
    for src in recipe["sources"].values():
        del src["weight"]
    recipe["mixture"] = {
        "samples": 2000,
        "phases": [
            {"name": "warm-up", "until": 0.05, "weights": {"books": 0.5, "web": 0.5}},
            {"until": 0.9, "weights": {"books": 0.5, "zh": 0.4, "web": 0.1}},
            {"name": "anneal", "weights": {"zh": 0.6, "web": 0.4}},
        ],
    }
    out = root / recipe.pop("output")
    build(parse_recipe(recipe, base_dir=root, output=str(out)), workers=1, show_progress=False)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("stop", [96, 104, 1800])
def test_resume_across_a_boundary_through_a_dataloader(small, tmp_path, stop):
    """Batches of 8 through DataLoader(num_workers=2): the batch [96, 104) straddles the first
    boundary (100), 1800 is the second; after resuming, batches equal the uninterrupted run's."""
    B = 8

    def batches(start: int) -> list[tuple[list, list, torch.Tensor]]:
        ds = StreamingMixture(small, batch_size=B, cache_dir=tmp_path / "cache")
        if start:
            ds.load_state_dict({"samples_seen": start, "plan": ds.plan.fingerprint})
        loader = DataLoader(ds, batch_size=B, num_workers=2)
        return [(b["index"].tolist(), b["source"], b["input_ids"]) for b in loader]

    whole = batches(0)
    assert [i for b in whole for i in b[0]] == list(range(2000))
    sources = [s for b in whole for s in b[1]]
    assert set(sources[:100]) == {"books", "web"} and set(sources[1800:]) == {"zh", "web"}
    resumed = batches(stop)
    assert len(resumed) == len(whole) - stop // B
    for got, want in zip(resumed, whole[stop // B :], strict=True):
        assert got[0] == want[0] and got[1] == want[1]
        assert torch.equal(got[2], want[2])


def test_one_source_alone_and_the_validation_split_of_a_phased_build(small, tmp_path):
    whole = list(StreamingMixture(small, cache_dir=tmp_path))
    for name in ("books", "zh"):
        alone = list(StreamingMixture(small, source=name, cache_dir=tmp_path))
        mine = [x for x in whole if x["source"] == name]
        assert [x["input_ids"].tolist() for x in alone] == [x["input_ids"].tolist() for x in mine]
    val = StreamingMixture(small, split="val", cache_dir=tmp_path)
    m = Manifest.load(small)
    assert len(list(val)) == sum(m.split(n, "val").blocks for n in m.source_names)


def test_planned_counts_are_the_plans_counts_before_any_plan_exists(out):
    """What a per-source read budget can ask before planning: the plan's numbers exactly."""
    from mixer.artifacts.planfile import planned_counts

    m = Manifest.load(out)
    plan = load_plan(m)
    blocks = {s.name: s.num_blocks for s in plan.sources}
    mixture = m.recipe["mixture"]
    alloc = planned_counts(mixture, m.seq_len, {}, blocks)
    assert alloc.ends == (100, 1800, 2000)
    assert alloc.counts == tuple(p.counts for p in plan.phases)
    assert alloc.per_source == tuple(s.num_samples for s in plan.sources)
    default = planned_counts({**mixture, "samples": None}, m.seq_len, {}, blocks)
    assert all(n <= b for n, b in zip(default.per_source, blocks.values(), strict=True))
    bigger = planned_counts({**mixture, "samples": default.total + 1}, m.seq_len, {}, blocks)
    assert any(n > b for n, b in zip(bigger.per_source, blocks.values(), strict=True))
