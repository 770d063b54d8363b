"""``MixerTrainer``: a ``transformers.Trainer`` that trains mixer's plan exactly.

What the stock Trainer does with an IterableDataset (transformers 4.57 and 5.x, accelerate
1.x), and what this class does instead:

- accelerate dispatches batches from rank 0 (half the plan untrained at W = 2) or shards a
  second time: here each rank's DataLoader reads its own slice of the plan and is not prepared
  (the Trainer still moves tensors to the device in ``_prepare_inputs``);
- resume re-reads and discards every trained batch (``skip_first_batches``): here the samples
  consumed are saved in trainer_state.json (``stateful_callbacks.MixerProgress``) and the
  dataset starts there in O(1), with the Trainer's skip off (``ignore_data_skip``);
- epochs replay the data: here the plan is the training; ``max_steps`` defaults to its steps;
- evaluation repeats samples to even out ranks and weights batches equally: here every val
  sample counts once, as the mean loss per token, and ranks run equally many forward passes
  (short batches padded with unlabeled rows) so DDP/FSDP/ZeRO-3 never wait on each other.
"""

from __future__ import annotations

import copy

import torch
from torch.utils.data import DataLoader
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import ExportableState
from transformers.trainer_utils import EvalLoopOutput

from mixer.errors import StateError, TrainerError
from mixer.integrations.hf_batches import (
    MixerCollator,
    blank_sample,
    check_build_vocabulary,
    check_steps,
    eval_sets,
    packed_attention,
    plan_max_steps,
    rank_mixture,
    token_losses,
)
from mixer.integrations.hf_control import MixerControl, restarting
from mixer.serve.mixture import StreamingMixture
from mixer.serve.state import check_lineage

PROGRESS = "MixerProgress"  # its key in trainer_state.json's stateful_callbacks


class MixerProgress(TrainerCallback, ExportableState):
    """Global plan samples consumed after ``global_step`` optimizer steps, saved with every
    checkpoint (``ExportableState``: written into trainer_state.json by ``_save_checkpoint``)."""

    def __init__(self):
        self.samples_seen = 0
        self.global_step = 0
        self.samples_per_step = 0
        self.plan = None  # the plan's lineage at samples_seen (`mixer.plan.journal`)
        self.served = None  # the Plan being trained (not saved)
        self.journal = []  # the online weight changes, [[sample, {source: weight}], ...]

    def on_step_end(self, args, state, control, **kwargs):
        self.samples_seen += (state.global_step - self.global_step) * self.samples_per_step
        self.global_step = state.global_step
        if self.served is not None:
            self.plan = self.served.lineage(min(self.samples_seen, self.served.total))
        # The Trainer counts the epoch from the batches of this run: after a resume it would
        # restart near 0. The one epoch is the planned training: its fraction is the steps'.
        state.epoch = state.global_step / state.max_steps

    def state(self) -> dict:
        keys = ("samples_seen", "global_step", "samples_per_step", "plan")
        attrs = {k: getattr(self, k) for k in keys}
        if self.journal:  # online weight changes (set_weights), replayed on resume
            attrs["journal"] = self.journal
        return {"args": {}, "attributes": attrs}


class _PlanLoader(DataLoader):
    """The rank's DataLoader. Its length is max_steps x GA whatever the resume point (the
    Trainer's epoch arithmetic must not change on resume); ``start`` runs at each ``iter()``:
    after the Trainer has loaded a checkpoint's state, before the first batch."""

    def __init__(self, dataset, *, length: int, start, **kwargs):
        super().__init__(dataset, **kwargs)
        self._length, self._start = length, start

    def __len__(self) -> int:
        return self._length

    def __iter__(self):
        self._start()
        return restarting(self, super().__iter__)


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
        mixer_controller=None,
        **kwargs,
    ):
        args = copy.copy(args) if args is not None else TrainingArguments("trainer_output")
        _check_args(args)
        self._restart_data = args.ignore_data_skip  # HF's meaning: do not restore the position
        args.ignore_data_skip = True  # the dataset resumes itself: no skip_first_batches
        flatten = packed_attention(model) if model is not None else False
        if train_dataset is not None:
            train_dataset = rank_mixture(train_dataset, "train", args.train_batch_size, args)
            args.max_steps = plan_max_steps(train_dataset, args)
            if model is not None:
                check_build_vocabulary(model, train_dataset)
        eval_dataset = eval_sets(eval_dataset, args)
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
        progress = MixerProgress()
        self.add_callback(progress)
        if mixer_controller is not None:  # weights from the eval losses (integrations.controllers)
            self.add_callback(MixerControl(mixer_controller, self, progress))

    def call_model_init(self, trial=None):
        model = super().call_model_init(trial)
        packed_attention(model)
        return model

    # -- training data --------------------------------------------------------------------
    def get_train_dataloader(self) -> DataLoader:
        ds = self.train_dataset
        if ds is None:
            raise TrainerError("MixerTrainer.train: no train_dataset (give a build's path)")
        check_build_vocabulary(self.model, ds)
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
        start, journal = 0, []
        if step and not self._restart_data:
            start, journal = self._checkpoint_samples(ds, step)
        per_step = args.train_batch_size * args.world_size * args.gradient_accumulation_steps
        check_steps(ds, args, start, args.max_steps - step)
        ds.load_state_dict({"samples_seen": start, "journal": journal})
        progress = next(c for c in self.callback_handler.callbacks if isinstance(c, MixerProgress))
        progress.samples_seen, progress.global_step = start, step
        progress.samples_per_step, progress.served = per_step, ds.plan
        progress.plan, progress.journal = ds.plan.lineage(start), ds._online.state()

    def _checkpoint_samples(self, ds: StreamingMixture, step: int) -> tuple[int, list]:
        saved = self.state.stateful_callbacks.get(PROGRESS)
        attrs = saved.get("attributes", {}) if isinstance(saved, dict) else {}
        if attrs.get("global_step") != step:
            raise StateError(
                f"the checkpoint at step {step} holds no mixer position (trainer_state.json"
                f" stateful_callbacks.{PROGRESS}): it was not saved by MixerTrainer; resume from"
                " one that was, or pass ignore_data_skip=True to restart the data at sample 0"
            )
        seen = attrs.get("samples_seen")
        if not isinstance(seen, int) or not 0 <= seen <= ds.plan.total:
            raise StateError(
                f"the checkpoint at step {step} holds samples_seen={seen!r}, outside this plan's"
                f" [0, {ds.plan.total}]"
            )
        journal = attrs.get("journal", [])
        try:  # the checkpoint's lineage: resumes across amendments made at or after it
            ds._online.replace(journal)
            check_lineage({"plan": attrs.get("plan")}, ds.plan, seen)
        except StateError as e:
            raise StateError(
                f"the checkpoint at step {step}: {e}; or pass ignore_data_skip=True to restart"
                " the data at sample 0 if that is intended"
            ) from None
        return seen, journal

    # -- evaluation -----------------------------------------------------------------------
    def get_eval_dataloader(self, eval_dataset=None) -> DataLoader:
        ds = self.eval_dataset[eval_dataset] if isinstance(eval_dataset, str) else eval_dataset
        ds = self.eval_dataset if ds is None else ds
        if not isinstance(ds, StreamingMixture):
            return super().get_eval_dataloader(eval_dataset)
        ds = rank_mixture(ds, "val", self.args.eval_batch_size, self.args)
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
            sums += token_losses(logits, labels)
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
