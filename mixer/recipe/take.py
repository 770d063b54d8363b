"""A source's `take:` key: read only part of a huge corpus (a replay pool of 600 B tokens of
which a plan uses 250 M).

Part of `mixer.recipe`, split out to keep it short. Forms:

- ``take: auto``: as much as the plan needs so that the source repeats at most its allowed
  epochs (its own ``max_epochs``; else 1, or ``mixture.max_epochs`` when smaller), plus a
  margin (`mixer.builder.budget`). It needs the plan's total (``mixture.samples`` or
  ``mixture.tokens``): without one the total is derived from the blocks built, which ``auto``
  would derive from the total.
- ``take: {tokens: T}``: the first documents, in the input's order, until T tokens (after
  tokenizing, BOS/EOS included; held-out documents included) are taken.
- ``take: {documents: D}``: the first D documents kept.
- ``take: {fraction: f}``: each document with probability f, decided by a hash of its text
  (like validation, and independent of it): the same documents whatever the order or the
  workers. The whole source is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mixer.errors import RecipeError
from mixer.recipe.keys import Keys

KINDS = ("tokens", "documents", "fraction")


@dataclass(frozen=True, kw_only=True)
class TakeSpec:
    auto: bool = False
    tokens: int | None = None
    documents: int | None = None
    fraction: float | None = None

    @property
    def stops(self) -> bool:
        """Reading stops early (every form but ``fraction``, which samples the whole source)."""
        return self.fraction is None

    def to_dict(self) -> Any:
        if self.auto:
            return "auto"
        return {k: getattr(self, k) for k in KINDS if getattr(self, k) is not None}

    def describe(self) -> str:
        if self.auto:
            return "auto"
        ((kind, value),) = self.to_dict().items()
        return f"{kind} {value:,}" if kind != "fraction" else f"fraction {value:g}"


def parse_take(k: Keys) -> TakeSpec | None:
    """``sources.NAME.take`` (None when absent)."""
    if "take" not in k.data:
        return None
    raw = k.data["take"]
    k.used("take")
    where = f"{k.origin}: {k.path('take')}"
    if raw == "auto":
        return TakeSpec(auto=True)
    if not isinstance(raw, dict):
        raise RecipeError(
            f"{where}: expected `auto` or one of {{tokens: T}}, {{documents: D}},"
            f" {{fraction: f}}, got {raw!r}"
        )
    tk = Keys(raw, k.path("take"), k.origin)
    tokens = tk.int("tokens", minimum=1)
    documents = tk.int("documents", minimum=1)
    fraction = tk.float("fraction")
    tk.finish()
    given = [v for v in (tokens, documents, fraction) if v is not None]
    if len(given) != 1:
        raise RecipeError(f"{where}: give exactly one of tokens, documents or fraction (or auto)")
    if fraction is not None and not 0 < fraction <= 1:
        raise RecipeError(f"{where}.fraction: must be in (0, 1], got {fraction:g}")
    return TakeSpec(tokens=tokens, documents=documents, fraction=fraction)


def check_take(sources, mixture, origin: str) -> None:
    """``take`` fits the rest of the recipe: not on a ``from:`` source; ``auto`` with a total."""
    for s in sources:
        if s.take is None:
            continue
        if s.reuse is not None:
            raise RecipeError(
                f"{origin}: sources.{s.name}.take: a `from:` source is linked from another build"
                " as it was built there; set `take` in that build's recipe"
            )
        if s.take.auto and mixture.samples is None and mixture.tokens is None:
            raise RecipeError(
                f"{origin}: sources.{s.name}.take: auto needs the plan's total: set"
                " mixture.samples or mixture.tokens (without them the total is derived from"
                " the blocks built, which auto derives from the total)"
            )
