"""``MixerTrainer``: a ``transformers.Trainer`` that trains mixer's plan exactly.

What the stock Trainer does with an IterableDataset, and what this class does instead
(transformers 4.57 and 5.x, accelerate 1.x):

- **Order.** The stock loader goes through ``accelerator.prepare``, which dispatches batches
  from rank 0 (half the plan never trained at W = 2) or shards a second time. Here each rank's
  DataLoader reads its own slice of the plan (global batch g is samples [g*B*W, (g+1)*B*W),
  rank r takes the B at g*B*W + r*B) and is not prepared: the Trainer still moves tensors to
  the device (``_prepare_inputs``). The first S optimizer steps train exactly plan samples
  [0, S*B*W*GA), each once.
- **Resume.** The stock Trainer re-reads and discards every trained batch
  (``skip_first_batches``). Here the global samples consumed are saved in the checkpoint's
  ``trainer_state.json`` (``stateful_callbacks.MixerProgress``) and the dataset starts there in
  O(1); the Trainer's own skip is turned off (``ignore_data_skip``). A user's
  ``ignore_data_skip=True`` keeps its meaning: the data restarts at sample 0.
- **Length.** The plan is the whole training: ``max_steps`` defaults to the optimizer steps it
  holds (``num_train_epochs`` is not used) and beyond it is an error, never a second pass.
- **Evaluation.** A ``StreamingMixture`` eval set is scored as the mean loss per token over
  every sample exactly once across ranks (the stock loop repeats samples to even out ranks and
  weights batches equally); ranks run the same number of forward passes, padded with samples
  that have no label, so DDP/FSDP/ZeRO-3 never wait on each other.
"""

from __future__ import annotations

import copy
import os

import torch
from torch.utils.data import DataLoader
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import ExportableState
from transformers.trainer_utils import EvalLoopOutput

from mixer.errors import StateError, TrainerError
from mixer.integrations.hf import MixerCollator, blank_sample, check_vocabulary, packed_attention
from mixer.serve.mixture import StreamingMixture

PROGRESS = "MixerProgress"  # its key in trainer_state.json's stateful_callbacks


class MixerProgress(TrainerCallback, ExportableState):
    """Global plan samples consumed after ``global_step`` optimizer steps, saved with every
    checkpoint (``ExportableState``: written into trainer_state.json by ``_save_checkpoint``)."""

    def __init__(self):
        self.samples_seen = 0
        self.global_step = 0
        self.samples_per_step = 0
        self.plan = None

    def on_step_end(self, args, state, control, **kwargs):
        self.samples_seen += (state.global_step - self.global_step) * self.samples_per_step
        self.global_step = state.global_step
        # The Trainer counts the epoch from the batches of this run: after a resume it would
        # restart near 0. The one epoch is the planned training: its fraction is the steps'.
        state.epoch = state.global_step / state.max_steps

    def state(self) -> dict:
        keys = ("samples_seen", "global_step", "samples_per_step", "plan")
        return {"args": {}, "attributes": {k: getattr(self, k) for k in keys}}


class _PlanLoader(DataLoader):
    """The rank's DataLoader; its length is the plan's optimizer steps x GA from sample 0 (the
    Trainer's epoch arithmetic must not change on resume) and ``start`` runs at each
    ``iter()``: after the Trainer has loaded a checkpoint's state, before the first batch."""

    def __init__(self, dataset, *, length: int, start, **kwargs):
        super().__init__(dataset, **kwargs)
        self._length, self._start = length, start

    def __len__(self) -> int:
        return self._length

    def __iter__(self):
        self._start()
        return super().__iter__()


class MixerTrainer(Trainer):
    """``transformers.Trainer`` over a mixer build: same arguments, with

    - ``train_dataset``: a build's output path (the ``StreamingMixture`` is made with
      ``batch_size=args.train_batch_size`` and the rank and world size from ``args``) or such a
      ``StreamingMixture``;
    - ``eval_dataset``: a build's path (one validation set per source: metrics
      ``eval_<source>_loss``, the signal that shows forgetting), a dict of ``StreamingMixture``
      (``split="val"``, ``batch_size=args.eval_batch_size``) or anything the Trainer takes;
    - ``data_collator``: default ``MixerCollator`` (flattened for flash attention).

    The model's vocabulary is checked against the build's tokenizer, and its attention is made
    per document (:func:`mixer.integrations.hf.packed_attention`).
    """

    def __init__(
        self,
        model=None,
        args: TrainingArguments | None = None,
        data_collator=None,
        train_dataset=None,
        eval_dataset=None,
        *rest,
        **kwargs,
    ):
        args = copy.copy(args) if args is not None else TrainingArguments("trainer_output")
        _check_args(args)
        self._restart_data = args.ignore_data_skip  # HF's meaning: do not restore the position
        args.ignore_data_skip = True  # the dataset resumes itself: no skip_first_batches
        flatten = packed_attention(model) if model is not None else False
        if train_dataset is not None:
            train_dataset = _mixture(train_dataset, "train", args.train_batch_size, args)
            args.max_steps = _max_steps(train_dataset, args)
            if model is not None:
                _check_model(model, train_dataset)
        eval_dataset = _eval_sets(eval_dataset, args)
        if data_collator is None:
            data_collator = MixerCollator(flatten=flatten)
        elif isinstance(data_collator, MixerCollator) and flatten and not data_collator.flatten:
            raise TrainerError(
                "data_collator: the model uses flash attention, which keeps documents apart only"
                " in one-row batches: use MixerCollator(flatten=True)"
            )
        super().__init__(model, args, data_collator, train_dataset, eval_dataset, *rest, **kwargs)
        if self.model is not None:
            packed_attention(self.model)  # 5.x set config.use_cache from args.use_cache
        self._flatten = flatten
        self.add_callback(MixerProgress())

    def call_model_init(self, trial=None):
        model = super().call_model_init(trial)
        packed_attention(model)
        return model

    # -- training data --------------------------------------------------------------------
    def get_train_dataloader(self) -> DataLoader:
        ds = self.train_dataset
        if ds is None:
            raise TrainerError("MixerTrainer.train: no train_dataset (give a build's path)")
        _check_model(self.model, ds)
        args = self.args
        return _PlanLoader(
            ds,
            length=args.max_steps * args.gradient_accumulation_steps,
            start=self._start_data,
            batch_size=args.train_batch_size,
            collate_fn=self.data_collator,
            **_loader_options(args),
        )

    def _start_data(self) -> None:
        """Point the dataset at the samples after the checkpoint's, check there are enough."""
        ds, args, step = self.train_dataset, self.args, self.state.global_step
        start = self._checkpoint_samples(ds, step) if step and not self._restart_data else 0
        per_step = args.train_batch_size * args.world_size * args.gradient_accumulation_steps
        _check_steps(ds, args, start, args.max_steps - step)
        ds.load_state_dict({"samples_seen": start, "plan": ds.plan.fingerprint})
        progress = next(c for c in self.callback_handler.callbacks if isinstance(c, MixerProgress))
        progress.samples_seen, progress.global_step = start, step
        progress.samples_per_step, progress.plan = per_step, ds.plan.fingerprint

    def _checkpoint_samples(self, ds: StreamingMixture, step: int) -> int:
        saved = self.state.stateful_callbacks.get(PROGRESS)
        attrs = saved.get("attributes", {}) if isinstance(saved, dict) else {}
        if attrs.get("global_step") != step:
            raise StateError(
                f"the checkpoint at step {step} holds no mixer position (trainer_state.json"
                f" stateful_callbacks.{PROGRESS}): it was not saved by MixerTrainer; resume from"
                " one that was, or pass ignore_data_skip=True to restart the data at sample 0"
            )
        if attrs.get("plan") != ds.plan.fingerprint:
            raise StateError(
                f"the checkpoint at step {step} trained another plan ({str(attrs.get('plan'))[:12]}"
                f"…, this one is {ds.plan.fingerprint[:12]}…): the data, weights or seed changed;"
                " pass ignore_data_skip=True to restart the data at sample 0 if that is intended"
            )
        return int(attrs["samples_seen"])

    # -- evaluation -----------------------------------------------------------------------
    def get_eval_dataloader(self, eval_dataset=None) -> DataLoader:
        ds = self.eval_dataset[eval_dataset] if isinstance(eval_dataset, str) else eval_dataset
        ds = self.eval_dataset if ds is None else ds
        if not isinstance(ds, StreamingMixture):
            return super().get_eval_dataloader(eval_dataset)
        ds = _mixture(ds, "val", self.args.eval_batch_size, self.args)
        ds.load_state_dict({"samples_seen": 0})  # in the main process it counts what it served
        options = _loader_options(self.args)
        return DataLoader(ds, batch_size=self.args.eval_batch_size, collate_fn=list, **options)

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, **kwargs):
        ds = getattr(dataloader, "dataset", None)
        if not isinstance(ds, StreamingMixture):
            return super().evaluation_loop(dataloader, description, prediction_loss_only, **kwargs)
        prefix = kwargs.get("metric_key_prefix", "eval")
        model = self._eval_model()
        collate = self.data_collator
        if not isinstance(collate, MixerCollator):
            collate = MixerCollator(flatten=self._flatten)
        size = self.args.eval_batch_size
        steps = -(-ds.total_samples // (size * ds.world_size))  # rank 0's batches: the most
        sums = torch.zeros(2, dtype=torch.float64, device=self.args.device)  # nll, tokens
        batches, blank = iter(dataloader), blank_sample(ds.seq_len)
        for _ in range(steps):
            samples = next(batches, [])
            inputs = self._prepare_inputs(collate(samples + [blank] * (size - len(samples))))
            labels = inputs.pop("labels")
            with torch.no_grad(), self.compute_loss_context_manager():
                logits = model(**inputs).logits
            sums += _token_nll(logits, labels)
        if ds.world_size > 1:
            torch.distributed.all_reduce(sums)
        loss = (sums[0] / sums[1]).item() if sums[1] else float("nan")
        metrics = {f"{prefix}_loss": loss}
        return EvalLoopOutput(None, None, metrics=metrics, num_samples=ds.total_samples)

    def _eval_model(self):
        model = self._wrap_model(self.model, training=False)
        if len(self.accelerator._models) == 0 and model is self.model:  # before any training
            if self.is_deepspeed_enabled or self.is_fsdp_enabled:
                raise TrainerError(
                    "MixerTrainer.evaluate() before train() under DeepSpeed or FSDP: evaluate"
                    " during training (eval_strategy, eval_on_start=True) instead"
                )
            model = self.accelerator.prepare_model(model, evaluation_mode=True)
        model.eval()
        return model


def _token_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(sum of token losses, scored tokens), with the causal shift the model applies."""
    target = labels[..., 1:].reshape(-1)
    scores = logits[..., :-1, :].reshape(target.numel(), -1).float()
    nll = torch.nn.functional.cross_entropy(scores, target, ignore_index=-100, reduction="sum")
    return torch.stack([nll.double(), (target != -100).sum().double()])


def _loader_options(args) -> dict:
    workers = args.dataloader_num_workers
    options = {"num_workers": workers, "pin_memory": args.dataloader_pin_memory}
    if workers:
        options["persistent_workers"] = args.dataloader_persistent_workers
        options["prefetch_factor"] = args.dataloader_prefetch_factor
    return options


def _check_args(args) -> None:
    if args.auto_find_batch_size:
        raise TrainerError(
            "auto_find_batch_size=True: the batch size fixes the plan's slicing per rank; set"
            " per_device_train_batch_size instead"
        )
    if getattr(args.accelerator_config, "split_batches", False):
        raise TrainerError(
            "accelerator_config.split_batches=True: MixerTrainer gives each rank its own"
            " per_device_train_batch_size samples; turn split_batches off"
        )


def _mixture(data, split: str, batch: int, args) -> StreamingMixture:
    """The rank's StreamingMixture: made from a build's path, or checked against ``args``."""
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


def _eval_sets(data, args):
    """A build's path becomes one validation set per source; mixtures are checked."""
    if isinstance(data, (str, os.PathLike)):
        whole = StreamingMixture(data, "val")
        return {
            p.name: StreamingMixture(
                data,
                "val",
                batch_size=args.eval_batch_size,
                rank=args.process_index,
                world_size=args.world_size,
                source=p.name,
            )
            for p in whole.plan.sources
        }
    if isinstance(data, StreamingMixture):
        return _mixture(data, "val", args.eval_batch_size, args)
    if isinstance(data, dict):
        return {
            k: _eval_sets(v, args) if isinstance(v, StreamingMixture) else v
            for k, v in data.items()
        }
    return data


def _check_model(model, ds: StreamingMixture) -> None:
    check_vocabulary(ds.manifest.data["tokenizer"]["vocab_size"], model, ds.path)


def _steps_available(ds: StreamingMixture, args, start: int) -> int:
    per_batch = args.train_batch_size * args.world_size
    return (ds.total_samples - start) // per_batch // args.gradient_accumulation_steps


def _max_steps(ds: StreamingMixture, args) -> int:
    """``args.max_steps``, or when not set (<= 0) every optimizer step the plan holds."""
    if args.max_steps > 0:
        _check_steps(ds, args, 0, args.max_steps)
        return args.max_steps
    steps = _steps_available(ds, args, 0)
    if steps == 0:
        raise TrainerError(
            f"{ds.path}: the plan's {ds.total_samples:,} samples do not fill one optimizer step"
            f" of {args.train_batch_size} x {args.world_size} ranks x"
            f" {args.gradient_accumulation_steps} accumulation: lower the batch or build more"
        )
    return steps


def _check_steps(ds: StreamingMixture, args, start: int, steps: int) -> None:
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
