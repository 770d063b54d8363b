"""`mixer inspect`: a block decoded back to text, with its document boundaries marked, and
where each piece of it comes from (`mixer.report.provenance`)."""

from __future__ import annotations

import os

from rich.console import Console
from rich.markup import escape

from mixer.artifacts.manifest import Manifest
from mixer.errors import OutputError, UsageError
from mixer.plan import Plan
from mixer.report.build_tokenizer import build_tokenizer, decode
from mixer.report.printable import printable
from mixer.report.provenance import Provenance, sample_block
from mixer.serve.cache import SplitStore, cache_root
from mixer.serve.padding import BlockPadding


def describe_block(
    manifest: Manifest,
    source: str,
    split: str,
    index: int,
    cache_dir: str | os.PathLike | None = None,
    prov: Provenance | None = None,
) -> dict:
    """{"source", "split", "block", "blocks", "starts", "pieces": [{"first", "last", "starts",
    "text", "origin"}], "note"}: the block's tokens decoded piece by piece, a piece per
    document it touches, each with its origin (`Provenance.block`; None and a ``note`` for a
    build without provenance)."""
    rec = manifest.split(source, split)
    if not 0 <= index < rec.blocks:
        raise UsageError(
            f"{source}/{split} has {rec.blocks:,} blocks; --index {index} is out of range"
        )
    root = manifest.location
    cache = cache_root(cache_dir) / manifest.fingerprint[:16]
    store = SplitStore(
        root=root,
        cache=cache,
        source=source,
        split=split,
        record=rec,
        seq_len=manifest.seq_len,
        dtype=manifest.dtype,
        vocab_size=manifest.tokenizer.vocab_size,
    )
    block = store.block(index)
    tok = build_tokenizer(manifest, cache)
    pad = 0  # best-fit: the block's padding, shown apart (not a document's tokens)
    if rec.padding is not None:
        pad = int(BlockPadding(manifest, split, cache).array(source)[index])
    cuts = [0, *[int(s) for s in block.starts if s > 0], manifest.seq_len - pad]
    starts = {int(s) for s in block.starts}
    pieces = []
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        ids = [int(t) for t in block.input_ids[a:b]]
        text = decode(tok, ids, f"{manifest.location}: {source}/{split} block {index:,}")
        pieces.append({"first": a, "last": b - 1, "starts": a in starts, "text": text})
    note = None
    try:
        origins = (prov or Provenance(manifest, cache_dir)).block(source, split, index)
    except OutputError as e:
        note, origins = str(e), [None] * len(pieces)
    assert len(origins) == len(pieces), (len(origins), len(pieces))
    for p, origin in zip(pieces, origins, strict=True):
        p["origin"] = origin
    return {
        "source": source,
        "split": split,
        "block": index,
        "blocks": rec.blocks,
        "starts": sorted(starts),
        "pieces": pieces,
        "note": note,
        "padding": pad,
    }


def describe_sample(
    manifest: Manifest,
    plan: Plan,
    n: int,
    cache_dir: str | os.PathLike | None = None,
    prov: Provenance | None = None,
) -> dict:
    """Which source, pass and block global sample n is (and its phase), and that block decoded."""
    name, block = sample_block(plan, n)
    s, k = plan.locate(n)
    src = plan.sources[s]
    out = describe_block(manifest, name, "train", block, cache_dir, prov)
    out.update(
        sample=n,
        total=plan.total,
        k=k,
        num_samples=src.num_samples,
        pass_index=k // src.num_blocks,
        passes=src.passes,
    )
    if plan.phases:
        p = plan.phase_of(n)
        out.update(phase=p, phase_label=plan.phase_label(p), phase_range=plan.phase_range(p))
    return out


def render(info: dict, console: Console) -> None:
    head = f"{info['source']}/{info['split']} block {info['block']:,} of {info['blocks']:,}"
    if "sample" in info:
        where = ""
        if "phase" in info:
            a, b = info["phase_range"]
            where = f", in {info['phase_label']} (samples {a:,}-{b - 1:,})"
        console.print(
            f"sample {info['sample']:,} of {info['total']:,}{where}: {info['source']}, its sample"
            f" {info['k']:,} of {info['num_samples']:,} (pass {info['pass_index'] + 1} of"
            f" {info['passes']}), {head}",
            highlight=False,
        )
    else:
        console.print(head, highlight=False)
    if info["note"]:
        console.print(f"note: {info['note']}", highlight=False, soft_wrap=True)
    for p in info["pieces"]:
        what = "document starts" if p["starts"] else "continues a document"
        console.rule(f"{what} · tokens {p['first']}-{p['last']}", style="cyan")
        origin = p["origin"]
        text = p["text"]
        if origin is not None:
            console.print(origin_line(origin), highlight=False, soft_wrap=True)
            text = p["text"] if origin["text"] is None else origin["text"]
        console.print(escape(printable(text)), highlight=False, markup=True)
    if info.get("padding"):
        L = info["pieces"][-1]["last"] + 1 + info["padding"]
        console.rule(f"padding · tokens {L - info['padding']}-{L - 1} (not trained)", style="dim")


def origin_line(o: dict) -> str:
    """``file line 812 · chars 0-1,204 of the record · 256 tokens · cut`` (or why the record's
    text is not shown: then the text below is the block's tokens decoded)."""
    record = "" if o["record"] is None else f" {o['kind']} {o['record']:,}"
    chars = "" if o["chars"] is None else f" · chars {o['chars'][0]:,}-{o['chars'][1]:,}"
    cut = " · cut (continues in another block)" if o["cut"] else ""
    line = f"{printable(o['file'])}{record}{chars} · {o['tokens']:,} tokens{cut}"
    return line if o["note"] is None else f"{line}\n{printable(o['note'])}"
