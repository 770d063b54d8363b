"""Hugging Face transformers: batches, labels and attention for mixer's packed blocks.

What a stock ``Trainer`` script needs (``MixerCollator``, ``check_vocabulary``,
``packed_attention``, ``val_mixtures``, ``token_losses``; users import them from
:mod:`mixer.integrations.hf`) and the dataset and step arithmetic ``MixerTrainer``
(:mod:`mixer.integrations.hf_trainer`) needs for a Trainer's arguments. It imports neither
transformers nor accelerate (torch and the dataset only when called).

Why the labels look the way they do: Hugging Face causal LMs shift labels inside the model
(the logits at t are scored against ``labels[t + 1]``), so ``labels = input_ids`` over a block,
with -100 where no prediction is meaningful:

- a row's first token: nothing before it in the row predicts it (the model never scores it;
  -100 also makes transformers 4.57's ``num_items_in_batch``, which counts every label that is
  not -100, equal to the number of scored tokens, as 5.x counts it);
- the padding of a ``remainder: pad`` block (``num_padding`` tokens at its end, served by
  ``StreamingMixture``), and so also the prediction from the last real token into it.

A document's first token inside a block keeps its label: it is predicted from the previous
document's last token (its EOS), as in Llama's own pre-training and Chinese-LLaMA-Alpaca-2's;
with per-document attention that prediction sees only the previous document, so it teaches
what follows an EOS and nothing about the other document. Keeping it also makes every full
block score the same L - 1 tokens whatever number of documents it holds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from mixer.errors import TrainerError
from mixer.plan import Slicing

IGNORE = -100  # Hugging Face's ignore_index for labels


@dataclass(frozen=True, kw_only=True)
class MixerCollator:
    """Stack ``StreamingMixture`` samples into ``input_ids``, ``position_ids``, ``labels``.

    All int64 tensors of ``[B, L]``; never an ``attention_mask`` (with position ids and no
    mask, transformers' sdpa/eager/flex attention keeps each document to itself, see
    :func:`packed_attention`). ``source``, ``index`` and ``num_padding`` are dropped, except
    ``index`` with ``keep_index`` (a ``[B]`` tensor, e.g. for a test that records which samples
    a model received; the model's ``forward`` must then accept it).

    ``flatten=True`` gives ``[1, B*L]`` rows keeping mixer's position ids, for
    flash-attention-2, which separates documents (varlen) only in a batch of one row; the
    label of every block's first token is -100 there too, so the shifted loss never scores the
    last token of one block against the first of the next: the loss is the unflattened one.
    """

    flatten: bool = False
    keep_index: bool = False

    def __call__(self, samples: list[dict]) -> dict:
        import torch

        if not samples or "index" not in samples[0]:
            raise TrainerError(
                "MixerCollator: samples lack 'index' and 'source': the Trainer removed the"
                " columns its model does not take (set TrainingArguments(remove_unused_columns="
                "False)), or they do not come from StreamingMixture"
            )
        ids = np.stack([s["input_ids"] for s in samples]).astype(np.int64, copy=False)
        rows, seq_len = ids.shape
        labels = ids.copy()
        labels[:, 0] = IGNORE
        pad = np.array([s.get("num_padding", 0) for s in samples], np.int64)
        if pad.any():
            labels[np.arange(seq_len) >= (seq_len - pad)[:, None]] = IGNORE
        batch = {"input_ids": ids, "labels": labels}
        if "position_ids" in samples[0]:
            batch["position_ids"] = np.stack([s["position_ids"] for s in samples])
        elif self.flatten:
            raise TrainerError(
                "MixerCollator(flatten=True) needs position ids: do not build the"
                " StreamingMixture with position_ids=False"
            )
        if self.flatten:
            batch = {k: v.reshape(1, rows * seq_len) for k, v in batch.items()}
        if self.keep_index:
            batch["index"] = np.array([s["index"] for s in samples], np.int64)
        return {k: torch.from_numpy(np.ascontiguousarray(v, np.int64)) for k, v in batch.items()}


def blank_sample(seq_len: int) -> dict:
    """A sample that is all padding (no label counts): fills a short evaluation batch so every
    rank runs the same forward passes (DDP, FSDP and ZeRO-3 need all ranks in each one)."""
    return {
        "input_ids": np.zeros(seq_len, np.int64),
        "position_ids": np.arange(seq_len, dtype=np.int64),
        "source": "",
        "index": -1,
        "num_padding": seq_len,
    }


def check_vocabulary(model, vocab_size: int, where: str) -> None:
    """Refuse a build whose token ids can reach past the model's embedding or output layer.

    ``vocab_size`` is the build's tokenizer's (``manifest.tokenizer.vocab_size``;
    every id is below it); ``where`` names the build in the message. A larger tokenizer than
    the model (Chinese-LLaMA-2's 55,296 ids on Llama-2's 32,000 rows) fails on CPU with an
    index error deep in the embedding and on GPU with a device-side assert: this says so first.
    """
    rows = [_rows(model.get_input_embeddings())]
    if hasattr(model, "get_output_embeddings"):
        rows.append(_rows(model.get_output_embeddings()))
    known = [r for r in rows if r is not None]
    if known and vocab_size > min(known):
        n = min(known)
        raise TrainerError(
            f"{where}: the build's tokenizer has {vocab_size:,} ids (manifest tokenizer"
            f" vocab_size) but the model's embedding has {n:,} rows, so ids >= {n:,} would"
            f" index past it; resize it (model.resize_token_embeddings({vocab_size})) or build"
            " with the model's own tokenizer"
        )


def val_mixtures(path, *, batch_size: int, rank=None, world_size=None) -> dict:
    """``{source: StreamingMixture(path, "val", source=source, ...)}`` for every source with
    held-out blocks: as a Trainer's ``eval_dataset`` it gives ``eval_<source>_loss``."""
    from mixer.serve.mixture import StreamingMixture

    names = [p.name for p in StreamingMixture(path, "val").plan.sources]
    return {
        name: StreamingMixture(
            path, "val", batch_size=batch_size, rank=rank, world_size=world_size, source=name
        )
        for name in names
    }


def token_losses(logits, labels):
    """``[sum of token losses, scored tokens]`` (float64), with the causal shift the model
    applies: summed over batches and ranks, their ratio is the exact loss per token."""
    import torch

    target = labels[..., 1:].reshape(-1)
    scores = logits[..., :-1, :].reshape(target.numel(), -1).float()
    nll = torch.nn.functional.cross_entropy(scores, target, ignore_index=IGNORE, reduction="sum")
    return torch.stack([nll.double(), (target != IGNORE).sum().double()])


def _rows(layer) -> int | None:
    if layer is None:
        return None
    for attr in ("num_embeddings", "out_features"):  # shapes stay right under ZeRO-3 sharding
        if isinstance(getattr(layer, attr, None), int):
            return getattr(layer, attr)
    weight = getattr(layer, "weight", None)
    return int(weight.shape[0]) if weight is not None and weight.dim() == 2 else None


def packed_attention(model) -> bool:
    """Make ``model`` keep each document of a packed block to itself; True if the batch must
    be flattened (``MixerCollator(flatten=True)``) for that.

    transformers builds a per-document mask from position-id resets only when there is no
    ``attention_mask`` and no cache (``masking_utils._preprocess_mask_arguments``); 4.57's
    Llama creates a cache whenever ``config.use_cache`` (its default), in training too, so
    documents would attend to each other: ``use_cache`` is turned off (training needs no cache;
    turn it back on for generation). flash-attention-2 separates documents only in a one-row
    batch (``_is_packed_sequence``), hence the flattening.
    """
    config = getattr(model, "config", None)
    if config is None:
        return False
    config.use_cache = False
    return "flash" in str(getattr(config, "_attn_implementation", "") or "")


# -- datasets and steps for a Trainer's arguments (MixerTrainer) ------------------------------
def rank_mixture(data, split: str, batch: int, args):
    """The rank's StreamingMixture for a Trainer's ``args``: made from a build's path, or a given
    one checked against them (B, rank and world size fix which samples the rank serves)."""
    from mixer.serve.mixture import StreamingMixture

    rank, world = args.process_index, args.world_size
    if isinstance(data, (str, os.PathLike)):
        return StreamingMixture(data, split, batch_size=batch, rank=rank, world_size=world)
    if not isinstance(data, StreamingMixture):
        raise TrainerError(
            f"{split} dataset: MixerTrainer takes a build's output path or a StreamingMixture,"
            f" not {type(data).__name__}; use transformers.Trainer with MixerCollator otherwise"
        )
    got, want = (data.batch_size, data.rank, data.world_size), (batch, rank, world)
    if got != want:
        raise TrainerError(
            f"{split} dataset {data.path}: StreamingMixture has (batch_size, rank, world_size) ="
            f" {got} but the Trainer runs {want}: pass the build's path instead (MixerTrainer"
            " makes it) or build it with those values"
        )
    return data


def eval_sets(data, args):
    """A build's path becomes one validation set per source; mixtures are checked."""
    from mixer.serve.mixture import StreamingMixture

    if isinstance(data, (str, os.PathLike)):
        rank, world = args.process_index, args.world_size
        return val_mixtures(data, batch_size=args.eval_batch_size, rank=rank, world_size=world)
    if isinstance(data, StreamingMixture):
        return rank_mixture(data, "val", args.eval_batch_size, args)
    if isinstance(data, dict):
        return {
            k: eval_sets(v, args) if isinstance(v, StreamingMixture) else v for k, v in data.items()
        }
    return data


def check_build_vocabulary(model, ds) -> None:
    check_vocabulary(model, ds.manifest.tokenizer.vocab_size, ds.path)


def _steps_available(ds, args, start: int) -> int:
    whole = Slicing(
        start=start,
        total=ds.total_samples,
        batch=args.train_batch_size,
        world=args.world_size,
        rank=0,
    )
    return whole.num_batches // args.gradient_accumulation_steps


def plan_max_steps(ds, args) -> int:
    """``args.max_steps``, or when not set (<= 0) every optimizer step the plan holds."""
    if args.max_steps > 0:
        check_steps(ds, args, 0, args.max_steps)
        return args.max_steps
    steps = _steps_available(ds, args, 0)
    if steps == 0:
        raise TrainerError(
            f"{ds.path}: the plan's {ds.total_samples:,} samples do not fill one optimizer step"
            f" of {args.train_batch_size} x {args.world_size} ranks x"
            f" {args.gradient_accumulation_steps} accumulation: lower the batch or build more"
        )
    return steps


def check_steps(ds, args, start: int, steps: int) -> None:
    available = _steps_available(ds, args, start)
    if steps > available:
        per_step = args.train_batch_size * args.world_size * args.gradient_accumulation_steps
        raise TrainerError(
            f"max_steps={args.max_steps}: {steps:,} optimizer steps of {per_step:,} samples"
            f" (batch {args.train_batch_size} x {args.world_size} ranks x"
            f" {args.gradient_accumulation_steps} accumulation) from sample {start:,} need"
            f" {steps * per_step:,} samples, but the plan of {ds.path} has"
            f" {ds.total_samples - start:,} left ({available:,} steps): lower max_steps or the"
            " batch, or build a larger plan (mixture.samples / mixture.tokens)"
        )
