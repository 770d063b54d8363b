"""`make_plan`: allocate a mixture over the built blocks, check it, and freeze it as a `Plan`."""

from __future__ import annotations

from mixer.errors import PlanError
from mixer.plan.core import Plan, SourcePlan
from mixer.plan.limits import check_epochs, check_lengths, check_phases
from mixer.plan.phases import Phase, PhaseWeights, planned_samples


def make_plan(
    *,
    manifest: str,
    split: str,
    seed: int,
    seq_len: int,
    names: list[str],
    blocks: list[int],
    shard_sizes: list[tuple[int, ...]],
    padding: list[int],
    weights: list[float] | None = None,
    phases: list[PhaseWeights] | None = None,
    total: int | None = None,
    max_epochs: float | None = None,
    source_max_epochs: list[float | None] | None = None,
    shuffle: str = "blocks",
    window: int = 8,
) -> Plan:
    """Allocate, check and freeze a plan; PlanError names the source, the numbers and fixes.

    Give ``weights`` (one per source) or ``phases``; a single phase is the same plan as its
    weights alone (same order, same fingerprint). ``source_max_epochs`` overrides
    ``max_epochs`` per source (None: the mixture's).
    """
    _check_blocks(names, blocks, split, seq_len)
    if phases is not None:
        check_phases(phases, len(names))
        if len(phases) == 1:
            weights, phases = list(phases[0].weights), None
    alloc = planned_samples(weights=weights, phases=phases, blocks=blocks, total=total)
    total = alloc.total
    counts = alloc.per_source
    if phases is not None:
        weights = [c / total if total else 0.0 for c in counts]
    srcs = _source_plans(names, weights, blocks, counts, shard_sizes, padding)
    records = ()
    if phases is not None:
        records = tuple(
            Phase(name=p.name, until=p.until, end=e, weights=tuple(p.weights), counts=c)
            for p, e, c in zip(phases, alloc.ends, alloc.counts, strict=True)
        )
    check_lengths(records, total)
    limits = source_max_epochs or [None] * len(names)
    check_epochs(srcs, records, [max_epochs if x is None else x for x in limits], limits)
    return Plan(
        manifest=manifest,
        split=split,
        seed=seed,
        seq_len=seq_len,
        total=total,
        sources=srcs,
        shuffle=shuffle,
        window=window,
        phases=records,
    )


def _check_blocks(names, blocks, split: str, seq_len: int) -> None:
    for name, b in zip(names, blocks, strict=True):
        if b == 0:
            raise PlanError(
                f"sources.{name}: no {split} blocks to serve (too little text for one block of"
                f" {seq_len} tokens); add data, lower seq_len, or use `remainder: pad`"
            )


def _source_plans(names, weights, blocks, counts, shard_sizes, padding) -> tuple[SourcePlan, ...]:
    rows = zip(names, weights, blocks, counts, shard_sizes, padding, strict=True)
    return tuple(
        SourcePlan(
            name=nm,
            weight=w,
            num_blocks=b,
            num_samples=c,
            shard_sizes=tuple(ss),
            padding_tokens=pad,
        )
        for nm, w, b, c, ss, pad in rows
    )
