"""Loading a tokenizer (tokenizer.json, hub name, tiktoken rank file), its identity, and encoding.

Every kind ends as a `tokenizers.Tokenizer`, so the build has one encoding path and the output
folder can carry a self-contained ``tokenizer.json``. A tiktoken rank file (Llama 3's
``tokenizer.model``, Qwen's ``qwen.tiktoken``) is converted to an equivalent byte-level BPE:
merges are derived from the ranks, and ``ignore_merges`` makes a pre-token that is itself in
the vocabulary one token, exactly as tiktoken does (tests check the ids against tiktoken).
"""

from __future__ import annotations

import copy
import functools
import hashlib
from dataclasses import dataclass, field, fields
from itertools import chain
from pathlib import Path

import numpy as np

from mixer.artifacts.manifest import TokenizerFields
from mixer.builder.tiktoken_vocab import (  # noqa: F401 (re-exported)
    PATTERNS,
    SPECIALS,
    converted_json,
    read_tiktoken_ranks,
    tiktoken_to_tokenizers,
    tiktoken_token_id,
    tiktoken_vocab_size,
)
from mixer.errors import TokenizerError
from mixer.identity import sha256_file
from mixer.recipe import TokenizerSpec

#: Names looked up, in this order, when the recipe does not name bos_token / eos_token.
EOS_NAMES = ("<|end_of_text|>", "<|endoftext|>", "</s>", "<eos>", "<|eos|>")
BOS_NAMES = ("<|begin_of_text|>", "<s>", "<bos>", "<|startoftext|>", "<|endoftext|>")


@dataclass(frozen=True, kw_only=True)
class TokenizerInfo(TokenizerFields):
    """A loaded tokenizer: what the manifest records of it (``name``: the file path or hub name
    the recipe gave, ``file``: the file read, copied into the output), its serialization and
    the loaded object."""

    json: str  # the tokenizers serialization (not in the manifest: it is a file of the output)
    tokenizer: object = field(default=None, repr=False, compare=False)  # the loaded object

    def to_manifest(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(TokenizerFields)}


@dataclass(frozen=True, kw_only=True)
class Ids:
    """What encoding and packing need: the ids added around documents and the dtype."""

    bos_id: int | None
    eos_id: int | None
    pad_id: int
    dtype: str


def _ids(spec: TokenizerSpec, token_to_id, vocab_size: int) -> Ids:
    bos_id = _special_id(token_to_id, spec.bos_token, BOS_NAMES, "bos") if spec.bos else None
    eos_id = _special_id(token_to_id, spec.eos_token, EOS_NAMES, "eos") if spec.eos else None
    return Ids(
        bos_id=bos_id,
        eos_id=eos_id,
        pad_id=next((i for i in (eos_id, bos_id) if i is not None), 0),
        dtype="uint16" if vocab_size <= 1 << 16 else "uint32",
    )


def load_tokenizer(spec: TokenizerSpec, ranks: dict[bytes, int] | None = None) -> TokenizerInfo:
    """Load the tokenizer a recipe names and resolve its BOS/EOS ids; TokenizerError if it can't.
    ``ranks``: a tiktoken file's ranks, already read."""
    tok = None
    if spec.kind == "tiktoken":  # ids from the ranks; tokenizer.json converted once, then cached
        file = Path(spec.location)
        ranks = read_tiktoken_ranks(file) if ranks is None else ranks
        file_sha256 = sha256_file(file)
        text = converted_json(file, spec.pattern, ranks, file_sha256)
        vocab_size = tiktoken_vocab_size(ranks, spec.pattern)
        token_to_id = functools.partial(tiktoken_token_id, ranks, spec.pattern)
    else:
        file = (
            Path(spec.location) if spec.kind == "path" else _hub_file(spec.location, spec.revision)
        )
        tok = _from_file(file)
        file_sha256 = sha256_file(file)
        text = tok.to_str()
        vocab_size = tok.get_vocab_size(with_added_tokens=True)
        token_to_id = tok.token_to_id
    ids = _ids(spec, token_to_id, vocab_size)
    return TokenizerInfo(
        kind=spec.kind,
        name=spec.location,
        file=str(file),
        file_sha256=file_sha256,
        fingerprint=hashlib.sha256(text.encode()).hexdigest(),
        vocab_size=vocab_size,
        bos=spec.bos,
        eos=spec.eos,
        **ids.__dict__,
        json=text,
        tokenizer=tok,
    )


class BuildTokenizer:
    """The build's tokenizer in two steps: ``ids`` at once (all a worker needs to encode), the
    full :class:`TokenizerInfo` when ``info`` is first asked for. For a tiktoken file the ids
    come from its ranks alone, while ``info`` builds the equivalent tokenizer.json (about a
    second for Qwen's vocabulary): the build asks for it while the workers already encode."""

    def __init__(self, spec: TokenizerSpec):
        self.spec = spec
        self.ranks: dict[bytes, int] | None = None
        self._info: TokenizerInfo | None = None
        if spec.kind != "tiktoken":
            self._info = load_tokenizer(spec)
            self.ids = Ids(**{k: getattr(self._info, k) for k in Ids.__dataclass_fields__})
            return
        from tokenizers import Regex

        self.ranks = read_tiktoken_ranks(Path(spec.location))
        try:
            Regex(PATTERNS.get(spec.pattern or "", spec.pattern))
        except Exception as e:
            raise TokenizerError(f"tokenizer.pattern: invalid regex: {e}") from None
        self.ids = _ids(
            spec,
            functools.partial(tiktoken_token_id, self.ranks, spec.pattern),
            tiktoken_vocab_size(self.ranks, spec.pattern),
        )

    @property
    def ready(self) -> bool:
        return self._info is not None

    @property
    def info(self) -> TokenizerInfo:
        if self._info is None:
            self._info = load_tokenizer(self.spec, self.ranks)
            got = {k: getattr(self._info, k) for k in Ids.__dataclass_fields__}
            assert got == self.ids.__dict__, (got, self.ids)  # the same ids, found two ways
        return self._info


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


def _special_id(token_to_id, given: str | None, names: tuple[str, ...], which: str) -> int:
    if given is not None:
        tid = token_to_id(given)
        if tid is None:
            raise TokenizerError(
                f"tokenizer.{which}_token: {given!r} is not in the tokenizer's vocabulary"
            )
        return tid
    for name in names:
        tid = token_to_id(name)
        if tid is not None:
            return tid
    raise TokenizerError(
        f"tokenizer.{which}: the tokenizer has none of the usual {which.upper()} tokens"
        f" ({', '.join(names)}); name it with `{which}_token:` or set `{which}: false`"
    )


class Encoder:
    """Batched encoding inside a build worker: texts -> one flat id array plus lengths.

    Special-token text inside documents (a literal ``<|endoftext|>``) is encoded as plain text,
    like tiktoken's ``encode_ordinary``: a document cannot inject a separator. BOS/EOS are added
    by id around each document, as the recipe asks.
    """

    def __init__(self, tokenizer_json, *, bos_id: int | None, eos_id: int | None, dtype: str):
        """``tokenizer_json``: the serialization, or a loaded `tokenizers.Tokenizer`, which this
        encoder then owns (it sets its encoding options; parsing Qwen's JSON again costs 0.7 s)."""
        from tokenizers import Tokenizer

        self.tok = (
            Tokenizer.from_str(tokenizer_json)
            if isinstance(tokenizer_json, str)
            else tokenizer_json
        )
        self.tok.encode_special_tokens = True
        self._specials(bos_id, eos_id, dtype)

    def _specials(self, bos_id: int | None, eos_id: int | None, dtype: str) -> None:
        self.bos_id, self.eos_id, self.dtype = bos_id, eos_id, np.dtype(dtype)

    def with_ids(self, *, bos_id: int | None, eos_id: int | None, dtype: str) -> Encoder:
        """This encoder with other BOS/EOS ids and dtype, sharing its loaded tokenizer."""
        other = copy.copy(self)
        other._specials(bos_id, eos_id, dtype)
        return other

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
