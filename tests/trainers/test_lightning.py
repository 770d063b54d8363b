"""MixerLoader in a real PyTorch Lightning Trainer and a real Lightning Fabric loop (CPU).

Lightning saves the state of a train loader that has ``state_dict``/``load_state_dict`` in its
checkpoint (``loops.fit_loop.state_dict.combined_loader``) and loads it on resume. Its fit loop
fetches through ``_PrefetchDataFetcher``, which fetches one batch ahead only when the loader
has no length: MixerLoader has one, so a checkpoint holds the trained position. The tiny model
records ``batch["index"]``: the assertions are on the plan samples trained.
"""

from __future__ import annotations

import pytest
import torch

from mixer import MixerLoader
from tests.trainers.conftest import require

L = require("lightning")
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402

B = 4
pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning", "ignore::DeprecationWarning", "ignore::FutureWarning"
)


class Recorder(L.LightningModule):
    """One weight; remembers the plan indices of every batch it trains on."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.trained: list[list[int]] = []

    def training_step(self, batch, batch_idx):
        self.trained.append(batch["index"].tolist())
        return ((self.w * batch["input_ids"].float().mean() - 1) ** 2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1e-3)


def fit(build, cache, ckpt_dir, *, max_steps, accumulate=1, workers=0, ckpt_path=None):
    model = Recorder()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=max_steps,
        accumulate_grad_batches=accumulate,
        callbacks=[ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=3, save_top_k=-1)],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    loader = MixerLoader(build, B, cache_dir=cache, num_workers=workers)
    trainer.fit(model, train_dataloaders=loader, ckpt_path=ckpt_path)
    return model.trained


@pytest.mark.slow
@pytest.mark.parametrize("accumulate,workers", [(1, 0), (2, 2)])
def test_trainer_resumes_from_a_checkpoint_at_the_trained_position(
    small_build, cache, tmp_path, accumulate, workers
):
    whole = fit(small_build, cache, tmp_path, max_steps=8, accumulate=accumulate, workers=workers)
    per_step = accumulate  # batches per optimizer step
    assert whole == [list(range(g * B, g * B + B)) for g in range(8 * per_step)]
    ckpt = tmp_path / "epoch=0-step=3.ckpt"
    saved = torch.load(ckpt, weights_only=True)
    states = saved["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert states == [MixerLoader(small_build, B, cache_dir=cache).state_dict() | states[0]]
    assert states[0]["samples_seen"] == 3 * per_step * B  # trained, not fetched
    resumed = fit(
        small_build,
        cache,
        tmp_path / "again",
        max_steps=8,
        accumulate=accumulate,
        workers=workers,
        ckpt_path=ckpt,
    )
    assert whole[: 3 * per_step] + resumed == whole  # each trained sample once, in order


def test_fabric_saves_and_loads_the_loader(small_build, cache, tmp_path):
    def run(steps: int, resume: bool) -> list[list[int]]:
        fabric = L.Fabric(accelerator="cpu", devices=1)
        loader = fabric.setup_dataloaders(MixerLoader(small_build, B, cache_dir=cache))
        state = {"loader": loader, "iter_num": 0}
        if resume:
            fabric.load(tmp_path / "ckpt.pt", state)
        trained = []
        for batch in loader:
            trained.append(batch["index"].tolist())
            state["iter_num"] += 1
            if state["iter_num"] == steps:
                break
        fabric.save(tmp_path / "ckpt.pt", state)
        return trained

    first = run(5, resume=False)
    saved = torch.load(tmp_path / "ckpt.pt", weights_only=True)  # plain ints and strings
    assert saved["loader"]["samples_seen"] == 5 * B and saved["iter_num"] == 5
    second = run(9, resume=True)
    assert first + second == [list(range(g * B, g * B + B)) for g in range(9)]


class Validating(Recorder):
    """Logs a fixed per-source validation loss (what the controller reads)."""

    def training_step(self, batch, batch_idx):
        self.sources = getattr(self, "sources", []) + list(batch["source"])
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch, batch_idx):
        self.log("eval_web_loss", 2.0 + 0.1 * self.global_step)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_a_controller_callback_changes_the_weights_exactly(small_build, cache, tmp_path, workers):
    """MixerController after each validation: the trainer trains the replay of the journal in
    the loader's state, each sample once; and the checkpoint replays it."""
    from mixer import StreamingMixture
    from mixer.integrations.lightning import MixerController

    seen = []

    def controller(step, metrics):
        seen.append((step, metrics["eval_web_loss"]))
        return {"web": 0.1 * (len(seen) % 3) + 0.05}

    model = Validating()
    loader = MixerLoader(small_build, B, cache_dir=cache, num_workers=workers)
    val = MixerLoader(small_build, B, split="val", cache_dir=cache)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=12,
        val_check_interval=4,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        enable_checkpointing=False,
    )
    trainer.callbacks.append(MixerController(controller, loader))
    trainer.fit(model, train_dataloaders=loader, val_dataloaders=val)
    journal = loader.state_dict()["journal"]
    assert [at for at, _ in journal] == [4 * B, 8 * B, 12 * B][: len(journal)]
    assert [s for s, _ in seen][:2] == [4, 8]
    replay = StreamingMixture(small_build, batch_size=B, cache_dir=cache)
    replay.load_state_dict({"samples_seen": 0, "journal": journal})
    expected = [s for s in replay][: 12 * B]
    got = [i for b in model.trained for i in b]
    assert got == [s["index"] for s in expected]  # each sample once, in order
    assert model.sources == [s["source"] for s in expected]  # ... from the steered plan
    assert (
        model.sources
        != [s["source"] for s in StreamingMixture(small_build, batch_size=B, cache_dir=cache)][
            : 12 * B
        ]
    )
