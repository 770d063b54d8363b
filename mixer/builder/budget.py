"""Per-source budgets (`take:`): what a source must provide, and where its reading stops.

``take: auto`` is arithmetic on the recipe alone: the plan's total is given (the recipe refuses
``auto`` without ``mixture.samples``/``tokens``: otherwise the total would depend on the blocks,
which would depend on the total), so each source's samples n_s are known before anything is
read (`mixer.artifacts.planfile.planned_counts`, the allocation the plan will make). A source
allowed E_s repetitions needs B_s = ceil(n_s / E_s) train blocks; ``auto`` reads until its train
split holds (B_s + margin) * seq_len tokens, margin = ceil(2% of B_s) (so that a small change
of weights or total re-plans without a rebuild). E_s is the source's own ``max_epochs``, else
1 (a replay pool is never repeated), or ``mixture.max_epochs`` when that is smaller. Example:
5% of 5 B tokens in blocks of 8,192 = 30,518 samples of RefinedWeb = 31,129 blocks with the
margin, 255 M train tokens of its ~600 B.

Reading stops where the budget is met, counted in unit order over the documents a unit spilled
(`Cut`, in the process that merges): the same documents for any number of workers or either
engine. A worker may stop its unit early (`Meter`, a lower bound of what the unit contributes,
against what was still missing when the unit was handed out, so it never stops before the cut).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from mixer.artifacts.manifest import AutoNeed
from mixer.artifacts.planfile import planned_counts
from mixer.recipe import Recipe, SourceSpec, ValidationSpec
from mixer.recipe.take import TakeSpec

AUTO_MARGIN = 0.02  # `take: auto` reads 2% more train blocks than the plan needs


@dataclass(frozen=True, kw_only=True)
class Budget:
    """What a source with ``take`` must provide: ``amount`` of ``measure`` ("tokens",
    "documents", "train_tokens" for auto; "fraction": a hash sample of the whole source)."""

    take: TakeSpec
    measure: str
    amount: float
    need: AutoNeed | None = None

    @property
    def stops(self) -> bool:
        return self.measure != "fraction"


def auto_epochs(recipe: Recipe, spec: SourceSpec) -> float:
    """The repetitions ``take: auto`` reads for: the source's own max_epochs, else 1 or the
    mixture's when smaller."""
    if spec.max_epochs is not None:
        return spec.max_epochs
    return min(1.0, recipe.mixture.max_epochs or 1.0)


def auto_needs(recipe: Recipe) -> dict[str, AutoNeed]:
    """Per source with ``take: auto``: the samples the plan gives it and the blocks it needs."""
    names = [s.name for s in recipe.sources]
    counts = planned_counts(
        recipe.to_dict()["mixture"],
        recipe.seq_len,
        {s.name: s.weight for s in recipe.sources},
        dict.fromkeys(names, 0),  # unused: auto has a total
    ).per_source
    out = {}
    for s, samples in zip(recipe.sources, counts, strict=True):
        if s.take is None or not s.take.auto:
            continue
        epochs = auto_epochs(recipe, s)
        blocks = math.ceil(Fraction(samples) / Fraction(epochs))  # the float's exact value
        margin = math.ceil(blocks * AUTO_MARGIN) if blocks else 0
        out[s.name] = AutoNeed(
            samples=samples,
            max_epochs=epochs,
            blocks=blocks,
            margin_blocks=margin,
            train_tokens=max(1, (blocks + margin) * recipe.seq_len),
        )
    return out


def budgets(recipe: Recipe) -> dict[str, Budget]:
    """Every source with ``take``: its budget."""
    needs = auto_needs(recipe) if any(s.take and s.take.auto for s in recipe.sources) else {}
    out = {}
    for s in recipe.sources:
        t = s.take
        if t is None:
            continue
        if t.auto:
            need = needs[s.name]
            out[s.name] = Budget(
                take=t, measure="train_tokens", amount=need.train_tokens, need=need
            )
        else:
            ((measure, amount),) = t.to_dict().items()
            out[s.name] = Budget(take=t, measure=measure, amount=amount)
    return out


def fraction_threshold(fraction: float) -> int:
    """A hash h is below ``fraction`` iff h <= this (as validation's ``fraction`` decides)."""
    return min(int(fraction * 2**64), 2**64) - 1


def mix64(hashes: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: a bijection of uint64 that makes ``take: fraction``'s sample
    independent of validation's (both start from the same text hash)."""
    z = np.asarray(hashes, np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def taken_mask(hashes: np.ndarray, fraction: float | None) -> np.ndarray:
    """Which documents a ``take: fraction`` sample keeps (all without one)."""
    if fraction is None or fraction >= 1:
        return np.ones(len(hashes), bool)
    return mix64(hashes) <= np.uint64(fraction_threshold(fraction))


def held_out(hashes: np.ndarray, lengths: np.ndarray, docs: int) -> tuple[np.ndarray, int]:
    """Validation ``docs: N`` among these documents: the (hash, length) records of those held
    out (hash <= the N-th smallest: duplicates of a held-out text are held out too), sorted by
    hash, and their tokens."""
    if docs <= 0 or len(hashes) == 0:
        return np.empty((0, 2), np.uint64), 0
    order = np.argsort(hashes, kind="stable")
    t = hashes[order[min(docs, len(order)) - 1]]
    keep = order[hashes[order] <= t]
    low = np.stack([hashes[keep], lengths[keep]], axis=1).astype(np.uint64)
    return low, int(lengths[keep].sum())


class Meter:
    """What documents contribute to a budget's measure. In a worker, over its own unit, it is a
    lower bound of the unit's contribution to the whole prefix (with ``docs: N`` validation a
    document held out within the unit may be held out in the source too; one not held out in
    the unit never is); in `Cut`, over the prefix taken so far, it is exact."""

    def __init__(self, measure: str, validation: ValidationSpec):
        self.measure, self.docs_out = measure, validation.docs or 0
        self.threshold = fraction_threshold(validation.fraction) if validation.fraction else None
        self.documents = self.tokens = self.train = 0
        self.low = np.empty((0, 2), np.uint64)  # docs: N: the held-out (hash, length) records
        self.low_tokens = 0

    def add(self, hashes: np.ndarray, lengths: np.ndarray) -> None:
        self.documents += len(lengths)
        self.tokens += int(lengths.sum())
        if self.threshold is not None:
            self.train += int(lengths[hashes > np.uint64(self.threshold)].sum())
        elif self.docs_out:
            both = np.concatenate([self.low, np.stack([hashes, lengths], axis=1)])
            self.low, self.low_tokens = held_out(both[:, 0], both[:, 1], self.docs_out)

    @property
    def value(self) -> int:
        if self.measure == "documents":
            return self.documents
        if self.measure == "tokens" or (self.threshold is None and not self.docs_out):
            return self.tokens
        if self.threshold is not None:
            return self.train
        return self.tokens - self.low_tokens

    def reach(self, hashes: np.ndarray, lengths: np.ndarray, amount: float) -> int | None:
        """The fewest of these documents (a prefix) that bring the value to ``amount``, or None
        if all of them do not; the meter then holds that prefix (or all of them)."""
        if self.measure == "train_tokens" and self.docs_out and self.threshold is None:
            return self._reach_held_out(hashes, lengths, amount)
        if self.measure == "documents":
            inc = np.ones(len(lengths), np.int64)
        elif self.measure == "train_tokens" and self.threshold is not None:
            inc = np.where(hashes > np.uint64(self.threshold), lengths, 0).astype(np.int64)
        else:
            inc = lengths.astype(np.int64)
        j = int(np.searchsorted(np.cumsum(inc), amount - self.value, side="left"))
        n = j + 1 if j < len(inc) else None
        self.add(hashes[: n or len(inc)], lengths[: n or len(inc)])
        return n

    def _reach_held_out(self, hashes, lengths, amount) -> int | None:
        """As `reach` for train tokens under ``docs: N``: monotone in the prefix (a document
        added is trained on, or pushes held-out ones back to train), so a binary search."""

        def value(n: int) -> int:
            both = np.concatenate([self.low, np.stack([hashes[:n], lengths[:n]], axis=1)])
            _, low_tokens = held_out(both[:, 0], both[:, 1], self.docs_out)
            return self.tokens + int(lengths[:n].sum()) - low_tokens

        if value(len(lengths)) < amount:
            self.add(hashes, lengths)
            return None
        lo, hi = 1, len(lengths)  # value(hi) >= amount
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if value(mid) >= amount else (mid + 1, hi)
        self.add(hashes[:lo], lengths[:lo])
        return lo


def selection_digest() -> hashlib._Hash:
    """The running fingerprint of the documents taken: sha256 over their (hash, length)."""
    return hashlib.sha256()


def update_selection(h, hashes: np.ndarray, lengths: np.ndarray) -> None:
    h.update(np.stack([hashes, lengths], axis=1).astype("<u8").tobytes())
