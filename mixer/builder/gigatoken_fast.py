"""The gigatoken encoder: a Rust BPE (byte-level, and SentencePiece-style with byte fallback)
that gives `tokenizers`' and tiktoken's ids several times faster per core.

It is used only where it loads the tokenizer and gives the reference's ids on every source's
sample (`mixer.builder.encoders`). Two differences from how mixer encodes are handled here, not
left to the check: gigatoken splits special-token text out of a document (mixer encodes a
literal ``<|endoftext|>`` as plain text, like tiktoken's ``encode_ordinary``), so the special
added tokens are removed from the tokenizer.json it loads, and a tiktoken file is loaded
without special tokens; and gigatoken names a tiktoken file's pre-tokenizer by scheme, not by
regex, so only the patterns whose scheme is known are loaded from the ranks (any other from
the converted tokenizer.json).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from mixer.builder.tiktoken_vocab import PATTERNS
from mixer.builder.tokenizer import BuildTokenizer, Encoder

#: The gigatoken releases whose ids the tests check (pyproject's `fast` extra has the same
#: bounds); another release is used only when asked for by name (`encoder: gigatoken`).
TESTED = ((0, 10), (0, 11))
#: gigatoken's name of each tiktoken pattern's pre-tokenizer (the same regex, hand-written).
SCHEMES = {PATTERNS["qwen"]: "qwen2", PATTERNS["llama3"]: "gpt4"}


@dataclass(frozen=True)
class GigatokenSpec:
    """What a worker needs to load the gigatoken encoding (small and picklable)."""

    tokenizer_json: str | None = None  # a tokenizer.json without its special added tokens, or
    rank_file: str | None = None  # ... a tiktoken file and
    scheme: str | None = None  # ... gigatoken's name of its pre-tokenizer

    def load(self, *, bos_id, eos_id, dtype: str) -> GigatokenEncoder:
        return GigatokenEncoder(self, bos_id=bos_id, eos_id=eos_id, dtype=dtype)


def version() -> str | None:
    """The installed gigatoken's version, or None when it cannot be imported."""
    try:
        from importlib.metadata import version as dist_version

        import gigatoken  # noqa: F401

        return dist_version("gigatoken")
    except Exception:  # noqa: BLE001 (absent, or broken: either way not usable)
        return None


def tested(v: str) -> bool:
    parts = tuple(int(p) for p in v.split(".")[:2] if p.isdigit())
    return TESTED[0] <= parts < TESTED[1]


def gigatoken_spec(tok: BuildTokenizer) -> GigatokenSpec:
    """The spec for ``tok``: from the ranks where the pattern's scheme is known, else from the
    tokenizer.json (a tiktoken file's conversion included)."""
    if tok.spec.kind == "tiktoken":
        scheme = SCHEMES.get(PATTERNS.get(tok.spec.pattern or "", tok.spec.pattern))
        if scheme is not None:
            return GigatokenSpec(rank_file=tok.spec.location, scheme=scheme)
    return GigatokenSpec(tokenizer_json=without_specials(tok.info.json))


def without_specials(text: str) -> str:
    """``text`` without its special added tokens: documents never hold them as tokens."""
    d = json.loads(text)
    d["added_tokens"] = [t for t in d.get("added_tokens") or [] if not t.get("special")]
    return json.dumps(d, ensure_ascii=False)


class GigatokenEncoder(Encoder):
    """The Encoder interface on gigatoken, single-threaded (one core per worker): one call
    per text, each giving a numpy array of ids.

    Not its batch call: that returns an `awkward` array, and importing awkward costs every
    worker 52 MB of memory and about 0.3 s; one call per text encodes at 136 MB/s against the
    batch's 228 (Qwen's vocabulary, one core, tools/bench_build.py's texts), a cost below the
    import's for a worker's first ~130 MB and small beside reading and parsing (70 MB/s).
    """

    def __init__(self, spec: GigatokenSpec, *, bos_id, eos_id, dtype: str):
        import gigatoken

        self._specials(bos_id, eos_id, dtype)
        self.spec = spec
        if spec.rank_file is not None:
            tok = gigatoken.Tokenizer.from_tiktoken(spec.rank_file, pretokenizer=spec.scheme)
        else:
            tok = gigatoken.Tokenizer.from_json(spec.tokenizer_json)
        self._one = tok.backend.encode

    def _flat(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        ids = list(map(self._one, texts))  # TypeError for lone surrogates, as `tokenizers`
        lengths = np.fromiter(map(len, ids), np.int64, len(ids))
        return (np.concatenate(ids) if ids else np.empty(0, np.uint32)), lengths
