"""PyTorch Lightning (and litgpt's Fabric loop, by hand): online weights from a controller.

``MixerController(controller, loader)`` is a Lightning ``Callback``: after each validation it
calls ``controller(trainer.global_step, metrics)`` with ``trainer.callback_metrics`` (log the
per-source validation losses as ``eval_<source>_loss`` for the shipped controllers) and hands
the weights it returns to the train ``MixerLoader`` (``loader.set_weights``: exact from the
next batch, the change kept in the loader's state, so checkpoints replay it). Lightning itself
is imported lazily: the class is made on first use.
"""

from __future__ import annotations


def apply(controller, loader, step: int, metrics: dict) -> dict | None:
    """One controller decision, applied to ``loader`` (a MixerLoader); what a plain loop or a
    Fabric loop (litgpt) calls after its validation."""
    plain = {k: float(v) for k, v in metrics.items() if _is_number(v)}
    weights = controller(step, plain)
    if weights:
        loader.set_weights(weights)
    return weights


def _is_number(v) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return getattr(v, "numel", lambda: 1)() == 1


def __getattr__(name: str):
    if name == "MixerController":
        return _callback_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _callback_class():
    import lightning.pytorch as pl

    class MixerController(pl.Callback):
        """Calls ``controller`` after each validation; its weights go to ``loader``."""

        def __init__(self, controller, loader):
            self.controller, self.loader, self.changes = controller, loader, []

        def on_validation_end(self, trainer, pl_module):
            if trainer.sanity_checking:
                return
            weights = apply(
                self.controller, self.loader, trainer.global_step, dict(trainer.callback_metrics)
            )
            if weights:
                self.changes.append((trainer.global_step, dict(weights)))

    return MixerController
