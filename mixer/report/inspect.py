"""`mixer inspect`: a block decoded back to text, with its document boundaries marked."""

from __future__ import annotations

import os

from rich.console import Console
from rich.markup import escape

from mixer.artifacts.manifest import Manifest
from mixer.errors import UsageError
from mixer.plan import Plan
from mixer.report.build_tokenizer import build_tokenizer, decode
from mixer.report.printable import printable
from mixer.serve.cache import SplitStore, cache_root


def describe_block(
    manifest: Manifest,
    source: str,
    split: str,
    index: int,
    cache_dir: str | os.PathLike | None = None,
) -> dict:
    """{"source", "split", "block", "blocks", "starts", "pieces": [{"first", "last", "starts",
    "text"}]}: the block's tokens decoded piece by piece, a piece per document it touches."""
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
    cuts = [0, *[int(s) for s in block.starts if s > 0], manifest.seq_len]
    starts = {int(s) for s in block.starts}
    pieces = []
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        ids = [int(t) for t in block.input_ids[a:b]]
        text = decode(tok, ids, f"{manifest.location}: {source}/{split} block {index:,}")
        pieces.append({"first": a, "last": b - 1, "starts": a in starts, "text": text})
    return {
        "source": source,
        "split": split,
        "block": index,
        "blocks": rec.blocks,
        "starts": sorted(starts),
        "pieces": pieces,
    }


def describe_sample(
    manifest: Manifest, plan: Plan, n: int, cache_dir: str | os.PathLike | None = None
) -> dict:
    """Which source, pass and block global sample n is (and its phase), and that block decoded."""
    if not 0 <= n < plan.total:
        raise UsageError(f"--sample {n:,} is outside the plan's [0, {plan.total:,})")
    s, k = plan.locate(n)
    src = plan.sources[s]
    block = int(plan.block_ids(s, [k])[0])
    out = describe_block(manifest, src.name, "train", block, cache_dir)
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
    for p in info["pieces"]:
        what = "document starts" if p["starts"] else "continues a document"
        console.rule(f"{what} · tokens {p['first']}-{p['last']}", style="cyan")
        console.print(escape(printable(p["text"])), highlight=False, markup=True)
