"""plan.json: the train plan made from a manifest and the recipe's mixture; val plans on demand."""

from __future__ import annotations

import json
from pathlib import Path

from mixer.artifacts.checks import check_plan
from mixer.artifacts.journal_checks import check_journal
from mixer.artifacts.ledger import block_loss
from mixer.artifacts.manifest import Manifest, load_record, refused, write_atomic
from mixer.errors import OutputError
from mixer.plan import FORMAT, Allocation, PhaseWeights, Plan, make_plan, planned_samples
from mixer.typed import FieldError

FILENAME = "plan.json"


def _sources(manifest: Manifest, split: str) -> dict:
    names = [
        n for n in manifest.source_names if split == "train" or manifest.split(n, split).blocks
    ]
    recs = {n: manifest.split(n, split) for n in names}
    return {
        "names": names,
        "blocks": [recs[n].blocks for n in names],
        "shard_sizes": [tuple(s.samples for s in recs[n].shards) for n in names],
        # the last block's padding (`remainder: pad`); a best-fit split's is per block
        "padding": [0 if recs[n].padding else recs[n].padding_tokens for n in names],
    }


def allocation_inputs(mixture: dict, seq_len: int, names: list[str], weights: dict) -> dict:
    """The allocation's arguments for a recipe's ``mixture`` record (``Recipe.to_dict()``):
    ``total`` (None: the default), and ``weights`` (``weights[name]``, the sources' own) or
    ``phases``."""
    total = mixture.get("samples")
    if mixture.get("tokens"):
        total = -(-mixture["tokens"] // seq_len)
    if mixture.get("phases") is None:
        return {"total": total, "weights": [weights[n] for n in names]}
    phases = [
        PhaseWeights(
            weights=tuple(float(p["weights"].get(n, 0.0)) for n in names),
            until=p.get("until"),
            name=p.get("name"),
        )
        for p in mixture["phases"]
    ]
    return {"total": total, "phases": phases}


def planned_counts(
    mixture: dict, seq_len: int, weights: dict, blocks: dict[str, int]
) -> Allocation:
    """Samples of each source the recipe's mixture plans, per phase and in all, given each
    source's train blocks (``{name: blocks}``, in the plan's source order): the same numbers
    as the plan the build writes, without making it (e.g. a read budget per source)."""
    names = list(blocks)
    args = allocation_inputs(mixture, seq_len, names, weights)
    return planned_samples(**args, blocks=[blocks[n] for n in names])


def train_plan(manifest: Manifest, mixture: dict) -> Plan:
    """Allocate the recipe's mixture over the built blocks (PlanError if it cannot).

    ``mixture`` is the recipe's ``mixture`` record (``Recipe.to_dict()["mixture"]``); the
    weights are the sources' (in the manifest) or the phases'; each source's own
    ``max_epochs`` is read from the recipe the manifest embeds.
    """
    src = _sources(manifest, "train")
    names = src["names"]
    weights = {n: manifest.sources[n].weight for n in names}
    by_tokens = mixture.get("weights_in", "samples") == "tokens"
    own = {s["name"]: s.get("max_epochs") for s in manifest.recipe["sources"]}
    return make_plan(
        manifest=manifest.fingerprint,
        split="train",
        seed=manifest.seed,
        seq_len=manifest.seq_len,
        max_epochs=mixture.get("max_epochs"),
        source_max_epochs=[own.get(n) for n in names],
        shuffle=mixture.get("shuffle", "blocks"),
        window=mixture.get("window", 8),
        **allocation_inputs(mixture, manifest.seq_len, names, weights),
        **src,
        block_loss=[block_loss(manifest, n) for n in names] if by_tokens else None,
    )


def val_plan(manifest: Manifest) -> Plan:
    """Each source's held-out blocks exactly once, in build order, evenly interleaved."""
    src = _sources(manifest, "val")
    if not src["names"]:
        raise OutputError(
            f"{manifest.root}: the build has no validation blocks (see `validation:`)"
        )
    src["weights"] = [float(b) for b in src["blocks"]]
    return make_plan(
        manifest=manifest.fingerprint,
        split="val",
        seed=manifest.seed,
        seq_len=manifest.seq_len,
        total=sum(src["blocks"]),
        shuffle="none",
        **src,
    )


def save_plan(plan: Plan, root: Path) -> None:
    data = {**plan.to_dict(), "fingerprint": plan.fingerprint}
    write_atomic(Path(root) / FILENAME, json.dumps(data, indent=2, sort_keys=True) + "\n")


def load_plan(manifest: Manifest) -> Plan:
    """The build's train plan, checked against its manifest (`mixer.artifacts.checks`): a
    plan that would serve other blocks than the manifest's is refused, fingerprints or not."""
    path = manifest.root / FILENAME
    where = path if manifest.location == str(manifest.root) else f"{manifest.location}/{FILENAME}"
    missing = f"{manifest.location}: not a complete mixer build (no {FILENAME})"
    data = load_record(path, where, "plan", FORMAT, missing)
    try:
        plan = Plan.from_dict(data)
        if data.get("fingerprint") != plan.fingerprint:
            raise OutputError(f"{where}: plan was altered (fingerprint mismatch); rebuild")
        if plan.manifest != manifest.fingerprint:
            raise OutputError(f"{where}: plan was made for another manifest; rebuild")
        check_plan(plan, manifest)  # a fingerprint proves it unchanged, not harmless
        check_journal(plan)
    except FieldError as e:
        raise refused(where, e, "plan", "; rebuild") from None
    except UnicodeError:  # lone surrogates: not a plan mixer wrote
        raise OutputError(f"{where}: unreadable plan (invalid text); rebuild") from None
    return plan
