"""A real two-process torch.distributed job (gloo, CPU), each rank with DataLoader workers."""

from __future__ import annotations

import json

import pytest
import torch.multiprocessing as mp

from tests.helpers import build_demo

B, WORLD = 4, 2


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return build_demo(
        tmp_path_factory.mktemp("ddp"),
        {"web": 0.8, "zh": 0.2},
        seq_len=16,
        validation={},
        mixture={"samples": 2003},
    )


def _rank_main(rank: int, out: str, init: str, cache: str, results: str, resume_at: int) -> None:
    import torch.distributed as dist
    from torch.utils.data import DataLoader

    from mixer import StreamingMixture

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    try:
        ds = StreamingMixture(out, batch_size=B, cache_dir=cache)  # rank/world from the group
        assert (ds.rank, ds.world_size) == (rank, WORLD)
        ds.load_state_dict({"samples_seen": resume_at})
        loader = DataLoader(ds, batch_size=B, num_workers=2)
        mine = [b["index"].tolist() for b in loader]
        sources = [s for b in DataLoader(ds, batch_size=B, num_workers=2) for s in b["source"]]
        gathered = [None] * WORLD
        dist.all_gather_object(gathered, {"batches": mine, "sources": sources, "len": len(ds)})
        if rank == 0:
            with open(results, "w") as f:
                json.dump({"ranks": gathered, "counts": ds.counts_at(ds.total_samples)}, f)
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("resume_at", [0, 1000])
def test_two_ranks_with_workers_serve_the_sequence_once(out, tmp_path, resume_at):
    results = tmp_path / "results.json"
    init = f"file://{tmp_path / 'rendezvous'}"
    mp.start_processes(
        _rank_main,
        args=(str(out), init, str(tmp_path / "cache"), str(results), resume_at),
        nprocs=WORLD,
        start_method="spawn",
    )
    data = json.loads(results.read_text())
    ranks = data["ranks"]
    step = B * WORLD
    full = resume_at + (2003 - resume_at) // step * step
    for r, got in enumerate(ranks):
        # rank r's g-th batch is [start + g*B*W + r*B, +B): contiguous, in order
        expected = [list(range(a + r * B, a + r * B + B)) for a in range(resume_at, full, step)]
        assert got["batches"] == expected
        assert got["len"] == len(expected) * B
    served = sorted(i for got in ranks for b in got["batches"] for i in b)
    assert served == list(range(resume_at, full))  # no duplicates, no gaps
    assert {s for got in ranks for s in got["sources"]} == {"web", "zh"}
    assert sum(c["samples"] for c in data["counts"].values()) == 2003
