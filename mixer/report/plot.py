"""`mixer stats --plot`: the mixture over the course of training, and document lengths."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mixer.artifacts.manifest import Manifest
from mixer.plan import Plan

POINTS = 400  # prefix lengths at which the cumulative shares are drawn


def plot(manifest: Manifest, plan: Plan, path: str | Path):
    """Write a PNG with two panels; returns the matplotlib figure (closed)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    fig, (share_ax, len_ax) = plt.subplots(1, 2, figsize=(13, 4.8), layout="constrained")
    if plan.phases:
        _phase_shares(share_ax, plan)
    else:
        _cumulative_shares(share_ax, plan)
    for e in plan.journal:  # amendments (dashed) and skips (dotted), at their sample
        share_ax.axvline(e.at, color="k", ls="--" if e.kind == "amend" else ":", lw=1)
        share_ax.annotate(e.kind, (e.at, 1), xycoords=("data", "axes fraction"), fontsize=7)
    share_ax.legend(loc="best", fontsize="small")
    for name, src in manifest.sources.items():
        hist = np.asarray(src.train.doc_length_log2_hist, float)
        if hist.sum():
            edges = 2.0 ** np.arange(hist.size + 1)
            len_ax.stairs(hist / hist.sum(), edges, label=f"{name} ({int(hist.sum()):,} docs)")
    len_ax.set(
        title="Document length (tokens, train split)",
        xscale="log",
        xlabel="tokens",
        ylabel="fraction of documents",
    )
    len_ax.legend(loc="best", fontsize="small")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return fig


def _cumulative_shares(ax, plan: Plan) -> None:
    """One mixture for the whole run: the share of each source among the first m samples."""
    ms = np.unique(np.geomspace(1, plan.total, POINTS).astype(np.int64))
    counts = plan.counts_many(ms)
    weight_sum = sum(s.weight for s in plan.sources)
    for s, src in enumerate(plan.sources):
        (line,) = ax.plot(ms, counts[:, s] / ms, label=f"{src.name} ({src.epochs:.2f} epochs)")
        ax.axhline(src.weight / weight_sum, color=line.get_color(), ls=":", lw=1)
    ax.set(
        title="Cumulative share of samples per source (dotted: weight)",
        xlabel="global sample",
        ylabel="share of samples so far",
        ylim=(0, None),
    )


def _phase_shares(ax, plan: Plan) -> None:
    """Phases: the share of each source among the samples of the current phase so far (a
    cumulative share would blur a 5% warm-up into the main phase), each phase's normalized
    weights dotted, and its boundaries as vertical lines."""
    spans = [plan.phase_range(p) for p in range(len(plan.phases))]
    per_phase = max(8, POINTS // len(spans))
    xs, ys = [], []
    for a, b in spans:
        ms = np.unique(np.linspace(a, b, per_phase + 1).astype(np.int64))
        ms = ms[ms > a]
        local = plan.counts_many(ms) - plan.counts_many([a])
        xs.append(np.append(ms, b))  # NaN after each phase: lines break at boundaries
        ys.append(np.vstack([local / (ms - a)[:, None], np.full(local.shape[1], np.nan)]))
    x, y = np.concatenate(xs), np.vstack(ys)
    for s, src in enumerate(plan.sources):
        (line,) = ax.plot(x, y[:, s], label=f"{src.name} ({src.epochs:.2f} epochs)")
        for (a, b), ph in zip(spans, plan.phases, strict=True):
            w = ph.weights[s] / sum(ph.weights)
            ax.plot([a, b], [w, w], color=line.get_color(), ls=":", lw=1)
    for p, (a, _) in enumerate(spans):
        if p:
            ax.axvline(a, color="0.4", ls="--", lw=0.8)
        ax.annotate(
            plan.phase_label(p),
            (a, 1),
            xycoords=("data", "axes fraction"),
            xytext=(2, -4),
            textcoords="offset points",
            rotation=90,  # along the boundary: readable even for a narrow warm-up phase
            va="top",
            ha="left",
            fontsize="small",
            color="0.3",
        )
    ax.set(
        title="Share of samples per source within each phase (dotted: phase weight)",
        xlabel="global sample (dashed: phase boundaries)",
        ylabel="share of the phase's samples so far",
        ylim=(0, 1.08),
        xlim=(0, plan.total),
    )
