"""MixerLoader: counts what it hands out, resumes from samples_seen with any workers, batch
size or world size, refuses what would replay or skip samples."""

from __future__ import annotations

import io
import itertools

import pytest
import torch

from mixer import MixerLoader, StreamingMixture
from mixer.errors import StateError, TrainerError, UsageError
from tests.helpers import build_demo

pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")
TOTAL = 403  # not a multiple of any global batch below: the ragged end is left out


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return build_demo(
        tmp_path_factory.mktemp("loader"),
        {"web": 0.7, "zh": 0.3},
        seq_len=16,
        validation={"docs": 3},
        mixture={"samples": TOTAL},
    )


@pytest.fixture
def open_loader(out, tmp_path):
    def make(batch=4, **kw) -> MixerLoader:
        return MixerLoader(out, batch, cache_dir=tmp_path / "cache", **kw)

    return make


def indices(batches) -> list[int]:
    return [i for b in batches for i in b["index"].tolist()]


def test_state_is_what_was_handed_out_with_workers(open_loader):
    loader = open_loader(num_workers=2, prefetch_factor=4)
    it = iter(loader)
    got = indices(itertools.islice(it, 5))  # the workers have fetched further ahead
    assert got == list(range(20))
    state = loader.state_dict()
    assert state["samples_seen"] == 20
    assert (state["split"], state["batch_size"], state["world_size"]) == ("train", 4, 1)
    assert all(type(v) in (int, str) for v in state.values())
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    assert torch.load(buf, weights_only=True) == state
    rest = indices(it)
    assert rest == list(range(20, TOTAL // 4 * 4))
    assert loader.state_dict()["samples_seen"] == TOTAL // 4 * 4


@pytest.mark.parametrize("workers,batch,world", [(0, 4, 1), (3, 4, 1), (2, 3, 2), (1, 8, 3)])
def test_resume_with_other_workers_batch_and_world(open_loader, workers, batch, world):
    first = open_loader(num_workers=2)
    head = indices(itertools.islice(iter(first), 7))
    state = first.state_dict()
    per_rank = []
    for rank in range(world):
        loader = open_loader(batch, rank=rank, world_size=world, num_workers=workers)
        loader.load_state_dict(state)
        per_rank.append(indices(loader))
        assert loader.state_dict() == {**per_rank_state(state, loader), "batch_size": batch}
    step = batch * world
    end = 28 + (TOTAL - 28) // step * step
    assert head == list(range(28))
    assert sorted(i for r in per_rank for i in r) == list(range(28, end))  # each once
    for rank, got in enumerate(per_rank):  # rank r's slice of every global batch
        assert got[:batch] == list(range(28 + rank * batch, 28 + rank * batch + batch))


def per_rank_state(state: dict, loader: MixerLoader) -> dict:
    step = loader.batch_size * loader.dataset.world_size
    seen = state["samples_seen"] + (TOTAL - state["samples_seen"]) // step * step
    return {**state, "samples_seen": seen, "world_size": loader.dataset.world_size}


def test_persistent_workers_start_again_where_the_trainer_is(open_loader):
    loader = open_loader(num_workers=2, persistent_workers=True, prefetch_factor=4)
    got = indices(itertools.islice(iter(loader), 3))
    got += indices(itertools.islice(iter(loader), 3))  # a new iter() continues, skips nothing
    assert got == list(range(24))


def test_len_is_the_plan_and_the_end_is_an_error(open_loader):
    loader = open_loader(batch=8, world_size=2, rank=1)
    assert len(loader) == TOTAL // 16 == 25
    loader.load_state_dict({"samples_seen": 384})
    assert len(loader) == 25  # an epoch is the plan, whatever the position
    assert indices(loader) == list(range(392, 400))
    with pytest.raises(TrainerError, match=r"400 of the plan's 403 samples were served and no"):
        iter(loader)


def test_validation_starts_again_each_time(open_loader):
    loader = open_loader(split="val", num_workers=2, persistent_workers=True)
    first = indices(loader)
    assert first == list(range(len(loader.dataset)))
    assert indices(itertools.islice(iter(loader), 1)) == first[:4]
    assert indices(loader) == first
    assert len(loader) == -(-len(first) // 4)


def test_mistakes(out, open_loader, tmp_path):
    ds = StreamingMixture(out, batch_size=4, cache_dir=tmp_path)
    with pytest.raises(UsageError, match=r"MixerLoader\(batch_size=8\) over StreamingMixture"):
        MixerLoader(ds, 8)
    with pytest.raises(UsageError, match=r"batch_size=None\): the batch sizes must be equal"):
        MixerLoader(StreamingMixture(out, cache_dir=tmp_path), 4)
    with pytest.raises(UsageError, match=r"rank, split open a mixture from a path"):
        MixerLoader(ds, 4, split="val", rank=0)
    with pytest.raises(UsageError, match=r"batch_size must be an integer >= 1, got 0"):
        MixerLoader(out, 0)
    loader = open_loader()
    with pytest.raises(StateError, match=r"samples_seen=999 is outside this plan's \[0, 403\]"):
        loader.load_state_dict({"samples_seen": 999})
    with pytest.raises(StateError, match=r"this state is from another plan"):
        loader.load_state_dict({"samples_seen": 8, "plan": "0" * 64})
    worker = {k: 0 for k in ("start", "worker_id", "worker_batches", "world_size")}
    with pytest.raises(StateError, match=r"worker 0 of 2's own progress"):
        loader.load_state_dict({**worker, "num_workers": 2, "batch_size": 4, "world_size": 1})
    assert loader.state_dict()["samples_seen"] == 0  # a refused state changes nothing
