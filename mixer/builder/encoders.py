"""Which encoder builds: gigatoken, tiktoken or `tokenizers`, each used only with the ids of
the reference.

The reference is the recipe's tokenizer as `tokenizers` runs it, or tiktoken for a tiktoken
file. ``tokenizer.encoder: auto`` (the default) takes the first of gigatoken, tiktoken and
`tokenizers` that loads the tokenizer and gives the reference's ids on every source's sample
(its first documents, about 64,000 characters each) and on probes (every added token's text
inside a document, odd whitespace, scripts and digits); a named encoder that cannot load or
disagrees is an error. The check runs while the workers already encode with the first
candidate (`mixer.builder.tokenizing`). Which encoder ran, and the check's size, go into the
manifest's ``encoders``, outside its fingerprint: the ids, and so the bytes, are the same.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

import numpy as np

from mixer.builder import gigatoken_fast as giga
from mixer.builder import tiktoken_fast
from mixer.builder.readers import read_unit
from mixer.builder.tiktoken_vocab import SPECIALS
from mixer.builder.tokenizer import BuildTokenizer, Encoder
from mixer.builder.units import Unit
from mixer.errors import TokenizerError
from mixer.recipe import Recipe

ENCODERS = ("auto", "gigatoken", "tiktoken", "tokenizers")
AUTO = ("gigatoken", "tiktoken", "tokenizers")  # auto's order: fastest first
#: Texts where encoders are known to part ways (besides every added token's text).
PROBES = (
    " ",
    "  two leading spaces and two trailing  ",
    "\r\n\r\n\t\ttabs\t \n \n\n\n",
    "don't I'LL WE'VE you'd they're",
    "1234567890 3.14159 2024-01-01 ١٢٣ 一二三",
    "Ünïcödé e\u0301 ﬁ ß İstanbul ǅ",
    "中文，测试。日本語のテキスト 한국어 ไทย русский ελληνικά",
    "😀👍🏽 🇫🇷 👩‍👩‍👧 \u200b\u00a0\u3000 \ufeffx",
    "a" * 3000 + " " + "ab" * 700 + " " + " " * 50 + "!" * 40,
)
MAX_ADDED = 512  # added tokens probed


@dataclass(frozen=True)
class Candidate:
    """An encoder that loaded this tokenizer: ``spec`` is what a worker loads it from (None:
    `tokenizers` from the tokenizer.json), ``encoder`` this process's copy (no BOS/EOS)."""

    name: str
    version: str
    spec: object | None
    encoder: Encoder | None = field(repr=False, compare=False)  # None once checked


@dataclass(frozen=True, kw_only=True)
class Verdict:
    chosen: Candidate
    reference: str
    checked: dict[str, tuple[int, int]]  # per source: sample documents, their tokens
    message: str


def first(tok: BuildTokenizer, asked: str, label: str) -> tuple[Candidate, list[str]]:
    """(the first encoder to try: ``asked``, or auto's first that loads; why those before it
    did not)."""
    if asked != "auto":
        got = _load(tok, asked, strict=True)
        if isinstance(got, str):
            raise TokenizerError(f"{label}: cannot be used: {got}")
        return got, []
    why_not = []
    for name in AUTO:
        got = _load(tok, name)
        if not isinstance(got, str):
            return got, why_not
        why_not.append(f"{name}: {got}")
    raise AssertionError("unreachable: tokenizers loads what the build loaded")


def choose(
    tok: BuildTokenizer,
    start: Candidate,
    asked: str,
    label: str,
    samples: dict[str, list[str]],
    why_not: list[str] = (),
) -> tuple[Verdict, list[str]]:
    """(the encoder that gives the reference's ids, warnings): ``start`` if it does, else
    (auto only) the next that does; TokenizerError when a named encoder does not.
    ``why_not``: why auto's encoders before ``start`` were not loaded, for the message."""
    ref = reference(tok)
    if start.name == ref.name:  # nothing to check
        return _verdict(start, ref, {}, [], why_not), []
    texts = [t for ts in samples.values() for t in ts] + probes(tok)
    want = ref.encoder.encode(texts)
    notes: list[str] = []
    order = [start.name] + [n for n in AUTO[AUTO.index(start.name) + 1 :]]
    for name in order if asked == "auto" else [start.name]:
        cand = start if name == start.name else (ref if name == ref.name else _load(tok, name))
        if isinstance(cand, str):
            continue
        bad = None if cand.name == ref.name else _first_difference(cand.encoder, texts, want)
        if bad is None:
            return _verdict(cand, ref, samples, want[1], why_not), notes
        why = f"{cand.name} and {ref.name} give different ids on {texts[bad][:60]!r}"
        if asked != "auto":
            raise TokenizerError(f"{label}: cannot be used: {why}; leave the key out (auto)")
        notes.append(f"WARNING: {why}...: not used")
    raise AssertionError("unreachable: the reference gives its own ids")


def reference_name(tok: BuildTokenizer) -> str:
    """tiktoken for a tiktoken file (its ids define the vocabulary), else `tokenizers`."""
    return "tiktoken" if tok.spec.kind == "tiktoken" and _importable("tiktoken") else "tokenizers"


def _importable(name: str) -> bool:
    try:
        __import__(name)
        return True
    except ImportError:
        return False


def reference(tok: BuildTokenizer) -> Candidate:
    got = _load(tok, reference_name(tok), strict=True)
    assert not isinstance(got, str), got
    return got


def _verdict(cand: Candidate, ref: Candidate, samples, lengths, why_not) -> Verdict:
    checked, at = {}, 0
    if cand.name == ref.name:
        samples = {}  # the reference needs no check (nor the samples read for one)
    for name, texts in samples.items():
        checked[name] = (len(texts), int(lengths[at : at + len(texts)].sum()))
        at += len(texts)
    docs = sum(d for d, _ in checked.values())
    tokens = sum(t for _, t in checked.values())
    probed = len(lengths) - docs
    what = f"{cand.name} {cand.version}".rstrip()
    cand = dataclasses.replace(cand, encoder=None)  # the workers load their own: free this one
    if cand.name == ref.name:
        message = f"encoding with {what}, the reference"
        message += f" ({'; '.join(why_not)})" if why_not else ""
    else:
        message = (
            f"encoding with {what} (identical ids to {ref.name} on {docs} sample documents,"
            f" {tokens:,} tokens, and {probed} probes)"
        )
    return Verdict(chosen=cand, reference=ref.name, checked=checked, message=message)


def _first_difference(enc: Encoder, texts: list[str], want) -> int | None:
    a, la = want
    b, lb = enc.encode(texts)
    if np.array_equal(la, lb) and np.array_equal(a, b):
        return None
    sa, sb = np.cumsum(la) - la, np.cumsum(lb) - lb
    return next(
        i
        for i in range(len(texts))
        if la[i] != lb[i] or not np.array_equal(a[sa[i] : sa[i] + la[i]], b[sb[i] : sb[i] + lb[i]])
    )


def _load(tok: BuildTokenizer, name: str, strict: bool = False) -> Candidate | str:
    """The encoder ``name`` for ``tok``, or why not. ``strict``: asked by name (a gigatoken
    release the tests did not check is then used, the check still guards it)."""
    kw = {"bos_id": None, "eos_id": None, "dtype": tok.ids.dtype}
    if name == "tokenizers":
        import tokenizers

        return Candidate(
            name, tokenizers.__version__, None, Encoder(tok.info.tokenizer or tok.info.json, **kw)
        )
    if name == "tiktoken":
        spec, why = tiktoken_fast.tiktoken_spec(tok)
        if spec is None:
            return why
        try:
            import tiktoken

            return Candidate(name, tiktoken.__version__, spec, spec.load(**kw, ranks=tok.ranks))
        except Exception as e:  # noqa: BLE001 (a vocabulary tiktoken cannot take, for any reason)
            return f"tiktoken cannot take this vocabulary: {e}"
    v = giga.version()
    if v is None:
        return "gigatoken is not installed (pip install 'mixer[fast]')"
    if not strict and not giga.tested(v):
        return f"gigatoken {v} is not a tested release (0.10.x)"
    try:
        spec = giga.gigatoken_spec(tok)
        return Candidate(name, v, spec, spec.load(**kw))
    except Exception as e:  # noqa: BLE001 (a tokenizer gigatoken cannot load, for any reason)
        return f"gigatoken cannot load this tokenizer: {str(e)[:200]}"


def probes(tok: BuildTokenizer) -> list[str]:
    """PROBES, and each added token's text inside a document (mixer encodes it as text)."""
    if tok.spec.kind == "tiktoken":
        added = SPECIALS.get(tok.spec.pattern or "", [])
    else:
        added = [t["content"] for t in json.loads(tok.info.json).get("added_tokens") or []]
    return list(PROBES) + [f"x{a}y {a}\n{a}" for a in added[:MAX_ADDED]]


def sample_texts(
    recipe: Recipe, units: dict[str, list[Unit]], chars: int = 64_000
) -> dict[str, list[str]]:
    """Each source's first documents (about ``chars`` characters), for the check."""
    out: dict[str, list[str]] = {}
    for s in recipe.sources:
        if s.name not in units:
            continue
        texts, got = out.setdefault(s.name, []), 0
        for u in units[s.name][:4]:
            for _, text, reason in read_unit(u, s):
                if reason is None and _valid(text):
                    texts.append(text[:20_000])
                    got += len(texts[-1])
                if got >= chars:
                    break
            if got >= chars:
                break
    return out


def _valid(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:  # lone surrogates: the workers count and skip them
        return False


def asked(recipe: Recipe, cli: str | None) -> tuple[str, str]:
    """(the encoder asked for, where: for messages)."""
    if cli is not None:
        return cli, f"--encoder {cli}"
    return recipe.tokenizer.encoder, f"{recipe.path}: tokenizer.encoder: {recipe.tokenizer.encoder}"
