"""The serving cache: each shard of a split unpacked once into a memory-mappable file.

Why not mosaicml-streaming's reader: it opens and decodes one sample at a time, ~50x slower
than a memmap (tools/bench_mixture.py). Instead each shard, on first use, is fetched (downloaded
if remote, with mosaicml-streaming's downloaders), checked against the manifest's sha256,
decompressed to exactly its declared size, its blocks checked (ids inside the vocabulary,
document starts inside their blocks; a build read from elsewhere is data:
`mixer.artifacts.checks`), and, once the disk has room for it, written once into its own cache
file holding the blocks' token ids in the build's dtype and their document starts
(`mixer.serve.shardfile`): about the token bytes, where storing position ids beside them took
2-4x. A batch is then one fancy-index copy per shard it
touches; position ids are derived from the starts per batch (`mixer.serve.positions`).

Layout: ``<cache_dir>/<manifest fingerprint[:16]>/<source>/<split>/shard-NNNNNN-<sha256[:16]>.blk``
(plus ``.lock`` files, and ``download/`` for a remote shard while it is unpacked). Paths are
derived in one place (`SplitStore.shard_path`), from names checked on load and again here and
in `mixer.artifacts.fetch` (every path resolved inside the cache or the build), and a shard is
fetched and decompressed in one place (`SplitStore._fill`). Several processes may share the
folder; `mixer.serve.cache_limit` holds the protocol that makes filling and the optional size limit
(``cache_limit``) safe.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from pathlib import Path

import numpy as np

from mixer.artifacts.buildfile import sha256_checked
from mixer.artifacts.fetch import cache_root, fetch, is_remote, local_path, private_dir
from mixer.artifacts.manifest import FILENAME as MANIFEST_FILE
from mixer.artifacts.manifest import MAX_RECORD_BYTES, SPLITS, Manifest, ShardRecord, SplitRecord
from mixer.artifacts.planfile import FILENAME as PLAN_FILE
from mixer.artifacts.shards import Block, ShardReader, bad_starts, read_shard_file
from mixer.errors import OutputError, UnsafeBuildError, UsageError
from mixer.serve.cache_limit import CacheLimit, check_room, locked
from mixer.serve.shardfile import CachedShard, encode, file_size
from mixer.syntax import NAME_RE


def open_build(path: str, cache_dir: str | os.PathLike | None = None) -> Manifest:
    """The manifest of a build, local or remote (remote: manifest and plan fetched first)."""
    if not is_remote(path):
        return Manifest.load(local_path(path))
    parts = str(path).replace("://", "/", 1).strip("/").split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise UsageError(f"{path}: not a plain URL of a build folder (an empty, . or .. part)")
    remote = cache_root(cache_dir) / "remote"
    meta = remote.joinpath(*parts)
    for name in (MANIFEST_FILE, PLAN_FILE):  # read afresh, renamed over the last copy: never
        # removed first, so that the other processes opening the build never miss them
        fetch(path, name, meta / name, within=remote, limit=MAX_RECORD_BYTES, fresh=True)
    return dataclasses.replace(Manifest.load(meta, where=str(path)), location=str(path))


def fill_bytes(root: str, record: ShardRecord) -> int:
    """Disk a shard needs while it is filled: its unpacked file (at most the raw MDS shard's
    size: 4 bytes per block and 2-4 per start, against MDS's 8 and 4) and, if remote, its
    download."""
    return record.raw_bytes + (record.bytes if is_remote(root) else 0)


def check_limit(limit: int | None, manifest: Manifest, split: str, sources) -> None:
    """A limit below the largest shard's fill could never be kept: a clear error instead."""
    if limit is None:
        return
    need, name = max(
        (
            (fill_bytes(manifest.location, rec), f"{s}/{split}")
            for s in sources
            for rec in manifest.split(s, split).shards
        ),
        default=(0, ""),
    )
    if limit < need:
        raise UsageError(
            f"cache_limit={limit:,} bytes is smaller than one shard of {name} ({need:,} bytes"
            " to unpack it): give it room for a few windows of shards (with mixture.shuffle:"
            " shards, 3 x window shards per source)"
        )


class SplitStore:
    """The blocks of one split of one source, served from per-shard cache files."""

    def __init__(
        self,
        *,
        root: str,
        cache: Path,
        source: str,
        split: str,
        record: SplitRecord,
        seq_len: int,
        dtype: str,
        cache_limit: CacheLimit | None = None,
        vocab_size: int | None = None,
    ):
        if not NAME_RE.fullmatch(source) or split not in SPLITS:  # checked on load: a second guard
            raise UnsafeBuildError(f"{source!r}/{split!r}: not a source and a split; refused")
        self.root, self.source, self.split = str(root), source, split
        self.rel = f"sources/{source}/{split}"
        self.cache = Path(cache) / source / split
        self.vocab_size = vocab_size
        self.shards = record.shards
        self.seq_len, self.dtype = seq_len, np.dtype(dtype)
        sizes = [s.samples for s in self.shards]
        self.bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.cache_limit = cache_limit or CacheLimit(Path(cache).parent, None)
        self._maps: dict[int, CachedShard] = {}
        self._recent: set[int] = set()  # shards read since the last check for evicted ones
        self._generation = self.cache_limit.generation

    def __len__(self) -> int:
        return int(self.bounds[-1])

    def shard_path(self, sh: int) -> Path:
        """Shard ``sh``'s cache file (these three methods derive every path in the cache)."""
        return self.cache / f"shard-{sh:06d}-{self.shards[sh].sha256[:16]}.blk"

    def lock_path(self, sh: int) -> Path:
        return self.cache / f"shard-{sh:06d}.lock"

    def download_path(self, sh: int) -> Path:
        """Where a remote shard is downloaded to (a local build's shard is read in place)."""
        return self.cache / "download" / self.shards[sh].file

    def _fetch(self, sh: int) -> Path:
        rec = self.shards[sh]
        rel = f"{self.rel}/{rec.file}"
        return fetch(self.root, rel, self.download_path(sh), within=self.cache, size=rec.bytes)

    def _read(self, sh: int) -> tuple[Path, ShardReader]:
        """Fetch shard ``sh``, check it against the manifest (sha256, then decompressed to
        exactly its declared size, its layout, blocks and document starts), and parse it."""
        rec = self.shards[sh]
        src = self._fetch(sh)
        root = self.cache if is_remote(self.root) else local_path(self.root)
        if sha256_checked(src, root, "a shard", size=rec.bytes) != rec.sha256:
            raise OutputError(
                f"{src}: shard does not match the manifest (sha256 differs): it is corrupted or"
                " was altered; rebuild the output or restore the file"
            )
        reader = read_shard_file(
            src, seq_len=self.seq_len, dtype=self.dtype.str, raw_bytes=rec.raw_bytes, root=root
        )
        if len(reader) != rec.samples:
            raise OutputError(f"{src}: {len(reader)} blocks, the manifest says {rec.samples}")
        return src, reader

    def gather(self, blocks: np.ndarray, out: np.ndarray, at: np.ndarray) -> list[np.ndarray]:
        """Copy the token ids of ``blocks`` into ``out[at]`` (widened to ``out``'s dtype);
        return their document starts as flat offsets ``at[i] * seq_len + offset``, in pieces."""
        blocks = np.asarray(blocks, np.int64)
        which = np.searchsorted(self.bounds, blocks, side="right") - 1
        first = int(which[0]) if which.size else -1
        if not which.size:
            groups = []
        elif (which == first).all():  # the usual case: one shard, no grouping
            groups = [(first, blocks, at)]
        else:  # one fancy-index copy per shard, not per block
            groups = []
            for sh in np.unique(which).tolist():
                sel = np.flatnonzero(which == sh)
                groups.append((sh, blocks[sel], at[sel]))
        keys = []
        for sh, mine, dest in groups:
            m = self._maps.get(sh) or self._map(sh)
            local = mine - self.bounds[sh]
            out[dest] = m.tokens[local]
            keys.append(m.start_keys(local, dest * self.seq_len))
        self.cache_limit.used([self._maps[sh].path for sh, _, _ in groups])
        if self._generation != self.cache_limit.generation:
            self._drop_removed()
        self._recent.update(sh for sh, _, _ in groups)
        return keys

    def tokens(self, blocks) -> np.ndarray:
        """``[K, seq_len]`` token ids of ``blocks``, in the build's dtype."""
        out = np.empty((len(blocks), self.seq_len), self.dtype)
        self.gather(blocks, out, np.arange(len(blocks)))
        return out

    def block(self, i: int) -> Block:
        """One block with its document starts, straight from its shard (for inspection)."""
        sh = int(np.searchsorted(self.bounds, i, side="right") - 1)
        _, reader = self._read(sh)
        b = reader.block(i - int(self.bounds[sh]))
        return Block(np.array(b.input_ids), np.array(b.starts))

    # -- filling the cache ----------------------------------------------------------------
    def _open(self, sh: int) -> CachedShard | None:
        return self._open_file(self.shard_path(sh), sh)

    def _open_file(self, path: Path, sh: int, check: bool = True) -> CachedShard | None:
        return CachedShard.open(
            path,
            blocks=self.shards[sh].samples,
            seq_len=self.seq_len,
            dtype=self.dtype,
            check=check,
        )

    def _map(self, sh: int) -> CachedShard:
        """Map shard ``sh``'s cache file, filling it first if no process has yet."""
        m = self._open(sh)
        if m is None:
            private_dir(self.cache)
            with locked(self.lock_path(sh)):  # one filler per shard
                m = self._open(sh)
                if m is None:
                    with self.cache_limit.reserve(fill_bytes(self.root, self.shards[sh])):
                        m = self._fill(sh)
        with contextlib.suppress(OSError):  # recency for the other processes' evictions
            os.utime(m.path)
        self._maps[sh] = m
        return m

    def _fill(self, sh: int) -> CachedShard:
        """Fetch, verify, decompress shard ``sh``; write its cache file; map it. The only
        place a shard is fetched and decompressed for serving."""
        rec, path, download = self.shards[sh], self.shard_path(sh), self.download_path(sh)
        for stale in [
            *self.cache.glob(f".{path.name}.*"),  # left by a killed filler of this shard
            *download.parent.glob(f".{download.name}.*"),
            *self.cache.glob("blocks.npy"),  # the previous layout: tokens and positions
            *self.cache.glob("shard-*.ready"),
        ]:
            stale.unlink(missing_ok=True)
        check_room(self.cache, fill_bytes(self.root, rec), f"shard {sh} of {self.rel}")
        src, reader = self._read(sh)
        ids, (rows, cols) = reader.all_ids(), reader.all_starts()
        self._check_blocks(src, ids, rows, cols)
        check_room(self.cache, file_size(ids, rows), f"shard {sh} of {self.rel}")
        pieces = encode(ids, rows, cols)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=self.cache)
        try:
            os.chmod(tmp, 0o644)  # readable like any other file, not mkstemp's 0600
            with open(fd, "wb") as f:  # plain writes: a full disk is an error, never a SIGBUS
                for piece in pieces:
                    f.write(piece)
                f.flush()
                os.fsync(f.fileno())
            m = self._open_file(Path(tmp), sh, check=False)  # just written; mapped before it is
            # visible: never evicted first
            os.replace(tmp, path)
        except OSError as e:
            Path(tmp).unlink(missing_ok=True)
            raise OutputError(
                f"{self.cache}: cannot fill the shard cache ({e.strerror}); free space, set"
                " cache_limit / $MIXER_CACHE_LIMIT, or set cache_dir / $MIXER_CACHE"
            ) from None
        if src.is_relative_to(self.cache):
            src.unlink(missing_ok=True)  # a downloaded copy is no longer needed
        assert m is not None, tmp  # just written whole
        m.path = path
        return m

    def _check_blocks(self, src: Path, ids: np.ndarray, rows, cols) -> None:
        """Ids inside the vocabulary (an id beyond it would crash the trainer's embedding)
        and document starts inside their blocks (else position ids would run over): two
        vectorized passes, once per shard."""
        block = bad_starts(rows, cols, self.seq_len)
        if block is not None:
            raise OutputError(f"{src}: block {block} has invalid document starts; refused")
        top = int(ids.max()) if ids.size else 0
        if self.vocab_size is not None and top >= self.vocab_size:
            raise OutputError(
                f"{src}: token id {top} is beyond the build's vocabulary of {self.vocab_size:,}"
                " ids; refused (corrupted or altered)"
            )

    def _drop_removed(self) -> None:
        """Forget mappings whose file was evicted and that were not read since the last check,
        so that their space comes back. One still being read is kept: its data is intact, and
        dropping it would fetch the shard again at once."""
        for sh, m in list(self._maps.items()):
            if sh not in self._recent and m.removed():
                del self._maps[sh]
        self._recent.clear()
        self._generation = self.cache_limit.generation
