"""The `mixer` command: thin click wrappers; a MixerError becomes one line and exit status 2."""

from __future__ import annotations

import functools
import json
import sys

import click
from rich.console import Console

from mixer import __version__
from mixer.errors import MixerError


def _friendly(fn):
    """Print a MixerError as ``error: <message>`` and exit 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MixerError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper


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
@click.option("--progress/--no-progress", default=None, help="Progress bars [on a terminal].")
@_friendly
def build(
    recipe: str, output: str | None, workers: int | None, strict: bool, progress: bool | None
) -> None:
    """Build RECIPE into tokenized, packed MDS shards with a manifest."""
    from mixer.build import build as run_build
    from mixer.recipe import load_recipe

    r = load_recipe(recipe, output=output)
    manifest = run_build(
        r, workers=workers, strict=strict, show_progress=progress, console=Console(stderr=True)
    )
    click.echo(f"wrote {manifest.root}")


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@_friendly
def validate(recipe: str) -> None:
    """Check RECIPE (keys, values, files, tokenizer) without building."""
    from mixer.recipe import load_recipe
    from mixer.tokenizer import load_tokenizer

    r = load_recipe(recipe)
    tok = None if r.tokenizer.kind == "hf" else load_tokenizer(r.tokenizer)
    files = sum(len(s.files) for s in r.sources)
    what = f"tokenizer vocab {tok.vocab_size:,}" if tok else f"hub tokenizer {r.tokenizer.location}"
    click.echo(f"{recipe}: ok ({len(r.sources)} sources, {files} files, {what})")


@main.command()
@click.argument("output", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_friendly
def stats(output: str, as_json: bool) -> None:
    """Show what the build in OUTPUT holds and what the mixture will serve."""
    from mixer.manifest import Manifest
    from mixer.stats import render_table, summarize

    summary = summarize(Manifest.load(output))
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        render_table(summary, Console())


if __name__ == "__main__":
    main()
