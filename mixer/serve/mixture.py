"""`StreamingMixture`: the plan's global sequence, sliced for this rank and DataLoader worker.

Thin by design: the order is `mixer.plan` (pure arithmetic), the bytes are `mixer.serve.cache`
(fetch, verify, unpack once, memory-map). What is left here is choosing which global samples
this process serves, gathering them a chunk at a time, and the resume state.
"""

from __future__ import annotations

import os

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from mixer.artifacts.planfile import load_plan, val_plan
from mixer.errors import StateError, UsageError
from mixer.serve import state
from mixer.serve.buffers import Buffers, chunk_samples
from mixer.serve.cache import SplitStore, cache_root, check_limit, open_build
from mixer.serve.cache_limit import CacheLimit, parse_limit
from mixer.serve.online import Online
from mixer.serve.padding import BlockPadding
from mixer.serve.pin import check_expected
from mixer.serve.positions import positions_of_starts
from mixer.serve.ranks import rank_world

WINDOW_SAMPLES = 4096  # samples whose order and blocks are computed in one vectorized step
CHUNK_SAMPLES = 256  # samples gathered at once, at most: fewer for long samples (chunk_samples)


class StreamingMixture(IterableDataset):
    """A weighted mixture of the blocks built by ``mixer build``, exactly as planned.

    Args:
        path: the build's output folder, local or remote (``s3://bucket/out``, ``gs://...``).
        split: ``"train"`` (the plan in plan.json) or ``"val"`` (every held-out block once).
        batch_size: per-rank batch size B of the trainer's DataLoader. Given, batches are the
            same for any ``num_workers``; not given, samples are dealt one at a time (B = 1).
        rank, world_size: this process's **data-parallel** rank and the number of data-parallel
            replicas (torchtitan's ``dp_rank`` / ``dp_world_size``): processes given the same rank
            get the same batches. Default: torch.distributed's rank and world size, else $RANK /
            $WORLD_SIZE, else 0 / 1 -- right only when every process is its own data-parallel
            replica (DDP, FSDP); under tensor, pipeline or context parallelism pass them.
        source: serve one source alone (e.g. validation loss on the replay data only).
        position_ids: include ``position_ids`` (default). A trainer that does not reset positions
            at document starts can turn them off: half the bytes through a DataLoader.
        cache_dir: where shards are fetched and unpacked; default $MIXER_CACHE or
            ~/.cache/mixer, in a folder named after the manifest.
        cache_limit: the most bytes the cache folder may hold (``"20GiB"`` or an int; default
            $MIXER_CACHE_LIMIT, else no limit): least recently used shards are evicted.
        expect: the plan fingerprint `mixer verify` printed: any other plan is refused.

    A sample: ``input_ids``, ``position_ids`` (0 at each document start), ``source``, ``index``
    (global), and ``num_padding`` for builds that pad (docs/training.md).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        split: str = "train",
        batch_size: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        *,
        source: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        cache_limit: int | str | None = None,
        position_ids: bool = True,
        expect: str | None = None,
    ):
        super().__init__()
        self.path = str(path)
        if split not in ("train", "val"):
            raise UsageError(f"split must be 'train' or 'val', got {split!r}")
        if batch_size is not None and batch_size < 1:
            raise UsageError(f"batch_size must be >= 1, got {batch_size}")
        self.split, self.batch_size, self.position_ids = split, batch_size, position_ids
        self.rank, self.world_size = rank_world(rank, world_size)
        self.manifest = open_build(self.path, cache_dir)
        plan = load_plan(self.manifest) if split == "train" else val_plan(self.manifest)
        check_expected(expect, self.manifest, plan if split == "train" else None)
        self._online = Online(plan.restrict(source) if source else plan)
        self.cache_limit = parse_limit(cache_limit)
        check_limit(self.cache_limit, self.manifest, split, [p.name for p in self.plan.sources])
        self.cache_dir = cache_root(cache_dir) / self.manifest.fingerprint[:16]
        self._start = 0  # global sample where this rank's slicing starts (the resume point)
        self._skip = 0  # batches of that slicing this process served before this iteration
        self._yielded = 0  # samples this process handed out in this iteration
        self._exhausted = False  # this iteration reached its end (a short last batch is whole)
        self._stores: dict[str, SplitStore] = {}
        self._cache_limit: CacheLimit | None = None
        self._buffers = Buffers()
        self._padding = BlockPadding(self.manifest, split, self.cache_dir)

    # -- what the plan says ---------------------------------------------------------------
    @property
    def plan(self):
        """The plan served: the build's, amended by the changes made online (`set_weights`)."""
        return self._online.plan

    @property
    def total_samples(self) -> int:
        """N: the global sequence's length (all ranks, all passes)."""
        return self.plan.total

    @property
    def seq_len(self) -> int:
        return self.plan.seq_len

    def counts_at(self, n: int) -> dict[str, dict[str, int]]:
        """Samples and tokens (padding excluded) per source in the first n global samples."""
        if not 0 <= n <= self.plan.total:
            raise UsageError(f"n must be in [0, {self.plan.total}], got {n}")
        return self._padding.counts_at(self.plan, n)

    def _slicing(self, start: int | None = None):
        from mixer.plan import Slicing

        return Slicing(
            start=self._start if start is None else start,
            total=self.plan.total,
            batch=self.batch_size or 1,
            world=self.world_size,
            rank=self.rank,
            drop_last=self.split == "train",
        )

    def __len__(self) -> int:
        """Samples this rank yields from the start of the current iteration to the end (from the
        state, in the main process; with DataLoader workers the loader counts batches)."""
        return self._slicing(self._slicing().global_seen(self._skip)).num_samples

    # -- resume ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Small state of plain ints and strings (`mixer.serve.state`), taken between batches.

        In the main process: ``samples_seen``, the global samples consumed (complete global
        batches), the same on every rank. Inside a DataLoader worker: that worker's own progress,
        which torchdata's StatefulDataLoader snapshots with each batch and gives back to the same
        worker on resume. A call in the middle of a batch means the DataLoader's batch size is not
        this dataset's ``batch_size``: an error, since rounding would replay or skip samples.
        """
        sl = self._slicing()
        done = self._skip + self._batches_done(sl.batch)
        info = get_worker_info()
        common = {"split": self.split, "batch": sl.batch, "world": self.world_size}
        if self._online.changes:
            common["journal"] = self._online.state()
        if info is None:
            seen = sl.global_seen(done)
            return state.global_state(seen=seen, plan=self.plan.lineage(seen), **common)
        where = {"start": self._start, "worker": info.id, "workers": info.num_workers}
        position = state.worker_position(**where, batches=done, batch=sl.batch, world=sl.world)
        lineage = self.plan.lineage(min(position, self.plan.total))
        return state.worker_state(**where, batches=done, plan=lineage, **common)

    def load_state_dict(self, sd: dict) -> None:
        """Continue after ``sd["samples_seen"]`` global samples, in O(1).

        The world size, batch size and number of workers may differ from the run that saved it:
        global batches are counted from the resume point. A DataLoader worker's own state (see
        :meth:`state_dict`) resumes that worker, with the same batch size and world size.
        """
        if isinstance(sd, dict):  # the state's online changes (none: the build's plan)
            self._online.replace(sd.get("journal", []))
        plan, total = self.plan, self.plan.total
        if state.is_worker_state(sd):
            info = get_worker_info()
            self._start, self._skip = state.check_worker(
                sd,
                plan=plan,
                total=total,
                worker=(info.id, info.num_workers) if info else None,
                batch=self.batch_size or 1,
                world=self.world_size,
            )
        else:
            self._start, self._skip = state.check_global(sd, plan=plan, total=total), 0
        self._yielded, self._exhausted = 0, False

    # -- online weights -------------------------------------------------------------------
    def set_weights(self, weights: dict[str, float], at_sample: int | None = None) -> int:
        """Serve ``weights`` from global sample ``at_sample`` on, exactly (an amendment, see
        `mixer.serve.online`); returns that sample. None: the first global-batch boundary this
        process has not started (with DataLoader workers use ``MixerLoader.set_weights``, or
        give ``at_sample`` and start a new iteration). Every data-parallel rank must make the
        same change (checked)."""
        sl = self._slicing()
        position = sl.global_seen(self._skip + -(-self._yielded // sl.batch))  # batches started
        return self._online.set(weights, at_sample, position, self.split)

    def _batches_done(self, batch: int) -> int:
        """Batches this process handed out in the current iteration (a short last one counts)."""
        done, part = divmod(self._yielded, batch)
        if part and not self._exhausted:
            raise StateError(
                f"state_dict() after {self._yielded} samples, in the middle of a batch of"
                f" {batch}: give StreamingMixture the DataLoader's batch_size and take the"
                " state between batches"
            )
        return done + (part > 0)

    # -- iteration ------------------------------------------------------------------------
    def __iter__(self):
        """This rank's (and worker's) batches from the current state: training continues after
        the batches already handed out (the plan is the whole run, never a second pass);
        validation starts at its state each time (every evaluation sees the same blocks)."""
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        sl = self._slicing()
        if self.split == "train":
            self._skip += self._yielded // sl.batch
        self._yielded, self._exhausted = 0, False
        first = worker + self._skip * workers  # workers take batches in turn
        while not (yield from self._serve_from(sl, first, workers)):
            pass  # the weights changed (set_weights): locate the rest again, from this sample
        self._exhausted = True

    def _serve_from(self, sl, first: int, workers: int):
        """Yield from the next sample of this iteration on; False if the plan changed on the way
        (the samples already yielded are before the change, so they stay as they were)."""
        version = self._online.version
        done, drop = divmod(self._yielded, sl.batch)
        mine = range(first + done * workers, sl.num_batches, workers)
        per_window = max(1, WINDOW_SAMPLES // sl.batch)
        for w in range(0, len(mine), per_window):
            batches = np.asarray(mine[w : w + per_window], np.int64)
            src, ks, index = self._locate(sl, batches)
            step = chunk_samples(self.seq_len, CHUNK_SAMPLES)
            for a in range(drop if w == 0 else 0, index.size, step):
                b = a + step
                for sample in self._samples(src[a:b], ks[a:b], index[a:b]):
                    if self._online.version != version:
                        return False
                    self._yielded += 1  # before the yield: a sample is consumed once handed out
                    yield sample
        return True

    def _locate(self, sl, batches: np.ndarray):
        """(source, k, global index) of every sample of these batches, in order."""
        starts = sl.batch_start(batches)
        src, ks = self.plan.order(starts, sl.batch)
        index = (starts[:, None] + np.arange(sl.batch)).ravel()
        short = sl.batch - sl.batch_len(int(batches[-1]))
        if short:  # the final batch of a validation run may be short
            src, ks, index = src[:-short], ks[:-short], index[:-short]
        blocks = np.empty_like(ks)
        for s in np.unique(src):
            sel = src == s
            blocks[sel] = self.plan.block_ids(int(s), ks[sel])
        return src, blocks, index

    def _samples(self, src, blocks, index):
        out = self._gather(src, blocks)
        names = [p.name for p in self.plan.sources]
        pads = self._padding.of(self.plan, src, blocks)
        for j, (s, i) in enumerate(zip(src.tolist(), index.tolist(), strict=True)):
            sample = {"input_ids": out[0, j], "source": names[s], "index": i}
            if self.position_ids:
                sample["position_ids"] = out[1, j]
            if pads is not None:
                sample["num_padding"] = pads[j]
            yield sample

    # -- gathering ------------------------------------------------------------------------
    def _gather(self, src: np.ndarray, blocks: np.ndarray) -> np.ndarray:
        """``[1 or 2, K, seq_len]`` int64: token ids (and position ids) of these blocks."""
        rows, L = 2 if self.position_ids else 1, self.plan.seq_len
        out = self._buffers.get((rows, src.size, L))
        starts = []
        for s in np.unique(src).tolist():
            sel = np.flatnonzero(src == s)
            starts += self._store(self.plan.sources[s].name).gather(blocks[sel], out[0], sel)
        if rows == 2:
            positions_of_starts(starts, src.size, L, out=out[1])
        return out

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_stores"] = {}  # memory maps are reopened in each DataLoader worker
        state["_cache_limit"] = None  # so is the record of recently used shards
        state["_buffers"] = Buffers()
        return state

    def _store(self, name: str) -> SplitStore:
        if name not in self._stores:
            if self._cache_limit is None:
                self._cache_limit = CacheLimit(self.cache_dir.parent, self.cache_limit)
            self._stores[name] = SplitStore(
                root=self.manifest.location,
                cache=self.cache_dir,
                source=name,
                split=self.split,
                record=self.manifest.split(name, self.split),
                seq_len=self.plan.seq_len,
                dtype=self.manifest.dtype,
                cache_limit=self._cache_limit,
                vocab_size=self.manifest.tokenizer.vocab_size,
            )
        return self._stores[name]
