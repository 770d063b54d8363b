"""``mixer amend --recipe``: from a sample on, serve a new recipe's mixture, adding sources.

The build's sources are served as they are: a source the new recipe changes (files, reading,
tokenizer, packing, take) is refused before anything is written, since its blocks would change
under samples already trained. Sources the recipe adds are built into the output (the others
are linked, nothing re-tokenized) and enter at the amendment's sample; the new manifest's
fingerprint is recorded in the journal entry, so resume states keep their lineage.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from mixer.artifacts.manifest import Manifest
from mixer.artifacts.planfile import load_plan
from mixer.errors import PlanError
from mixer.plan import SourcePlan, journal
from mixer.plan.phases import Amendment, PhaseWeights
from mixer.steer import _limits, _now, _publish


def amend_recipe(
    out: str | os.PathLike,
    *,
    at_sample: int,
    recipe: str | os.PathLike,
    samples: int | None = None,
    note: str | None = None,
    workers: int | None = None,
):
    """From ``at_sample`` on, serve the mixture of ``recipe`` (its weights or phases, its total
    unless ``samples``), with the sources it adds; returns the new plan."""
    from mixer.recipe import load_recipe

    manifest = Manifest.load(Path(out))
    plan = load_plan(manifest)
    if not 0 <= at_sample <= plan.total:
        raise PlanError(f"--at-sample {at_sample:,} is outside the plan's [0, {plan.total:,}]")
    new = load_recipe(recipe, output=str(out))
    old = [s.name for s in plan.sources]
    names = [s.name for s in new.sources]
    gone = [n for n in old if n not in names]
    if gone:
        raise PlanError(
            f"{recipe}: sources.{gone[0]}: in the build but not in the recipe; keep it with"
            " weight 0 (or leave it out of the phases) to retire it from the amendment on"
        )
    added = [n for n in names if n not in old]
    manifest = _with_sources(manifest, new, old, added, workers)
    extra = tuple(_source_plan(manifest, n) for n in added)
    entry = Amendment(
        at=at_sample,
        kind="amend",
        recipe=str(recipe),
        added=tuple(added),
        note=note,
        manifest=manifest.fingerprint if added else None,
        time=_now(),
    )
    amended = journal.amend(
        plan,
        at=at_sample,
        entry=entry,
        total=_total(new, manifest.seq_len, samples, plan.total),
        added=extra,
        manifest=manifest.fingerprint,
        limits=_limits(manifest, replace(plan, sources=(*plan.sources, *extra))),
        **_mixture(new, old + added),
    )
    _publish(manifest, plan, amended)
    return amended


def _mixture(recipe, order: list[str]) -> dict:
    if recipe.mixture.phases is None:
        weights = {s.name: s.weight or 0.0 for s in recipe.sources}
        return {"weights": [weights[n] for n in order]}
    phases = [
        PhaseWeights(weights=tuple(float(p.weight(n)) for n in order), until=p.until, name=p.name)
        for p in recipe.mixture.phases
    ]
    return {"phases": phases}


def _with_sources(manifest, recipe, old, added, workers):
    """The build with ``added`` built into it; refused first if any built source would change."""
    from mixer.builder import build
    from mixer.builder.decide import reused_sources

    reused = reused_sources(recipe)
    changed = [n for n in old if not reused[n]]
    if changed:
        raise PlanError(
            f"{recipe.path}: sources.{changed[0]}: differs from the built source (its files,"
            " reading, tokenizer, packing or take): an amendment serves built sources as they"
            " are; change only weights, phases, max_epochs or the total, or add sources"
        )
    if not added:
        return manifest
    before = {n: manifest.sources[n].train for n in old}
    rebuilt = build(recipe, workers=workers, show_progress=False)
    for n in old:  # linked, so the same shards: a guard, never expected to fire
        assert rebuilt.sources[n].train == before[n], n
    return rebuilt


def _source_plan(manifest, name: str) -> SourcePlan:
    rec = manifest.split(name, "train")
    if not rec.blocks:
        raise PlanError(f"sources.{name}: no train blocks to serve; add data or lower seq_len")
    return SourcePlan(
        name=name,
        weight=0.0,
        num_blocks=rec.blocks,
        num_samples=0,
        shard_sizes=tuple(x.samples for x in rec.shards),
        padding_tokens=rec.padding_tokens,
    )


def _total(recipe, seq_len: int, samples: int | None, current: int) -> int:
    if samples is not None:
        return samples
    if recipe.mixture.samples is not None:
        return recipe.mixture.samples
    if recipe.mixture.tokens is not None:
        return -(-recipe.mixture.tokens // seq_len)
    return current
