"""Tiktoken rank files (Llama 3's ``tokenizer.model``, Qwen's ``qwen.tiktoken``): reading them,
the ids of their special tokens, and the equivalent `tokenizers` byte-level BPE.

The conversion merges are derived from the ranks, and ``ignore_merges`` makes a pre-token that
is itself in the vocabulary one token, exactly as tiktoken does (tests check the ids against
tiktoken).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
from binascii import a2b_base64 as a2b
from functools import lru_cache
from pathlib import Path

import numpy as np

from mixer.artifacts.fetch import private_dir
from mixer.builder import rank_cache
from mixer.errors import TokenizerError
from mixer.identity import digest

#: Pre-tokenization regexes of known tiktoken vocabularies and the special tokens they bring.
PATTERNS = {
    "llama3": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    "qwen": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
}
_LLAMA3_NAMED = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|step_id|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
    "<|image|>",
]
SPECIALS = {
    "llama3": _LLAMA3_NAMED
    + [f"<|reserved_special_token_{i + 2}|>" for i in range(256 - len(_LLAMA3_NAMED))],
    "qwen": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    + [f"<|extra_{i}|>" for i in range(205)],
}


def read_tiktoken_ranks(path: Path) -> dict[bytes, int]:
    """Parse a tiktoken BPE file: one ``<base64 token> <rank>`` per line (once per file's
    content: then from `mixer.builder.rank_cache`)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise TokenizerError(f"{path}: cannot read the tiktoken file: {e}") from None
    sha256 = hashlib.sha256(data).hexdigest()
    ranks = rank_cache.load(sha256)
    if ranks is None:
        ranks = _parse_ranks(path, data.splitlines())
        rank_cache.store(sha256, ranks)
    return ranks


def _parse_ranks(path: Path, lines: list[bytes]) -> dict[bytes, int]:
    try:  # one C call per token (Qwen: 0.12 s, not twice that)
        ranks = {a2b(t, strict_mode=True): int(r) for t, r in map(bytes.split, filter(None, lines))}
    except ValueError:  # binascii.Error is one; name the line
        ranks = _ranks_line_by_line(path, lines)
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise TokenizerError(f"{path}: tiktoken ranks are not 0..{len(ranks) - 1} without gaps")
    if any(bytes([b]) not in ranks for b in range(256)):
        raise TokenizerError(f"{path}: tiktoken file lacks some of the 256 single-byte tokens")
    return ranks


def _ranks_line_by_line(path: Path, lines: list[bytes]) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            ranks[a2b(token, strict_mode=True)] = int(rank)
        except ValueError:
            raise TokenizerError(
                f"{path}:{n}: not a tiktoken BPE file (expected '<base64 token> <rank>' lines)"
            ) from None
    return ranks


def tiktoken_token_id(ranks: dict[bytes, int], pattern: str | None, text: str) -> int | None:
    """The id the converted tokenizer gives ``text`` (``token_to_id``), from the ranks alone:
    one of the pattern's special tokens (numbered after the ranks), else a vocabulary token
    named in GPT-2's byte-level alphabet."""
    specials = SPECIALS.get(pattern or "", [])
    if text in specials:
        return len(ranks) + specials.index(text)
    decode = _byte_decoder()
    if not text or any(c not in decode for c in text):
        return None
    return ranks.get(bytes(decode[c] for c in text))


def tiktoken_vocab_size(ranks: dict[bytes, int], pattern: str | None) -> int:
    return len(ranks) + len(SPECIALS.get(pattern or "", []))


def tiktoken_to_tokenizers(path: Path, pattern: str | None, ranks: dict[bytes, int] | None = None):
    """An equivalent `tokenizers` byte-level BPE for a tiktoken rank file (``ranks``: the file
    already read)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

    ranks = read_tiktoken_ranks(path) if ranks is None else ranks
    regex = PATTERNS.get(pattern or "", pattern)
    names = _byte_level_names(ranks)
    model = models.BPE(
        vocab=dict(zip(names, ranks.values(), strict=True)),
        merges=_merges(ranks, dict(zip(ranks.values(), names, strict=True))),
        ignore_merges=True,
    )
    tok = Tokenizer(model)
    try:
        split = pre_tokenizers.Split(Regex(regex), behavior="isolated")
    except Exception as e:
        raise TokenizerError(f"tokenizer.pattern: invalid regex: {e}") from None
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [split, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    tok.decoder = decoders.ByteLevel()
    specials = SPECIALS.get(pattern or "", [])
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    assert all(tok.token_to_id(s) == len(ranks) + i for i, s in enumerate(specials))
    return tok


#: Bump when `tiktoken_to_tokenizers` would give another tokenizer.json for the same file.
CONVERSION = 1


def converted_json(path: Path, pattern: str | None, ranks: dict[bytes, int], sha256: str) -> str:
    """The tokenizer.json text equivalent to a tiktoken rank file (``sha256``: the file's).

    Converting Qwen's vocabulary costs about 1.3 s of CPU (its 294,166 merges, then the
    serialization), which every build of that file would pay while its workers encode. So the
    text is kept in mixer's cache (`cache_root`/tokenizers) under a key of all it depends on:
    the file's sha256, the pattern and special tokens, this conversion and the `tokenizers`
    version that serialized it; its name carries its own sha256, checked when it is read (a
    damaged copy is converted again). A cache that cannot be written costs only the time.
    """
    import tokenizers

    from mixer.artifacts.fetch import cache_root

    key = digest(
        {
            "file": sha256,
            "pattern": PATTERNS.get(pattern or "", pattern),
            "specials": SPECIALS.get(pattern or "", []),
            "conversion": CONVERSION,
            "tokenizers": tokenizers.__version__,
        }
    )
    folder = cache_root() / "tokenizers"
    for found in sorted(folder.glob(f"{key}.*.json")):
        text = _read_checked(found)
        if text is not None:
            return text
    text = tiktoken_to_tokenizers(path, pattern, ranks).to_str()
    _store(folder, key, text)
    return text


def _read_checked(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeError):
        return None
    if hashlib.sha256(text.encode()).hexdigest() == path.name.split(".")[1]:
        return text
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)
    return None


def _store(folder: Path, key: str, text: str) -> None:
    """``text`` as ``KEY.SHA256.json``, written whole (a temporary file renamed) or not at all."""
    tmp = folder / f".{key}.{os.getpid()}.tmp"
    try:
        private_dir(folder)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, folder / f"{key}.{hashlib.sha256(text.encode()).hexdigest()}.json")
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _merges(ranks: dict[bytes, int], name: dict[int, str]) -> list[tuple[str, str]]:
    """BPE merges equivalent to tiktoken's ranks: for every token, each split into two tokens,
    ordered by (the token's rank, the left part's, the right part's), so BPE applies the
    lowest-ranked pair first as tiktoken does, and a token made by several splits gets them
    all. Lookups go through C-level ``map`` calls and the bookkeeping through numpy, not a
    Python loop per split point (Qwen: 824,326 split points, 294,166 merges)."""
    toks = [t for t in ranks if len(t) > 1]
    n = np.fromiter(map(len, toks), np.int64, len(toks)) - 1  # split points per token
    missing = itertools.repeat(-1)
    prefixes = [t[:i] for t in toks for i in range(1, len(t))]
    left = np.fromiter(map(ranks.get, prefixes, missing), np.int64, len(prefixes))
    ok = np.flatnonzero(left >= 0)
    owner = np.repeat(np.arange(len(toks)), n)[ok]
    cut = ok - np.repeat(np.cumsum(n) - n, n)[ok] + 1
    suffixes = [toks[k][i:] for k, i in zip(owner.tolist(), cut.tolist(), strict=True)]
    right = np.fromiter(map(ranks.get, suffixes, missing), np.int64, len(suffixes))
    good = right >= 0
    rank = np.fromiter(map(ranks.__getitem__, toks), np.int64, len(toks))[owner[good]]
    left, right = left[ok][good], right[good]
    order = np.lexsort((right, left, rank))
    return [
        (name[a], name[b]) for a, b in zip(left[order].tolist(), right[order].tolist(), strict=True)
    ]


def _byte_level_names(ranks: dict[bytes, int]) -> list[str]:
    """Each token's name in a byte-level BPE vocabulary (GPT-2's byte -> character map)."""
    to_str = _byte_encoder()
    table = str.maketrans({chr(b): to_str(bytes([b])) for b in range(256)})
    return [t.decode("latin-1").translate(table) for t in ranks]


@lru_cache(maxsize=1)
def _byte_encoder():
    """GPT-2's reversible byte -> printable character map, which byte-level BPE vocabularies use."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    chars = [table[b] for b in range(256)]
    return lambda data: "".join(chars[b] for b in data)


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    to_str = _byte_encoder()
    return {to_str(bytes([b])): b for b in range(256)}
