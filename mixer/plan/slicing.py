"""Ranks, workers and batches: which global samples a rank serves."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Slicing:
    """Which global samples a rank serves, from global sample ``start`` on.

    Global batch g is samples [start + g*B*W, start + (g+1)*B*W); rank r takes the B samples
    from start + g*B*W + r*B. With ``drop_last`` (training), a final global batch that is not
    complete is not served, so every rank yields the same number of batches (a rank that waits
    for another hangs the job): at most B*W - 1 samples at the end of the plan are left out.
    Without it (validation), the final global batch is cut where the plan ends: ranks past the
    end get nothing and one rank may get a short batch; every sample is served exactly once.
    """

    start: int
    total: int
    batch: int
    world: int
    rank: int
    drop_last: bool = True

    def __post_init__(self) -> None:
        assert 0 <= self.rank < self.world and self.batch >= 1 and 0 <= self.start <= self.total

    @property
    def num_batches(self) -> int:
        full, rest = divmod(self.total - self.start, self.batch * self.world)
        return full + int(not self.drop_last and rest > self.rank * self.batch)

    def batch_start(self, g: int) -> int:
        return self.start + g * self.batch * self.world + self.rank * self.batch

    def batch_len(self, g: int) -> int:
        return min(self.batch, self.total - self.batch_start(g))

    @property
    def num_samples(self) -> int:
        n = self.num_batches
        return 0 if n == 0 else (n - 1) * self.batch + self.batch_len(n - 1)

    def global_seen(self, batches_done: int) -> int:
        """Global samples consumed once every rank has taken ``batches_done`` batches."""
        return min(self.total, self.start + batches_done * self.batch * self.world)
