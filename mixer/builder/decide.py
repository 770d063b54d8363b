"""The build's first step, per source: link its blocks from a built source, or build them.

A source is linked when its key is unchanged in the output being replaced (or, under a
``take``, when what it took still serves the plan: `mixer.builder.take_reuse`), or when the
recipe says ``from:``. Nothing is written here: any error is a recipe mistake.
"""

from __future__ import annotations

from mixer.artifacts.manifest import Manifest
from mixer.builder import reuse, take_reuse
from mixer.builder.take_measure import Take
from mixer.builder.tokenizer import TokenizerInfo
from mixer.recipe import Recipe


def decide(
    recipe: Recipe, prev: Manifest | None, ident: dict, takes: dict[str, Take]
) -> dict[str, reuse.Decision]:
    """Each source's decision; ``prev`` the output being replaced, ``ident`` the tokenizer's."""
    known = reuse.known_inputs(prev)
    decisions = {}
    for s in recipe.sources:
        if s.reuse:
            decisions[s.name] = reuse.Decision(linked=reuse.reference(recipe, s))
            continue
        if s.take is not None:  # no input hashed: see mixer.builder.take_reuse
            linked = take_reuse.linkable(prev, recipe, s, ident, takes[s.name])
            decisions[s.name] = reuse.Decision(linked=linked)
            continue
        inputs = reuse.stat_inputs(s, known) if s.files else []
        key = reuse.source_key(recipe, s, inputs, ident)
        decisions[s.name] = reuse.Decision(
            key=key, inputs=inputs, linked=reuse.find([prev] if prev else [], key)
        )
    return decisions


def reused_sources(recipe: Recipe) -> dict[str, bool]:
    """Per source of ``recipe``: would a build into its output link it as it is (unchanged
    inputs, reading, tokenizer and packing), or tokenize it? (`mixer amend --recipe`'s check.)"""
    from pathlib import Path

    from mixer.builder.take_measure import resolve_takes

    ident = reuse.tokenizer_identity(recipe)
    prev = reuse.previous(Path(recipe.output))
    decisions = decide(recipe, prev, ident, resolve_takes(recipe))
    return {name: d.linked is not None for name, d in decisions.items()}


def linked(decisions: dict[str, reuse.Decision]) -> list[tuple[Manifest, str]]:
    """The (build, source) each linked source comes from."""
    return [d.linked for d in decisions.values() if d.linked is not None]


def check_from(recipe: Recipe, tok: TokenizerInfo | None, decisions: dict) -> None:
    """Every ``from:`` source was built with this recipe's tokenizer and packing."""
    for s in recipe.sources:
        if s.reuse:
            reuse.check_compatible(recipe, s, decisions[s.name].linked[0], _summary(tok, decisions))


def _summary(tok: TokenizerInfo | None, decisions: dict[str, reuse.Decision]) -> dict:
    t = tok if tok is not None else linked(decisions)[0][0].tokenizer
    return {"fingerprint": t.fingerprint, "dtype": t.dtype, "bos_id": t.bos_id, "eos_id": t.eos_id}
