"""`MixerLoader`: a DataLoader over a `StreamingMixture` that is itself Stateful.

With DataLoader workers the dataset object in the trainer's process never sees what the workers
served, so its ``state_dict()`` cannot say how far training got. The loader can: it counts the
batches it hands to the trainer, in the main process, after any worker prefetching. Its state is
the global ``samples_seen`` (the same small dict as the mixture's, identical on every rank), which
is what Lightning Fabric, PyTorch Lightning and litgpt checkpoint when a loader has
``state_dict``/``load_state_dict`` (rank 0 saves, every rank loads).
"""

from __future__ import annotations

import os

from torch.utils.data import DataLoader

from mixer.errors import TrainerError, UsageError
from mixer.plan import Slicing
from mixer.serve import state
from mixer.serve.mixture import StreamingMixture


class MixerLoader(DataLoader):
    """A ``torch.utils.data.DataLoader`` of a mixture's batches that checkpoints and resumes.

    Args:
        dataset: a :class:`StreamingMixture` built with this ``batch_size``, or a build's path
            (local or remote) to open one with ``split``, ``rank``, ``world_size``, ``source``,
            ``cache_dir``, ``cache_limit`` and ``position_ids`` (see StreamingMixture;
            ``rank``/``world_size``
            are the data-parallel ones).
        batch_size: per-rank batch size B; must equal the mixture's (a different one would cut
            the mixture's batches and make the state land mid-batch).
        num_workers, collate_fn, pin_memory, prefetch_factor, persistent_workers,
        worker_init_fn, multiprocessing_context, timeout: as for DataLoader.

    Training (``split="train"``): each ``iter()`` continues after the batches already handed
    out (or loaded with :meth:`load_state_dict`); the batches are the plan's global batches,
    rank r's contiguous B-slice of each, for any ``num_workers``. ``state_dict()`` is
    ``{"samples_seen", "plan", "split", "batch_size", "world_size"}``: resuming with another
    number of workers, batch size or world size counts global batches from that point.
    ``len()`` is the plan's number of batches for this B and world size, whatever the position
    (an epoch is the plan: trainers that resume mid-epoch count the batches already done).
    Asking for a batch past the plan's end is an error, not an empty or repeated pass.

    Validation (``split="val"``): each ``iter()`` serves the held-out blocks from the start.
    ``persistent_workers`` keeps workers between validations; in training they are started
    again at each ``iter()`` (a rare event: a resume or a new epoch), from the loader's position.
    """

    def __init__(
        self,
        dataset: StreamingMixture | str | os.PathLike,
        batch_size: int,
        *,
        split: str | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        source: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        cache_limit: int | str | None = None,
        position_ids: bool | None = None,
        expect: str | None = None,
        num_workers: int = 0,
        collate_fn=None,
        pin_memory: bool = False,
        prefetch_factor: int | None = None,
        persistent_workers: bool = False,
        worker_init_fn=None,
        multiprocessing_context=None,
        timeout: float = 0,
    ):
        mixture_args = {"split": split, "rank": rank, "world_size": world_size, "source": source}
        mixture_args.update(cache_dir=cache_dir, cache_limit=cache_limit, position_ids=position_ids)
        mixture_args.update(expect=expect)
        ds = _open(dataset, batch_size, {k: v for k, v in mixture_args.items() if v is not None})
        super().__init__(
            ds,
            batch_size=batch_size,
            num_workers=num_workers,
            collate_fn=collate_fn,
            pin_memory=pin_memory,
            prefetch_factor=prefetch_factor,
            persistent_workers=persistent_workers,
            worker_init_fn=worker_init_fn,
            multiprocessing_context=multiprocessing_context,
            timeout=timeout,
        )
        self._samples_seen = ds.state_dict()["samples_seen"]  # global samples handed to the trainer

    # -- Stateful -------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Global samples handed to the trainer: the same plain dict on every rank."""
        ds = self.dataset
        return state.global_state(
            seen=self._samples_seen,
            plan=ds.plan.lineage(self._samples_seen),
            split=ds.split,
            batch=self.batch_size,
            world=ds.world_size,
            journal=ds._online.state(),
        )

    def load_state_dict(self, sd: dict) -> None:
        """Continue after ``sd["samples_seen"]`` global samples (checked against the plan)."""
        self.dataset.load_state_dict(sd)  # checks it, and refuses a worker's own state
        self._samples_seen = sd["samples_seen"]

    # -- iteration ------------------------------------------------------------------------
    def __len__(self) -> int:
        ds = self.dataset
        if ds.split == "train":
            return self._slicing(0).num_batches
        return -(-len(ds) // self.batch_size)

    def __iter__(self):
        ds = self.dataset
        if ds.split != "train":
            return super().__iter__()  # the held-out blocks from the start, each time
        ds.load_state_dict(self.state_dict())
        sl = self._slicing(self._samples_seen)
        if sl.num_batches == 0:
            raise TrainerError(
                f"{ds.path}: {self._samples_seen} of the plan's {ds.total_samples} samples were"
                f" served and no global batch of {sl.batch}x{sl.world} is left: the trainer asks"
                " for more than the plan holds; lower its max_steps / max_tokens or plan more"
                " samples (recipe mixture.samples or mixture.tokens)"
            )
        self._stop_workers()
        return self._counted(sl)

    def _stop_workers(self) -> None:
        if self._iterator is not None:
            # persistent workers hold copies of the mixture where they stopped, past what they
            # fetched ahead: start them again where the trainer is
            self._iterator._shutdown_workers()
            self._iterator = None

    def _counted(self, sl: Slicing):
        ds = self.dataset
        version, batches, k = ds._online.version, super().__iter__(), 0
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            k += 1
            self._samples_seen = sl.global_seen(k)  # before the yield: handed out = consumed
            yield batch
            if self.num_workers and ds._online.version != version:
                # set_weights: the workers' copies and what they fetched ahead are the old
                # plan's past this point; start them again here with the new one
                if hasattr(batches, "_shutdown_workers"):
                    batches._shutdown_workers()
                self._stop_workers()
                ds.load_state_dict(self.state_dict())
                sl, k, version = self._slicing(self._samples_seen), 0, ds._online.version
                batches = super().__iter__()

    def set_weights(self, weights: dict[str, float]) -> int:
        """Serve ``weights`` from the next batch the trainer gets (the samples handed out so far
        are the loader's position; batches the workers fetched ahead are dropped and served
        again from the new plan); returns that global sample. See StreamingMixture.set_weights.
        """
        return self.dataset.set_weights(weights, at_sample=self._samples_seen)

    def _slicing(self, start: int) -> Slicing:
        ds = self.dataset
        return Slicing(
            start=start,
            total=ds.total_samples,
            batch=self.batch_size,
            world=ds.world_size,
            rank=ds.rank,
            drop_last=ds.split == "train",
        )


def _open(dataset, batch_size: int, mixture_args: dict) -> StreamingMixture:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise UsageError(f"MixerLoader: batch_size must be an integer >= 1, got {batch_size!r}")
    if not isinstance(dataset, StreamingMixture):
        return StreamingMixture(dataset, batch_size=batch_size, **mixture_args)
    if mixture_args:
        raise UsageError(
            f"MixerLoader: {', '.join(sorted(mixture_args))} open a mixture from a path; this"
            " StreamingMixture is already open: pass them to StreamingMixture instead"
        )
    if dataset.batch_size != batch_size:
        raise UsageError(
            f"MixerLoader(batch_size={batch_size}) over StreamingMixture(batch_size="
            f"{dataset.batch_size}): the batch sizes must be equal (else batches are cut across"
            f" the mixture's and resuming replays or skips samples); build the mixture with"
            f" batch_size={batch_size}, or pass its path"
        )
    return dataset
