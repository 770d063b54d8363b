"""The few exceptions mixer raises for things a user can fix.

Every message says what is wrong, where (a recipe key such as ``sources.replay.weight`` or a
location such as ``web.jsonl:812``), why, and how to fix it, on one line. The CLI prints it as
``error: <message>`` and exits with status 2; library callers catch :class:`MixerError`.
"""

from __future__ import annotations


class MixerError(Exception):
    """Base class: a mistake in a recipe, an input, an output folder or a call."""


class RecipeError(MixerError):
    """The recipe is invalid (unknown key, wrong type, missing file, bad value)."""


class InputError(MixerError):
    """An input document or file cannot be read (raised as such only with ``--strict``)."""


class TokenizerError(MixerError):
    """The tokenizer cannot be loaded or lacks a token the recipe needs."""


class OutputError(MixerError):
    """An output folder is missing, incomplete, corrupted or cannot be written."""


class PlanError(MixerError):
    """The mixture cannot be planned as asked (too few blocks for ``max_epochs``, ...)."""


class StateError(MixerError):
    """A resume state does not fit the plan (another plan, beyond its end, taken mid-batch)."""


class UsageError(MixerError, ValueError):
    """A call's argument is invalid: a split, a rank not below the world size, a batch size,
    an index outside the plan. (The CLI reports its own option mistakes as click usage
    errors.)"""


class EngineError(MixerError):
    """The executor lost work it cannot redo (a Ray node died and the task's retries were used
    up, the cluster went away): nothing was published, and what finished is kept for a rerun."""


class TrainerError(MixerError):
    """A trainer, model or batch does not fit the build (vocabulary, steps beyond the plan, ...)."""


class UnsafeBuildError(OutputError):
    """A build read from elsewhere declares something mixer will not act on: a path outside its
    folder, a size beyond the format's bounds, records that contradict each other or the files.
    Raised before anything is downloaded or written for it; its fingerprints may well be valid
    (anyone can recompute them), so they prove a build unchanged, never harmless."""
