"""Tokenizer kinds (tokenizer.json, hub, tiktoken), BOS/EOS resolution, dtype and encoding."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from mixer.builder.tokenizer import PATTERNS, SPECIALS, Encoder, load_tokenizer, read_tiktoken_ranks
from mixer.errors import TokenizerError
from mixer.recipe import TokenizerSpec
from tests.helpers import DATA, TOKENIZER, qwen_tiktoken_file

SAMPLE = [
    (DATA / "books" / "01-genesis.txt").read_text()[:20000],
    "Hello world!  It's 2026, naïve café — 12345678 numbers\n\n\tTabs\r\nand CRLF.",
    "天地玄黃，宇宙洪荒。日月盈昃，辰宿列張。 Mixed 中文 and English.",
    "emoji 😀👍🏽 and <|endoftext|> written inside a document",
]


def decode(enc: Encoder, ids) -> str:
    return enc.tok.decode([int(i) for i in ids], skip_special_tokens=False)


def spec(**kw) -> TokenizerSpec:
    return TokenizerSpec(**{"kind": "path", "location": str(TOKENIZER), **kw})


def test_tokenizer_json_identity_and_dtype():
    info = load_tokenizer(spec())
    assert info.vocab_size == 8192 and info.dtype == "uint16"
    assert info.eos_id == 0 and info.bos_id is None and info.pad_id == 0
    assert info.file_sha256 and len(info.fingerprint) == 64
    assert load_tokenizer(spec()).fingerprint == info.fingerprint  # stable


def test_bos_eos_are_added_by_id_around_each_document():
    info = load_tokenizer(spec(bos=True, bos_token="<|endoftext|>", eos=True))
    enc = Encoder(info.json, bos_id=info.bos_id, eos_id=info.eos_id, dtype=info.dtype)
    ids, lengths = enc.encode(["ab", "c d e"])
    plain, plain_len = Encoder(info.json, bos_id=None, eos_id=None, dtype="uint16").encode(
        ["ab", "c d e"]
    )
    assert (lengths == plain_len + 2).all()
    first = ids[: lengths[0]]
    assert first[0] == 0 and first[-1] == 0 and (first[1:-1] == plain[: plain_len[0]]).all()
    assert decode(enc, ids[lengths[0] :]) == "<|endoftext|>c d e<|endoftext|>"


def test_special_token_text_inside_a_document_is_plain_text():
    info = load_tokenizer(spec())
    enc = Encoder(info.json, bos_id=None, eos_id=info.eos_id, dtype=info.dtype)
    ids, lengths = enc.encode(["before <|endoftext|> after"])
    assert (ids == info.eos_id).sum() == 1 and ids[-1] == info.eos_id  # only the appended EOS
    assert decode(enc, ids[:-1]) == "before <|endoftext|> after"


def test_missing_special_tokens_are_clear_errors(tmp_path):
    from tokenizers import Tokenizer, models

    bare = tmp_path / "bare.json"
    Tokenizer(models.BPE(vocab={"a": 0, "b": 1}, merges=[])).save(str(bare))
    with pytest.raises(
        TokenizerError,
        match=r"tokenizer\.eos: the tokenizer has none of the usual"
        r" EOS tokens .*name it with `eos_token:` or set `eos: false`",
    ):
        load_tokenizer(spec(location=str(bare)))
    with pytest.raises(TokenizerError, match=r"tokenizer\.bos: .* BOS tokens"):
        load_tokenizer(spec(location=str(bare), bos=True, eos=False))
    with pytest.raises(TokenizerError, match=r"tokenizer\.eos_token: '</s>' is not in the"):
        load_tokenizer(spec(eos_token="</s>"))
    # GPT-2 style: <|endoftext|> serves as BOS too when nothing better exists.
    assert load_tokenizer(spec(bos=True)).bos_id == 0


def test_broken_tokenizer_file(tmp_path):
    bad = tmp_path / "tok.json"
    bad.write_text('{"not": "a tokenizer"}')
    with pytest.raises(TokenizerError, match=r"tok\.json: not a Hugging Face tokenizer\.json"):
        load_tokenizer(spec(location=str(bad)))


def test_hub_tokenizer_through_huggingface_hub_cache():
    """`hf:` goes through hf_hub_download; offline, it resolves from a populated hub cache."""
    from huggingface_hub.constants import HF_HUB_CACHE

    repo = Path(HF_HUB_CACHE) / "models--mixer-test--tiny"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "snapshots" / commit).mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copyfile(TOKENIZER, repo / "snapshots" / commit / "tokenizer.json")
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    info = load_tokenizer(TokenizerSpec(kind="hf", location="mixer-test/tiny"))
    assert info.fingerprint == load_tokenizer(spec()).fingerprint
    with pytest.raises(
        TokenizerError,
        match=r"tokenizer\.hf: cannot get tokenizer\.json of"
        r" 'mixer-test/absent' from the Hugging Face hub .*use `tokenizer: \{path",
    ):
        load_tokenizer(TokenizerSpec(kind="hf", location="mixer-test/absent"))


@pytest.fixture(scope="module")
def qwen():
    return load_tokenizer(
        TokenizerSpec(kind="tiktoken", location=str(qwen_tiktoken_file()), pattern="qwen")
    )


def test_tiktoken_file_gives_tiktokens_ids(qwen):
    """The converted BPE gives exactly tiktoken's ids on English, Chinese and odd text."""
    import tiktoken

    ranks = read_tiktoken_ranks(qwen_tiktoken_file())
    ref = tiktoken.Encoding(
        "qwen",
        pat_str=PATTERNS["qwen"],
        mergeable_ranks=ranks,
        special_tokens={s: len(ranks) + i for i, s in enumerate(SPECIALS["qwen"])},
    )
    enc = Encoder(qwen.json, bos_id=None, eos_id=None, dtype=qwen.dtype)
    texts = SAMPLE + [(DATA / "books" / "05-jonah.txt").read_text()]
    ids, lengths = enc.encode(texts)
    expected = ref.encode_ordinary_batch(texts)
    got = [a.tolist() for a in np.split(ids, np.cumsum(lengths)[:-1])]
    assert got == expected
    assert sum(map(len, expected)) > 5000


def test_tiktoken_specials_vocab_and_dtype(qwen):
    assert qwen.vocab_size == 151643 + 208 and qwen.dtype == "uint32"
    assert qwen.eos_id == 151643  # <|endoftext|>, found among the usual names
    assert qwen.kind == "tiktoken" and qwen.file_sha256


def test_tiktoken_errors(tmp_path):
    bad = tmp_path / "x.tiktoken"
    bad.write_text("not base64 at all\n")
    with pytest.raises(TokenizerError, match=r"x\.tiktoken:1: not a tiktoken BPE file"):
        load_tokenizer(TokenizerSpec(kind="tiktoken", location=str(bad), pattern="qwen"))


def qwen_spec() -> TokenizerSpec:
    return TokenizerSpec(kind="tiktoken", location=str(qwen_tiktoken_file()), pattern="qwen")


def test_a_tiktoken_conversion_is_made_once_then_read_from_the_cache(qwen, tmp_path, monkeypatch):
    import mixer.builder.tiktoken_vocab as vocab

    monkeypatch.setenv("MIXER_CACHE", str(tmp_path))
    first = load_tokenizer(qwen_spec())
    (cached,) = (tmp_path / "tokenizers").glob("*.json")
    monkeypatch.setattr(vocab, "tiktoken_to_tokenizers", lambda *a: pytest.fail("converted"))
    again = load_tokenizer(qwen_spec())
    assert again.json == first.json == qwen.json  # the same tokenizer.json, byte for byte
    assert again.fingerprint == first.fingerprint == qwen.fingerprint
    assert cached.name.split(".")[1] == first.fingerprint  # its name carries its sha256


def test_a_damaged_cached_conversion_is_made_again(qwen, tmp_path, monkeypatch):
    monkeypatch.setenv("MIXER_CACHE", str(tmp_path))
    load_tokenizer(qwen_spec())
    (cached,) = (tmp_path / "tokenizers").glob("*.json")
    cached.write_text(qwen.json.replace('"<|endoftext|>"', '"<|endoftext|> "', 1))
    assert load_tokenizer(qwen_spec()).fingerprint == qwen.fingerprint
    (again,) = (tmp_path / "tokenizers").glob("*.json")
    assert again.read_text() == qwen.json


def test_a_cache_that_cannot_be_written_costs_only_time(qwen, tmp_path, monkeypatch):
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setenv("MIXER_CACHE", str(blocked))  # tokenizers/ cannot be made under a file
    assert load_tokenizer(qwen_spec()).fingerprint == qwen.fingerprint


def test_tiktoken_ranks_are_parsed_once_then_read_from_the_cache(tmp_path, monkeypatch):
    import mixer.builder.tiktoken_vocab as vocab

    monkeypatch.setenv("MIXER_CACHE", str(tmp_path))
    path = qwen_tiktoken_file()
    first = vocab.read_tiktoken_ranks(path)
    assert len(first) == 151_643 and first[b"!"] == 0
    (entry,) = (tmp_path / "tokenizers").glob("ranks-*.marshal")
    monkeypatch.setattr(vocab, "_parse_ranks", lambda *a: pytest.fail("parsed again"))
    assert vocab.read_tiktoken_ranks(path) == first
    monkeypatch.undo()
    monkeypatch.setenv("MIXER_CACHE", str(tmp_path))
    for damage in (
        lambda b: b[:-100],
        lambda b: b[:40] + bytes([b[40] ^ 1]) + b[41:],
        lambda b: b"",
    ):
        entry.write_bytes(damage(entry.read_bytes()))  # truncated, a flipped bit, empty
        assert vocab.read_tiktoken_ranks(path) == first  # parsed again, and kept again
        assert rank_cache_entry_is_whole(entry)


def rank_cache_entry_is_whole(entry) -> bool:
    import hashlib

    blob = entry.read_bytes()
    return len(blob) > 32 and hashlib.sha256(blob[32:]).digest() == blob[:32]


def test_a_changed_tiktoken_file_is_not_read_from_the_cache(tmp_path, monkeypatch):
    import mixer.builder.tiktoken_vocab as vocab

    monkeypatch.setenv("MIXER_CACHE", str(tmp_path / "cache"))
    small = tmp_path / "small.tiktoken"
    lines = qwen_tiktoken_file().read_text().splitlines()[:300]
    small.write_text("\n".join(lines) + "\n")
    assert len(vocab.read_tiktoken_ranks(small)) == 300
    small.write_text("\n".join(lines[:299]) + "\n")
    assert len(vocab.read_tiktoken_ranks(small)) == 299
    small.write_text("\n".join(lines[:299]) + "\nnot base64 at all\n")
    with pytest.raises(TokenizerError, match=r"small\.tiktoken:300: not a tiktoken BPE file"):
        vocab.read_tiktoken_ranks(small)
