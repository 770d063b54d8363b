"""MixerLoader under real DDP: two gloo processes launched by Lightning Fabric (CPU).

Each rank trains its own B-slice of every global batch; Fabric saves the loader's state from
rank 0 only and every rank loads it, so the state must be the same on every rank; the resumed
job trains exactly the samples the first one had not.
"""

from __future__ import annotations

import pytest
import torch

from mixer import MixerLoader
from tests.helpers import build_demo
from tests.trainers.conftest import require

lightning = require("lightning")

B, WORLD, FIRST, TOTAL_STEPS = 4, 2, 5, 12


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return build_demo(
        tmp_path_factory.mktemp("ddp-loader"),
        {"web": 0.8, "zh": 0.2},
        seq_len=16,
        validation={},
        mixture={"samples": 403},
    )


def _phase(fabric, out, cache, ckpt, steps: int, resume: bool) -> tuple[list, dict]:
    model = torch.nn.Linear(1, 1)
    model, opt = fabric.setup(model, torch.optim.SGD(model.parameters(), lr=1e-3))
    mixer_loader = MixerLoader(out, B, cache_dir=cache, num_workers=2)
    loader = fabric.setup_dataloaders(mixer_loader)  # Fabric's wrapper; saved unwrapped
    state = {"model": model, "optimizer": opt, "train_dataloader": loader, "step": 0}
    if resume:
        fabric.load(ckpt, state)
    trained = []
    for batch in loader:
        trained.append(batch["index"].tolist())
        x = batch["input_ids"].float().mean(dim=1, keepdim=True)
        fabric.backward(model(x).pow(2).mean())  # gradients all-reduced across the ranks
        opt.step()
        opt.zero_grad()
        state["step"] += 1
        if state["step"] == steps:
            break
    fabric.save(ckpt, state)  # rank 0 writes it
    return trained, mixer_loader.state_dict()


def _job(fabric, out, cache, ckpt):
    import torch.distributed as dist

    assert MixerLoader(out, B, cache_dir=cache).dataset.rank == fabric.global_rank
    first, state1 = _phase(fabric, out, cache, ckpt, FIRST, resume=False)
    fabric.barrier()
    second, state2 = _phase(fabric, out, cache, ckpt, TOTAL_STEPS, resume=True)
    gathered = [None] * WORLD
    dist.all_gather_object(gathered, {"first": first, "second": second, "states": [state1, state2]})
    return gathered


@pytest.mark.slow
def test_each_rank_trains_its_slice_and_resumes_exactly(out, tmp_path):
    fabric = lightning.Fabric(accelerator="cpu", devices=WORLD, strategy="ddp_spawn")
    ranks = fabric.launch(_job, str(out), str(tmp_path / "cache"), str(tmp_path / "ckpt.pt"))
    saved = torch.load(tmp_path / "ckpt.pt", weights_only=True)  # written by rank 0
    assert saved["train_dataloader"] == ranks[0]["states"][1]
    for r, got in enumerate(ranks):
        # rank r's g-th batch is [g*B*W + r*B, +B): its own slice, in order, across the resume
        first = [g * B * WORLD + r * B for g in range(TOTAL_STEPS)]
        expected = [list(range(a, a + B)) for a in first]
        assert got["first"] == expected[:FIRST]
        assert got["second"] == expected[FIRST:]
        assert got["states"] == ranks[0]["states"]  # the same state on every rank
    assert ranks[0]["states"][0]["samples_seen"] == FIRST * B * WORLD
    trained = sorted(i for got in ranks for b in got["first"] + got["second"] for i in b)
    assert trained == list(range(TOTAL_STEPS * B * WORLD))  # each sample once
