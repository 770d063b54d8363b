"""litgpt: ``litgpt pretrain --data mixer.integrations.litgpt.MixerData --data.path OUT``.

What litgpt 0.5 asks of a data module (``litgpt/pretrain.py``, ``litgpt/data/base.py``):

- ``connect(tokenizer, batch_size=micro_batch_size, max_seq_length=block_size)``, then
  ``setup()``, ``train_dataloader()``, ``val_dataloader()``, all after ``fabric.launch()``, so
  the loaders are built there (torch.distributed is up: each rank gets its data-parallel
  slice), never in ``__init__``, which runs while the command line is parsed.
- Batches are token tensors ``[micro_batch_size, >= max_seq_length + 1]``: ``fit`` trains on
  ``b[:, :L]`` against ``b[:, 1:L+1]``. A build's blocks must hold ``max_seq_length + 1``
  tokens; any other ``seq_len`` is refused (longer rows would silently drop tokens).
- The train loader is saved and loaded with ``fabric.save/load`` (``state["train_dataloader"]``)
  and validation runs every ``eval.interval`` steps. MixerLoader's state is a dict of plain ints
  and strings, which ``torch.load(weights_only=True)`` accepts (a plain DataLoader is pickled
  whole and refused by torch >= 2.6); ``--resume auto`` continues at the next sample, with no
  replay. ``step-*`` checkpoints hold the trained position; ``final/`` is saved after ``fit``
  fetched one more batch that it did not train, so resume from a ``step-*`` checkpoint.

litgpt is imported only when ``MixerData`` is first used (it must subclass litgpt's
``DataModule`` for the command line to accept it); the rest of this module does not need it.
"""

from __future__ import annotations

import numpy as np

from mixer.errors import TrainerError


def collate_tokens(samples: list[dict]):
    """litgpt's batch: the samples' token rows as one int64 tensor ``[B, seq_len]``."""
    import torch

    return torch.from_numpy(np.stack([s["input_ids"] for s in samples]))


def check_padding(path: str, manifest) -> None:
    """litgpt's pretrain scores every token of a row (its batches are tokens, no labels), so a
    best-fit build's padding would be trained: refused. (A ``remainder: pad`` build pads one
    block per source, at most ``seq_len - 1`` tokens, and is served as before.)"""
    padded = [n for n, s in manifest.sources.items() if s.train.padding is not None]
    if padded:
        raise TrainerError(
            f"{path}: sources {', '.join(padded)} are best-fit packed and pad their blocks, and"
            " litgpt pretrain scores every token of a row: build them with `packing: concat`,"
            " or train with MixerCollator (transformers, Lightning), which leaves padding out"
        )


def check_seq_len(path: str, seq_len: int, max_seq_length: int | None) -> None:
    """litgpt trains on rows of ``max_seq_length + 1`` tokens: the build must hold exactly that."""
    if max_seq_length is None or seq_len == max_seq_length + 1:
        return
    rebuild = f"build with seq_len: {max_seq_length + 1} in the recipe"
    shorter = f"run litgpt with --train.max_seq_length {seq_len - 1}"
    if seq_len > max_seq_length + 1:  # the model's block_size may not allow a longer window
        fix = f"{rebuild}, or {shorter} if the model's block_size allows it"
    else:
        fix = f"{shorter}, or {rebuild}"
    raise TrainerError(
        f"{path}: the build's blocks hold seq_len={seq_len} tokens, but litgpt trains on"
        f" max_seq_length + 1 = {max_seq_length + 1} (inputs and targets shifted by one): {fix}"
    )


class _MixerData:
    """A mixer build as litgpt's training and validation data.

    Args:
        path: the build's output folder (local, or ``s3://...``, ``gs://...``).
        val_source: validate on this source's held-out blocks only (e.g. the replay data, to
            watch forgetting); default: every source's.
        num_workers: DataLoader workers per rank (the batches are the same for any number).
        cache_dir: where shards are unpacked; default $MIXER_CACHE or ~/.cache/mixer.
        expect: the plan fingerprint `mixer verify` printed: any other plan is refused.
    """

    def __init__(
        self,
        path: str,
        val_source: str | None = None,
        num_workers: int = 0,
        cache_dir: str | None = None,
        expect: str | None = None,
    ) -> None:
        super().__init__()
        self.path = str(path)
        self.val_source = val_source
        self.num_workers = num_workers
        self.cache_dir = cache_dir
        self.expect = expect  # the plan fingerprint `mixer verify` printed
        self.batch_size = 1
        self.max_seq_length: int | None = None

    def connect(self, tokenizer=None, batch_size: int = 1, max_seq_length=None, **kwargs) -> None:
        self.batch_size, self.max_seq_length = batch_size, max_seq_length

    def setup(self, stage: str = "") -> None:
        pass  # the loaders open the build: after fabric.launch(), on every rank

    def train_dataloader(self):
        return self._loader("train")

    def val_dataloader(self):
        loader = self._loader("val", source=self.val_source)
        if len(loader.dataset) == 0:
            which = f"source {self.val_source!r}" if self.val_source else "the build"
            raise TrainerError(
                f"{self.path}: {which} has no validation block for this rank"
                f" ({loader.dataset.total_samples} held out for {loader.dataset.world_size}"
                " ranks), and litgpt pretrain validates: hold out more documents (recipe"
                " validation: {docs: N})"
            )
        return loader

    def _loader(self, split: str, source: str | None = None):
        from mixer.serve.loader import MixerLoader

        loader = MixerLoader(
            self.path,
            self.batch_size,
            split=split,
            source=source,
            cache_dir=self.cache_dir,
            expect=self.expect,
            position_ids=False,  # litgpt's GPT takes no position ids
            num_workers=self.num_workers,
            collate_fn=collate_tokens,
        )
        check_seq_len(self.path, loader.dataset.seq_len, self.max_seq_length)
        check_padding(self.path, loader.dataset.manifest)
        return loader

    def __repr__(self) -> str:
        return f"MixerData(path={self.path!r}, val_source={self.val_source!r})"

    # LightningDataModule's __str__ builds every loader: litgpt str()s the module while parsing
    # the command line, before connect() and before torch.distributed exists
    __str__ = __repr__


def __getattr__(name: str):
    if name == "MixerData":
        return _data_module()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _data_module() -> type:
    """``MixerData``: the methods above on litgpt's ``DataModule``, made once, on first use."""
    try:
        from litgpt.data import DataModule
    except ImportError as e:
        raise ImportError(
            f"mixer.integrations.litgpt.MixerData needs litgpt ({e}): pip install 'mixer[litgpt]'"
        ) from e
    cls = type(
        "MixerData",
        (_MixerData, DataModule),
        {"__module__": __name__, "__qualname__": "MixerData", "__doc__": _MixerData.__doc__},
    )
    globals()["MixerData"] = cls  # later lookups (and pickle) find the same class
    return cls
