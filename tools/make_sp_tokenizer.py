"""Write tests/data/llama2_sp.json: a small Llama-2-style SentencePiece tokenizer.

Llama 2 and Chinese-LLaMA-2 use a SentencePiece BPE with byte fallback; their tokenizer.json
(as `transformers` converts it) has a normalizer that prepends "▁" and turns spaces into "▁",
no pre-tokenizer, a BPE model with ``byte_fallback`` (a character outside the vocabulary is
encoded as its UTF-8 bytes, tokens ``<0x00>``..``<0xFF>``), ``<unk>``, ``<s>``, ``</s>`` as ids
0, 1, 2 and the 256 byte tokens as ids 3..258. This one has the same layout with a 6,000-token
vocabulary trained with `tokenizers` on the demo's texts (recipes/data: English books, short
English documents, Chinese poems), its alphabet limited so that rare Chinese characters take
the byte fallback, as in Llama 2. Run by hand (tests use the committed file; a rerun may
number characters of equal count in another order: `tokenizers` breaks those ties by hash):

    python tools/make_sp_tokenizer.py
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ["RAYON_NUM_THREADS"] = "1"  # one thread: the result cannot depend on scheduling

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "tests" / "data" / "llama2_sp.json"
VOCAB = 6000
SPECIALS = ["<unk>", "<s>", "</s>"]
BYTES = [f"<0x{b:02X}>" for b in range(256)]


def demo_texts() -> list[str]:
    sys.path.insert(0, str(REPO))
    from mixer.builder.readers import read_unit
    from mixer.builder.units import plan_units
    from mixer.recipe import load_recipe

    demo = load_recipe(REPO / "recipes" / "demo.yaml")
    return [
        t for s in demo.sources for u in plan_units(s) for _, t, why in read_unit(u, s) if not why
    ]


def train(texts: list[str]) -> str:
    """Trained with a Metaspace split (no merge spans two words), then given Llama 2's
    layout, which encodes whole texts without a pre-tokenizer (the same merges apply)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB, special_tokens=SPECIALS + BYTES, limit_alphabet=600, show_progress=False
    )
    tok.train_from_iterator(texts, trainer)
    d = json.loads(tok.to_str())
    d["added_tokens"] = [t for t in d["added_tokens"] if t["content"] in SPECIALS]
    d["normalizer"] = {
        "type": "Sequence",
        "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
        ],
    }
    d["pre_tokenizer"] = None
    d["decoder"] = {
        "type": "Sequence",
        "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0},
        ],
    }
    return json.dumps(d, ensure_ascii=False, indent=1) + "\n"


def main() -> None:
    from tokenizers import Tokenizer

    text = train(demo_texts())
    tok = Tokenizer.from_str(text)
    assert [tok.token_to_id(t) for t in SPECIALS + BYTES[:1]] == [0, 1, 2, 3]
    ids = tok.encode("天地玄黄 宇宙洪荒 😀", add_special_tokens=False).ids
    assert any(3 <= i < 259 for i in ids), "no byte fallback: the alphabet limit is too high"
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT} ({tok.get_vocab_size()} tokens, {OUT.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
