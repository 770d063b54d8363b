"""MixerTrainer under a real two-process gloo job, steered: train to a checkpoint, amend the
plan at that checkpoint's sample, resume; the trained samples are the old plan's [0, S), then
the amended plan's [S, N), each once (checked by index and by the tokens each rank trained)."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
import torch.multiprocessing as mp

pytest.importorskip("transformers")
import transformers  # noqa: E402
from test_hf import Recording, small_build  # noqa: E402

from mixer import StreamingMixture  # noqa: E402

B, WORLD, STEPS, CKPT = 4, 2, 6, 2
S = CKPT * B * WORLD  # the checkpoint's global sample

pytestmark = pytest.mark.skipif(
    int(transformers.__version__.split(".")[0]) < 5,
    reason="transformers 4.57 cannot resume a multi-process CPU run (optimizer map_location)",
)


class Hashing(Recording):
    """Records (index, sha of the input ids) of every sample it trains on."""

    def forward(self, index=None, input_ids=None, **kwargs):
        if self.training:  # evaluation batches are not training
            rows = [hashlib.sha1(r.numpy().tobytes()).hexdigest()[:12] for r in input_ids]
            self.trained += list(zip(index.tolist(), rows, strict=True))
        return super().forward(index=index, input_ids=input_ids, **kwargs)


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    yield from small_build(tmp_path_factory.mktemp("hfsteer"))


def _in_gloo(rank: int, tmp: str, name: str, work) -> None:
    """Run ``work(dist)`` as rank ``rank`` of a gloo group; write its result to NAME{rank}.json."""
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_WORLD_SIZE=str(WORLD)
    )
    import torch.distributed as dist

    dist.init_process_group(
        "gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=WORLD
    )
    try:
        got = work(dist)
        with open(f"{tmp}/{name}{rank}.json", "w") as f:
            json.dump(got, f)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _rank_main(rank: int, out: str, tmp: str) -> None:
    _in_gloo(rank, tmp, "rank", lambda dist: _train_amend_resume(out, tmp, rank, dist))


def _train_amend_resume(out: str, tmp: str, rank: int, dist) -> dict:
    from test_hf import hf_args, tiny_llama

    import mixer
    from mixer.integrations.hf import MixerCollator, MixerTrainer

    def trainer(model):
        args = hf_args(f"{tmp}/run", max_steps=STEPS, save_steps=CKPT)
        return MixerTrainer(model, args, MixerCollator(keep_index=True), train_dataset=out)

    first = tiny_llama(cls=Hashing)
    first.trained = []
    trainer(first).train()
    if rank == 0:  # the run is steered at its checkpoint: more zh from sample S on
        mixer.amend(out, at_sample=S, weights={"web": 0.2, "zh": 0.8}, note="test")
    dist.barrier()
    resumed = tiny_llama(cls=Hashing)
    resumed.trained = []
    trainer(resumed).train(resume_from_checkpoint=f"{tmp}/run/checkpoint-{CKPT}")
    return {"first": first.trained, "resumed": resumed.trained}


def _plan_rows(out) -> dict[int, str]:
    ds = StreamingMixture(out, batch_size=1, rank=0, world_size=1, position_ids=False)
    rows = {}
    for sample in ds:
        if sample["index"] >= STEPS * B * WORLD:
            break
        rows[sample["index"]] = hashlib.sha1(sample["input_ids"].tobytes()).hexdigest()[:12]
    return rows


@pytest.mark.slow
def test_two_ranks_resume_on_the_amended_plan(out, tmp_path):
    old = _plan_rows(out)
    mp.start_processes(
        _rank_main, args=(str(out), str(tmp_path)), nprocs=WORLD, start_method="spawn"
    )
    new = _plan_rows(out)
    assert [old[i] for i in range(S)] == [new[i] for i in range(S)]  # the prefix kept
    assert any(old[i] != new[i] for i in range(S, STEPS * B * WORLD))  # the rest amended
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    before = [tuple(x) for got in ranks for x in got["first"] if x[0] < S]
    after = [tuple(x) for got in ranks for x in got["resumed"]]
    assert sorted(i for i, _ in before) == list(range(S))  # [0, S) once, from the old plan
    assert all(old[i] == h for i, h in before)
    assert sorted(i for i, _ in after) == list(range(S, STEPS * B * WORLD))  # [S, N) once
    assert all(new[i] == h for i, h in after)  # ... from the amended plan


class Scripted:
    """A controller with fixed answers at given steps (the exactness test needs known changes;
    ReplayController's own logic is tested in tests/unit/test_online.py)."""

    def __init__(self, plan: dict[int, dict]):
        self.plan, self.calls = plan, []

    def __call__(self, step, metrics):
        self.calls.append((step, sorted(k for k in metrics if k.endswith("_loss"))))
        return self.plan.get(step)


CHANGES = {2: {"web": 0.2, "zh": 0.8}, 4: {"web": 0.9, "zh": 0.1}}


def _controlled(rank: int, out: str, tmp: str) -> None:
    _in_gloo(rank, tmp, "ctl", lambda dist: _train_with_controller(out, tmp))


def _train_with_controller(out: str, tmp: str) -> dict:
    from test_hf import hf_args, tiny_llama

    from mixer.integrations.hf import MixerCollator, MixerTrainer

    def trainer(model, controller, workers):
        args = hf_args(
            f"{tmp}/ctl",
            max_steps=STEPS,
            save_steps=4,
            eval_strategy="steps",
            eval_steps=2,
            dataloader_num_workers=workers,
        )
        collate = MixerCollator(keep_index=True)
        return MixerTrainer(
            model, args, collate, train_dataset=out, eval_dataset=out, mixer_controller=controller
        )

    first = tiny_llama(cls=Hashing)
    first.trained = []
    ctl = Scripted(CHANGES)
    t = trainer(first, ctl, workers=2)
    t.train()
    journal = t.train_dataset.state_dict().get("journal")
    again = tiny_llama(cls=Hashing)
    again.trained = []
    resume = f"{tmp}/ctl/checkpoint-4"
    trainer(again, Scripted(CHANGES), workers=0).train(resume_from_checkpoint=resume)
    return {
        "first": first.trained,
        "resumed": again.trained,
        "journal": journal,
        "calls": ctl.calls,
    }


@pytest.mark.slow
def test_a_controller_changes_weights_exactly_and_resumes(out, tmp_path):
    mp.start_processes(
        _controlled, args=(str(out), str(tmp_path)), nprocs=WORLD, start_method="spawn"
    )
    ranks = [json.loads((tmp_path / f"ctl{r}.json").read_text()) for r in range(WORLD)]
    journal = ranks[0]["journal"]
    assert journal == ranks[1]["journal"]
    assert [at for at, _ in journal] == [2 * B * WORLD, 4 * B * WORLD]  # at the evaluations
    assert [c[0] for c in ranks[0]["calls"]] == [2, 4, 6]  # after each evaluation
    replay = StreamingMixture(out, batch_size=1, rank=0, world_size=1, position_ids=False)
    replay.load_state_dict({"samples_seen": 0, "journal": journal})  # the run, from its state
    rows = {}
    for sample in replay:
        if sample["index"] >= STEPS * B * WORLD:
            break
        rows[sample["index"]] = hashlib.sha1(sample["input_ids"].tobytes()).hexdigest()[:12]
    first = [tuple(x) for got in ranks for x in got["first"]]
    assert sorted(i for i, _ in first) == list(range(STEPS * B * WORLD))  # each once
    assert all(rows[i] == h for i, h in first)  # the replay of its journal
    resumed = [tuple(x) for got in ranks for x in got["resumed"]]
    assert sorted(i for i, _ in resumed) == list(range(4 * B * WORLD, STEPS * B * WORLD))
    assert all(rows[i] == h for i, h in resumed)
