"""Steering a plan: amendments and skips at a global sample, and the lineage of a position.

Pure functions from a plan to the next one (``mixer amend`` / ``mixer skip`` write them):

- ``amend(plan, at=S, ...)``: samples [0, S) are served as before (the plan's segments are cut at
  S, nothing before S changes); from S the new weights (or a new recipe's phases) are allocated
  over [S, N') by largest remainder and evenly interleaved, and each source's samples keep their
  numbering, so every source continues the pass it is in. Journal entries at or after S are
  replaced (rolling back to an earlier checkpoint and steering differently).
- ``skip(plan, start=A, end=B)``: the source at every position stays the unskipped plan's (so
  are the per-source counts at every prefix); the range of each source's numbering that [A, B)
  would have served is passed over (`mixer.plan.skips`): those blocks are never served in
  their pass, and the slots from A on are filled by the next ones. Later entries are kept.

A resume state names the **lineage** of its position p: the base plan (before any amendment)
and the journal entries before p, which together fix the samples [0, p). A state resumes on
any plan with the same lineage at p, so a checkpoint at or before an amendment resumes on the
amended plan, and one past it is refused.
"""

from __future__ import annotations

from dataclasses import replace

from mixer.errors import PlanError
from mixer.identity import digest
from mixer.plan.allocate import allocate
from mixer.plan.limits import check_epochs
from mixer.plan.phases import Amendment, Phase, PhaseWeights, phase_ends
from mixer.typed import to_json


def lineage(plan, p: int) -> str:
    """What fixes the samples [0, p): the base plan's fingerprint, and the entries before p."""
    base = plan.base or plan.fingerprint
    entries = [to_json(e) for e in plan.journal if e.at < p]
    return base if not entries else digest({"base": base, "journal": entries})


def last_change_before(plan, p: int) -> Amendment | None:
    """The latest journal entry before p (None if the samples [0, p) were never steered)."""
    before = [e for e in plan.journal if e.at < p]
    return before[-1] if before else None


def weights_at(plan, at: int, given: dict[str, float], what: str = "--weights") -> list[float]:
    """The weight vector (plan order) for a change at ``at``: ``given`` for the sources it names,
    the weight in force at ``at`` for the others; PlanError for unknown names, negative,
    non-finite or all-zero weights."""
    names = [s.name for s in plan.sources]
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise PlanError(
            f"{what}: no source {unknown[0]!r} in the build (sources: {', '.join(names)});"
            " to add one, amend with --recipe"
        )
    for name, v in given.items():
        if not isinstance(v, (int, float)) or not (0 <= v < float("inf")):
            raise PlanError(f"{what}: {name}={v} must be a finite number >= 0")
    at = min(at, plan.total - 1) if plan.total else 0
    current = plan.spans[plan.phase_of(at)].weights
    vector = [float(given.get(n, w)) for n, w in zip(names, current, strict=True)]
    if not any(vector):
        raise PlanError(f"{what}: every source would have weight 0 ({given}); keep one > 0")
    return vector


def cut(plan, at: int) -> list[Phase]:
    """The plan's segments covering [0, at), the one holding ``at`` cut short there."""
    out, start = [], 0
    for ph in plan.spans:
        if start >= at:
            break
        out.append(ph if ph.end <= at else replace(ph, end=at))
        start = ph.end
    return out


def with_sources(plan, added) -> tuple:
    """The plan's sources, then ``added`` (SourcePlan records), each phase's vectors padded."""
    if not added:
        return plan.sources, list(plan.spans)
    pad = (0,) * len(added)
    phases = [
        replace(
            ph,
            weights=(*ph.weights, *(0.0,) * len(added)),
            counts=(*ph.counts, *pad),
        )
        for ph in plan.spans
    ]
    return (*plan.sources, *added), phases


def amend(
    plan,
    *,
    at: int,
    entry: Amendment,
    weights: list[float] | None = None,
    phases: list[PhaseWeights] | None = None,
    total: int | None = None,
    added=(),
    manifest: str | None = None,
    limits: list[float | None] | None = None,
):
    """The plan served as before on [0, at), then by ``weights`` (one per source, the added
    ones last) or ``phases`` (a recipe's, over the whole new total) up to ``total``."""
    total = plan.total if total is None else total
    if not 0 <= at <= plan.total:
        raise PlanError(f"--at-sample {at:,} is outside the plan's [0, {plan.total:,}]")
    if total < at:
        raise PlanError(f"--samples {total:,} is before the amendment at sample {at:,}")
    sources, spans = with_sources(plan, added)
    kept = cut(replace(plan, sources=sources, phases=tuple(spans)), at)
    new = _new_phases(at, total, weights, phases, len(sources))
    base = plan.base or plan.fingerprint
    names = [s.name for s in sources]
    entry = replace(
        entry,
        at=at,
        kind="amend",
        total=total,
        before=plan.fingerprint,
        weights=dict(zip(names, map(float, weights), strict=True)) if weights is not None else None,
    )
    journal = (*(e for e in plan.journal if e.at < at), entry)
    out = replace(
        plan,
        manifest=manifest or plan.manifest,
        sources=sources,
        phases=tuple(kept + new),
        total=total,
        journal=journal,
        base=base,
    )
    return _settled(out, limits)


def skip(plan, *, start: int, end: int, entry: Amendment, limits=None):
    """Pass over the blocks the plan would serve in [start, end) (see the module docstring)."""
    if not 0 <= start < end <= plan.total:
        raise PlanError(
            f"skip range [{start:,}, {end:,}) must be non-empty and inside the plan's"
            f" [0, {plan.total:,})"
        )
    last = max((e.at for e in plan.journal), default=0)
    if start < last:  # else samples before this entry's would depend on a later one
        kind = next(e.kind for e in reversed(plan.journal) if e.at == last)
        raise PlanError(
            f"skip at sample {start:,} is before the journal's {kind} at sample {last:,}: amend"
            f" at {start:,} first (it replaces the later changes), then skip"
        )
    c = plan.counts_many([start, end])
    passed = {}
    for s, (a, b) in enumerate(zip(c[0].tolist(), c[1].tolist(), strict=True)):
        if b > a:
            k = plan.skipped[s].k_of([a, b - 1])
            passed[plan.sources[s].name] = (int(k[0]), int(k[1]) + 1)
    entry = replace(entry, at=start, kind="skip", end=end, passed=passed, before=plan.fingerprint)
    journal = tuple(sorted((*plan.journal, entry), key=lambda e: e.at))
    new = replace(plan, journal=journal, base=plan.base or plan.fingerprint)
    return _settled(new, limits)


def _new_phases(at, total, weights, phases, num_sources) -> list[Phase]:
    if total == at:
        return []
    if phases is None:
        w = tuple(float(x) for x in weights)
        _check_weights(w, num_sources)
        return [Phase(name=None, until=None, end=total, weights=w, counts=_alloc(w, total - at))]
    out = []
    ends = phase_ends([p.until for p in phases], total)
    for p, start, end in zip(phases, (0, *ends[:-1]), ends, strict=True):
        a = max(start, at)
        if end <= a:
            continue
        w = tuple(float(x) for x in p.weights)
        _check_weights(w, num_sources)
        out.append(Phase(name=p.name, until=p.until, end=end, weights=w, counts=_alloc(w, end - a)))
    return out


def _alloc(w, n: int) -> tuple[int, ...]:
    return tuple(allocate(w, n))


def _check_weights(w, num_sources: int) -> None:
    assert len(w) == num_sources, (w, num_sources)
    if any(x < 0 for x in w) or not any(w):
        raise PlanError(f"weights must be >= 0 with one > 0, got {list(w)}")


def _settled(plan, limits):
    """Per-source totals and shares recomputed from the segments; the repetition guard."""
    served = plan.counts_many([plan.total])[0].tolist()
    total = plan.total
    sources = tuple(
        replace(s, num_samples=n, weight=n / total if total else 0.0)
        for s, n in zip(plan.sources, served, strict=True)
    )
    plan = replace(plan, sources=sources)
    if limits is not None:
        consumed = [
            replace(s, num_samples=k) for s, k in zip(sources, plan.consumed(), strict=True)
        ]
        check_epochs(consumed, (), limits, [None] * len(limits))
    return plan
