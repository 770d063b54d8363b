"""Online weights: changes made while training, as amendments carried in the resume state.

``StreamingMixture.set_weights(w, at_sample=S)`` appends ``[S, {source: weight}]`` to the
mixture's online journal; the plan served is the build's plan amended at each S in turn
(`mixer.plan.journal.amend`: the prefix before S never changes, passes continue, each segment is
allocated exactly). The journal travels in ``state_dict()["journal"]``, so the served order is
a pure function of (plan.json, seed, journal) and a run replays from its state alone, on any
number of ranks or DataLoader workers.

Every rank must make the same change at the same sample: under torch.distributed the change
is gathered from all data-parallel ranks and must be identical (`agree`), or it is an error.
"""

from __future__ import annotations

import math

from mixer.errors import StateError, UsageError
from mixer.plan import journal
from mixer.plan.phases import Amendment


class Online:
    """The build's plan and the changes made to it online, in order of their sample."""

    def __init__(self, base):
        self.base = base
        self.changes: list[tuple[int, dict[str, float]]] = []
        self.plan = base
        self.version = 0  # bumped at each change: a running iteration re-locates its samples

    def add(self, at: int, weights: dict[str, float], position: int) -> None:
        """One change at global sample ``at`` (>= ``position``, the samples already served)."""
        if not isinstance(at, int) or isinstance(at, bool):
            raise UsageError(f"set_weights: at_sample must be an integer, got {at!r}")
        last = self.changes[-1][0] if self.changes else 0
        if at < max(position, last):
            raise UsageError(
                f"set_weights at sample {at:,} is in the past: {position:,} samples were served"
                + (f" and the last change is at {last:,}" if self.changes else "")
                + "; a change applies at or after both"
            )
        if at > self.plan.total:
            raise UsageError(
                f"set_weights at sample {at:,} is beyond the plan's {self.plan.total:,}"
            )
        vector = journal.weights_at(self.plan, at, dict(weights), what="set_weights")
        named = dict(zip([s.name for s in self.plan.sources], vector, strict=True))
        self.plan = _amended(self.plan, at, named)
        self.changes.append((at, named))
        self.version += 1

    def set(self, weights, at_sample: int | None, position: int, split: str) -> int:
        """`StreamingMixture.set_weights`: at ``at_sample``, or at ``position`` (the first
        global-batch boundary the process has not started); the same on every rank."""
        if split != "train" or len(self.plan.sources) < 2:
            raise UsageError("set_weights: only for a training mixture of several sources")
        at = position if at_sample is None else at_sample
        agree(at, dict(weights))
        self.add(at, weights, position)
        return at

    def replace(self, changes) -> None:
        """The changes of a resume state (``state["journal"]``), applied to the build's plan."""
        checked = _checked(changes, {s.name for s in self.base.sources})
        if checked == self.changes:
            return
        plan = self.base
        for at, weights in checked:
            if at > plan.total:
                raise StateError(f"journal: a change at sample {at:,} is beyond the plan")
            plan = _amended(plan, at, weights)
        self.plan, self.changes = plan, checked
        self.version += 1

    def state(self) -> list:
        return [[at, dict(w)] for at, w in self.changes]


def _amended(plan, at: int, weights: dict[str, float]):
    vector = [float(weights.get(s.name, 0.0)) for s in plan.sources]
    entry = Amendment(at=at, kind="amend", note="online")  # no time: replays are identical
    return journal.amend(plan, at=at, entry=entry, weights=vector)


def _checked(changes, names: set[str]) -> list[tuple[int, dict[str, float]]]:
    if not isinstance(changes, list):
        raise StateError("journal: expected a list of [sample, {source: weight}]")
    out, last = [], 0
    for i, c in enumerate(changes):
        ok = isinstance(c, (list, tuple)) and len(c) == 2 and isinstance(c[1], dict)
        at = c[0] if ok else None
        if not ok or not isinstance(at, int) or isinstance(at, bool) or at < last:
            raise StateError(f"journal[{i}]: expected [sample >= {last}, {{source: weight}}]")
        for name, w in c[1].items():
            if name not in names:
                raise StateError(f"journal[{i}]: {str(name)[:64]!r} is not a source of the plan")
            if not isinstance(w, (int, float)) or not (w >= 0 and math.isfinite(w)):
                raise StateError(f"journal[{i}]: weight {name}={w!r} must be a number >= 0")
        out.append((at, {k: float(v) for k, v in c[1].items()}))
        last = at
    return out


def agree(at: int, weights: dict[str, float]) -> None:
    """Under torch.distributed, every rank must pass the same change: gathered and compared
    (one collective per change, made at evaluation time, not per sample)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    mine = (at, sorted(weights.items()))
    every = [None] * dist.get_world_size()
    dist.all_gather_object(every, mine)
    if any(x != mine for x in every):
        first = next(r for r, x in enumerate(every) if x != every[0])
        raise StateError(
            f"set_weights: ranks disagree (rank 0: {every[0]}, rank {first}: {every[first]}):"
            " decide the weights on one rank and broadcast them, or compute them from the same"
            " (all-reduced) metrics on every rank"
        )
