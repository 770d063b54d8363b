"""Encoders (gigatoken, tiktoken, `tokenizers`): the same ids as the reference on every test
corpus and tokenizer kind, the same bytes whichever builds, the choice and its errors."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mixer.artifacts.manifest import Manifest
from mixer.builder import encoders
from mixer.builder.tokenizer import BuildTokenizer
from mixer.errors import RecipeError
from mixer.recipe import TokenizerSpec, parse_recipe
from tests.helpers import REPO, TOKENIZER, demo_recipe, qwen_tiktoken_file

SP = REPO / "tests" / "data" / "llama2_sp.json"
KINDS = {  # a byte-level BPE tokenizer.json, a tiktoken file, a SentencePiece-style BPE
    "bytelevel": {"path": str(TOKENIZER)},
    "qwen": {"tiktoken": str(qwen_tiktoken_file()), "pattern": "qwen"},
    "sentencepiece": {"path": str(SP)},
}
ODD = [  # what the other tests' corpora hold besides the demo's texts
    "#12 a counter before a document",
    "a literal <|endoftext|> and <|im_start|> <s> </s> <unk> inside a document",
    "\x7f\x01 control \x1b[31m characters \ufffd",
    "\u00a0" * 30 + "\t" * 9 + "\n" * 12,
    "mixed 中文 and English, 123,456.78 — “quotes” ‘and’ …",
]


def _spec(kind: str) -> TokenizerSpec:
    d = KINDS[kind]
    if "tiktoken" in d:
        return TokenizerSpec(kind="tiktoken", location=d["tiktoken"], pattern=d["pattern"])
    return TokenizerSpec(kind="path", location=d["path"])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[str]:
    """Every document of the demo's three sources (books, short web texts, Chinese poems)."""
    from mixer.builder.readers import read_unit
    from mixer.builder.units import plan_units

    root = tmp_path_factory.mktemp("corpus")
    recipe = parse_recipe(demo_recipe(root), base_dir=root)
    texts = [t for s in recipe.sources for u in plan_units(s) for _, t, why in read_unit(u, s)]
    return texts + ODD + list(encoders.PROBES)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("name", ["gigatoken", "tiktoken", "tokenizers"])
def test_every_encoder_gives_the_references_ids_on_every_corpus(kind, name, corpus):
    tok = BuildTokenizer(_spec(kind))
    cand = encoders._load(tok, name, strict=True)
    if isinstance(cand, str):  # tiktoken takes no SentencePiece vocabulary, and says so
        assert (kind, name) == ("sentencepiece", "tiktoken"), cand
        return
    ref = encoders.reference(tok)
    assert ref.name == ("tiktoken" if kind == "qwen" else "tokenizers")
    want, got = ref.encoder.encode(corpus), cand.encoder.encode(corpus)
    assert np.array_equal(want[1], got[1]) and np.array_equal(want[0], got[0])
    if kind == "qwen":  # and the output's tokenizer.json, through `tokenizers`
        via_json = encoders._load(tok, "tokenizers").encoder.encode(corpus)
        assert np.array_equal(via_json[0], want[0])


def _zstd(out) -> dict:
    return {p.relative_to(out): p.read_bytes() for p in out.rglob("*.zstd")}


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_encoder_writes_the_same_bytes_and_manifest_fingerprint(
    cli, write_recipe, tmp_path, kind
):
    recipe = demo_recipe(tmp_path, tokenizer=KINDS[kind], seq_len=128)
    outs, fingerprints = {}, set()
    for name in ("gigatoken", "tiktoken", "tokenizers"):
        out = tmp_path / name
        result = cli("build", write_recipe(recipe), "-w", "1", "-o", out, "--encoder", name)
        if kind == "sentencepiece" and name == "tiktoken":
            assert result.exit_code == 2, result.output
            assert "--encoder tiktoken: cannot be used: not a byte-level BPE" in result.output
            continue
        assert result.exit_code == 0, result.output
        assert f"encoding with {name}" in result.output
        m = Manifest.load(out)
        assert {r.encoder for r in m.encoders.values()} == {name}
        assert all(r.checked_documents > 0 for r in m.encoders.values()) == (
            name != m.encoders["web"].reference
        )
        fingerprints.add(m.fingerprint)
        outs[name] = _zstd(out)
    assert len(fingerprints) == 1 and len({json.dumps(sorted(map(str, o))) for o in outs.values()})
    first = next(iter(outs.values()))
    assert first and all(o == first for o in outs.values())


def test_auto_takes_gigatoken_and_records_it_outside_the_fingerprint(cli, write_recipe, tmp_path):
    recipe = demo_recipe(tmp_path, seq_len=128)
    result = cli("build", write_recipe(recipe), "-w", "1", "-o", tmp_path / "a")
    assert result.exit_code == 0, result.output
    assert "encoding with gigatoken 0.10" in result.output
    assert "identical ids to tokenizers on" in result.output
    m = Manifest.load(tmp_path / "a")
    raw = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert raw["encoders"]["zh"]["encoder"] == "gigatoken"
    assert raw["encoders"]["zh"]["checked_tokens"] > 1000
    assert "encoder" not in raw["recipe"]["tokenizer"]  # the recipe as the golden build's
    # rebuilt with another encoder: every source is reused (its key ignores the encoder) and
    # keeps the record of the encoder that built it
    result = cli(
        "build", write_recipe(recipe), "-w", "1", "-o", tmp_path / "a", "--encoder", "tokenizers"
    )
    assert result.exit_code == 0 and "reused built sources" in result.output, result.output
    again = Manifest.load(tmp_path / "a")
    assert again.encoders == m.encoders and again.fingerprint == m.fingerprint


def test_without_gigatoken_auto_takes_tiktoken_and_a_forced_one_is_one_line(
    cli, write_recipe, tmp_path, monkeypatch
):
    monkeypatch.setitem(sys.modules, "gigatoken", None)  # `import gigatoken` fails
    recipe = demo_recipe(tmp_path, seq_len=128)
    result = cli("build", write_recipe(recipe), "-w", "1", "-o", tmp_path / "a")
    assert result.exit_code == 0, result.output
    assert "encoding with tiktoken" in result.output
    assert {r.encoder for r in Manifest.load(tmp_path / "a").encoders.values()} == {"tiktoken"}
    recipe["tokenizer"] = {**recipe["tokenizer"], "encoder": "gigatoken"}
    result = cli("build", write_recipe(recipe), "-w", "1", "-o", tmp_path / "b")
    assert result.exit_code == 2
    assert (
        result.output.strip()
        .splitlines()[-1]
        .endswith(
            "tokenizer.encoder: gigatoken: cannot be used: gigatoken is not installed"
            " (pip install 'mixer[fast]')"
        )
    )


def test_a_forced_encoder_that_disagrees_is_an_error(cli, write_recipe, tmp_path, monkeypatch):
    monkeypatch.setattr(encoders, "_first_difference", lambda *a: 0)
    recipe = demo_recipe(tmp_path, seq_len=128)
    recipe["tokenizer"] = {**recipe["tokenizer"], "encoder": "gigatoken"}
    result = cli("build", write_recipe(recipe), "-w", "2", "-o", tmp_path / "a")
    assert result.exit_code == 2, result.output
    assert "tokenizer.encoder: gigatoken: cannot be used: gigatoken and tokenizers give" in (
        result.output
    )
    assert not (tmp_path / "a").exists()
    # the CLI's --encoder is over the recipe's key
    result = cli(
        "build", write_recipe(recipe), "-w", "1", "-o", tmp_path / "b", "--encoder", "tokenizers"
    )
    assert result.exit_code == 0, result.output


def test_the_recipe_key_is_checked(tmp_path):
    recipe = demo_recipe(tmp_path)
    recipe["tokenizer"]["encoder"] = "fast"
    with pytest.raises(RecipeError, match="tokenizer.encoder: must be one of auto, gigatoken"):
        parse_recipe(recipe, base_dir=tmp_path)


_PIECES = [
    " ",
    "  ",
    "\n",
    "\r\n",
    "\t",
    "'s",
    "'LL",
    "a",
    "the",
    "The",
    "1",
    "23",
    "中",
    "文",
    "。",
]
_PIECES += ["é", "e\u0301", "😀", "\u00a0", "\u3000", "<|endoftext|>", "<s>", "▁", "!", "..."]
_TEXT = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=120),  # any valid text
    st.lists(st.sampled_from(_PIECES), max_size=40).map("".join),  # where encoders part
)


@pytest.fixture(scope="module")
def pairs() -> dict:
    """Per tokenizer kind, (the reference encoder, gigatoken)."""
    got = {}
    for kind in KINDS:
        tok = BuildTokenizer(_spec(kind))
        got[kind] = (encoders.reference(tok).encoder, encoders._load(tok, "gigatoken").encoder)
    return got


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(texts=st.lists(_TEXT, min_size=1, max_size=6), kind=st.sampled_from(list(KINDS)))
def test_gigatoken_gives_the_references_ids_on_any_text(pairs, texts, kind):
    ref, giga = pairs[kind]
    (a, la), (b, lb) = ref.encode(texts), giga.encode(texts)
    assert la.tolist() == lb.tolist() and a.tolist() == b.tolist()
