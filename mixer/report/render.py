"""`mixer stats` for a reader: the summary (`mixer.report.summary`) as tables and lines."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from mixer.report.built import taken_line
from mixer.report.journal import render_journal
from mixer.report.summary import SourceSummary, SplitCounts, Summary

_COLUMNS = (
    "source",
    "split",
    "weight",
    "docs",
    "tokens",
    "blocks",
    "samples",
    "samples %",
    "tokens %",
    "loss %",
    "epochs",
    "dropped",
    "padding",
    "cut docs",
    "loss tokens",
)


def render_table(summary: Summary, console: Console) -> None:
    """The sources table, the phases table (with phases), takes, skips, consumption, warnings."""
    console.print(source_table(summary))
    if summary.weights_in == "tokens":
        console.print(
            f"weights in loss tokens: {len(summary.phases):,} segments of exact counts (loss %"
            " is each source's share of the labels scored)",
            highlight=False,
        )
    elif len(summary.phases) > 1:
        console.print(phase_table(summary))
    render_journal(list(summary.journal), console)
    for name, s in summary.sources.items():
        if s.take is not None:
            console.print(f"{name}: {taken_line(s.take)}", highlight=False, soft_wrap=True)
        if s.skipped:
            counts = ", ".join(f"{k} {v:,}" for k, v in s.skipped.items())
            console.print(f"{name}: skipped {counts}", highlight=False)
    if summary.consumed is not None:
        parts = [
            f"{k} {v['samples']:,} samples / {v['tokens']:,} tokens"
            for k, v in summary.consumed.items()
        ]
        where = ""
        if len(summary.phases) > 1:
            ph = summary.phases[summary.at_phase]
            where = f" (in {ph.label}, samples {ph.start:,}-{ph.end - 1:,})"
        line = f"consumed by sample {summary.at_sample:,}{where}: " + "; ".join(parts)
        console.print(line, highlight=False)
    for w in summary.warnings:
        console.print(f"[yellow]warning[/]: {w}", highlight=False)


def source_table(summary: Summary) -> Table:
    """A train and a val row per source, then the train totals."""
    t = summary.tokenizer
    table = Table(
        title=f"{summary.name}: {summary.total_samples:,} samples of {summary.seq_len}"
        f" tokens, seed {summary.seed}",
        caption=f"tokenizer {t['kind']} {t['name']} (vocab {t['vocab_size']:,}, {t['dtype']},"
        f" bos {t['bos_id']}, eos {t['eos_id']})",
    )
    for col in _COLUMNS:
        table.add_column(col, justify="left" if col in ("source", "split") else "right")
    for name, s in summary.sources.items():
        weight = "phases" if s.weight is None else f"{s.weight:g}"
        table.add_row(name, "train", weight, *_counts(s), *_served(s), *_losses(s))
        table.add_row("", "val", "", *_counts(s.val), "", "", "", "", "", *_losses(s.val))
    srcs = summary.sources.values()
    totals = (sum(getattr(s, k) for s in srcs) for k in ("documents", "tokens", "blocks"))
    table.add_section()
    table.add_row(
        "total",
        "train",
        "",
        *(f"{n:,}" for n in totals),
        f"{summary.total_samples:,}",
        "100.0",
        "100.0",
        "100.0",
        "",
        "",
        "",
        "",
        "",
    )
    return table


def _counts(s: SourceSummary | SplitCounts) -> tuple[str, str, str]:
    return f"{s.documents:,}", f"{s.tokens:,}", f"{s.blocks:,}"


def _served(s: SourceSummary) -> tuple[str, ...]:
    return (
        f"{s.samples:,}",
        f"{100 * s.samples_share:.1f}",
        f"{100 * s.tokens_share:.1f}",
        "?" if s.loss_share is None else f"{100 * s.loss_share:.1f}",
        f"{s.epochs:.2f}",
    )


def _losses(s: SourceSummary | SplitCounts) -> tuple[str, ...]:
    """Dropped and padding tokens, and the ledger's cut documents and loss tokens ("?": a
    build older than the ledger)."""
    ledger = (s.documents_cut, s.loss_tokens)
    return (
        f"{s.dropped_tokens:,}",
        f"{s.padding_tokens:,}",
        *("?" if n is None else f"{n:,}" for n in ledger),
    )


def phase_table(summary: Summary) -> Table:
    """A row block per phase (each source's weight, samples, share of the phase and epochs by
    its end), then each source's totals over the plan."""
    phases = summary.phases
    table = Table(title=f"{len(phases)} phases over {summary.total_samples:,} samples")
    for col in ("phase", "global samples", "source", "weight", "samples", "share %", "epochs"):
        table.add_column(col, justify="left" if col in ("phase", "source") else "right")
    for ph in phases:
        for i, (name, s) in enumerate(ph.sources.items()):
            table.add_row(
                ph.label if i == 0 else "",
                f"{ph.start:,}-{ph.end - 1:,}" if i == 0 else "",
                name,
                f"{s.weight:g}" if s.weight else "-",
                f"{s.samples:,}",
                f"{100 * s.share:.1f}",
                f"{s.epochs:.2f}",
            )
        table.add_section()
    for i, (name, s) in enumerate(summary.sources.items()):
        table.add_row(
            "whole plan" if i == 0 else "",
            f"0-{summary.total_samples - 1:,}" if i == 0 else "",
            name,
            "",
            f"{s.samples:,}",
            f"{100 * s.samples_share:.1f}",
            f"{s.epochs:.2f}",
        )
    table.caption = "share %: of the phase's samples; epochs: passes over the source by its end"
    return table
