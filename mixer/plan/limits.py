"""Checks made before a plan is frozen: phases that make sense, and the repetition guard.

The recipe already refuses these mistakes with its own messages (naming the recipe file); the
checks here guard `make_plan` itself, for callers that build plans without a recipe, and the
one check only the allocation can make: how often each source repeats.
"""

from __future__ import annotations

import math

from mixer.errors import PlanError


def phase_label(p: int, name: str | None) -> str:
    """``phases[1] (main)``: how reports and errors name a phase (its recipe key)."""
    return f"phases[{p}]" + (f" ({name})" if name else "")


def check_phases(phases, num_sources: int) -> None:
    """Each phase: a weight per source (>= 0, one > 0); ``until`` in (0, 1), increasing, on
    every phase but the last."""
    previous = 0.0
    for p, ph in enumerate(phases):
        where = f"mixture.{phase_label(p, ph.name)}"
        assert len(ph.weights) == num_sources, (where, ph.weights)
        if not all(w >= 0 and math.isfinite(w) for w in ph.weights) or not any(ph.weights):
            raise PlanError(f"{where}: weights must be >= 0 with one > 0, got {list(ph.weights)}")
        last = p == len(phases) - 1
        if last and ph.until is not None:
            raise PlanError(f"{where}: the last phase runs to the end of the plan: no `until`")
        if not last and not (ph.until is not None and previous < ph.until < 1):
            raise PlanError(
                f"{where}: `until` must be in ({previous:g}, 1) (after the previous phase's),"
                f" got {ph.until}"
            )
        previous = ph.until or previous


def check_lengths(phases, total: int) -> None:
    """Refuse a phase that covers no sample (its `until` rounds onto the previous boundary)."""
    start = 0
    for p, ph in enumerate(phases):
        if ph.end == start:
            raise PlanError(
                f"mixture.{phase_label(p, ph.name)}: covers no sample (it ends at sample"
                f" {ph.end:,} of {total:,}, where it starts); raise mixture.samples or move"
                " `until` further from the previous phase's"
            )
        start = ph.end


def check_epochs(srcs, phases, limits, overrides) -> None:
    """Refuse a source repeated more than its limit (``limits[s]``; ``overrides[s]`` set when it
    is the source's own ``max_epochs``), naming the phase that pushes it over."""
    for s, src in enumerate(srcs):
        limit = limits[s]
        if limit is None or src.epochs <= limit:
            continue
        key = "mixture.max_epochs" if overrides[s] is None else f"sources.{src.name}.max_epochs"
        need = int(src.num_samples / limit) + 1
        where = _pushing_phase(src, s, phases, limit) if phases else ""
        fix = f"lower its weight{' there' if phases else ''} or the total"
        raise PlanError(
            f"sources.{src.name}: the plan repeats it {src.epochs:.2f} times"
            f" ({src.num_samples:,} samples from {src.num_blocks:,} blocks), more than {key}"
            f" {limit:g}{where}; {fix}, give it >= {need:,} blocks of data, or raise max_epochs"
        )


def _pushing_phase(src, s: int, phases, limit: float) -> str:
    """ "; mixture.phases[1] (main) (samples 500-8,999) takes it from 0.80 to 4.20 times"."""
    seen, start = 0, 0
    for p, ph in enumerate(phases):
        after = seen + ph.counts[s]
        if after / src.num_blocks > limit:
            return (
                f"; mixture.{phase_label(p, ph.name)} (samples {start:,}-{ph.end - 1:,}) takes it"
                f" from {seen / src.num_blocks:.2f} to {after / src.num_blocks:.2f} times"
            )
        seen, start = after, ph.end
    raise AssertionError("the limit is exceeded by the whole plan, so by one of its phases")
