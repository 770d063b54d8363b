"""Hugging Face transformers: what a training script imports.

``MixerTrainer`` (a ``transformers.Trainer`` that trains mixer's plan exactly, resumes in O(1)
and evaluates per source; :mod:`mixer.integrations.hf_trainer`) is imported when asked for, so
``import mixer.integrations.hf`` imports neither transformers nor accelerate. The pieces a stock
``Trainer`` script needs too (``MixerCollator``, ``check_vocabulary``, ``packed_attention``,
``val_mixtures``, ``token_losses``) live in :mod:`mixer.integrations.hf_batches`, with why the
labels look the way they do.
"""

from __future__ import annotations

from mixer.integrations.hf_batches import (
    MixerCollator,
    check_vocabulary,
    packed_attention,
    token_losses,
    val_mixtures,
)

__all__ = [  # + MixerTrainer, imported when asked for
    "MixerCollator",
    "check_vocabulary",
    "packed_attention",
    "token_losses",
    "val_mixtures",
]


def __getattr__(name: str):
    if name == "MixerTrainer":  # imports transformers: only when asked for
        from mixer.integrations.hf_trainer import MixerTrainer

        return MixerTrainer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
