"""The tiktoken encoder, where the vocabulary can be expressed as tiktoken ranks.

For byte-level BPE vocabularies (the GPT-2 family, Llama 3, Qwen) tiktoken encodes the same ids
several times faster than `tokenizers` (tools/bench_build.py). It applies to a tiktoken file,
or a byte-level BPE tokenizer.json whose merge order is its id order and whose pre-tokenizer is
one regex; whether it is used is decided by `mixer.builder.encoders` (same ids on a sample of
each source's documents).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np

from mixer.builder.tiktoken_vocab import PATTERNS, _byte_encoder, read_tiktoken_ranks
from mixer.builder.tokenizer import BuildTokenizer, Encoder

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


@dataclass(frozen=True)
class TiktokenSpec:
    """What a worker needs to build the tiktoken encoding (small and picklable)."""

    pattern: str
    rank_file: str | None = None  # a tiktoken file, or ...
    tokenizer_json: str | None = None  # ... a byte-level BPE tokenizer.json to convert

    def load(self, *, bos_id, eos_id, dtype: str, ranks=None) -> TiktokenEncoder:
        return TiktokenEncoder(self, bos_id=bos_id, eos_id=eos_id, dtype=dtype, ranks=ranks)


def tiktoken_spec(tok: BuildTokenizer) -> tuple[TiktokenSpec | None, str]:
    """(spec, why not): whether this tokenizer can be run by tiktoken at all."""
    try:
        import tiktoken  # noqa: F401
    except ImportError:
        return None, "tiktoken is not installed"
    pattern = tok.spec.pattern
    if tok.spec.kind == "tiktoken":
        regex = PATTERNS.get(pattern or "", pattern)
        return TiktokenSpec(pattern=regex, rank_file=tok.spec.location), ""
    d = json.loads(tok.info.json)
    model, pre = d.get("model") or {}, d.get("pre_tokenizer") or {}
    if model.get("type") != "BPE" or d.get("normalizer") is not None:
        return None, "not a byte-level BPE without normalizer"
    regex = _byte_level_regex(pre)
    if regex is None:
        return None, "its pre-tokenizer is not a byte-level regex split"
    return TiktokenSpec(pattern=regex, tokenizer_json=tok.info.json), ""


def _byte_level_regex(pre: dict) -> str | None:
    if pre.get("type") == "ByteLevel" and not pre.get("add_prefix_space"):
        return GPT2_PATTERN if pre.get("use_regex", True) else None
    if pre.get("type") == "Sequence":
        steps = pre.get("pretokenizers", [])
        if (
            len(steps) == 2
            and steps[0].get("type") == "Split"
            and steps[0].get("behavior") == "Isolated"
            and not steps[0].get("invert")
            and "Regex" in steps[0].get("pattern", {})
            and steps[1].get("type") == "ByteLevel"
            and not steps[1].get("use_regex", True)
            and not steps[1].get("add_prefix_space")
        ):
            return steps[0]["pattern"]["Regex"]
    return None


def _ranks_from_json(text: str) -> dict[bytes, int]:
    """tiktoken ranks for a byte-level BPE: its ids, valid if merges come in id order."""
    model = json.loads(text)["model"]
    chars = _byte_encoder()
    decode = {chars(bytes([b])): b for b in range(256)}
    ranks = {
        bytes(decode[c] for c in tok): i
        for tok, i in model["vocab"].items()
        if all(c in decode for c in tok)
    }
    merged = [
        model["vocab"].get("".join(m) if isinstance(m, list) else m.replace(" ", ""))
        for m in model["merges"]
    ]
    if any(r is None for r in merged) or merged != sorted(merged):
        raise ValueError("merges are not in id order")
    return ranks


#: A special token no document can hold (documents with NUL are skipped as ``binary``). It is
#: never allowed, so tiktoken encodes any text as ordinary text; it only gives tiktoken's core a
#: non-empty special-token regex, which its buffer-returning call needs to run at full speed.
_NEVER = "\x00mixer:never\x00"


class TiktokenEncoder(Encoder):
    """The Encoder interface on tiktoken: same ids, BOS/EOS handling shared with the parent.

    Each text is encoded by tiktoken's core directly into a buffer of uint32 ids (no Python list
    per document, no thread pool: ``encode_ordinary_batch(num_threads=1)`` still creates a
    thread pool and a future per text, which halved a worker's throughput).
    """

    def __init__(self, spec: TiktokenSpec, *, bos_id, eos_id, dtype: str, ranks=None):
        """``ranks``: the spec's rank file, already read."""
        import tiktoken

        self._specials(bos_id, eos_id, dtype)
        self.spec = spec
        if ranks is None:
            ranks = (
                read_tiktoken_ranks(Path(spec.rank_file))
                if spec.rank_file
                else _ranks_from_json(spec.tokenizer_json)
            )
        self.enc = tiktoken.Encoding(
            "mixer",
            pat_str=spec.pattern,
            mergeable_ranks=ranks,
            special_tokens={_NEVER: max(ranks.values()) + 1},
        )
        core = self.enc._core_bpe  # the Rust encoder behind every public method
        self._buffer = getattr(core, "encode_to_tiktoken_buffer", None)  # tiktoken >= 0.8
        self._lists = core.encode_ordinary

    def _flat(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        try:
            if self._buffer is None:
                ids = [self._lists(t) for t in texts]
                lengths = np.fromiter(map(len, ids), np.int64, len(ids))
                flat = np.fromiter(chain.from_iterable(ids), np.uint32, int(lengths.sum()))
                return flat, lengths
            none: frozenset[str] = frozenset()
            bufs = [memoryview(self._buffer(t, none)) for t in texts]
        except UnicodeEncodeError:  # lone surrogates: refuse them as `tokenizers` does
            raise TypeError("a text with lone surrogates") from None
        lengths = np.fromiter((b.nbytes for b in bufs), np.int64, len(bufs)) >> 2
        return np.frombuffer(b"".join(bufs), np.uint32), lengths
