"""StreamingMixture inside torchdata's StatefulDataLoader: each worker's own state, resumed.

torchdata snapshots ``dataset.state_dict()`` inside each worker with the batches it marks and
gives worker i its own state back on resume (with the same ``num_workers``), plus the position
of the next worker in the round robin. The mixture's worker states must make the resumed
loader serve exactly the batches the uninterrupted one would have.
"""

from __future__ import annotations

import io

import pytest
import torch

from mixer import StreamingMixture
from mixer.errors import StateError
from tests.trainers.conftest import require

require("torchdata")
from torchdata.stateful_dataloader import StatefulDataLoader  # noqa: E402

B = 4
NUM_BATCHES = 400 // B


def loader(out, cache, workers, snapshot=1, persistent=False, batch=B, **kw):
    ds = StreamingMixture(out, batch_size=batch, cache_dir=cache, **kw)
    return StatefulDataLoader(
        ds,
        batch_size=batch,
        num_workers=workers,
        snapshot_every_n_steps=snapshot,
        persistent_workers=persistent and workers > 0,
    )


def through_disk(state: dict) -> dict:
    """torch.save, then torch.load(weights_only=True): what a checkpoint does to the state."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def take(it, n: int) -> list[list[int]]:
    return [next(it)["index"].tolist() for _ in range(n)]


WHOLE = [list(range(g * B, g * B + B)) for g in range(NUM_BATCHES)]  # rank 0 of 1
CASES = [(0, 1, False), (0, 3, False)] + [
    (w, s, p) for w in (1, 2, 3) for s in (1, 3) for p in (False, True)
]
pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")


@pytest.mark.parametrize("workers", [0, 1, 2, 3])
def test_uninterrupted_batches_are_the_global_batches(small_build, cache, workers):
    assert [b["index"].tolist() for b in loader(small_build, cache, workers)] == WHOLE


@pytest.mark.slow
@pytest.mark.parametrize("workers,snapshot,persistent", CASES)
def test_resume_twice_serves_the_uninterrupted_batches(
    small_build, cache, workers, snapshot, persistent
):
    args = (small_build, cache, workers, snapshot, persistent)
    first = loader(*args)
    got = take(iter(first), 7)  # 7: not a multiple of the workers nor of the snapshot interval
    second = loader(*args)
    second.load_state_dict(through_disk(first.state_dict()))
    got += take(iter(second), 5)
    third = loader(*args)
    third.load_state_dict(through_disk(second.state_dict()))
    got += [b["index"].tolist() for b in third]
    assert got == WHOLE


def test_worker_state_is_the_workers_own_progress(small_build, cache):
    first = loader(small_build, cache, workers=2)
    take(iter(first), 5)  # batches 0..4: worker 0 served 0, 2, 4 and worker 1 served 1, 3
    snap = first.state_dict()["_snapshot"]
    states = {k: v["dataset_state"] for k, v in snap["_worker_snapshots"].items()}
    progress = {
        k: (s["worker_id"], s["num_workers"], s["worker_batches"]) for k, s in states.items()
    }
    assert progress == {"worker_0": (0, 2, 3), "worker_1": (1, 2, 2)}
    assert all(s["start"] == 0 and "samples_seen" not in s for s in states.values())


def test_resume_after_a_loaded_global_state_and_with_a_second_rank(small_build, cache):
    """A worker state counts from the start it was given (here 40), on any rank."""
    kw = {"rank": 1, "world_size": 2}
    first = loader(small_build, cache, workers=2, **kw)
    first.dataset.load_state_dict({"samples_seen": 40})
    got = take(iter(first), 3)
    second = loader(small_build, cache, workers=2, **kw)
    second.load_state_dict(through_disk(first.state_dict()))
    got += take(iter(second), 2)
    # rank 1's g-th batch after sample 40 is [40 + 8g + 4, +4)
    assert got == [list(range(40 + 8 * g + 4, 40 + 8 * g + 8)) for g in range(5)]


def test_a_worker_state_needs_the_same_workers_batch_and_world(small_build, cache):
    first = loader(small_build, cache, workers=2)
    take(iter(first), 3)
    state = first.state_dict()
    worker0 = state["_snapshot"]["_worker_snapshots"]["worker_0"]["dataset_state"]
    ds = StreamingMixture(small_build, batch_size=B, cache_dir=cache)
    with pytest.raises(StateError, match=r"worker 0 of 2's own progress .* num_workers=2"):
        ds.load_state_dict(worker0)  # in the main process
    other = loader(small_build, cache, workers=2, batch=8)
    other.load_state_dict(state)
    with pytest.raises(StateError, match=r"taken with batch_size=4, world_size=1, not 8, 1"):
        next(iter(other))


def test_the_unpatched_count_would_restart_at_zero(small_build, cache):
    """The measured failure this fixes: a worker's state must not stay at the start."""
    first = loader(small_build, cache, workers=2)
    take(iter(first), 4)
    second = loader(small_build, cache, workers=2)
    second.load_state_dict(first.state_dict())
    assert next(iter(second))["index"].tolist() == [16, 17, 18, 19]
