"""Numbers about a build, from its manifest; rendered as a rich table or JSON."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from mixer.manifest import Manifest

_SPLIT_KEYS = ("documents", "tokens", "blocks", "dropped_tokens", "padding_tokens")


def summarize(manifest: Manifest) -> dict:
    """The stable JSON shape of `mixer stats --json` (a source's top-level numbers: train)."""
    d = manifest.data
    sources = {}
    for name, src in d["sources"].items():
        train, val = src["train"], src["val"]
        sources[name] = {
            "weight": src["weight"],
            **{k: train[k] for k in _SPLIT_KEYS},
            "skipped": src["skipped"],
            "val": {k: val[k] for k in _SPLIT_KEYS},
        }
    tok = d["tokenizer"]
    return {
        "name": d["name"],
        "seq_len": d["seq_len"],
        "seed": d["seed"],
        "tokenizer": {
            k: tok[k] for k in ("kind", "name", "vocab_size", "bos_id", "eos_id", "dtype")
        },
        "manifest": manifest.fingerprint,
        "sources": sources,
    }


def render_table(summary: dict, console: Console) -> None:
    table = Table(title=f"{summary['name']}: seq_len {summary['seq_len']}, seed {summary['seed']}")
    for col in ("source", "split", "weight", "documents", "tokens", "blocks", "dropped", "padding"):
        table.add_column(col, justify="left" if col in ("source", "split") else "right")
    for name, s in summary["sources"].items():
        for split, row in (("train", s), ("val", s["val"])):
            table.add_row(
                name if split == "train" else "",
                split,
                f"{s['weight']:g}" if split == "train" else "",
                f"{row['documents']:,}",
                f"{row['tokens']:,}",
                f"{row['blocks']:,}",
                f"{row['dropped_tokens']:,}",
                f"{row['padding_tokens']:,}",
            )
    console.print(table)
    for name, s in summary["sources"].items():
        if s["skipped"]:
            counts = ", ".join(f"{k} {v:,}" for k, v in s["skipped"].items())
            console.print(f"{name}: skipped {counts}", highlight=False)
    t = summary["tokenizer"]
    console.print(
        f"tokenizer: {t['kind']} {t['name']} (vocab {t['vocab_size']:,}, {t['dtype']},"
        f" bos {t['bos_id']}, eos {t['eos_id']})",
        highlight=False,
    )
