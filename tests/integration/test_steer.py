"""Steering a real build: `mixer amend` / `mixer skip`, and resuming across them."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from torch.utils.data import DataLoader

from mixer import MixerLoader, StreamingMixture
from mixer.artifacts.manifest import Manifest
from mixer.artifacts.planfile import load_plan
from mixer.errors import StateError
from tests.helpers import build_demo

B, W = 4, 2  # per-rank batch, ranks


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_demo(
        tmp_path_factory.mktemp("steer"),
        {"books": 0.65, "web": 0.05, "zh": 0.3},
        seq_len=32,
        shard_size="16KiB",
        mixture={"samples": 4000, "max_epochs": 6},
    )


@pytest.fixture
def out(built, tmp_path):
    dst = tmp_path / "out"
    shutil.copytree(built, dst)
    return dst


def plan_of(out):
    return load_plan(Manifest.load(out))


def trained(out, cache, *, start_state=None, world=W, workers=0, steps=None):
    """Global indices and (source, tokens hash) served by every rank from a state, in order."""
    got = {}
    for rank in range(world):
        ds = StreamingMixture(out, batch_size=B, rank=rank, world_size=world, cache_dir=cache)
        if start_state is not None:
            ds.load_state_dict(start_state)
        loader = DataLoader(ds, batch_size=B, num_workers=workers)
        for g, batch in enumerate(loader):
            if steps is not None and g >= steps:
                break
            for i, src, ids in zip(
                batch["index"].tolist(), batch["source"], batch["input_ids"], strict=True
            ):
                got[i] = (src, hash(ids.numpy().tobytes()))
    return got


def test_amend_keeps_the_prefix_and_resumes_there(out, tmp_path, cli):
    before = trained(out, tmp_path / "c1")
    S = 40 * B * W  # a checkpoint after 40 steps
    state = {"samples_seen": S, "plan": plan_of(out).lineage(S)}
    r = cli(
        "amend",
        out,
        "--at-step",
        40,
        "--batch-size",
        B,
        "--world-size",
        W,
        "--weights",
        "web=0.15,books=0.55",
        "--note",
        "forgetting",
    )
    assert r.exit_code == 0, r.output
    assert "amended at sample 320" in r.output
    after = trained(out, tmp_path / "c2")
    assert {i: before[i] for i in range(S)} == {i: after[i] for i in range(S)}
    resumed = trained(out, tmp_path / "c3", start_state=state)  # no flag: same lineage at S
    assert min(resumed) == S and resumed == {i: v for i, v in after.items() if i >= S}
    plan = plan_of(out)
    tail = [after[i][0] for i in range(S, plan.total - plan.total % (B * W))]
    web = tail.count("web") / len(tail)
    assert abs(web - 0.15 / 1.0) < 0.01  # the new share from S on
    assert (out / "plans").is_dir() and plan.journal[0].note == "forgetting"
    assert plan.journal[0].before == state["plan"]


def test_state_past_the_amendment_is_refused(out, cli):
    S = 400
    past = {"samples_seen": S + 8, "plan": plan_of(out).lineage(S + 8)}
    assert cli("amend", out, "--at-sample", S, "--weights", "web=0.2").exit_code == 0
    ds = StreamingMixture(out, batch_size=B)
    with pytest.raises(StateError, match=r"at sample 408, past this plan's amend at sample 400"):
        ds.load_state_dict(past)
    ds.load_state_dict({"samples_seen": S, "plan": past["plan"]})  # before it: fine


def test_workers_resume_across_an_amendment(out, tmp_path, cli):
    """torchdata's StatefulDataLoader with 2 workers: state at a checkpoint, amend there,
    resume: the trained indices are the old plan's [0, S) then the amended plan's [S, N)."""
    from torchdata.stateful_dataloader import StatefulDataLoader

    ds = StreamingMixture(out, batch_size=B, rank=0, world_size=1, cache_dir=tmp_path / "c")
    loader = StatefulDataLoader(ds, batch_size=B, num_workers=2)
    seen, it = [], iter(loader)
    for _ in range(10):
        seen += next(it)["index"].tolist()
    sd = loader.state_dict()
    del it
    S = len(seen)
    assert seen == list(range(S))
    assert cli("amend", out, "--at-sample", S, "--weights", "zh=0.6").exit_code == 0
    ds2 = StreamingMixture(out, batch_size=B, rank=0, world_size=1, cache_dir=tmp_path / "c")
    loader2 = StatefulDataLoader(ds2, batch_size=B, num_workers=2)
    loader2.load_state_dict(sd)
    rest = [i for b in loader2 for i in b["index"].tolist()]
    plan = plan_of(out)
    assert rest == list(range(S, plan.total - plan.total % B))
    assert plan.journal[0].at == S


def test_skip_passes_over_blocks_and_keeps_counts(out, tmp_path, cli):
    before = trained(out, tmp_path / "c1", world=1)
    plan0 = plan_of(out)
    r = cli("skip", out, "--steps", "10:12", "--batch-size", B, "--world-size", W)
    assert r.exit_code == 0, r.output
    A, Bnd = 10 * B * W, 12 * B * W
    after = trained(out, tmp_path / "c2", world=1)
    assert all(after[i] == before[i] for i in range(A))
    bad = {before[i] for i in range(A, Bnd)}
    assert not bad & {after[i] for i in range(A, len(after))}  # never served again...
    ms = np.arange(0, plan0.total + 1, 97)
    assert np.array_equal(plan0.counts_many(ms), plan_of(out).counts_many(ms))  # ...counts kept
    stats = json.loads(cli("stats", out, "--json").output)
    (entry,) = stats["journal"]
    assert entry["kind"] == "skip" and entry["at"] == A
    assert sum(entry["skipped_blocks"].values()) == Bnd - A
    table = cli("stats", out, "--plot", tmp_path / "p.png")
    assert table.exit_code == 0 and f"skip {A:,}-{Bnd - 1:,}" in table.output, table.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["amend", "--at-sample", "99999", "--weights", "web=1"], r"outside the plan's \[0, 4,0"),
        (["amend", "--at-sample", "8", "--weights", "nope=1"], r"no source 'nope' in the build"),
        (["amend", "--at-sample", "8", "--weights", "web=-1"], r"web=-1.0 must be a finite"),
        (["amend", "--at-sample", "8", "--weights", "web=0,books=0,zh=0"], r"every source would"),
        (["amend", "--at-sample", "8", "--samples", "4"], r"--samples 4 is before"),
        (
            ["amend", "--at-sample", "8", "--samples", "40000", "--weights", "web=1,zh=0"],
            r"sources\.web: the plan repeats",
        ),
        (["skip", "--samples", "9:9"], r"must be non-empty"),
        (["skip", "--samples", "3999:4005"], r"inside the plan's"),
        (["amend", "--at-step", "3", "--weights", "web=1"], r"needs --batch-size"),
    ],
)
def test_bad_steering_is_one_line_and_changes_nothing(out, cli, args, message):
    plan = (out / "plan.json").read_bytes()
    r = cli(args[0], out, *args[1:])
    assert r.exit_code == 2 and r.output.count("\n") == 1, r.output
    import re

    assert re.search(message, r.output), r.output
    assert (out / "plan.json").read_bytes() == plan


def test_loader_state_carries_the_lineage(out, tmp_path, cli):
    loader = MixerLoader(
        StreamingMixture(out, batch_size=B, cache_dir=tmp_path / "c"), batch_size=B
    )
    it = iter(loader)
    for _ in range(3):
        next(it)
    sd = loader.state_dict()
    r = cli("amend", out, "--at-sample", sd["samples_seen"], "--weights", "web=0.3")
    assert r.exit_code == 0, r.output
    again = MixerLoader(StreamingMixture(out, batch_size=B, cache_dir=tmp_path / "c"), batch_size=B)
    again.load_state_dict(sd)
    assert next(iter(again))["index"].tolist() == list(range(12, 16))


@pytest.mark.slow
def test_any_world_size_and_workers_serve_the_steered_plan_once(out, tmp_path, cli):
    """Amended, then skipped: every (world size, workers) serves each global sample of the
    steered plan exactly once, with the same tokens as one process."""
    r = cli("amend", out, "--at-sample", 1000, "--weights", "zh=0.5", "--samples", "3000")
    assert r.exit_code == 0, r.output
    assert cli("skip", out, "--samples", "1500:1600").exit_code == 0
    r = cli("skip", out, "--samples", "1200:1210")  # before the skip at 1500: refused
    assert r.exit_code == 2 and "amend at 1,200 first" in r.output, r.output
    reference = trained(out, tmp_path / "ref", world=1)
    plan = plan_of(out)
    assert len(plan.journal) == 2
    for world in (1, 2, 3):
        for workers in (0, 2):
            got = trained(out, tmp_path / f"c{world}{workers}", world=world, workers=workers)
            usable = plan.total - plan.total % (B * world)
            assert sorted(got) == list(range(usable)), (world, workers)
            assert all(got[i] == reference[i] for i in got), (world, workers)


def test_amend_with_a_recipe_adds_a_source_at_s(tmp_path, cli, write_recipe):
    """A new corpus arrives mid-run: the recipe adds zh; only zh is tokenized, it enters at S,
    the prefix is unchanged and a state at S resumes on the amended plan."""
    from tests.helpers import demo_recipe

    recipe = demo_recipe(tmp_path, {"books": 0.9, "web": 0.1}, seq_len=32)
    recipe.update(output=str(tmp_path / "out"), mixture={"samples": 1500, "max_epochs": 6})
    first = write_recipe(recipe, "first.yaml")
    assert cli("build", first, "-w", "1", "--no-progress").exit_code == 0
    out = tmp_path / "out"
    before = trained(out, tmp_path / "c1", world=1)
    S = 600
    state = {"samples_seen": S, "plan": plan_of(out).lineage(S)}
    demo_recipe(tmp_path, {"books": 0.6, "web": 0.1, "zh": 0.3})  # copies zh's files
    recipe["sources"]["zh"] = {"files": "zh/*.parquet", "weight": 0.3}
    recipe["sources"]["books"]["weight"] = 0.6
    second = write_recipe(recipe, "second.yaml")
    r = cli("amend", out, "--at-sample", S, "--recipe", second, "--note", "zh arrived")
    assert r.exit_code == 0, r.output
    assert "built and added: zh" in r.output
    plan = plan_of(out)
    assert [s.name for s in plan.sources] == ["books", "web", "zh"]
    after = trained(out, tmp_path / "c2", world=1)
    assert all(after[i] == before[i] for i in range(S))
    assert not any(after[i][0] == "zh" for i in range(S))
    tail = [after[i][0] for i in range(S, 1500)]
    assert tail.count("zh") == 270  # 30% of 900, exactly
    resumed = trained(out, tmp_path / "c3", world=1, start_state=state)
    assert resumed == {i: v for i, v in after.items() if i >= S}
    recipe["sources"]["web"]["text_field"] = "body"  # a built source changed: refused
    changed = write_recipe(recipe, "third.yaml")
    r = cli("amend", out, "--at-sample", S, "--recipe", changed)
    assert r.exit_code == 2 and "sources.web: differs from the built source" in r.output


def test_online_changes_replay_from_the_state_on_any_ranks_and_workers(built, tmp_path, cli):
    """set_weights during an iteration; the state alone replays the run: the same samples for
    world sizes 1 and 2 and 0 or 2 DataLoader workers, and from a resume mid-run."""
    rng = np.random.default_rng(1)
    ds = StreamingMixture(built, batch_size=B, rank=0, world_size=1, cache_dir=tmp_path / "c")
    got, it = {}, iter(ds)
    changes = sorted(rng.choice(np.arange(1, 900), 20, replace=False).tolist())
    for n in range(4000 - 4000 % B):
        if changes and n // B == changes[0]:
            changes.pop(0)
            w = rng.uniform(0.05, 1, 3).round(2)
            ds.set_weights(dict(zip(["books", "web", "zh"], map(float, w), strict=True)))
        s = next(it)
        got[s["index"]] = (s["source"], hash(s["input_ids"].tobytes()))
    state = ds.state_dict()
    assert len(state["journal"]) == 20 and state["samples_seen"] == len(got)
    start = {"samples_seen": 0, "journal": state["journal"]}
    for world, workers in ((1, 0), (1, 2), (2, 0), (2, 2)):
        replay = trained(built, tmp_path / "c", start_state=start, world=world, workers=workers)
        usable = 4000 - 4000 % (B * world)
        assert replay == {i: got[i] for i in range(usable)}, (world, workers)
    mid = {"samples_seen": 2000, "journal": state["journal"]}
    resumed = trained(built, tmp_path / "c", start_state=mid, world=1)
    assert resumed == {i: got[i] for i in range(2000, len(got))}
    (tmp_path / "state.json").write_text(json.dumps(state))  # what the run was served
    r = cli("stats", built, "--state", tmp_path / "state.json", "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    assert len(summary["journal"]) == 20 and summary["at_sample"] == len(got)
    for name, c in summary["consumed"].items():
        assert c["samples"] == sum(1 for src, _ in got.values() if src == name)
    bad = cli("stats", built, "--state", tmp_path / "nope.json")
    assert bad.exit_code == 2 and "--state" in bad.output and "no such file" in bad.output

    # inspect --state: the samples as the run was served (its journal), not as the build planned
    last = max(got)
    r = cli("inspect", built, "--state", tmp_path / "state.json", "--json")
    assert r.exit_code == 0, r.output
    pieces = json.loads(r.output)
    assert {p["source"] for p in pieces} == {got[last][0]}  # the last sample trained
    planned = StreamingMixture(built).plan
    names = [src.name for src in planned.sources]
    differs = next(i for i in sorted(got) if got[i][0] != names[planned.locate(i)[0]])
    r = cli("inspect", built, "--state", tmp_path / "state.json", "--sample", differs, "--json")
    assert r.exit_code == 0 and {p["source"] for p in json.loads(r.output)} == {got[differs][0]}
    beyond = json.dumps({"samples_seen": 10**9, "journal": []})
    (tmp_path / "far.json").write_text(beyond)
    r = cli("inspect", built, "--state", tmp_path / "far.json")
    assert r.exit_code == 2 and "beyond this plan" in r.output


def test_an_earlier_amendment_replaces_later_entries(out, cli):
    assert (
        cli("amend", out, "--at-sample", 800, "--weights", "web=0.2", "--note", "a").exit_code == 0
    )
    assert cli("skip", out, "--samples", "900:950").exit_code == 0
    r = cli("amend", out, "--at-sample", 600, "--weights", "web=0.1")
    assert r.exit_code == 0, r.output
    assert (
        "replaced: amend at sample 800 (a)" in r.output
        and "replaced: skip at sample 900" in r.output
    )
    assert [(e.kind, e.at) for e in plan_of(out).journal] == [("amend", 600)]
    assert len(list((out / "plans").glob("*.json"))) == 3  # every superseded plan kept
