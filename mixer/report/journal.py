"""The plan's journal as `mixer stats` shows it: each amendment and skip, with what each source
had consumed when it was made and what it has left to serve."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def journal_summary(plan) -> list[dict]:
    """Per entry: ``at``, ``kind``, ``end`` (skips), ``note``, ``time``, ``weights`` (amend),
    ``skipped_blocks`` {source: blocks passed over} (skip), and per source ``consumed`` (samples
    served before ``at``) and ``remaining`` (served from ``at`` to the end of the plan)."""
    if not plan.journal:
        return []
    names = [s.name for s in plan.sources]
    at = plan.counts_many([e.at for e in plan.journal])
    total = [s.num_samples for s in plan.sources]
    out = []
    for e, row in zip(plan.journal, at.tolist(), strict=True):
        out.append(
            {
                "at": e.at,
                "kind": e.kind,
                "end": e.end,
                "note": e.note,
                "time": e.time,
                "weights": e.weights,
                "skipped_blocks": {n: b - a for n, (a, b) in (e.passed or {}).items()},
                "consumed": dict(zip(names, row, strict=True)),
                "remaining": {n: t - c for n, t, c in zip(names, total, row, strict=True)},
            }
        )
    return out


def render_journal(rows: list[dict], console: Console) -> None:
    if not rows:
        return
    table = Table(title="journal: amendments and skips (samples consumed / remaining)")
    for col in ("at sample", "change", "per source", "note"):
        table.add_column(col, justify="right" if col == "at sample" else "left")
    for r in rows:
        if r["kind"] == "skip":
            change = f"skip {r['at']:,}-{r['end'] - 1:,}: " + ", ".join(
                f"{n} {b:,} blocks" for n, b in r["skipped_blocks"].items()
            )
        else:
            change = "weights " + ", ".join(f"{n}={w:g}" for n, w in (r["weights"] or {}).items())
        per = ", ".join(f"{n} {c:,}/{r['remaining'][n]:,}" for n, c in r["consumed"].items())
        table.add_row(f"{r['at']:,}", change, per, r["note"] or "")
    console.print(table)
