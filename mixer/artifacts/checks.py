"""What a build may declare: checks of a manifest and a plan that anyone could have written.

Teams train on builds they did not make (a replay pool in a shared bucket, a colleague's
dataset), and fingerprints prove a build unchanged, never harmless: anyone can recompute them.
So before a reader joins a path or sizes a buffer from a manifest or a plan, every such value
is checked here, once, when the file is loaded: `Refused` (a `FieldError` naming the dotted
field) becomes an `UnsafeBuildError` naming the build. The places that join paths check again
(`mixer.artifacts.fetch.inside`).

The bounds, and why:

- a source name is a folder: the recipe's rule (1-64 letters, digits, ``_ - .``, starting with
  a letter or digit); a shard file is named as the writer names it (``shard.00012.mds.zstd``);
  a tokenizer file is one printable path component that does not start with ``.``;
- ``seq_len`` 2 .. 2^20 tokens (a served sample: 16 MiB); ``dtype`` uint16 or uint32 (uint16
  only for a vocabulary of at most 65,536 ids), every special id inside the vocabulary;
- a shard's ``raw_bytes`` is at most 512 MiB (a shard is unpacked in memory once, when first
  served: so a reader's memory is bounded whatever the build declares) and exactly what its
  ``samples`` of ``seq_len`` tokens can take: 8 + n (8 + L s) bytes plus the shard's config
  (< 64 KiB) plus 4 bytes per document start (at most L per block); its ``bytes`` at most zstd's
  bound for that; the blocks of a split are the sum of its shards' samples and its tokens add
  up; padding < seq_len (best-fit: <= L a block); every count below 2^53 (exact in a double);
- a plan serves the manifest's sources with their very block and shard counts, its counts sum
  to its total, and its phases tile it: so it cannot index outside the shards.
"""

from __future__ import annotations

import re

from mixer.syntax import NAME_RE
from mixer.typed import FieldError

ORIGINS_FILE = "origins.bin"  # a split's provenance table (`mixer.artifacts.origins`)
# Matched with fullmatch, never match and `$` (which matches before a trailing newline: "a\n")
SHARD_FILE_RE = re.compile(r"shard\.[0-9]{5,9}\.mds\.zstd")  # ShardWriter's names
HEX64_RE = re.compile(r"[0-9a-f]{64}")  # a sha256 (hex), as every fingerprint and hash
REASON_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")  # a skip reason (mixer.builder.readers.REASONS)
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # would reach a terminal through a report

MAX_SEQ_LEN = 1 << 20  # a served sample: 16 MiB (ids and positions, int64); the recipe's bound
MAX_SHARD_BYTES = 1 << 29  # unpacked in memory when first served (~2x); the recipe's bound
MAX_CONFIG_BYTES = 1 << 16  # an MDS shard's config (mixer writes about 250 bytes)
MAX_COUNT = 1 << 53
MAX_HIST_BINS = 64
DTYPES = {"uint16": 2, "uint32": 4}
SHUFFLES = ("blocks", "shards", "none")


class Refused(FieldError):
    """A value a reader will not act on (``where``: the dotted field)."""


def _require(ok: bool, where: str, why: str) -> None:
    if not ok:
        raise Refused(where, why)


def count(value: int, where: str, low: int = 0, high: int = MAX_COUNT) -> None:
    """``low <= value <= high``, else Refused naming the field and the range."""
    _require(low <= value <= high, where, f"{value} is outside [{low:,}, {high:,}]")


def printable(text: str, where: str, limit: int = 4096) -> None:
    _require(len(text) <= limit, where, f"longer than {limit} characters")
    _require(not _CONTROL_RE.search(text), where, "holds control characters")


def hex64(text: str, where: str) -> None:
    ok = bool(HEX64_RE.fullmatch(text))
    _require(ok, where, f"{text[:80]!r} is not a sha256 (64 hex digits)")


def source_name(name: str, where: str) -> None:
    _require(
        bool(NAME_RE.fullmatch(name)),
        where,
        f"{name[:80]!r} is not a source name (1-64 letters, digits, '_', '-' or '.', starting"
        " with a letter or digit): it names a folder",
    )


def shard_file(name: str, where: str) -> None:
    _require(
        bool(SHARD_FILE_RE.fullmatch(name)),
        where,
        f"{name[:80]!r} is not a shard file name (shard.NNNNN.mds.zstd, in its split's folder)",
    )


def file_name(name: str, where: str) -> None:
    """One path component: no separator, not ``.``-led (so neither ``.`` nor ``..``)."""
    ok = 0 < len(name) <= 255 and not name.startswith(".") and not re.search(r"[/\\:]", name)
    _require(ok, where, f"{name[:80]!r} is not a plain file name (one path component)")
    printable(name, where)


# -- the manifest ---------------------------------------------------------------------------
def check_manifest(m) -> None:
    """Every value of a typed `Manifest` a reader relies on (see the module docstring)."""
    hex64(m.fingerprint, "manifest.fingerprint")
    for key in ("name", "mixer_version", "packing", "remainder"):
        printable(getattr(m, key), f"manifest.{key}")
    _require(m.seed >= 0, "manifest.seed", f"{m.seed} is negative")
    count(m.seq_len, "manifest.seq_len", 2, MAX_SEQ_LEN)
    _tokenizer(m.tokenizer, "manifest.tokenizer")
    _require(bool(m.sources), "manifest.sources", "no source")
    itemsize = DTYPES[m.tokenizer.dtype]
    for name, src in m.sources.items():
        where = f"manifest.sources.{name}"
        source_name(name, where)
        _source(src, where)
        for split in ("train", "val"):
            _split(src.split(split), f"{where}.{split}", m.seq_len, itemsize)


def _tokenizer(t, where: str) -> None:
    _require(t.dtype in DTYPES, f"{where}.dtype", f"{t.dtype[:40]!r} is not uint16 or uint32")
    count(t.vocab_size, f"{where}.vocab_size", 1, 1 << 32)
    if t.dtype == "uint16":
        count(t.vocab_size, f"{where}.vocab_size", 1, 1 << 16)  # ids must fit the dtype
    for key in ("bos_id", "eos_id", "pad_id"):
        if getattr(t, key) is not None:
            count(getattr(t, key), f"{where}.{key}", 0, t.vocab_size - 1)
    hex64(t.fingerprint, f"{where}.fingerprint")
    if t.file_sha256 is not None:
        hex64(t.file_sha256, f"{where}.file_sha256")
    for key in ("kind", "name", "file"):
        printable(getattr(t, key), f"{where}.{key}")
    for name, sha in t.files.items():
        file_name(name, f"{where}.files.{name[:80]}")
        hex64(sha, f"{where}.files.{name}")


def _source(src, where: str) -> None:
    hex64(src.key, f"{where}.key")
    if src.weight is not None:
        _require(src.weight >= 0, f"{where}.weight", f"{src.weight} is negative")
    count(src.inputs.units, f"{where}.inputs.units")
    for i, f in enumerate(src.inputs.files or ()):
        count(f.bytes, f"{where}.inputs.files[{i}].bytes", high=1 << 62)
        printable(f.path, f"{where}.inputs.files[{i}].path")
        if f.sha256 is not None:  # None: read under a take, not hashed whole
            hex64(f.sha256, f"{where}.inputs.files[{i}].sha256")
    _skipped(src.skipped, f"{where}.skipped")
    for i, (reason, location) in enumerate(src.skipped_examples):
        printable(reason, f"{where}.skipped_examples[{i}]")
        printable(location, f"{where}.skipped_examples[{i}]")
    if src.take is not None:
        _take(src.take, f"{where}.take")
    v = src.validation
    if v.docs is not None:
        count(v.docs, f"{where}.validation.docs")
    if v.fraction is not None:
        _require(0 <= v.fraction <= 1, f"{where}.validation.fraction", "not in [0, 1]")


def _take(t, where: str) -> None:
    """Reported by `mixer stats` and compared on reuse; never a path or a size to act on."""
    printable(t.measure, f"{where}.measure", 64)
    for key in ("documents", "tokens", "units"):
        count(getattr(t, key), f"{where}.{key}")
    if t.bytes_read is not None:
        count(t.bytes_read, f"{where}.bytes_read", high=1 << 62)
    if t.stopped is not None:
        printable(t.stopped, f"{where}.stopped")
    hex64(t.selection, f"{where}.selection")


def _skipped(skipped: dict[str, int], where: str) -> None:
    for reason, n in skipped.items():
        _require(bool(REASON_RE.fullmatch(reason)), where, f"{reason[:40]!r} is not a skip reason")
        count(n, f"{where}.{reason}")


def _split(rec, where: str, seq_len: int, itemsize: int) -> None:
    for key in ("documents", "tokens", "blocks", "dropped_tokens"):
        count(getattr(rec, key), f"{where}.{key}")
    most = rec.blocks * seq_len if rec.padding else min(rec.blocks, 1) * (seq_len - 1)
    count(rec.padding_tokens, f"{where}.padding_tokens", high=most)  # best-fit pads every block
    _require(
        sum(s.samples for s in rec.shards) == rec.blocks,
        f"{where}.blocks",
        f"{rec.blocks} is not the sum of its shards' samples",
    )
    _require(
        rec.blocks * seq_len - rec.padding_tokens + rec.dropped_tokens == rec.tokens,
        f"{where}.tokens",
        f"{rec.tokens} does not add up (blocks x seq_len - padding + dropped)",
    )
    hist = f"{where}.doc_length_log2_hist"
    _require(len(rec.doc_length_log2_hist) <= MAX_HIST_BINS, hist, "more than 64 bins")
    for i, n in enumerate(rec.doc_length_log2_hist):
        count(n, f"{hist}[{i}]")
    _skipped(rec.skipped, f"{where}.skipped")
    seen = set()
    for i, shard in enumerate(rec.shards):
        at = f"{where}.shards[{i}]"
        shard_file(shard.file, f"{at}.file")
        _require(shard.file not in seen, f"{at}.file", f"{shard.file} is listed twice")
        seen.add(shard.file)
        hex64(shard.sha256, f"{at}.sha256")
        _shard_sizes(shard, at, seq_len, itemsize)
    if rec.origins is not None:  # the provenance table: its one name, in the split's folder
        at = f"{where}.origins"
        _require(rec.origins.file == ORIGINS_FILE, f"{at}.file", f"is not {ORIGINS_FILE}")
        count(rec.origins.bytes, f"{at}.bytes")
        hex64(rec.origins.sha256, f"{at}.sha256")


def raw_bounds(samples: int, seq_len: int, itemsize: int) -> tuple[int, int]:
    """The least and most bytes an MDS shard of ``samples`` blocks can decompress to: its
    header (count, offsets), its config, and per block 4 bytes of length, the token ids and
    4 bytes per document start (none to one per token)."""
    fixed = 8 + samples * (8 + seq_len * itemsize)
    return fixed, fixed + MAX_CONFIG_BYTES + samples * 4 * seq_len


def zstd_bound(raw: int) -> int:
    """The most a zstd frame of ``raw`` bytes takes (ZSTD_COMPRESSBOUND, plus its header)."""
    return raw + (raw >> 8) + (((128 << 10) - raw) >> 11 if raw < 128 << 10 else 0) + 32


def _shard_sizes(shard, at: str, seq_len: int, itemsize: int) -> None:
    count(shard.samples, f"{at}.samples")
    count(shard.raw_bytes, f"{at}.raw_bytes", high=MAX_SHARD_BYTES)
    low, high = raw_bounds(shard.samples, seq_len, itemsize)
    _require(
        low <= shard.raw_bytes <= high,
        f"{at}.raw_bytes",
        f"{shard.raw_bytes:,} bytes cannot hold {shard.samples:,} blocks of {seq_len:,} tokens"
        f" (expected {low:,} to {high:,})",
    )
    count(shard.bytes, f"{at}.bytes", 1, zstd_bound(shard.raw_bytes))


# -- the plan -------------------------------------------------------------------------------
def check_plan(plan, manifest) -> None:
    """A train plan that serves exactly the manifest's blocks: same sources, block and shard
    counts, padding; counts summing to the total, phases tiling it (see the docstring)."""
    _require(plan.split == "train", "plan.split", f"{plan.split[:40]!r} is not 'train'")
    _require(plan.seq_len == manifest.seq_len, "plan.seq_len", "differs from the manifest's")
    _require(plan.seed == manifest.seed, "plan.seed", "differs from the manifest's")
    _require(plan.shuffle in SHUFFLES, "plan.shuffle", f"{plan.shuffle[:40]!r} is unknown")
    count(plan.window, "plan.window", 1, 1 << 31)
    count(plan.total, "plan.total")
    names = [s.name for s in plan.sources]  # in the recipe's order; the manifest's are sorted
    _require(
        sorted(names) == sorted(manifest.source_names),
        "plan.sources",
        f"names {names[:8]} are not the manifest's {manifest.source_names[:8]}",
    )
    for i, s in enumerate(plan.sources):
        rec = manifest.split(s.name, "train")
        at = f"plan.sources[{i}]"
        _require(s.weight >= 0, f"{at}.weight", f"{s.weight} is negative")
        _require(s.num_blocks == rec.blocks, f"{at}.num_blocks", "differs from the manifest's")
        _require(s.num_blocks > 0, f"{at}.num_blocks", "no block to serve")
        _require(
            s.shard_sizes == tuple(x.samples for x in rec.shards),
            f"{at}.shard_sizes",
            "differ from the manifest's shards",
        )
        same = s.padding_tokens == (0 if rec.padding else rec.padding_tokens)  # last block
        _require(same, f"{at}.padding_tokens", "differs from the manifest's")
        count(s.num_samples, f"{at}.num_samples")
    _require(
        sum(s.num_samples for s in plan.sources) == plan.total,
        "plan.total",
        f"{plan.total} is not the sum of the sources' num_samples",
    )
    _phases(plan)


def _phases(plan) -> None:
    start = 0
    for p, ph in enumerate(plan.phases):
        at = f"plan.phases[{p}]"
        _require(len(ph.counts) == len(plan.sources), f"{at}.counts", "not one per source")
        _require(len(ph.weights) == len(plan.sources), f"{at}.weights", "not one per source")
        _require(all(w >= 0 for w in ph.weights), f"{at}.weights", "a weight is negative")
        _require(start < ph.end <= plan.total, f"{at}.end", f"{ph.end} is out of order")
        _require(all(c >= 0 for c in ph.counts), f"{at}.counts", "a count is negative")
        count(ph.offset or 0, f"{at}.offset")
        # an amendment may cut a phase short (and serve it from an offset), nothing else may
        cut = bool(plan.journal) and (ph.offset or 0) + ph.end - start <= sum(ph.counts)
        _require(
            cut or sum(ph.counts) == ph.end - start, f"{at}.counts", "do not sum to its length"
        )
        if ph.name is not None:
            printable(ph.name, f"{at}.name")
        start = ph.end
    if plan.phases:
        _require(start == plan.total, "plan.phases", "do not end at the plan's total")
        served = plan.counts_many([plan.total])[0].tolist()
        _require(
            served == [s.num_samples for s in plan.sources],
            "plan.phases",
            "counts do not sum to the sources' num_samples",
        )
