"""tools/forgetting_demo.py: its builds are the replay mixtures it claims, and --quick runs end
to end (mixer builds, training through StreamingMixture, held-out losses, JSON, table, plot)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO

sys.path.insert(0, str(REPO / "tools"))
from forgetting import builds, report  # noqa: E402


def test_replay_weight_sets_the_two_sources_and_zero_leaves_replay_out():
    built = {"en": "/builds/pretrain-s0"}
    five = builds.derive("continue.yaml", seed=3, samples=160, replay=0.05, built=built)
    assert five["seed"] == 3 and five["mixture"]["samples"] == 160
    assert five["sources"]["en"] == {"from": "/builds/pretrain-s0", "weight": 0.05}
    assert five["sources"]["zh"]["weight"] == 0.95
    assert all(os.path.isabs(f) for f in five["sources"]["zh"]["files"])
    assert "output" not in five

    zero = builds.derive("continue.yaml", seed=0, samples=160, replay=0.0, built=built)
    assert list(zero["sources"]) == ["zh"] and zero["sources"]["zh"]["weight"] == 1.0

    # a source another build already tokenized is reused, never read again
    again = builds.derive(
        "continue.yaml", seed=1, samples=160, replay=0.2, built={**built, "zh": "/b/r5"}
    )
    assert again["sources"]["zh"] == {"from": "/b/r5", "weight": 0.8}


def test_readme_table_is_the_committed_results():
    doc = json.loads((REPO / "docs" / "forgetting.json").read_text())
    rows = [line for line in report.table(doc).splitlines() if line.startswith("|")]
    assert len(rows) == 2 + len(builds.RUNS)
    readme = (REPO / "docs" / "forgetting.md").read_text()
    assert all(row in readme for row in rows)
    assert doc["settings"]["command"] in readme


def test_shipped_pretraining_recipe_validates(cli):
    result = cli("validate", REPO / "recipes" / "forgetting" / "pretrain.yaml")
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_quick_run_end_to_end(tmp_path):
    out = tmp_path / "forgetting"
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}

    def demo(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(  # --out relative to the working directory, as a user gives it
            [sys.executable, str(REPO / "tools" / "forgetting_demo.py"), "--out", out.name, *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    proc = demo("--quick")
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((out / "forgetting.json").read_text())
    assert (out / "forgetting.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    seeds = doc["settings"]["seeds"]
    assert seeds == [0, 1]
    assert list(doc["runs"]) == [r.name for r in builds.RUNS]
    for name, run in doc["runs"].items():
        assert run["steps"] == [0, 4, 8], name
        for key in ("en", "zh", "poems"):
            curves = run["curves"][key]
            assert len(curves) == len(seeds) and all(len(c) == 3 for c in curves)
            assert all(math.isfinite(v) and 0 < v < 20 for c in curves for v in c)
        # every continued run starts from its seed's pretrained weights
        assert [c[0] for c in run["curves"]["en"]] == doc["pretrain"]["en"]["seeds"], name

    # the builds hold the planned mixtures: 0, 5 and 20% replay; the poems repeat most
    plans = {name: run["plan"] for name, run in doc["runs"].items()}
    assert set(plans["replay-0"]) == {"zh"}
    total = 8 * doc["settings"]["batch_size"]  # --quick: 8 steps
    for name, weight in (("replay-5", 0.05), ("replay-20", 0.2)):
        assert sum(s["samples"] for s in plans[name].values()) == total
        assert abs(plans[name]["en"]["samples"] - weight * total) < 1, name  # largest remainder
    assert plans["repeat-5"]["poems"]["epochs"] > plans["replay-5"]["zh"]["epochs"]

    # the controller arms set weights while training: every change is in the run's journal,
    # applied from the next batch, and the loop trained exactly what the amended plan serves
    for run in (r for r in builds.RUNS if r.budget is not None):
        got = doc["runs"][run.name]
        for changes, journal, served in zip(
            got["changes"], got["journal"], got["served"], strict=True
        ):
            assert changes, run.name  # the first evaluation sets the starting weights
            assert [c[1] for c in changes] == [j[0] for j in journal]
            assert all(at == (step + 1) * doc["settings"]["batch_size"] for step, at, _ in changes)
            assert [c[2] for c in changes] == [round(j[1]["en"], 5) for j in journal]
            assert sum(served.values()) == total
    verdicts = {v["run"]: v for v in doc["controller"]}
    assert set(verdicts) == {f"controller-{b:g}" for b in builds.BUDGETS}
    assert all(v["answer"] in (True, False, None) for v in verdicts.values())

    # what the demo is about, already after 8 steps: without replay English is lost faster
    rows = {row["run"]: row for row in doc["table"]}
    assert len(rows) == len(builds.RUNS)
    zero, twenty = rows["replay-0"]["en_increase"], rows["replay-20"]["en_increase"]
    assert all(a > b for a, b in zip(zero["seeds"], twenty["seeds"], strict=True))
    assert "| 20% replay | " in proc.stdout

    # more steps than continue.yaml's max_epochs allows: mixer's one-line error, no traceback
    refused = demo("--seeds", "1", "--pretrain-steps", "12", "--steps", "400")
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: sources.zh: the plan repeats it 2.57 times")
    assert "max_epochs 2" in refused.stderr and "Traceback" not in refused.stderr
