"""Regenerate recipes/data/: the demo's small real texts and its tokenizer.

Run by hand only, never by tests (they use the committed files): it needs Debian's text
packages (``apt-get install bible-kjv fortunes fortunes-zh``). The output is deterministic:
rerunning it rewrites byte-identical files.

    python tools/make_demo_data.py
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
from pathlib import Path

os.environ["RAYON_NUM_THREADS"] = "1"  # one thread: the result cannot depend on scheduling

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import zstandard  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "recipes" / "data"
FORTUNES = Path("/usr/share/games/fortunes")
BOOKS = {  # KJV books: (file, verse range, chapters)
    "01-genesis": ("Ge1:1-Ge50:26", 50),
    "02-exodus": ("Ex1:1-Ex40:38", 40),
    "03-ruth": ("Ru1:1-Ru4:22", 4),
    "04-esther": ("Es1:1-Es10:3", 10),
    "05-jonah": ("Jon1:1-Jon4:11", 4),
}
VERSE = re.compile(r"^(?P<book>\D+?)\s?(?P<chapter>\d+):(?P<verse>\d+) (?P<text>.*)$")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def books() -> None:
    """One .txt per book; one paragraph (a line) per chapter, chapters separated by blank lines."""
    (OUT / "books").mkdir(parents=True, exist_ok=True)
    for name, (span, chapters) in BOOKS.items():
        text = subprocess.run(
            ["bible", "-f", span],
            stdin=subprocess.DEVNULL,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        by_chapter: dict[int, list[str]] = {}
        for line in text.splitlines():
            m = VERSE.match(line.strip())
            if m:
                by_chapter.setdefault(int(m["chapter"]), []).append(m["text"].strip())
            elif line.strip() and by_chapter:  # a verse wrapped onto a further line
                last = by_chapter[max(by_chapter)]
                last[-1] += " " + line.strip()
        assert sorted(by_chapter) == list(range(1, chapters + 1)), (name, sorted(by_chapter))
        paragraphs = [" ".join(v) for _, v in sorted(by_chapter.items())]
        (OUT / "books" / f"{name}.txt").write_text("\n\n".join(paragraphs) + "\n")


def fortunes(name: str) -> list[str]:
    raw = (FORTUNES / name).read_bytes().decode("utf-8")
    records = [ANSI.sub("", r).rstrip() for r in re.split(r"^%$", raw, flags=re.M)]
    return [r.strip("\n") for r in records if r.strip()]


def web() -> None:
    """English short documents as JSON lines: plain, gzip (mtime 0) and zstandard."""
    (OUT / "web").mkdir(parents=True, exist_ok=True)

    def jsonl(name: str) -> bytes:
        return "".join(
            json.dumps({"id": f"{name}-{i}", "text": t}, ensure_ascii=False) + "\n"
            for i, t in enumerate(fortunes(name))
        ).encode()

    (OUT / "web" / "fortunes.jsonl").write_bytes(jsonl("fortunes"))
    (OUT / "web" / "literature.jsonl").write_bytes(jsonl("literature"))
    (OUT / "web" / "computers.jsonl.gz").write_bytes(gzip.compress(jsonl("computers"), mtime=0))
    zstd = zstandard.ZstdCompressor(level=3)
    (OUT / "web" / "science.jsonl.zst").write_bytes(zstd.compress(jsonl("science")))


def chinese() -> None:
    """Tang and Song poems as parquet (title, author, text), 100 rows per row group."""
    (OUT / "zh").mkdir(parents=True, exist_ok=True)
    for name in ("tang300", "song100"):
        rows = []
        for text in fortunes(name):
            lines = text.splitlines()
            assert "\x1b" not in text
            rows.append(
                {
                    "title": lines[0].strip(),
                    "author": lines[1].strip() if len(lines) > 1 else "",
                    "text": text,
                }
            )
        pq.write_table(
            pa.Table.from_pylist(rows),
            OUT / "zh" / f"{name}.parquet",
            row_group_size=100,
            compression="zstd",
        )


def train_bpe(texts: list[str], vocab_size: int, path: Path) -> None:
    """A byte-level BPE of ``vocab_size`` ids trained on ``texts``, <|endoftext|> at id 0."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer)
    for t in texts[:3] + texts[-3:]:
        assert tok.decode(tok.encode(t).ids) == t
    tok.save(str(path), pretty=False)


def tokenizer() -> None:
    """A byte-level BPE of 8,192 ids trained on all of the above, <|endoftext|> at id 0."""
    texts = [p.read_text() for p in sorted((OUT / "books").glob("*.txt"))]
    for name in ("fortunes", "literature", "computers", "science", "tang300", "song100"):
        texts += fortunes(name)
    train_bpe(texts, 8192, OUT / "tokenizer.json")


if __name__ == "__main__":
    books()
    web()
    chinese()
    tokenizer()
    for p in sorted(OUT.rglob("*")):
        if p.is_file():
            print(f"{p.relative_to(OUT)}  {p.stat().st_size:,} bytes")
