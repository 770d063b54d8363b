"""Adapters between mixer's loaders and particular trainers, one module per trainer.

Each module imports its trainer lazily, and nothing else in mixer imports them: ``import
mixer.integrations`` costs nothing and needs no trainer installed.

- ``litgpt``: ``MixerData``, a litgpt ``DataModule`` for ``litgpt pretrain --data
  mixer.integrations.litgpt.MixerData --data.path OUT``.
- ``hf``: Hugging Face ``transformers.Trainer``.

Trainers that take a DataLoader with ``state_dict``/``load_state_dict`` (Lightning Fabric,
PyTorch Lightning, torchdata's StatefulDataLoader users) need no adapter: use
``mixer.MixerLoader``.
"""
