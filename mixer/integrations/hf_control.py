"""Online weights inside ``MixerTrainer``: a controller called after each evaluation, and a
train loader that starts its DataLoader workers again when the weights change."""

from __future__ import annotations

from transformers import TrainerCallback


class MixerControl(TrainerCallback):
    """After each evaluation, ``controller(step, metrics)``; weights it returns apply from the
    next optimizer step (the global samples consumed so far: ``MixerProgress.samples_seen``).
    Every rank has the same metrics (the Trainer gathers them) and calls the controller; the
    change is checked identical across ranks before it applies."""

    def __init__(self, controller, trainer, progress):
        self.controller, self.trainer, self.progress = controller, trainer, progress
        self.changes: list[tuple[int, int, dict]] = []  # (step, sample, weights)
        self._metrics: dict = {}
        self._step = None

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        # A dict of eval sets (one per source) is evaluated one set at a time, each with its
        # own on_evaluate: the controller is called once, when every set has reported.
        if self._step != state.global_step:
            self._metrics, self._step = {}, state.global_step
        self._metrics.update(metrics or {})
        sets = self.trainer.eval_dataset
        names = list(sets) if isinstance(sets, dict) else []
        if any(f"eval_{n}_loss" not in self._metrics for n in names):
            return
        weights = self.controller(state.global_step, dict(self._metrics))
        self._metrics = {}
        if not weights:
            return
        progress, ds = self.progress, self.trainer.train_dataset
        at = ds.set_weights(weights, at_sample=progress.samples_seen)
        if args.dataloader_num_workers:  # workers start again from here (`restarting`)
            ds.load_state_dict({"samples_seen": at, "journal": ds._online.state()})
        progress.journal = ds._online.state()
        progress.served = ds.plan
        progress.plan = ds.plan.lineage(progress.samples_seen)
        self.changes.append((state.global_step, at, dict(weights)))


def restarting(loader, start_iter):
    """Batches of ``start_iter()``; with DataLoader workers, when the mixture's weights change
    (``set_weights``) the workers (whose copies of the mixture, and batches fetched ahead, are
    the old plan's) are shut down and started again from the dataset's position."""
    ds = loader.dataset
    version, batches = ds._online.version, start_iter()
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        yield batch
        if loader.num_workers and ds._online.version != version:
            if hasattr(batches, "_shutdown_workers"):
                batches._shutdown_workers()
            if loader._iterator is not None:
                loader._iterator._shutdown_workers()
                loader._iterator = None
            version, batches = ds._online.version, start_iter()
