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
        rows = [hashlib.sha1(r.numpy().tobytes()).hexdigest()[:12] for r in input_ids]
        self.trained += list(zip(index.tolist(), rows, strict=True))
        return super().forward(index=index, input_ids=input_ids, **kwargs)


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    yield from small_build(tmp_path_factory.mktemp("hfsteer"))


def _rank_main(rank: int, out: str, tmp: str) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_WORLD_SIZE=str(WORLD)
    )
    import torch.distributed as dist

    dist.init_process_group(
        "gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=WORLD
    )
    try:
        got = _train_amend_resume(out, tmp, rank, dist)
        with open(f"{tmp}/rank{rank}.json", "w") as f:
            json.dump(got, f)
        dist.barrier()
    finally:
        dist.destroy_process_group()


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
