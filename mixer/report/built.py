"""What `mixer build` prints when it is done: warnings per source, what each ``take`` took,
and the totals (blocks, seconds, what was reused)."""

from __future__ import annotations

from rich.console import Console

from mixer.artifacts.manifest import Manifest
from mixer.typed import to_json


def print_summary(
    console: Console,
    manifest: Manifest,
    *,
    seconds: float,
    reused: int,
    num_units: int,
    linked: tuple[str, ...],
) -> None:
    """``linked``: the sources whose blocks were reused from another build (nothing of theirs
    was read, so they have no warnings and no take to report)."""
    for name, src in manifest.sources.items():
        if name not in linked:
            _warnings(console, name, src, manifest.seq_len)
    total = sum(s.train.blocks + s.val.blocks for s in manifest.sources.values())
    notes = []
    if reused:
        notes.append(f"reused {reused} of {num_units} finished units")
    if linked:
        notes.append(f"reused built source{'s' * (len(linked) > 1)} {', '.join(linked)}")
    note = f" ({'; '.join(notes)})" if notes else ""
    console.print(
        f"built {len(manifest.sources)} sources, {total:,} blocks in {seconds:.1f}s{note}",
        highlight=False,
    )


def _warnings(console: Console, name: str, src, seq_len: int) -> None:
    if src.skipped:
        counts = ", ".join(f"{k} {v}" for k, v in src.skipped.items())
        where = "; ".join(f"{r} at {loc}" for r, loc in src.skipped_examples)
        console.print(
            f"[yellow]warning[/]: {name}: skipped {counts} (first: {where})",
            highlight=False,
            soft_wrap=True,
        )
    for split in ("train", "val"):
        s = src.split(split)
        if s.documents and not s.blocks:
            console.print(
                f"[yellow]warning[/]: {name}/{split}: {s.tokens} tokens make no block of"
                f" {seq_len}; they were dropped (use `remainder: pad` to keep them)",
                highlight=False,
                soft_wrap=True,
            )
    if src.take is not None:
        line = taken_line(to_json(src.take))
        console.print(f"{name}: {line}", highlight=False, soft_wrap=True)


def taken_line(t: dict) -> str:
    """What a source under a take took: "taken 28,222 tokens, 407 documents of the source (take:
    auto: 26,112 train tokens for 400 samples at max_epochs 1 and 8 blocks of margin; read
    49,812 bytes; stopped at web.jsonl.gz byte 49,812)"."""
    b = t["budget"]  # the serialized key keeps its older word (docs/glossary.md)
    why = "take: " + (b if isinstance(b, str) else ", ".join(f"{k} {v:,}" for k, v in b.items()))
    if (need := t.get("need")) is not None:
        why += (
            f": {need['train_tokens']:,} train tokens for {need['samples']:,} samples at"
            f" max_epochs {need['max_epochs']:g} and {_blocks(need['margin_blocks'])} of margin"
        )
    if t.get("bytes_read") is not None:
        why += f"; read {t['bytes_read']:,} bytes"
    if t["exhausted"]:
        why += "; the source ran out before the take was met"
    elif t.get("stopped") is None:
        why += "; read to its end"
    else:
        why += f"; stopped at {t['stopped']}"
    return f"taken {t['tokens']:,} tokens, {t['documents']:,} documents of the source ({why})"


def _blocks(n: int) -> str:
    return f"{n:,} block{'s' * (n != 1)}"


def _blocks(n: int) -> str:
    return f"{n:,} block{'s' * (n != 1)}"
