"""The `mixer` command: thin click wrappers; a MixerError becomes one line and exit status 2."""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console

from mixer.cli_base import _friendly
from mixer.version import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mixer")
def main() -> None:
    """Tokenize, pack and mix corpora for continued pre-training."""


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("-o", "--output", help="Output folder (overrides the recipe's `output:`).")
@click.option("-w", "--workers", type=click.IntRange(min=1), help="Worker processes [all cores].")
@click.option(
    "--strict", is_flag=True, help="Fail on the first bad document instead of skipping it."
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bars [on a terminal; a JSON line per unit otherwise].",
)
@click.option(
    "--encoder",
    type=click.Choice(["auto", "gigatoken", "tiktoken", "tokenizers"]),
    help="Encoder (over the recipe's tokenizer.encoder) [auto: the fastest that gives the"
    " reference's ids].",
)
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="Where units run: local processes, or Ray tasks.",
)
@click.option("--address", help="Ray cluster address [start a local Ray instance].")
@_friendly
def build(
    recipe: str,
    output: str | None,
    workers: int | None,
    strict: bool,
    progress: bool | None,
    encoder: str | None,
    engine: str,
    address: str | None,
) -> None:
    """Build RECIPE into tokenized, packed MDS shards with a manifest."""
    if address and engine != "ray":
        raise click.UsageError("--address is the Ray cluster's: give it with --engine ray")
    from mixer.builder import run_build
    from mixer.recipe import load_recipe
    from mixer.report.built import print_summary

    r = load_recipe(recipe, output=output)
    console = Console(stderr=True)
    b = run_build(
        r,
        workers=workers,
        strict=strict,
        show_progress=progress,
        console=console,
        encoder=encoder,
        engine=engine,
        address=address,
    )
    print_summary(
        console,
        b.manifest,
        seconds=b.seconds,
        reused=b.reused,
        num_units=b.num_units,
        linked=b.linked,
    )
    click.echo(f"wrote {b.manifest.root}")


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@_friendly
def validate(recipe: str) -> None:
    """Check RECIPE (keys, values, files, tokenizer) without building."""
    from mixer.builder.tokenizer import load_tokenizer
    from mixer.recipe import load_recipe

    r = load_recipe(recipe)
    tok = None if r.tokenizer.kind == "hf" else load_tokenizer(r.tokenizer)
    files = sum(len(s.files) for s in r.sources)
    what = f"tokenizer vocab {tok.vocab_size:,}" if tok else f"hub tokenizer {r.tokenizer.location}"
    click.echo(f"{recipe}: ok ({len(r.sources)} sources, {files} files, {what})")


def _stdout_console() -> Console:
    """Rich output; wide when not on a terminal, so a piped table is never truncated."""
    return Console() if sys.stdout.isatty() else Console(width=160)


def _open(output: str):
    from mixer.artifacts.planfile import load_plan
    from mixer.serve.cache import open_build

    manifest = open_build(output)
    return manifest, load_plan(manifest)


@main.command()
@click.argument("output")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--at-sample", type=click.IntRange(min=0), help="Consumed per source by sample N.")
@click.option("--at-step", type=click.IntRange(min=0), help="... by step S (needs --batch-size).")
@click.option("--batch-size", type=click.IntRange(min=1), help="Per-rank batch size B.")
@click.option(
    "--world-size",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Ranks W: step S is sample S*B*W*G.",
)
@click.option(
    "--grad-accum",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Gradient accumulation G.",
)
@click.option(
    "--state",
    "state_path",
    type=click.Path(dir_okay=False),
    help="A saved resume state: the plan as its run was served (online changes), at its sample.",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False),
    help="Also draw shares over training and document lengths to FILE.png.",
)
@_friendly
def stats(
    output: str,
    as_json: bool,
    at_sample: int | None,
    at_step: int | None,
    batch_size: int | None,
    world_size: int,
    grad_accum: int,
    state_path: str | None,
    plot_path: str | None,
) -> None:
    """Show what the build in OUTPUT holds and what its plan will serve."""
    from mixer.report.render import render_table
    from mixer.report.summary import summarize
    from mixer.report.verify import check_files

    if at_step is not None:
        if batch_size is None:
            raise click.UsageError("--at-step needs --batch-size (and --world-size if W > 1)")
        if at_sample is not None:
            raise click.UsageError("give --at-sample or --at-step, not both")
        at_sample = at_step * batch_size * world_size * grad_accum
    manifest, plan = _open(output)
    check_files(manifest)
    if state_path:
        from mixer.report.state_file import state_plan

        plan, seen = state_plan(plan, state_path)
        at_sample = seen if at_sample is None else at_sample
    summary = summarize(manifest, plan, at_sample)
    if plot_path:
        from mixer.report.plot import plot

        plot(manifest, plan, plot_path)
    if as_json:
        click.echo(json.dumps(summary.to_json(), indent=2))
    else:
        render_table(summary, _stdout_console())
        if plot_path:
            click.echo(f"plot: {plot_path}")


@main.command()
@click.argument("output")
@click.option("--source", help="The source whose block to show.")
@click.option("--split", type=click.Choice(["train", "val"]), default="train", show_default=True)
@click.option(
    "--index",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Block index within the source's split.",
)
@click.option("--sample", type=click.IntRange(min=0), help="Show global sample N of the plan.")
@click.option("--step", type=click.IntRange(min=0), help="Show what optimizer step S trained on.")
@click.option("--rank", type=click.IntRange(min=0), default=0, show_default=True, help="Rank R.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Per-rank batch size B.")
@click.option("--world-size", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--grad-accum", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the pieces' origins as JSON.")
@click.option(
    "--state",
    "state_path",
    type=click.Path(dir_okay=False),
    help="A saved resume state: samples as its run was served (online changes) [its last].",
)
@_friendly
def inspect(
    output: str,
    source: str | None,
    split: str,
    index: int,
    sample: int | None,
    step: int | None,
    rank: int,
    batch_size: int | None,
    world_size: int,
    grad_accum: int,
    as_json: bool,
    state_path: str | None,
) -> None:
    """Decode a block of OUTPUT back to text, with where each piece of it comes from (input
    file, record, characters): a block, global sample N, or a rank's share of a step."""
    from mixer.report.inspect import describe_block, describe_sample, render
    from mixer.report.provenance import Provenance, served_pieces, served_samples

    manifest, plan = _open(output)
    if state_path:
        from mixer.report.state_file import state_plan

        plan, seen = state_plan(plan, state_path)
        if sample is None and step is None and source is None:
            if not seen:
                raise click.UsageError(f"--state {state_path}: no sample trained yet")
            sample = seen - 1  # the last sample the run trained on
    if (source is not None) + (sample is not None) + (step is not None) != 1:
        raise click.UsageError("give --source NAME (with --index, --split), --sample N or --step S")
    prov = Provenance(manifest)
    samples = None
    if source is None:
        samples = served_samples(plan, sample, step, rank, batch_size, world_size, grad_accum)
    if as_json:  # the table and the records only: no shard is read
        if samples is None:
            pieces = prov.block(source, split, index)
        else:
            pieces = served_pieces(prov, plan, samples)
        click.echo(json.dumps(pieces, indent=2, ensure_ascii=False))
        return
    if samples is None:
        infos = [describe_block(manifest, source, split, index, prov=prov)]
    else:
        infos = [describe_sample(manifest, plan, i, prov=prov) for i in samples]
    console = _stdout_console()
    for info in infos:
        render(info, console)


@main.command()
@click.argument("output", type=click.Path(file_okay=False))
@_friendly
def verify(output: str) -> None:
    """Check OUTPUT whole: hashes, every block decoded, counts against the manifest."""
    from mixer.report.verify import verify as run_verify

    problems, totals = run_verify(output)
    if problems:
        for p in problems:
            click.echo(f"problem: {p}", err=True)
        click.echo(f"{output}: {len(problems)} problem(s)", err=True)
        sys.exit(1)
    click.echo(f"{output}: ok ({totals['shards']} shards, {totals['blocks']:,} blocks verified)")
    click.echo(f"manifest fingerprint: {totals['manifest']}")
    click.echo(f"plan fingerprint: {totals['plan']} (pin it: StreamingMixture(..., expect=...))")


def _steering() -> None:
    from mixer import cli_steer  # `mixer amend`, `mixer skip`

    main.add_command(cli_steer.amend)
    main.add_command(cli_steer.skip)


_steering()

if __name__ == "__main__":
    main()
