"""What every `mixer` command shares: a MixerError becomes one line and exit status 2."""

from __future__ import annotations

import functools
import sys

import click

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
