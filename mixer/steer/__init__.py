"""Steering a build's plan while a run trains on it: ``amend`` and ``skip`` (``mixer amend``,
``mixer skip``, ``mixer.amend``, ``mixer.skip``).

Each loads the build's plan, makes the next one with `mixer.plan.journal` (pure), and writes it
as the build's plan.json; the plan it replaces is kept as ``plans/<fingerprint>.json``, so every
journal entry's ``before`` can be read back. Nothing is re-tokenized and no shard changes: a
change is milliseconds whatever the plan's length.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

from mixer.artifacts.manifest import Manifest, write_atomic
from mixer.artifacts.planfile import load_plan, save_plan
from mixer.errors import PlanError, UsageError
from mixer.plan import journal
from mixer.plan.phases import Amendment

HISTORY = "plans"  # superseded plans, by fingerprint


def resolve_at(
    *,
    at_sample: int | None = None,
    at_step: int | None = None,
    batch_size: int | None = None,
    world_size: int = 1,
    grad_accum: int = 1,
    what: str = "--at-sample",
) -> int:
    """A global sample from a sample, or from an optimizer step: S = step * B * W * GA."""
    if (at_sample is None) == (at_step is None):
        raise UsageError(f"give exactly one of {what} or its --...-step form")
    if at_step is None:
        if at_sample < 0:
            raise UsageError(f"{what} must be >= 0, got {at_sample}")
        return at_sample
    if batch_size is None or batch_size < 1 or world_size < 1 or grad_accum < 1:
        raise UsageError(
            "a step needs --batch-size >= 1 (per rank), and --world-size, --grad-accum >= 1"
        )
    if at_step < 0:
        raise UsageError(f"a step must be >= 0, got {at_step}")
    return at_step * batch_size * world_size * grad_accum


def amend(
    out: str | os.PathLike,
    *,
    at_sample: int,
    weights: dict[str, float] | None = None,
    samples: int | None = None,
    note: str | None = None,
):
    """From global sample ``at_sample`` on, serve ``weights`` (sources not named keep the
    weight they have there; 0 retires a source) up to ``samples`` (default: the plan's total).
    Samples before it are served exactly as before; returns the new plan."""
    manifest = Manifest.load(Path(out))
    plan = load_plan(manifest)
    if not 0 <= at_sample <= plan.total:
        raise PlanError(f"--at-sample {at_sample:,} is outside the plan's [0, {plan.total:,}]")
    vector = journal.weights_at(plan, at_sample, weights or {})
    entry = Amendment(at=at_sample, kind="amend", note=note, time=_now())
    new = journal.amend(
        plan,
        at=at_sample,
        entry=entry,
        weights=vector,
        total=samples,
        limits=_limits(manifest, plan),
    )
    _publish(manifest, plan, new)
    return new


def skip(out: str | os.PathLike, *, start: int, end: int, note: str | None = None):
    """Never serve the blocks the plan would serve in the global samples [start, end): the
    slots are filled by each source's next blocks (per-source counts at every prefix stay)."""
    manifest = Manifest.load(Path(out))
    plan = load_plan(manifest)
    entry = Amendment(at=start, kind="skip", end=end, note=note, time=_now())
    new = journal.skip(plan, start=start, end=end, entry=entry, limits=_limits(manifest, plan))
    _publish(manifest, plan, new)
    return new


def _limits(manifest: Manifest, plan) -> list[float | None]:
    """Each source's repetition limit, in plan order: its own max_epochs, else the mixture's."""
    recipe = manifest.recipe
    default = (recipe.get("mixture") or {}).get("max_epochs")
    own = {s["name"]: s.get("max_epochs") for s in recipe["sources"]}
    return [default if own.get(s.name) is None else own[s.name] for s in plan.sources]


def _publish(manifest: Manifest, old, new) -> None:
    """Keep the old plan under plans/, then write the new one as the build's plan.json."""
    history = manifest.root / HISTORY
    history.mkdir(exist_ok=True)
    data = {**old.to_dict(), "fingerprint": old.fingerprint}
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    write_atomic(history / f"{old.fingerprint[:16]}.json", text)
    save_plan(new, manifest.root)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
