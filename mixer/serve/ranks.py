"""This process's data-parallel rank and world size, given or found."""

from __future__ import annotations

import os

import torch

from mixer.errors import UsageError


def rank_world(rank: int | None, world: int | None) -> tuple[int, int]:
    if rank is None or world is None:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            rank = dist.get_rank() if rank is None else rank
            world = dist.get_world_size() if world is None else world
        else:
            rank = int(os.environ.get("RANK", 0)) if rank is None else rank
            world = int(os.environ.get("WORLD_SIZE", 1)) if world is None else world
    if world < 1 or not 0 <= rank < world:
        raise UsageError(f"data-parallel rank {rank} is not in [0, world_size={world})")
    return rank, world
