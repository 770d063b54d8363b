"""Resume states of `StreamingMixture` and `MixerLoader`: small dicts of plain ints and strings.

Two kinds, both readable by ``torch.load(weights_only=True)`` and JSON:

- the **global** state ``{"samples_seen", "plan", "split", "batch_size", "world_size"}``: the
  global samples consumed, the same on every rank, valid for resuming with any world size,
  batch size or number of DataLoader workers (global batches count from the resume point);
- a **worker** state ``{"start", "worker_id", "num_workers", "worker_batches", ...}``: what one
  DataLoader worker served since global sample ``start``. Workers take batches in turn, so a
  worker alone cannot know how far the others got; torchdata's StatefulDataLoader keeps one
  such state per worker and gives each worker its own back, with the same ``num_workers``.

Invariant: these dicts live in users' checkpoints, which outlive releases, and carry no format
number. A key never changes name or meaning (``samples_seen`` is always the global samples
handed to the trainer); a new key is optional, with the default that reproduces the old
behaviour; ``plan`` (the plan's fingerprint) is what refuses a state from another plan.
"""

from __future__ import annotations

from mixer.errors import StateError

WORKER_KEYS = ("start", "worker_id", "num_workers", "worker_batches", "batch_size", "world_size")


def global_state(*, seen: int, plan: str, split: str, batch: int, world: int, journal=None) -> dict:
    out = {"samples_seen": seen, "plan": plan, "split": split, "batch_size": batch}
    out["world_size"] = world
    if journal:  # online weight changes (mixer.serve.online): [[sample, {source: weight}]]
        out["journal"] = journal
    return out


def worker_state(
    *,
    start: int,
    worker: int,
    workers: int,
    batches: int,
    plan: str,
    split: str,
    batch: int,
    world: int,
    journal=None,
) -> dict:
    out = {
        "start": start,
        "worker_id": worker,
        "num_workers": workers,
        "worker_batches": batches,
        "plan": plan,
        "split": split,
        "batch_size": batch,
        "world_size": world,
    }
    if journal:
        out["journal"] = journal
    return out


def is_worker_state(state: object) -> bool:
    return isinstance(state, dict) and "worker_id" in state


def check_global(state: object, *, plan, total: int) -> int:
    """``samples_seen`` of a global state, checked against this plan's lineage there."""
    if not isinstance(state, dict) or "samples_seen" not in state:
        raise StateError("a mixture state needs 'samples_seen' (global samples consumed)")
    seen = state["samples_seen"]
    if not _is_int(seen) or not 0 <= seen <= total:
        raise StateError(f"samples_seen={seen!r} is outside this plan's [0, {total}]")
    check_lineage(state, plan, seen)
    return seen


def check_worker(
    state: dict, *, plan, total: int, worker: tuple[int, int] | None, batch: int, world: int
) -> tuple[int, int]:
    """(start, worker_batches) of worker ``worker = (id, num_workers)``'s own state."""
    bad = [k for k in WORKER_KEYS if not _is_int(state.get(k)) or state[k] < 0]
    if bad:
        raise StateError(f"a DataLoader worker's mixture state needs integer {', '.join(bad)}")
    wid, n = state["worker_id"], state["num_workers"]
    if worker is None:
        raise StateError(
            f"this state is DataLoader worker {wid} of {n}'s own progress (torchdata's"
            " StatefulDataLoader keeps one per worker): resume it through a StatefulDataLoader"
            f" with num_workers={n}, or resume from the loader's samples_seen (MixerLoader)"
        )
    if worker != (wid, n):
        raise StateError(
            f"the state of DataLoader worker {wid} of {n} was given to worker {worker[0]} of"
            f" {worker[1]}: a StatefulDataLoader resumes only with the same num_workers ({n})"
        )
    if (state["batch_size"], state["world_size"]) != (batch, world):
        raise StateError(
            f"this worker's state was taken with batch_size={state['batch_size']},"
            f" world_size={state['world_size']}, not {batch}, {world}: a worker's state resumes"
            " only with the same; to change them, resume from samples_seen (MixerLoader)"
        )
    if state["start"] > total:
        raise StateError(f"start={state['start']} is outside this plan's [0, {total}]")
    position = worker_position(
        start=state["start"],
        worker=wid,
        workers=n,
        batches=state["worker_batches"],
        batch=batch,
        world=world,
    )
    check_lineage(state, plan, min(position, total))
    return state["start"], state["worker_batches"]


def worker_position(*, start, worker, workers, batches, batch, world) -> int:
    """The global sample after the last batch a DataLoader worker served (workers take the
    global batches from ``start`` in turn: worker w serves batches w, w + n, w + 2n, ...)."""
    if batches == 0:
        return start
    return start + (worker + (batches - 1) * workers + 1) * batch * world


def check_lineage(state: dict, plan, position: int) -> None:
    """The state's lineage (``plan``: what fixed its samples [0, position), see
    `mixer.plan.journal`) must be this plan's there: a state taken at or before an amendment
    resumes on the amended plan, one past it does not."""
    got = state.get("plan")
    if got is None or got == plan.lineage(position):
        return
    from mixer.plan.journal import last_change_before

    change = last_change_before(plan, position)
    if change is not None:
        raise StateError(
            f"this state is at sample {position:,}, past this plan's {change.kind} at sample"
            f" {change.at:,}: it was taken before that change was made, so samples"
            f" {change.at:,}-{position - 1:,} differ; resume from a checkpoint at or before"
            f" sample {change.at:,}"
        )
    raise StateError(
        f"this state is from another plan ({str(got)[:12]}…, this one is"
        f" {plan.fingerprint[:12]}…): the data, weights or seed changed, or the plan was"
        f" amended before sample {position:,} differently; resume from {{'samples_seen': n}}"
        " only if that is intended"
    )


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)
