"""The demo's mixer builds: the shipped recipes, re-weighted and re-seeded, built once each.

recipes/forgetting/ holds three recipes: ``pretrain.yaml`` (English), ``continue.yaml``
(Chinese with 5% English replay) and ``repeat.yaml`` (a tiny Chinese corpus, repeated). Each run
of the demo is one of them with another replay weight, seed and sample count. Every source is
tokenized once, by the first build that needs it; every later build names it with ``from:``
(hard links, no tokenizing), so the 15 builds of a 3-seed run cost about three builds.
Each derived recipe is written as YAML next to the builds, so what was trained on can be
read and rebuilt with ``mixer build``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import yaml

RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "forgetting"
REPLAY = "en"  # the replay source: in continue.yaml and repeat.yaml it is `from:` pretraining


@dataclass(frozen=True, kw_only=True)
class Run:
    """One continued pre-training arm: a recipe and the replay source's share of samples."""

    name: str
    recipe: str
    replay: float  # the build's replay share (a controller's starting share)
    label: str
    budget: float | None = None  # a ReplayController arm: the English loss rise it may allow

    @property
    def controller(self) -> dict | None:
        """`mixer.integrations.controllers.ReplayController`'s arguments for a controller arm:
        start at the build's share, move it within [0.5%, 25%] to keep the rise within budget."""
        if self.budget is None:
            return None
        new = {self.new_source: 1.0}
        return dict(
            old=REPLAY, weights=new, budget=self.budget, bounds=(0.005, 0.25), start=self.replay
        )

    @property
    def new_source(self) -> str:
        return next(n for n in _load(self.recipe)["sources"] if n != REPLAY)


def _fixed(percent: int) -> Run:
    return Run(
        name=f"replay-{percent}",
        recipe="continue.yaml",
        replay=percent / 100,
        label=f"{percent}% replay",
    )


def _controlled(budget: float) -> Run:
    return Run(
        name=f"controller-{budget:g}",
        recipe="continue.yaml",
        replay=0.05,
        label=f"controller, budget {budget:g}",
        budget=budget,
    )


#: The budgets the controller arms keep (nats of held-out English loss rise), chosen before
#: the runs: about the rise of 5% fixed replay in the first demo (0.22), and half of it.
BUDGETS = (0.1, 0.2)
RUNS = (
    *(_fixed(p) for p in (0, 1, 2, 5, 10, 20)),
    *(_controlled(b) for b in BUDGETS),
    Run(name="repeat-5", recipe="repeat.yaml", replay=0.05, label="5% replay, poems only"),
)


def _load(name: str) -> dict:
    return yaml.safe_load((RECIPES / name).read_text(encoding="utf-8"))


def derive(
    name: str, *, seed: int, samples: int, replay: float | None, built: dict[str, str]
) -> dict:
    """The recipe ``name`` with this seed, total and replay weight; sources already built
    (``built``: source -> output) are reused with ``from:``, the others read their files
    (paths made absolute, so the recipe can live anywhere)."""
    data = copy.deepcopy(_load(name))
    data["seed"], data["mixture"]["samples"] = seed, samples
    data["tokenizer"]["path"] = str(RECIPES / data["tokenizer"]["path"])
    data.pop("output", None)
    sources = {}
    for src_name, spec in data["sources"].items():
        if replay is not None:  # two sources: the replay and the new data
            weight = replay if src_name == REPLAY else 1.0 - replay
            if weight == 0:
                continue  # mixer refuses weight 0: a 0% replay leaves the source out
            spec["weight"] = weight
        if src_name in built:
            spec = {"from": built[src_name], "weight": spec["weight"]}
        elif "files" in spec:
            files = spec["files"] if isinstance(spec["files"], list) else [spec["files"]]
            spec["files"] = [str(RECIPES / f) for f in files]
        sources[src_name] = spec
    data["sources"] = sources
    return data


def build(data: dict, folder: Path, name: str, built: dict[str, str]) -> str:
    """Write the recipe as ``folder/NAME.yaml``, build it into ``folder/NAME``; the output.

    Records in ``built`` every source this build tokenized, for the next builds to reuse."""
    from rich.console import Console

    from mixer.builder import build as mixer_build
    from mixer.recipe import load_recipe

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    out = (folder / name).resolve()  # `from:` paths resolve against the recipe: absolute
    mixer_build(load_recipe(path, output=str(out)), workers=1, console=Console(quiet=True))
    for src_name in data["sources"]:
        built.setdefault(src_name, str(out))
    return str(out)


def plan_summary(out: str) -> dict[str, dict]:
    """Per source of a build's plan: samples, share of the plan, blocks and passes (epochs)."""
    from mixer.artifacts.manifest import Manifest
    from mixer.artifacts.planfile import load_plan

    plan = load_plan(Manifest.load(out))
    return {
        s.name: {
            "samples": s.num_samples,
            "share": round(s.num_samples / plan.total, 4),
            "blocks": s.num_blocks,
            "epochs": round(s.epochs, 2),
        }
        for s in plan.sources
    }
