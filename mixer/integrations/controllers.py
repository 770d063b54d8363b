"""Controllers: weights decided from the model's own validation losses while it trains.

A controller is any callable ``controller(step, metrics) -> {source: weight} | None``, called
after each evaluation with the trainer's metrics (``eval_<source>_loss`` per source, as
``MixerTrainer`` reports them); a dict changes the weights from the next batch on
(``set_weights``: exact, replayable from the resume state), None keeps them. Controllers are
plain Python state; keep them deterministic (same metrics, same answer on every rank). The
controllers here give weights rounded to 6 decimals: a mixture needs no more, and each change
then costs the resume state's journal ~40 bytes (JSON, two sources) instead of ~55.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def loss_key(source: str) -> str:
    return f"eval_{source}_loss"


@dataclass
class ReplayController:
    """Keep the old distribution's validation loss within ``budget`` of its first value by
    moving the replay share inside ``bounds``.

    ``old``: the replay source (its ``eval_<old>_loss`` is watched); ``weights``: the other
    sources' weights (their ratios are kept); ``start``: the replay share to begin with. After
    each evaluation the loss rise r = loss - loss_0 is compared with the budget: above it, the
    share is multiplied by ``up``; below ``slack`` x budget, divided by ``down``; clipped to
    ``bounds``. Less replay while the old loss holds, more as soon as it drifts.
    """

    old: str
    weights: dict[str, float]
    budget: float = 0.05
    bounds: tuple[float, float] = (0.01, 0.25)
    start: float = 0.05
    up: float = 1.5
    down: float = 1.25
    slack: float = 0.5
    share: float = field(init=False)
    baseline: float | None = field(default=None, init=False)
    history: list = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        lo, hi = self.bounds
        if not 0 < lo <= hi < 1 or self.budget <= 0 or self.old in self.weights:
            raise ValueError(
                "ReplayController: bounds must satisfy 0 < low <= high < 1, budget > 0, and the"
                " replay source must not be among the other sources' weights"
            )
        self.share = min(max(self.start, lo), hi)

    def __call__(self, step: int, metrics: dict) -> dict[str, float] | None:
        loss = metrics.get(loss_key(self.old))
        if loss is None:
            return None
        if self.baseline is None:
            self.baseline = loss
            return self._weights()
        rise = loss - self.baseline
        before = self.share
        if rise > self.budget:
            self.share *= self.up
        elif rise < self.slack * self.budget:
            self.share /= self.down
        lo, hi = self.bounds
        self.share = min(max(self.share, lo), hi)
        self.history.append((step, rise, self.share))
        return None if self.share == before else self._weights()

    def _weights(self) -> dict[str, float]:
        rest = sum(self.weights.values())
        out = {n: round((1 - self.share) * w / rest, 6) for n, w in self.weights.items()}
        out[self.old] = round(self.share, 6)
        return out


@dataclass
class LossProportionalController:
    """Weights proportional to each source's excess validation loss over its first value
    (smoothed by an exponential moving average ``smooth``; at least ``floor`` each): sources
    being forgotten, or not yet learned, get more. An example of the protocol."""

    sources: tuple[str, ...]
    smooth: float = 0.5
    floor: float = 0.02
    baseline: dict[str, float] = field(default_factory=dict, init=False)
    excess: dict[str, float] = field(default_factory=dict, init=False)

    def __call__(self, step: int, metrics: dict) -> dict[str, float] | None:
        losses = {s: metrics.get(loss_key(s)) for s in self.sources}
        if any(v is None for v in losses.values()):
            return None
        if not self.baseline:
            self.baseline = dict(losses)
            self.excess = {s: 0.0 for s in self.sources}
            return None
        for s, v in losses.items():
            e = max(v - self.baseline[s], 0.0)
            self.excess[s] = self.smooth * self.excess[s] + (1 - self.smooth) * e
        total = sum(self.excess.values())
        if total <= 0:
            return None
        raw = {s: max(self.excess[s] / total, self.floor) for s in self.sources}
        norm = sum(raw.values())
        return {s: round(w / norm, 6) for s, w in raw.items()}
