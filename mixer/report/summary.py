"""What a build holds and what its plan will serve, as typed records: `mixer stats`.

Everything here is arithmetic on the manifest and the plan: no shard is read. The records'
JSON (`Summary.to_json`) is the stable output of ``mixer stats --json``; their rendering as
tables is `mixer.report.render`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from mixer.artifacts.ledger import block_loss, read_padding
from mixer.artifacts.manifest import Manifest
from mixer.errors import UsageError
from mixer.plan import Plan
from mixer.plan.limits import phase_label
from mixer.plan.tokens import served_sum
from mixer.report.journal import journal_summary
from mixer.typed import to_json

REPEAT_WARNING = 4  # epochs beyond which repeating a source is risky
_TOKENIZER_KEYS = ("kind", "name", "vocab_size", "bos_id", "eos_id", "dtype")


@dataclass(frozen=True, kw_only=True)
class SplitCounts:
    """A source's split as built: documents, tokens, blocks, tokens dropped or padded."""

    documents: int
    tokens: int
    blocks: int
    dropped_tokens: int
    padding_tokens: int
    documents_cut: int | None = None  # the ledger's (None: a build older than it)
    loss_tokens: int | None = None


@dataclass(frozen=True, kw_only=True)
class SourceSummary:
    """A source: its train split's counts at the top level (JSON as `mixer stats` has always
    written it), what the plan serves of it, its validation split and its take."""

    weight: float | None  # None with phases: the phases hold the weights
    documents: int
    tokens: int
    blocks: int
    dropped_tokens: int
    padding_tokens: int
    skipped: dict[str, int]
    samples: int
    samples_share: float
    tokens_share: float
    epochs: float
    passes: int
    val: SplitCounts
    take: dict | None  # the manifest's take record, or None without `take:`
    documents_cut: int | None = None  # the train split's ledger (None: unknown, an old build)
    loss_tokens: int | None = None
    loss_share: float | None = None  # of the loss tokens the plan serves (None: not readable)


@dataclass(frozen=True, kw_only=True)
class PhaseSource:
    weight: float
    samples: int
    share: float  # of the phase's samples
    epochs: float  # passes over the source's blocks by the end of the phase, from the start


@dataclass(frozen=True, kw_only=True)
class PhaseSummary:
    index: int
    name: str | None
    until: float | None
    start: int
    end: int
    samples: int
    sources: dict[str, PhaseSource]

    @property
    def label(self) -> str:
        return phase_label(self.index, self.name)


@dataclass(frozen=True, kw_only=True)
class Summary:
    """A plan without phases has one phase spanning it. With ``at_sample``: the phase it falls
    in and each source's samples and tokens consumed before it."""

    name: str
    seq_len: int
    seed: int
    total_samples: int
    total_tokens: int
    tokenizer: dict
    manifest: str  # fingerprints
    plan: str
    sources: dict[str, SourceSummary]
    phases: tuple[PhaseSummary, ...]
    warnings: tuple[str, ...]
    at_sample: int | None = None
    at_phase: int | None = None
    consumed: dict[str, dict[str, int]] | None = None
    journal: tuple[dict, ...] = ()  # amendments and skips (`mixer.report.journal`)
    weights_in: str | None = None  # "tokens": the plan's phases are its fine segments

    def to_json(self) -> dict:
        return to_json(self)


def summarize(manifest: Manifest, plan: Plan, at_sample: int | None = None) -> Summary:
    """The summary of a build and its plan, and with ``at_sample`` what was consumed before it."""
    served = _counts_at(manifest, plan, plan.total)
    total_tokens = sum(c["tokens"] for c in served.values())
    plans = {s.name: s for s in plan.sources}
    sources = {}
    for name, src in manifest.sources.items():
        sp = plans[name]
        sources[name] = SourceSummary(
            weight=src.weight,
            **_counts(src.train, _ledger(manifest, name, "train")).__dict__,
            skipped=dict(src.skipped),
            samples=sp.num_samples,
            samples_share=sp.num_samples / plan.total if plan.total else 0.0,
            tokens_share=served[name]["tokens"] / total_tokens if total_tokens else 0.0,
            epochs=round(sp.epochs, 6),
            passes=sp.passes,
            val=_counts(src.val, _ledger(manifest, name, "val")),
            take=None if src.take is None else to_json(src.take),
        )
    shares = _loss_shares(manifest, plan)
    sources = {n: replace(s, loss_share=shares.get(n)) for n, s in sources.items()}
    phases = tuple(phase_summary(plan, list(sources)))
    if at_sample is not None and not 0 <= at_sample <= plan.total:
        raise UsageError(f"sample {at_sample:,} is beyond the plan's {plan.total:,} samples")
    tok = manifest.tokenizer
    return Summary(
        name=manifest.name,
        seq_len=manifest.seq_len,
        seed=manifest.seed,
        total_samples=plan.total,
        total_tokens=total_tokens,
        tokenizer={k: getattr(tok, k) for k in _TOKENIZER_KEYS},
        manifest=manifest.fingerprint,
        plan=plan.fingerprint,
        sources=sources,
        phases=phases,
        warnings=tuple(warnings(sources, manifest.sources, phases)),
        at_sample=at_sample,
        at_phase=None if at_sample is None else plan.phase_of(at_sample),
        consumed=None if at_sample is None else _counts_at(manifest, plan, at_sample),
        journal=tuple(journal_summary(plan)),
        weights_in=plan.weights_in,
    )


def _counts_at(manifest: Manifest, plan: Plan, n: int) -> dict:
    """Samples and tokens per source in the first n samples, best-fit padding taken out when
    its file is here (a local build; a remote one counts it as tokens, as the plan does)."""
    out = plan.counts_at(n)
    for s, p in enumerate(plan.sources):
        rec, folder = manifest.split(p.name, "train"), manifest.split_dir(p.name, "train")
        if rec.padding is not None:
            try:
                pads = read_padding(folder / rec.padding.file, rec.blocks)
            except (OSError, ValueError):
                continue
            out[p.name]["tokens"] -= served_sum(plan, s, pads, out[p.name]["samples"])
    return out


def _loss_shares(manifest: Manifest, plan: Plan) -> dict[str, float]:
    """Each source's share of the loss tokens the plan serves (`MixerCollator`'s labels);
    empty when a best-fit source's padding file cannot be read here (a remote build)."""
    try:
        loss = {p.name: block_loss(manifest, p.name) for p in plan.sources}
    except OSError:
        return {}
    served = {
        p.name: served_sum(plan, s, loss[p.name], p.num_samples) for s, p in enumerate(plan.sources)
    }
    total = sum(served.values())
    return {n: v / total if total else 0.0 for n, v in served.items()}


def _counts(split, ledger) -> SplitCounts:
    return SplitCounts(
        documents=split.documents,
        tokens=split.tokens,
        blocks=split.blocks,
        dropped_tokens=split.dropped_tokens,
        padding_tokens=split.padding_tokens,
        documents_cut=None if ledger is None else ledger.documents_cut,
        loss_tokens=None if ledger is None else ledger.loss_tokens,
    )


def _ledger(manifest: Manifest, name: str, split: str):
    """A split's ledger (`mixer.artifacts.ledger`), or None for a build older than it."""
    return (manifest.ledger or {}).get(name, {}).get(split)


def phase_summary(plan: Plan, names: list[str]) -> list[PhaseSummary]:
    """Per phase: its span and, per source (in the order of ``names``), weight, samples, share
    of the phase, and epochs (passes over its blocks) reached by the end of the phase."""
    out, seen = [], [0] * len(plan.sources)
    index = {src.name: s for s, src in enumerate(plan.sources)}
    ranges = [plan.phase_range(p) for p in range(len(plan.spans))]
    at = plan.counts_many([a for a, _ in ranges] + [plan.total])  # served: phases may be cut
    for p, ph in enumerate(plan.spans):
        start, end = ranges[p]
        srcs = {}
        for name in names:
            s, src = index[name], plan.sources[index[name]]
            n = int(at[p + 1][s] - at[p][s])
            seen[s] += n
            srcs[name] = PhaseSource(
                weight=ph.weights[s],
                samples=n,
                share=n / (end - start) if end > start else 0.0,
                epochs=round(seen[s] / src.num_blocks, 6),
            )
        out.append(
            PhaseSummary(
                index=p,
                name=ph.name,
                until=ph.until,
                start=start,
                end=end,
                samples=end - start,
                sources=srcs,
            )
        )
    return out


def _crossing(phases, name: str, epochs: float) -> str:
    """ ", phases[1] (main) takes it past 4": the phase whose end first exceeds ``epochs``."""
    if len(phases) < 2:
        return ""
    p = next(ph for ph in phases if ph.sources[name].epochs > epochs)
    return f", {p.label} takes it past {epochs:g}"


def warnings(sources: dict[str, SourceSummary], built: dict, phases) -> list[str]:
    """Risky plans in plain words; with phases, the phase that causes a repetition."""
    out = []
    least = min((s.epochs for s in sources.values()), default=0)
    for name, s in sources.items():
        if s.epochs > REPEAT_WARNING:
            out.append(
                f"{name} is repeated {s.epochs:.1f} times (more than {REPEAT_WARNING}"
                f"{_crossing(phases, name, REPEAT_WARNING)}): models degrade when small data"
                " repeats; add data, lower its weight or the total"
            )
        if least and s.epochs >= 2 * least and s.epochs > 1:
            weight = "" if s.weight is None else f" {s.weight:g}"
            out.append(
                f"{name} has too little data for its weight{weight}: it repeats"
                f" {s.epochs:.1f} times while another source repeats {least:.1f} times"
                f"{_crossing(phases, name, 1)}"
            )
        policy = built[name].validation
        if not (policy.docs or policy.fraction):
            out.append(f"{name} has no validation split: its loss cannot be watched (validation:)")
        elif s.val.blocks == 0:
            out.append(
                f"{name}'s validation split is empty ({s.val.tokens:,} held-out tokens make"
                " no block): hold out more documents or use `remainder: pad`"
            )
    return out
