"""Loading a tokenizer (tokenizer.json, hub name, tiktoken rank file), its identity, and encoding.

Every kind ends as a `tokenizers.Tokenizer`, so the build has one encoding path and the output
folder can carry a self-contained ``tokenizer.json``. A tiktoken rank file (Llama 3's
``tokenizer.model``, Qwen's ``qwen.tiktoken``) is converted to an equivalent byte-level BPE:
merges are derived from the ranks, and ``ignore_merges`` makes a pre-token that is itself in
the vocabulary one token, exactly as tiktoken does (tests check the ids against tiktoken).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain
from pathlib import Path

import numpy as np

from mixer.errors import TokenizerError
from mixer.identity import sha256_file
from mixer.recipe import TokenizerSpec

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
#: Names looked up, in this order, when the recipe does not name bos_token / eos_token.
EOS_NAMES = ("<|end_of_text|>", "<|endoftext|>", "</s>", "<eos>", "<|eos|>")
BOS_NAMES = ("<|begin_of_text|>", "<s>", "<bos>", "<|startoftext|>", "<|endoftext|>")


@dataclass(frozen=True, kw_only=True)
class TokenizerInfo:
    """A loaded tokenizer's identity, as recorded in the manifest."""

    kind: str
    name: str  # the file path or hub name the recipe gave
    file: str | None  # the file it was read from (copied into the output)
    file_sha256: str | None
    fingerprint: str  # sha256 of the canonical tokenizer.json: equal ids <=> equal fingerprint
    vocab_size: int
    bos: bool
    eos: bool
    bos_id: int | None
    eos_id: int | None
    pad_id: int
    dtype: str  # "uint16" when every id fits, else "uint32"
    json: str  # the tokenizers serialization (not in the manifest: it is a file of the output)

    def to_manifest(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "json"}
        return d


def load_tokenizer(spec: TokenizerSpec) -> TokenizerInfo:
    """Load the tokenizer a recipe names and resolve its BOS/EOS ids; TokenizerError if it can't."""
    if spec.kind == "path":
        file = Path(spec.location)
        tok = _from_file(file)
    elif spec.kind == "hf":
        file = _hub_file(spec.location, spec.revision)
        tok = _from_file(file)
    else:
        file = Path(spec.location)
        tok = tiktoken_to_tokenizers(file, spec.pattern)
    text = tok.to_str()
    vocab_size = tok.get_vocab_size(with_added_tokens=True)
    bos_id = _special_id(tok, spec.bos_token, BOS_NAMES, "bos") if spec.bos else None
    eos_id = _special_id(tok, spec.eos_token, EOS_NAMES, "eos") if spec.eos else None
    pad_id = next((i for i in (eos_id, bos_id) if i is not None), 0)
    return TokenizerInfo(
        kind=spec.kind,
        name=spec.location,
        file=str(file),
        file_sha256=sha256_file(file),
        fingerprint=hashlib.sha256(text.encode()).hexdigest(),
        vocab_size=vocab_size,
        bos=spec.bos,
        eos=spec.eos,
        bos_id=bos_id,
        eos_id=eos_id,
        pad_id=pad_id,
        dtype="uint16" if vocab_size <= 1 << 16 else "uint32",
        json=text,
    )


def _from_file(file: Path):
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(file))
    except Exception as e:  # tokenizers raises a bare Exception on malformed JSON
        raise TokenizerError(f"{file}: not a Hugging Face tokenizer.json: {e}") from None


def _hub_file(name: str, revision: str | None) -> Path:
    """Fetch tokenizer.json through huggingface_hub (honours HF_HUB_OFFLINE and its cache)."""
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(name, "tokenizer.json", revision=revision))
    except Exception as e:  # network, auth, missing repo or file: all mean "cannot get it"
        raise TokenizerError(
            f"tokenizer.hf: cannot get tokenizer.json of {name!r} from the Hugging Face hub"
            f" ({type(e).__name__}); check the name and access, or download the file and use"
            " `tokenizer: {path: tokenizer.json}`"
        ) from None


def _special_id(tok, given: str | None, names: tuple[str, ...], which: str) -> int:
    if given is not None:
        tid = tok.token_to_id(given)
        if tid is None:
            raise TokenizerError(
                f"tokenizer.{which}_token: {given!r} is not in the tokenizer's vocabulary"
            )
        return tid
    for name in names:
        tid = tok.token_to_id(name)
        if tid is not None:
            return tid
    raise TokenizerError(
        f"tokenizer.{which}: the tokenizer has none of the usual {which.upper()} tokens"
        f" ({', '.join(names)}); name it with `{which}_token:` or set `{which}: false`"
    )


def read_tiktoken_ranks(path: Path) -> dict[bytes, int]:
    """Parse a tiktoken BPE file: one ``<base64 token> <rank>`` per line."""
    ranks: dict[bytes, int] = {}
    try:
        lines = path.read_bytes().splitlines()
    except OSError as e:
        raise TokenizerError(f"{path}: cannot read the tiktoken file: {e}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except ValueError:
            raise TokenizerError(
                f"{path}:{n}: not a tiktoken BPE file (expected '<base64 token> <rank>' lines)"
            ) from None
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise TokenizerError(f"{path}: tiktoken ranks are not 0..{len(ranks) - 1} without gaps")
    if any(bytes([b]) not in ranks for b in range(256)):
        raise TokenizerError(f"{path}: tiktoken file lacks some of the 256 single-byte tokens")
    return ranks


def tiktoken_to_tokenizers(path: Path, pattern: str | None):
    """An equivalent `tokenizers` byte-level BPE for a tiktoken rank file."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

    ranks = read_tiktoken_ranks(path)
    regex = PATTERNS.get(pattern or "", pattern)
    to_str = _byte_encoder()
    # BPE applies the lowest-ranked pair first, like tiktoken; a token made by several splits
    # gets them all, ordered by the ranks of their parts.
    merges = []
    for token, rank in ranks.items():
        splits = [
            (ranks[token[:i]], ranks[token[i:]], i)
            for i in range(1, len(token))
            if token[:i] in ranks and token[i:] in ranks
        ]
        merges.extend((rank, ra, rb, token[:i], token[i:]) for ra, rb, i in sorted(splits))
    merges.sort(key=lambda m: m[:3])
    model = models.BPE(
        vocab={to_str(t): r for t, r in ranks.items()},
        merges=[(to_str(a), to_str(b)) for *_, a, b in merges],
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


class Encoder:
    """Batched encoding inside a build worker: texts -> one flat id array plus lengths.

    Special-token text inside documents (a literal ``<|endoftext|>``) is encoded as plain text,
    like tiktoken's ``encode_ordinary``: a document cannot inject a separator. BOS/EOS are added
    by id around each document, as the recipe asks.
    """

    def __init__(self, tokenizer_json: str, *, bos_id: int | None, eos_id: int | None, dtype: str):
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_str(tokenizer_json)
        self.tok.encode_special_tokens = True
        self._specials(bos_id, eos_id, dtype)

    def _specials(self, bos_id: int | None, eos_id: int | None, dtype: str) -> None:
        self.bos_id, self.eos_id, self.dtype = bos_id, eos_id, np.dtype(dtype)

    def _flat(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(ids of the texts concatenated, int64 lengths); TypeError for lone surrogates."""
        ids = [e.ids for e in self.tok.encode_batch_fast(texts, add_special_tokens=False)]
        lengths = np.fromiter(map(len, ids), np.int64, len(ids))
        return np.fromiter(chain.from_iterable(ids), self.dtype, int(lengths.sum())), lengths

    def encode(self, texts: list[str], first=None, last=None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, lengths) of the texts concatenated; BOS before the texts where ``first`` (default
        all) and EOS after those where ``last`` (pieces of one long document get them once)."""
        flat, lengths = self._flat(texts)
        flat = flat.astype(self.dtype, copy=False)
        n = len(texts)
        bos = np.ones(n, bool) if first is None else np.asarray(first, bool)
        eos = np.ones(n, bool) if last is None else np.asarray(last, bool)
        bos &= self.bos_id is not None
        eos &= self.eos_id is not None
        if not (bos.any() or eos.any()):
            return flat, lengths
        out_len = lengths + bos + eos
        starts = np.cumsum(out_len) - out_len
        out = np.empty(int(out_len.sum()), self.dtype)
        keep = np.ones(out.size, bool)
        out[starts[bos]] = self.bos_id if self.bos_id is not None else 0
        keep[starts[bos]] = False
        ends = (starts + out_len - 1)[eos]
        out[ends] = self.eos_id if self.eos_id is not None else 0
        keep[ends] = False
        out[keep] = flat
        return out, out_len
