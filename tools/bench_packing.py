"""Packing benchmark: `concat` against `bestfit`, the same files, interleaved builds.

Run by hand: ``python tools/bench_packing.py [--mb 156] [--reps 3] [--window 4096] [--keep DIR]``.
The corpus is tools/bench_build.py's (the demo's real texts repeated with a counter, one
JSON-lines file per source, Qwen's vocabulary, seq_len 2048). Each rep builds it once with
each packing in a fresh ``mixer build -w 2`` process; it prints, as JSON, the medians (wall,
CPU, peak RSS), bestfit's speed relative to concat's, and both builds' ledgers summed over
sources and splits (documents cut, padding, loss tokens), with the documents that fit a block.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tools.bench_build import build, make_corpus, write_recipe  # noqa: E402


def recipe_for(root: Path, packing: str, window: int) -> Path:
    import yaml

    base = yaml.safe_load(write_recipe(root).read_text())
    base["packing"] = packing
    if packing == "bestfit":
        base["packing_window"] = window
    path = root / f"recipe-{packing}.yaml"
    path.write_text(yaml.safe_dump(base))
    return path


def ledger(out: Path) -> dict:
    """The build's ledger summed over sources and splits, and the documents that fit a block
    (from each split's log2 histogram of document lengths: bins below 2^11 = 2048)."""
    manifest = json.loads((out / "manifest.json").read_text())
    total = dict.fromkeys(("documents", "documents_cut", "padding_tokens", "loss_tokens"), 0)
    blocks = fit = 0
    for src in manifest["sources"].values():
        for split in ("train", "val"):
            rec = src.get(split)
            if not rec:
                continue
            blocks += rec["blocks"]
            total["documents"] += rec["documents"]
            total["padding_tokens"] += rec["padding_tokens"]
            fit += sum(rec["doc_length_log2_hist"][:11])  # under 2^11 tokens: fits a block
    for entry in manifest.get("ledger", {}).values():
        for split in entry.values():
            total["documents_cut"] += split["documents_cut"]
            total["loss_tokens"] += split["loss_tokens"]
    total["blocks"] = blocks
    total["documents_that_fit"] = fit
    total["padding_share"] = round(total["padding_tokens"] / (blocks * 2048), 4)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=float, default=156)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--window", type=int, default=4096)
    ap.add_argument("--keep", help="reuse/keep the corpus in this folder")
    args = ap.parse_args()
    root = Path(args.keep or tempfile.mkdtemp(prefix="bench-packing-"))
    root.mkdir(parents=True, exist_ok=True)
    if not any(root.glob("*/*.jsonl")):
        make_corpus(root, args.mb)
    recipes = {p: recipe_for(root, p, args.window) for p in ("concat", "bestfit")}
    runs: dict[str, list[dict]] = {p: [] for p in recipes}
    for _ in range(args.reps):
        for packing, recipe in recipes.items():  # interleaved: both see the same machine
            runs[packing].append(build(recipe, root / f"out-{packing}", workers=2))
    result = {"mb": args.mb, "window": args.window, "reps": args.reps}
    for packing, got in runs.items():
        result[packing] = {
            "s": round(statistics.median(r["s"] for r in got), 2),
            "runs_s": [round(r["s"], 2) for r in got],
            "cpu_s": round(statistics.median(r["cpu_s"] for r in got), 1),
            "peak_mib": round(statistics.median(r["peak_mib"] for r in got)),
            "ledger": ledger(root / f"out-{packing}"),
        }
    result["bestfit_speed_vs_concat"] = round(result["concat"]["s"] / result["bestfit"]["s"], 3)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
