"""What a build holds and what its plan will serve: manifest + plan, as JSON or a table.

Everything here is arithmetic on the manifest and the plan: no shard is read.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from mixer.artifacts.manifest import Manifest
from mixer.errors import UsageError
from mixer.plan import Plan
from mixer.report.built import taken_line
from mixer.typed import to_json

REPEAT_WARNING = 4  # epochs beyond which repeating a source is risky
_SPLIT_KEYS = ("documents", "tokens", "blocks", "dropped_tokens", "padding_tokens")


def summarize(manifest: Manifest, plan: Plan, at_sample: int | None = None) -> dict:
    """The stable JSON of `mixer stats --json` (a source's top-level numbers: its train split).

    Shape: {"name", "seq_len", "seed", "total_samples", "total_tokens", "tokenizer",
    "manifest", "plan", "sources": {NAME: {"weight", "documents", "tokens", "blocks",
    "dropped_tokens", "padding_tokens", "skipped", "samples", "samples_share", "tokens_share",
    "epochs", "passes", "val": {"documents", "tokens", "blocks", "dropped_tokens",
    "padding_tokens"}, "take"}}, "phases": [{"index", "name", "until", "start", "end", "samples",
    "sources": {NAME: {"weight", "samples", "share", "epochs"}}}], "warnings": [str], and with
    at_sample: "at_sample", "at_phase", "consumed": {NAME: {"samples", "tokens"}}}.

    A plan without phases has one phase spanning it. A phase's ``share`` is of the phase's
    samples; its ``epochs`` are the source's passes at the end of the phase, counted from the
    start of the plan. With phases, a source's ``weight`` is null (the phases hold them).
    ``take`` is null, or the manifest's record of what a source with ``take:`` took.
    """
    served = plan.counts_at(plan.total)
    total_tokens = sum(c["tokens"] for c in served.values())
    plans = {s.name: s for s in plan.sources}
    sources = {}
    for name, src in manifest.sources.items():
        sp = plans[name]
        sources[name] = {
            "weight": src.weight,
            **{k: getattr(src.train, k) for k in _SPLIT_KEYS},
            "skipped": src.skipped,
            "samples": sp.num_samples,
            "samples_share": sp.num_samples / plan.total if plan.total else 0.0,
            "tokens_share": served[name]["tokens"] / total_tokens if total_tokens else 0.0,
            "epochs": round(sp.epochs, 6),
            "passes": sp.passes,
            "val": {k: getattr(src.val, k) for k in _SPLIT_KEYS},
            "take": None if src.take is None else to_json(src.take),
        }
    tok = manifest.tokenizer
    out = {
        "name": manifest.name,
        "seq_len": manifest.seq_len,
        "seed": manifest.seed,
        "total_samples": plan.total,
        "total_tokens": total_tokens,
        "tokenizer": {
            k: getattr(tok, k) for k in ("kind", "name", "vocab_size", "bos_id", "eos_id", "dtype")
        },
        "manifest": manifest.fingerprint,
        "plan": plan.fingerprint,
        "sources": sources,
        "phases": phase_summary(plan, list(sources)),
        "warnings": [],
    }
    out["warnings"] = warnings(sources, manifest.sources, out["phases"])
    if at_sample is not None:
        if not 0 <= at_sample <= plan.total:
            raise UsageError(f"sample {at_sample:,} is beyond the plan's {plan.total:,} samples")
        out["at_sample"] = at_sample
        out["at_phase"] = plan.phase_of(at_sample)
        out["consumed"] = plan.counts_at(at_sample)
    return out


def phase_summary(plan: Plan, names: list[str]) -> list[dict]:
    """Per phase: its span and, per source (in the order of ``names``), weight, samples, share
    of the phase, and epochs (passes over its blocks) reached by the end of the phase."""
    out, seen = [], [0] * len(plan.sources)
    index = {src.name: s for s, src in enumerate(plan.sources)}
    for p, ph in enumerate(plan.spans):
        start, end = plan.phase_range(p)
        srcs = {}
        for name in names:
            s, src = index[name], plan.sources[index[name]]
            seen[s] += ph.counts[s]
            srcs[name] = {
                "weight": ph.weights[s],
                "samples": ph.counts[s],
                "share": ph.counts[s] / (end - start) if end > start else 0.0,
                "epochs": round(seen[s] / src.num_blocks, 6),
            }
        out.append(
            {
                "index": p,
                "name": ph.name,
                "until": ph.until,
                "start": start,
                "end": end,
                "samples": end - start,
                "sources": srcs,
            }
        )
    return out


def _crossing(phases: list[dict], name: str, epochs: float) -> str:
    """ ", phases[1] (main) takes it past 4": the phase whose end first exceeds ``epochs``."""
    if len(phases) < 2:
        return ""
    p = next(ph for ph in phases if ph["sources"][name]["epochs"] > epochs)
    label = f"phases[{p['index']}]" + (f" ({p['name']})" if p["name"] else "")
    return f", {label} takes it past {epochs:g}"


def warnings(sources: dict, built: dict, phases: list[dict]) -> list[str]:
    """Risky plans in plain words; with phases, the phase that causes a repetition."""
    out = []
    least = min((s["epochs"] for s in sources.values()), default=0)
    for name, s in sources.items():
        if s["epochs"] > REPEAT_WARNING:
            out.append(
                f"{name} is repeated {s['epochs']:.1f} times (more than {REPEAT_WARNING}"
                f"{_crossing(phases, name, REPEAT_WARNING)}): models degrade when small data"
                " repeats; add data, lower its weight or the total"
            )
        if least and s["epochs"] >= 2 * least and s["epochs"] > 1:
            weight = "" if s["weight"] is None else f" {s['weight']:g}"
            out.append(
                f"{name} has too little data for its weight{weight}: it repeats"
                f" {s['epochs']:.1f} times while another source repeats {least:.1f} times"
                f"{_crossing(phases, name, 1)}"
            )
        policy = built[name].validation
        if not (policy.docs or policy.fraction):
            out.append(f"{name} has no validation split: its loss cannot be watched (validation:)")
        elif s["val"]["blocks"] == 0:
            out.append(
                f"{name}'s validation split is empty ({s['val']['tokens']:,} held-out tokens make"
                " no block): hold out more documents or use `remainder: pad`"
            )
    return out


def render_table(summary: dict, console: Console) -> None:
    """The human view of :func:`summarize`."""
    t = summary["tokenizer"]
    table = Table(
        title=f"{summary['name']}: {summary['total_samples']:,} samples of {summary['seq_len']}"
        f" tokens, seed {summary['seed']}",
        caption=f"tokenizer {t['kind']} {t['name']} (vocab {t['vocab_size']:,}, {t['dtype']},"
        f" bos {t['bos_id']}, eos {t['eos_id']})",
    )
    cols = (
        "source",
        "split",
        "weight",
        "docs",
        "tokens",
        "blocks",
        "samples",
        "samples %",
        "tokens %",
        "epochs",
        "dropped",
        "padding",
    )
    for col in cols:
        table.add_column(col, justify="left" if col in ("source", "split") else "right")
    for name, s in summary["sources"].items():
        table.add_row(
            name,
            "train",
            "phases" if s["weight"] is None else f"{s['weight']:g}",
            f"{s['documents']:,}",
            f"{s['tokens']:,}",
            f"{s['blocks']:,}",
            f"{s['samples']:,}",
            f"{100 * s['samples_share']:.1f}",
            f"{100 * s['tokens_share']:.1f}",
            f"{s['epochs']:.2f}",
            f"{s['dropped_tokens']:,}",
            f"{s['padding_tokens']:,}",
        )
        v = s["val"]
        table.add_row(
            "",
            "val",
            "",
            f"{v['documents']:,}",
            f"{v['tokens']:,}",
            f"{v['blocks']:,}",
            "",
            "",
            "",
            "",
            f"{v['dropped_tokens']:,}",
            f"{v['padding_tokens']:,}",
        )
    srcs = summary["sources"].values()
    table.add_section()
    table.add_row(
        "total",
        "train",
        "",
        f"{sum(s['documents'] for s in srcs):,}",
        f"{sum(s['tokens'] for s in srcs):,}",
        f"{sum(s['blocks'] for s in srcs):,}",
        f"{summary['total_samples']:,}",
        "100.0",
        "100.0",
        "",
        "",
        "",
    )
    console.print(table)
    if len(summary["phases"]) > 1:
        console.print(phase_table(summary))
    for name, s in summary["sources"].items():
        if s["take"] is not None:
            console.print(f"{name}: {taken_line(s['take'])}", highlight=False, soft_wrap=True)
        if s["skipped"]:
            counts = ", ".join(f"{k} {v:,}" for k, v in s["skipped"].items())
            console.print(f"{name}: skipped {counts}", highlight=False)
    if "consumed" in summary:
        n = summary["at_sample"]
        parts = [
            f"{k} {v['samples']:,} samples / {v['tokens']:,} tokens"
            for k, v in summary["consumed"].items()
        ]
        where = ""
        if len(summary["phases"]) > 1:
            ph = summary["phases"][summary["at_phase"]]
            where = f" (in {_label(ph)}, samples {ph['start']:,}-{ph['end'] - 1:,})"
        console.print(f"consumed by sample {n:,}{where}: " + "; ".join(parts), highlight=False)
    for w in summary["warnings"]:
        console.print(f"[yellow]warning[/]: {w}", highlight=False)


def _label(phase: dict) -> str:
    return f"phases[{phase['index']}]" + (f" ({phase['name']})" if phase["name"] else "")


def phase_table(summary: dict) -> Table:
    """A row block per phase (each source's weight, samples, share of the phase and epochs by
    its end), then each source's totals over the plan."""
    phases = summary["phases"]
    table = Table(title=f"{len(phases)} phases over {summary['total_samples']:,} samples")
    for col in ("phase", "global samples", "source", "weight", "samples", "share %", "epochs"):
        table.add_column(col, justify="left" if col in ("phase", "source") else "right")
    for ph in phases:
        for i, (name, s) in enumerate(ph["sources"].items()):
            table.add_row(
                _label(ph) if i == 0 else "",
                f"{ph['start']:,}-{ph['end'] - 1:,}" if i == 0 else "",
                name,
                f"{s['weight']:g}" if s["weight"] else "-",
                f"{s['samples']:,}",
                f"{100 * s['share']:.1f}",
                f"{s['epochs']:.2f}",
            )
        table.add_section()
    for i, (name, s) in enumerate(summary["sources"].items()):
        table.add_row(
            "whole plan" if i == 0 else "",
            f"0-{summary['total_samples'] - 1:,}" if i == 0 else "",
            name,
            "",
            f"{s['samples']:,}",
            f"{100 * s['samples_share']:.1f}",
            f"{s['epochs']:.2f}",
        )
    table.caption = "share %: of the phase's samples; epochs: passes over the source by its end"
    return table
