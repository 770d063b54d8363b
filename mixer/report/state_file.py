"""A saved resume state read back for reports (``mixer stats --state``, ``mixer inspect
--state``): the plan a run was served is the build's plan amended by the state's journal."""

from __future__ import annotations

import json
from pathlib import Path

from mixer.errors import UsageError


def read_state(path: str | Path) -> dict:
    """``{"samples_seen", "journal", ...}`` from a state saved as JSON (``state_dict()``), a HF
    ``trainer_state.json`` (MixerTrainer's ``MixerProgress``) or a torch checkpoint holding one
    (litgpt's ``train_dataloader``, Lightning's loader state); read with ``weights_only``."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--state {path}: no such file")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError):
        data = _torch(path)
    found = _find(data)
    if found is None:
        raise UsageError(
            f"--state {path}: no mixer state in it (a dict with samples_seen, as state_dict()"
            " returns, MixerTrainer's trainer_state.json or a checkpoint holding one)"
        )
    return found


def _torch(path: Path):
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any unreadable or unsafe file: one line, never a traceback
        raise UsageError(f"--state {path}: neither JSON nor a torch checkpoint ({e})") from None


def _find(data, depth: int = 0):
    """The first dict with an integer ``samples_seen``, searched a few levels down."""
    if isinstance(data, dict):
        if isinstance(data.get("samples_seen"), int):
            return data
        if depth < 6:
            for value in data.values():
                found = _find(value, depth + 1)
                if found is not None:
                    return found
    return None


def served_plan(plan, state: dict):
    """The plan the state's run was served: ``plan`` amended by its journal."""
    from mixer.serve.online import Online

    online = Online(plan)
    online.replace(state.get("journal", []))
    return online.plan


def state_plan(plan, path: str | Path):
    """(the plan a saved state's run was served, its samples_seen)."""
    state = read_state(path)
    seen = state["samples_seen"]
    if not 0 <= seen <= plan.total:
        raise UsageError(
            f"--state {path}: samples_seen {seen:,} is beyond this plan's {plan.total:,} samples;"
            " is it a state of this build?"
        )
    return served_plan(plan, state), seen
