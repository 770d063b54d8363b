"""The recipe's `mixture:` section, phases included, and the source weights it depends on.

Part of `mixer.recipe` (which re-exports `MixtureSpec` and `PhaseSpec`), split out because
phases are validated against the sources, after both are read.

Weights come from one place: each source's `weight:` (one mixture for the whole run) or the
phases' `weights:` (the mixture changes over training). Both at once is refused rather than
guessed at: a source weight beside phases could mean a default for the phases that leave the
source out, or the source's share of the whole plan, and either reading would silently give
the other reader's plan.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import asdict, dataclass
from typing import Any

from mixer.errors import RecipeError
from mixer.recipe.keys import Keys, given

SHUFFLES = ("blocks", "shards", "none")


@dataclass(frozen=True, kw_only=True)
class PhaseSpec:
    weights: tuple[tuple[str, float], ...]  # (source, weight > 0); sources left out get 0
    until: float | None = None  # the fraction of the plan where it ends; None: the last phase
    name: str | None = None

    def weight(self, source: str) -> float:
        return dict(self.weights).get(source, 0.0)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"weights": dict(self.weights)}
        if self.until is not None:
            d["until"] = self.until
        if self.name is not None:
            d["name"] = self.name
        return d


@dataclass(frozen=True, kw_only=True)
class MixtureSpec:
    samples: int | None = None
    tokens: int | None = None
    max_epochs: float | None = None
    shuffle: str = "blocks"  # "blocks" (whole source), "shards" (shards, then a window), "none"
    window: int = 8  # shards per window with shuffle: shards
    phases: tuple[PhaseSpec, ...] | None = None  # None: the sources' weights, for the whole run
    weights_in: str = "samples"  # "tokens": weights are shares of loss tokens (mixer.plan.tokens)

    def to_dict(self) -> dict[str, Any]:
        """As embedded in the manifest; ``phases`` and ``weights_in`` only when given (a
        recipe without them keeps the manifest it had before they existed)."""
        d = asdict(self)
        del d["phases"]
        if self.weights_in == "samples":
            del d["weights_in"]
        if self.phases is not None:
            d["phases"] = [p.to_dict() for p in self.phases]
        return d


def parse_mixture(k: Keys) -> MixtureSpec:
    samples = k.int("samples", minimum=1)
    tokens = k.int("tokens", minimum=1)
    if samples is not None and tokens is not None:
        raise k.error("give samples or tokens, not both")
    max_epochs = positive(k, "max_epochs")
    shuffle = k.choice("shuffle", SHUFFLES)
    window = k.int("window", minimum=1)
    phases = _phases(k) if "phases" in k.data else None
    weights_in = k.choice("weights_in", ("samples", "tokens"))
    if weights_in == "tokens" and phases is not None:
        raise k.error(
            "tokens is not supported with phases yet;"
            " give the weights on the sources, or weights_in: samples",
            key="weights_in",
        )
    k.finish()
    return given(
        MixtureSpec,
        samples=samples,
        tokens=tokens,
        max_epochs=max_epochs,
        phases=phases,
        shuffle=shuffle,
        window=window,
        weights_in=weights_in,
    )


def positive(k: Keys, key: str) -> float | None:
    """An optional number > 0 (a weight, a max_epochs)."""
    value = k.float(key)
    if value is not None and not value > 0:
        raise RecipeError(f"{k.origin}: {k.path(key)}: must be > 0, got {value:g}")
    return value


def _phases(k: Keys) -> tuple[PhaseSpec, ...]:
    raw = k.data["phases"]
    k.used("phases")
    if not isinstance(raw, list) or not raw:
        raise k.error(
            "expected a non-empty list of phases ({until: f, weights: {source: w}}, the last"
            " without until)",
            key="phases",
        )
    out, previous = [], 0.0
    for i, item in enumerate(raw):
        pk = Keys(item, f"{k.path('phases')}[{i}]", k.origin)
        until = _until(pk, previous, last=i == len(raw) - 1)
        name = pk.str("name")
        if name is not None and name in [p.name for p in out]:
            raise pk.error(f"{name!r} names an earlier phase too; give each phase its own name")
        out.append(
            PhaseSpec(
                weights=_weights(pk.mapping("weights", required=True)), until=until, name=name
            )
        )
        pk.finish()
        previous = until or previous
    return tuple(out)


def _until(pk: Keys, previous: float, last: bool) -> float | None:
    until = pk.float("until")
    if last:
        if until is not None:
            raise pk.error(
                "the last phase runs to the end of the plan; remove its `until`", key="until"
            )
        return None
    if until is None:
        raise pk.error(
            "missing required key (every phase but the last ends at a fraction of the plan,"
            " 0 < until < 1)",
            key="until",
        )
    if not 0 < until < 1:
        raise pk.error(f"must be in (0, 1), got {until:g}", key="until")
    if until <= previous:
        raise pk.error(
            f"must be greater than the previous phase's until {previous:g}, got {until:g}",
            key="until",
        )
    return until


def _weights(wk: Keys) -> tuple[tuple[str, float], ...]:
    names = wk.names()
    if not names:
        raise wk.error("an empty phase: give at least one source a weight > 0")
    out = []
    for name in names:
        w = wk.float(str(name), required=True)
        if not (w > 0 and math.isfinite(w)):
            raise wk.error(
                f"must be > 0, got {w:g} (leave a source out of a phase to give it no samples"
                " there)",
                key=str(name),
            )
        out.append((str(name), w))
    return tuple(out)


def check_weights(mixture: MixtureSpec, sources, origin: str) -> None:
    """Source weights and phases agree: one of the two, every phase's source exists, every
    source is served by some phase."""
    names = [s.name for s in sources]
    if mixture.phases is None:
        for s in sources:
            if s.weight is None:
                raise RecipeError(
                    f"{origin}: sources.{s.name}.weight: missing required key (or give"
                    " per-phase weights in mixture.phases)"
                )
        return
    for s in sources:
        if s.weight is not None:
            raise RecipeError(
                f"{origin}: sources.{s.name}.weight: not used with mixture.phases (each phase"
                " has its own weights); remove it and give the source a weight in the phases"
            )
    used = set()
    for i, phase in enumerate(mixture.phases):
        for name, _ in phase.weights:
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise RecipeError(
                    f"{origin}: mixture.phases[{i}].weights.{name}: no such source"
                    f" ({hint}sources: {', '.join(names)})"
                )
            used.add(name)
    for name in names:
        if name not in used:
            raise RecipeError(
                f"{origin}: sources.{name}: no phase of mixture.phases gives it a weight; add it"
                " to a phase or remove the source"
            )
