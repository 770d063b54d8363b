"""One training job of the forgetting demo: a tiny GPT-2 trained through mixer's serving.

A job trains from random weights (pretraining) or from a pretrained checkpoint (continued
pre-training) on one mixer build, with a plain loop over
``DataLoader(StreamingMixture(out, batch_size=B), batch_size=B)``, and measures the loss on
held-out blocks (``StreamingMixture(out, split="val", source=NAME)``) every ``eval_every`` steps.
One thread per job: jobs run side by side in processes, and the same job gives the same numbers
on any machine schedule.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Model:
    """GPT-2 shape. The defaults (0.54M parameters) train ~11k tokens/s on one CPU thread."""

    vocab_size: int = 2048
    seq_len: int = 128
    width: int = 96
    layers: int = 3
    heads: int = 4

    def build(self, seed: int):
        import torch
        from transformers import GPT2Config, GPT2LMHeadModel

        torch.manual_seed(seed)
        config = GPT2Config(
            vocab_size=self.vocab_size,
            n_positions=self.seq_len,
            n_embd=self.width,
            n_layer=self.layers,
            n_head=self.heads,
            resid_pdrop=0.0,  # no dropout: a job's only randomness is its initialization
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=0,
            eos_token_id=0,
        )
        return GPT2LMHeadModel(config)


@dataclass(frozen=True, kw_only=True)
class Job:
    name: str  # e.g. "replay-5/seed-1"
    build: str  # the mixer output to train on
    evals: dict[str, tuple[str, str]]  # curve name -> (mixer output, source) of its val split
    model: Model
    seed: int
    batch_size: int
    lr: float
    warmup: int
    eval_every: int
    cache_dir: str
    init: str | None = None  # a checkpoint to start from (continued pre-training)
    save: str | None = None  # where to write the final weights
    eval_blocks: int | None = None  # N held-out blocks per set, evenly spread (--quick)
    controller: dict | None = None  # ReplayController arguments: weights set while training


def lr_factor(step: int, steps: int, warmup: int) -> float:
    """Linear warmup, then cosine decay to 10% of the peak at the last step."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, progress)))


def held_out(out: str, source: str, cache_dir: str, limit: int | None = None):
    """The held-out blocks of one source: (input_ids, position_ids), [blocks, seq_len]."""
    import torch
    from torch.utils.data import DataLoader

    from mixer import StreamingMixture

    ds = StreamingMixture(out, split="val", source=source, cache_dir=cache_dir)
    batches = list(DataLoader(ds, batch_size=256))
    ids = torch.cat([b["input_ids"] for b in batches])
    pos = torch.cat([b["position_ids"] for b in batches])
    if limit is not None and limit < len(ids):  # evenly spread over the set, not its head
        keep = torch.linspace(0, len(ids) - 1, limit).round().long()
        ids, pos = ids[keep], pos[keep]
    return ids, pos


def evaluate(model, blocks, batch_size: int = 32) -> float:
    """Mean next-token loss (nats) over every predicted token of the held-out blocks."""
    import torch

    ids, pos = blocks
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for a in range(0, len(ids), batch_size):
            x, p = ids[a : a + batch_size], pos[a : a + batch_size]
            loss = model(input_ids=x, position_ids=p, labels=x, use_cache=False).loss
            n = x.shape[0] * (x.shape[1] - 1)
            total, count = total + loss.item() * n, count + n
    model.train()
    return total / count


def _controller(job: Job):
    if job.controller is None:
        return None
    from mixer.integrations.controllers import ReplayController

    return ReplayController(**job.controller)


def run(job: Job) -> dict:
    """Train ``job``: {"name", "steps": [..], CURVE: [loss at each of those steps], ...}."""
    import torch
    import transformers
    from torch.utils.data import DataLoader

    from mixer import StreamingMixture

    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()  # config notes about unused generation ids
    started, cpu = time.perf_counter(), time.process_time()
    model = job.model.build(job.seed)
    if job.init:
        model.load_state_dict(torch.load(job.init, weights_only=True))
    sets = {
        k: held_out(out, src, job.cache_dir, job.eval_blocks) for k, (out, src) in job.evals.items()
    }
    data = StreamingMixture(job.build, batch_size=job.batch_size, cache_dir=job.cache_dir)
    loader = DataLoader(data, batch_size=job.batch_size)
    steps = len(loader)
    opt = torch.optim.AdamW(model.parameters(), lr=job.lr, betas=(0.9, 0.95), weight_decay=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, steps, job.warmup))
    curves: dict[str, list] = {"steps": [], **{k: [] for k in sets}}
    control = _controller(job)
    changes = []  # (step, sample, replay share): what the controller did, where it applied

    def measure(step: int) -> None:
        curves["steps"].append(step)
        for k, blocks in sets.items():
            curves[k].append(evaluate(model, blocks))
        if control is not None and step < steps:
            weights = control(step, {f"eval_{k}_loss": v[-1] for k, v in curves.items()})
            if weights is not None:  # from the next batch on: exact, and in the state
                at = data.set_weights(weights)
                changes.append((step, at, round(weights[control.old], 5)))

    seen = dict.fromkeys(data.counts_at(0), 0)
    for step, batch in enumerate(loader):
        if job.eval_every and step % job.eval_every == 0:
            measure(step)
        for name in batch["source"]:
            seen[name] += 1
        x = batch["input_ids"]
        loss = model(input_ids=x, position_ids=batch["position_ids"], labels=x, use_cache=False)
        loss.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    measure(steps)
    if job.save:
        torch.save(model.state_dict(), job.save)
    counts = data.counts_at(steps * job.batch_size)  # the plan's, its online changes included
    served = {name: c["samples"] for name, c in counts.items()}
    assert served == seen, (served, seen)  # ... are what the loop trained on
    return {
        "name": job.name,
        **curves,
        "served": served,
        "tokens": {name: c["tokens"] for name, c in counts.items()},
        "changes": changes,
        "journal": data.state_dict().get("journal", []),
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
