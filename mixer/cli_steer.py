"""`mixer amend` and `mixer skip`: steering a build's plan while a run trains on it."""

from __future__ import annotations

import click

from mixer.cli_base import _friendly


def _at_options(prefix: str):
    """--at-sample / --at-step with --batch-size, --world-size, --grad-accum."""

    def wrap(fn):
        for opt in reversed(
            [
                click.option(f"--{prefix}-sample", "at_sample", type=int, help="Global sample S."),
                click.option(
                    f"--{prefix}-step", "at_step", type=int, help="... or optimizer step S."
                ),
                click.option("--batch-size", type=click.IntRange(min=1), help="Per-rank batch B."),
                click.option("--world-size", type=click.IntRange(min=1), default=1),
                click.option("--grad-accum", type=click.IntRange(min=1), default=1),
            ]
        ):
            fn = opt(fn)
        return fn

    return wrap


def _journal(output) -> tuple:
    from mixer.artifacts.manifest import Manifest
    from mixer.artifacts.planfile import load_plan

    return load_plan(Manifest.load(output)).journal


def _say_replaced(before: tuple, at: int) -> None:
    """The journal entries an amendment replaced (those at or after its sample)."""
    for e in before:
        if e.at >= at:
            note = f" ({e.note})" if e.note else ""
            click.echo(f"replaced: {e.kind} at sample {e.at:,}{note}")


def _parse_weights(text: str) -> dict[str, float]:
    out = {}
    for part in text.split(","):
        name, eq, value = part.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            eq = ""
        if not eq or not name.strip():
            raise click.UsageError(f"--weights: expected NAME=W[,NAME=W...], got {part!r}")
    return out


@click.command()
@click.argument("output")
@_at_options("at")
@click.option("--weights", help="NAME=W,...: new weights from S (unnamed sources keep theirs).")
@click.option(
    "--recipe",
    type=click.Path(dir_okay=False),
    help="A recipe whose mixture (weights or phases, total) applies from S; it may add sources.",
)
@click.option("--samples", type=click.IntRange(min=0), help="The plan's new total N (>= S).")
@click.option("--note", help="Why: kept in the plan's journal.")
@_friendly
def amend(
    output, at_sample, at_step, batch_size, world_size, grad_accum, weights, recipe, samples, note
):
    """Change the plan of OUTPUT from global sample S on; samples before S never change."""
    from mixer.steer import amend as run
    from mixer.steer import resolve_at

    if recipe and weights:
        raise click.UsageError("give --weights or --recipe, not both")
    if weights is None and samples is None and recipe is None:
        raise click.UsageError("give --weights, --recipe or --samples")
    at = resolve_at(
        at_sample=at_sample,
        at_step=at_step,
        batch_size=batch_size,
        world_size=world_size,
        grad_accum=grad_accum,
    )
    before = _journal(output)
    if recipe:
        from mixer.steer.recipe import amend_recipe

        plan = amend_recipe(output, at_sample=at, recipe=recipe, samples=samples, note=note)
        added = plan.journal[-1].added
        if added:
            click.echo(f"built and added: {', '.join(added)}")
    else:
        plan = run(
            output,
            at_sample=at,
            weights=_parse_weights(weights) if weights else None,
            samples=samples,
            note=note,
        )
    _say_replaced(before, at)
    shares = ", ".join(f"{s.name} {s.weight:.2%}" for s in plan.sources)
    click.echo(f"amended at sample {at:,}: {plan.total:,} samples; whole-plan shares: {shares}")
    click.echo(f"plan: {plan.fingerprint}")


@click.command()
@click.argument("output")
@click.option("--samples", "sample_range", help="A:B: skip the global samples [A, B).")
@click.option("--steps", "step_range", help="A:B: skip optimizer steps [A, B).")
@click.option("--batch-size", type=click.IntRange(min=1), help="Per-rank batch B (with --steps).")
@click.option("--world-size", type=click.IntRange(min=1), default=1)
@click.option("--grad-accum", type=click.IntRange(min=1), default=1)
@click.option("--note", help="Why: kept in the plan's journal.")
@_friendly
def skip(output, sample_range, step_range, batch_size, world_size, grad_accum, note):
    """Never serve the blocks OUTPUT's plan would serve in a range; the next blocks of each
    source fill the slots, so per-source counts at every step stay as planned."""
    from mixer.steer import resolve_at
    from mixer.steer import skip as run

    if (sample_range is None) == (step_range is None):
        raise click.UsageError("give --samples A:B or --steps A:B (with --batch-size)")
    text = sample_range or step_range
    a, colon, b = text.partition(":")
    if not colon or not a.strip().isdigit() or not b.strip().isdigit():
        raise click.UsageError(f"expected A:B (two integers), got {text!r}")
    kind = {"world_size": world_size, "grad_accum": grad_accum, "batch_size": batch_size}
    if step_range:
        start = resolve_at(at_step=int(a), **kind)
        end = resolve_at(at_step=int(b), **kind)
    else:
        start, end = int(a), int(b)
    plan = run(output, start=start, end=end, note=note)
    passed = plan.journal[[e.at for e in plan.journal].index(start)].passed or {}
    blocks = ", ".join(f"{n} {b - a:,}" for n, (a, b) in passed.items())
    click.echo(f"skipped samples {start:,}-{end - 1:,}: blocks passed over: {blocks}")
    click.echo(f"plan: {plan.fingerprint}")
