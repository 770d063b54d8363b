"""`make_plan`: allocate a mixture over the built blocks, check it, and freeze it as a `Plan`."""

from __future__ import annotations

import numpy as np

from mixer.errors import PlanError
from mixer.plan.core import Plan, SourcePlan
from mixer.plan.limits import check_epochs, check_lengths, check_phases
from mixer.plan.phases import Phase, PhaseWeights, planned_samples
from mixer.plan.tokens import horizon, served_loss, token_counts


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
    block_loss: list | None = None,
) -> Plan:
    """Allocate, check and freeze a plan; PlanError names the source, the numbers and fixes.

    Give ``weights`` (one per source) or ``phases``; a single phase is the same plan as its
    weights alone (same order, same fingerprint). ``source_max_epochs`` overrides
    ``max_epochs`` per source (None: the mixture's); ``block_loss``: weights in loss tokens.
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
    records, order = (), {"shuffle": shuffle, "window": window, "seed": seed}
    if block_loss is not None:  # per source, each block's loss tokens (`mixer.plan.tokens`)
        counts, records = _token_phases(weights, total, block_loss, names, shard_sizes, order)
    srcs = _source_plans(names, weights, blocks, counts, shard_sizes, padding)
    if phases is not None:
        records = tuple(
            Phase(name=p.name, until=p.until, end=e, weights=tuple(p.weights), counts=c)
            for p, e, c in zip(phases, alloc.ends, alloc.counts, strict=True)
        )
    check_lengths(records, total)
    limits = source_max_epochs or [None] * len(names)  # then the mixture's
    check_epochs(srcs, records, [max_epochs if x is None else x for x in limits], limits)
    return Plan(
        manifest=manifest,
        split=split,
        seed=seed,
        seq_len=seq_len,
        total=total,
        sources=srcs,
        **{k: order[k] for k in ("shuffle", "window")},
        phases=records,
        weights_in="tokens" if block_loss is not None else None,
    )


def _token_phases(weights, total, block_loss, names, shard_sizes, order):
    """Per source, its samples, and the fine segments (as phases) whose counts make the
    weights shares of loss tokens (`mixer.plan.tokens`)."""
    block_loss = [np.asarray(bl, np.int64) for bl in block_loss]
    rows = None
    for ks in (horizon(block_loss, list(weights), total), [total] * len(names)):
        losses = [
            served_loss(bl, k, name=n, sizes=ss, **order)
            for bl, k, n, ss in zip(block_loss, ks, names, shard_sizes, strict=True)
        ]
        try:
            rows, ends = token_counts(list(weights), total, losses)
            break
        except ValueError:  # an estimate fell short (never with `total` each)
            continue
    assert rows is not None
    w = tuple(weights)
    records = tuple(
        Phase(name=None, until=None, end=e, weights=w, counts=c)
        for c, e in zip(rows, ends, strict=True)
    )
    return [int(c) for c in np.sum(rows, axis=0)], records


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
