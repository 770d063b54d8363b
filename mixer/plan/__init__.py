"""Pure index math of a mixture: allocation, even interleave, passes, permutations, slicing.

Imports neither torch nor streaming (a test checks it): everything here is arithmetic on block
counts, weights, the total and the seed.

- `allocate`: largest-remainder split of N samples by weight; the largest N without repeats.
- `phases`: weights that change over training: phase boundaries, per-phase allocation
  (``planned_samples``: the counts per source and phase, before any plan exists), random
  access across phases.
- `limits`: checks before a plan is frozen (phases, the repetition guard per source).
- `interleave`: the even interleave and its prefix bound; counts at any prefix, exactly.
- `passes`: keyed Feistel permutations of a source's blocks, pass by pass, shard-aware.
- `core`: `Plan` (a frozen record of it all: ``counts_at``, ``locate``, ``block_ids``) and
  `make_plan`.
- `slicing`: which global samples a rank and a DataLoader worker serve.

Invariant: the served order is a pure function of (the manifest's block counts, the plan, the
seed, the global index). Never change without bumping ``FORMAT`` (`core`): the allocation's
rounding and tie order, the interleave's positions and tie break, the permutation's keys (seed,
source, pass), rounds and shard windows, and the batch/rank/worker slicing. Any of them changes
what sample i is, so a run resumed after an upgrade would train other data and ``counts_at``
would misreport every existing plan. Tests hold it: tests/integration/test_golden.py (the
plan's fingerprint) and the hypothesis properties of tests/unit/test_plan*.py.
"""

from mixer.plan.allocate import allocate, largest_total_without_repeats
from mixer.plan.core import FORMAT, Plan, SourcePlan
from mixer.plan.make import make_plan
from mixer.plan.phases import Allocation, Phase, PhaseWeights, planned_samples
from mixer.plan.slicing import Slicing

__all__ = [
    "FORMAT",
    "Allocation",
    "Phase",
    "PhaseWeights",
    "Plan",
    "SourcePlan",
    "Slicing",
    "allocate",
    "largest_total_without_repeats",
    "make_plan",
    "planned_samples",
]
