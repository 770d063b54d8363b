"""recipe.yaml -> frozen dataclasses, with every check done before any work starts.

A recipe is data, never code: it is read with a safe YAML loader that also refuses duplicate
keys. Relative paths resolve against the recipe's folder. Every mistake raises
:class:`RecipeError` naming the file and the key (``demo.yaml: sources.web.weight: ...``).
"""

from __future__ import annotations

import codecs
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mixer.errors import RecipeError
from mixer.recipe.inputs import HFSpec, parse_files, parse_hf
from mixer.recipe.keys import Keys, given, load_yaml
from mixer.recipe.mixture import MixtureSpec, check_weights, parse_mixture, positive
from mixer.recipe.take import TakeSpec, check_take, parse_take
from mixer.syntax import NAME_RE

TXT_MODES = ("file", "line", "paragraph")
TIKTOKEN_PATTERNS = ("llama3", "qwen")
ENCODERS = ("auto", "gigatoken", "tiktoken", "tokenizers")  # mixer.builder.encoders
DEFAULT_SHARD_SIZE = 1 << 26  # 64 MiB of uncompressed blocks per MDS shard
DEFAULT_MAX_DOCUMENT = 1 << 26  # a longer JSON record or text line is skipped (too_long)
PACKINGS = ("concat", "bestfit")  # mixer.builder.pack, mixer.builder.pack_bestfit
#: Documents best-fit packs at once: padding at seq_len 2048 on tools/bench_build.py's 30 MB
#: corpus 2.06% (window 1024), 1.36% (4096), 1.22% (16384); docs/packing.md.
DEFAULT_PACKING_WINDOW = 4096


@dataclass(frozen=True, kw_only=True)
class TokenizerSpec:
    kind: str  # "path" (tokenizer.json), "hf" (hub name) or "tiktoken" (BPE rank file)
    location: str  # a resolved file path, or a hub name for kind "hf"
    pattern: str | None = None  # tiktoken only: "llama3", "qwen" or a literal regex
    revision: str | None = None  # hf only
    bos: bool = False
    eos: bool = True
    bos_token: str | None = None
    eos_token: str | None = None
    # which encoder builds (mixer.builder.encoders): never part of the ids, so never of the
    # build's identity (Recipe.to_dict leaves it out)
    encoder: str = "auto"


@dataclass(frozen=True, kw_only=True)
class ValidationSpec:
    docs: int | None = None
    fraction: float | None = None

    @property
    def active(self) -> bool:
        return bool(self.docs) or bool(self.fraction)


@dataclass(frozen=True, kw_only=True)
class SourceSpec:
    name: str
    weight: float | None  # None when mixture.phases gives the weights
    files: tuple[str, ...] = ()  # resolved, expanded, in reading order
    hf: HFSpec | None = None
    text_field: str = "text"
    encoding: str = "utf-8"
    txt_mode: str = "file"
    validation: ValidationSpec = ValidationSpec()
    max_document_bytes: int = DEFAULT_MAX_DOCUMENT
    reuse: str | None = None  # `from:` another build's folder (resolved) ...
    reuse_source: str | None = None  # ... and the source's name there (default: this name)
    max_epochs: float | None = None  # overrides mixture.max_epochs for this source
    take: TakeSpec | None = None  # read only part of the source (`mixer.recipe.take`)
    packing: str | None = None  # overrides the recipe's packing for this source
    packing_window: int | None = None  # ... and its window (bestfit)

    def to_dict(self) -> dict[str, Any]:
        """Keys left unset are left out (a recipe without them keeps its manifest)."""
        d = asdict(self)
        for key in ("weight", "max_epochs", "take", "packing", "packing_window"):
            if d[key] is None:
                del d[key]
        if self.take is not None:
            d["take"] = self.take.to_dict()
        return d


@dataclass(frozen=True, kw_only=True)
class Recipe:
    name: str
    seq_len: int
    tokenizer: TokenizerSpec
    sources: tuple[SourceSpec, ...]
    seed: int = 0
    mixture: MixtureSpec = MixtureSpec()
    packing: str = "concat"
    remainder: str = "drop"
    packing_window: int | None = None  # bestfit's window; None: DEFAULT_PACKING_WINDOW
    shard_size: int = DEFAULT_SHARD_SIZE
    output: str | None = None
    path: str | None = None  # the recipe file, for messages

    def source(self, name: str) -> SourceSpec:
        return next(s for s in self.sources if s.name == name)

    def packing_of(self, spec: SourceSpec) -> tuple[str, int | None]:
        """(packing, window) of a source: its own keys, else the recipe's; window None for
        concat."""
        packing = spec.packing or self.packing
        if packing == "concat":
            return packing, None
        window = spec.packing_window or self.packing_window or DEFAULT_PACKING_WINDOW
        return packing, window

    def to_dict(self) -> dict[str, Any]:
        """The recipe as resolved (paths absolute, globs expanded, defaults filled), without
        where it was read from and where it is written: moving a build keeps its identity."""
        d = asdict(self)
        del d["output"], d["path"]
        if d["packing_window"] is None:
            del d["packing_window"]  # unset: recipes without it keep their manifests
        d["sources"] = [s.to_dict() for s in self.sources]
        d["mixture"] = self.mixture.to_dict()
        del d["tokenizer"]["encoder"]  # the same ids whichever encoder: the manifest's `encoders`
        return d


def load_recipe(path: str | os.PathLike, output: str | None = None) -> Recipe:
    """Read and validate ``path``; ``output`` (the CLI's ``--output``) overrides ``output:``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(f"{path}: no such recipe file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise RecipeError(f"{path}: cannot read the recipe: {e}") from None
    data = load_yaml(text, str(path))
    return parse_recipe(data, base_dir=path.parent, origin=str(path), output=output)


def parse_recipe(
    data: Any, *, base_dir: str | os.PathLike, origin: str = "recipe", output: str | None = None
) -> Recipe:
    """Validate an already-parsed recipe mapping (paths resolve against ``base_dir``)."""
    base = Path(base_dir).resolve()
    top = Keys(data, "", origin)
    name = top.str("name", default=Path(origin).stem)
    seq_len = top.int("seq_len", required=True, minimum=2)
    if seq_len > 1 << 20:  # mixer.artifacts.checks.MAX_SEQ_LEN: what a reader serves
        raise top.error(f"must be at most 1,048,576 tokens, got {seq_len:,}", key="seq_len")
    seed = top.int("seed", minimum=0)
    packing = top.choice("packing", PACKINGS)
    window = top.int("packing_window", minimum=1)
    remainder = top.choice("remainder", ("drop", "pad"))
    shard_size = top.size("shard_size")
    if shard_size is not None and shard_size > 1 << 29:  # checks.MAX_SHARD_BYTES
        raise top.error(
            "must be at most 512MiB (a shard is unpacked in memory when first served)",
            key="shard_size",
        )
    max_doc = top.size("max_document_bytes")  # every source's, unless it sets its own
    tok = _tokenizer(top.mapping("tokenizer", required=True), base)
    default_val = _validation(top.mapping("validation"))
    mixture = parse_mixture(top.mapping("mixture"))
    out = top.str("output")
    out = output if output is not None else (str((base / out).resolve()) if out else None)
    srcs = top.mapping("sources", required=True)
    if not srcs.data:
        raise RecipeError(f"{origin}: sources: at least one source is needed")
    sources = tuple(
        _source(srcs.mapping(key, required=True), key, base, default_val, max_doc)
        for key in srcs.names()
    )
    check_weights(mixture, sources, origin)
    check_take(sources, mixture, origin)
    top.finish()
    return given(
        Recipe,
        name=name,
        seq_len=seq_len,
        seed=seed,
        tokenizer=tok,
        sources=sources,
        mixture=mixture,
        packing=packing,
        remainder=remainder,
        packing_window=window,
        shard_size=shard_size,
        output=out,
        path=origin,
    )


def _check_encoding(k: Keys, encoding: str) -> None:
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise RecipeError(
            f"{k.origin}: {k.path('encoding')}: unknown encoding {encoding!r}"
        ) from None
    if not "\n a".encode(encoding, "replace").endswith(b"\n a"):  # utf-8-sig adds a BOM
        raise RecipeError(
            f"{k.origin}: {k.path('encoding')}: {encoding} is not ASCII-compatible; inputs are"
            " split into lines on b'\\n': convert the files to UTF-8 (iconv -t UTF-8)"
        )


def _tokenizer(k: Keys, base: Path) -> TokenizerSpec:
    kinds = [key for key in ("path", "hf", "tiktoken") if key in k.data]
    if len(kinds) != 1:
        found = f"got {', '.join(kinds)}" if kinds else "got none"
        raise k.error("exactly one of path, hf or tiktoken is needed", f"({found})")
    kind = kinds[0]
    value = k.str(kind, required=True)
    location = value if kind == "hf" else str(_existing_file(k, kind, value, base))
    pattern = k.str("pattern") if kind == "tiktoken" else None
    if kind == "tiktoken" and pattern is None:
        raise k.error(
            "tiktoken needs `pattern:`", f"({', '.join(TIKTOKEN_PATTERNS)} or a literal regex)"
        )
    spec = given(
        TokenizerSpec,
        kind=kind,
        location=location,
        pattern=pattern,
        revision=k.str("revision") if kind == "hf" else None,
        bos=k.bool("bos"),
        eos=k.bool("eos"),
        bos_token=k.str("bos_token"),
        eos_token=k.str("eos_token"),
        encoder=k.choice("encoder", ENCODERS),
    )
    k.finish()
    return spec


def _existing_file(k: Keys, key: str, value: str, base: Path) -> Path:
    p = (base / value).resolve()
    if not p.is_file():
        raise RecipeError(f"{k.origin}: {k.path(key)}: no such file: {p}")
    return p


def _validation(k: Keys) -> ValidationSpec:
    if not k.data:
        k.finish()
        return ValidationSpec()
    docs = k.int("docs", minimum=0)
    fraction = k.float("fraction")
    if (docs is None) == (fraction is None):
        raise k.error("give exactly one of docs or fraction")
    if fraction is not None and not 0 <= fraction < 1:
        raise RecipeError(f"{k.origin}: {k.path('fraction')}: must be in [0, 1), got {fraction}")
    k.finish()
    return ValidationSpec(docs=docs, fraction=fraction)


def _source(
    k: Keys, name: str, base: Path, default_val: ValidationSpec, max_doc: int
) -> SourceSpec:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise RecipeError(
            f"{k.origin}: sources.{name}: a source name must be 1-64 letters, digits, '_', '-'"
            " or '.', starting with a letter or digit (it names a folder of the output)"
        )
    weight = positive(k, "weight")
    has_files, has_hf, has_from = "files" in k.data, "hf" in k.data, "from" in k.data
    if has_files + has_hf + has_from != 1:
        raise k.error("give exactly one of files, hf or from")
    txt_mode = k.choice("txt_mode", TXT_MODES)
    encoding = k.str("encoding")
    if encoding is not None:
        _check_encoding(k, encoding)
    val = _validation(k.mapping("validation")) if "validation" in k.data else default_val
    max_doc = k.size("max_document_bytes", max_doc)
    spec = given(
        SourceSpec,
        name=name,
        weight=weight,
        text_field=k.str("text_field"),
        encoding=encoding,
        txt_mode=txt_mode,
        validation=val,
        max_document_bytes=max_doc,
        files=parse_files(k, base) if has_files else (),
        hf=parse_hf(k.mapping("hf"), base) if has_hf else None,
        reuse=str((base / k.str("from")).resolve()) if has_from else None,
        reuse_source=k.str("source"),
        max_epochs=positive(k, "max_epochs"),
        take=parse_take(k),
        packing=k.choice("packing", PACKINGS),
        packing_window=k.int("packing_window", minimum=1),
    )
    k.finish()
    return spec
