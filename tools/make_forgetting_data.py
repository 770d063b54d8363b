"""Regenerate recipes/forgetting/data/: the forgetting demo's Chinese corpus and its tokenizer.

Run by hand only, never by the demo or the tests (they use the committed files): it needs
Debian's ``fortunes-zh`` (``apt-get install fortunes-zh``). Deterministic: rerunning it rewrites
byte-identical files.

    python tools/make_forgetting_data.py

Why a corpus and a tokenizer of its own (see tools/forgetting_demo.py for the experiment):

- The demo's Chinese poems (recipes/data/zh, 38k tokens) are too few for continued
  pre-training that does not repeat them: the demo trains on ~400k Chinese tokens per run.
  fortunes-zh's ``chinese`` file (proverbs, the Analects, Tang and Song poetry, Debian's code
  of conduct, the Debian Reference) holds 5,263 records; the 4,538 whose letters are at least
  90% Chinese characters are kept (the others are mostly shell commands and package tables,
  which would leak English into the "new" distribution): 275k characters.
- A byte-level BPE of 2,048 ids instead of the demo's 8,192: with a tiny model the output
  layer is most of the compute (8,192 x 96 of a 0.5M-parameter model: 4x slower per token,
  measured), and 2,048 ids still encode Chinese at ~1.05 tokens per character.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_demo_data import fortunes, train_bpe  # noqa: E402  (sets RAYON_NUM_THREADS=1)

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "recipes" / "data"
OUT = REPO / "recipes" / "forgetting" / "data"
VOCAB = 2048
MIN_CHINESE = 0.9  # share of Chinese characters among a record's letters


def chinese_share(text: str) -> float:
    han = sum("\u4e00" <= c <= "\u9fff" for c in text)
    latin = sum(c.isascii() and c.isalpha() for c in text)
    return han / max(1, han + latin)


def chinese() -> list[str]:
    """zh-fortunes.parquet: one row (column ``text``) per mostly-Chinese record, 500 a group."""
    OUT.mkdir(parents=True, exist_ok=True)
    texts = [t for t in fortunes("chinese") if chinese_share(t) >= MIN_CHINESE]
    assert not any("\x1b" in t for t in texts)
    pq.write_table(
        pa.table({"text": texts}),
        OUT / "zh-fortunes.parquet",
        row_group_size=500,
        compression="zstd",
    )
    return texts


def english_and_poems() -> list[str]:
    """The committed demo texts (English books and short documents, Chinese poems)."""
    import gzip

    import zstandard

    texts = [p.read_text() for p in sorted((DEMO / "books").glob("*.txt"))]
    for p in sorted((DEMO / "web").glob("*.jsonl*")):
        raw = p.read_bytes()
        if p.suffix == ".gz":
            raw = gzip.decompress(raw)
        elif p.suffix == ".zst":
            raw = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
        texts += [json.loads(line)["text"] for line in raw.decode().splitlines()]
    for p in sorted((DEMO / "zh").glob("*.parquet")):
        texts += pq.read_table(p, columns=["text"]).column("text").to_pylist()
    return texts


if __name__ == "__main__":
    zh = chinese()
    train_bpe(english_and_poems() + zh, VOCAB, OUT / "tokenizer.json")  # every text it reads
    for p in sorted(OUT.rglob("*")):
        print(f"{p.relative_to(REPO)}  {p.stat().st_size:,} bytes")
