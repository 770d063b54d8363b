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
    ms = np.unique(np.geomspace(1, plan.total, POINTS).astype(np.int64))
    counts = plan.counts_many(ms)
    weight_sum = sum(s.weight for s in plan.sources)
    for s, src in enumerate(plan.sources):
        (line,) = share_ax.plot(
            ms, counts[:, s] / ms, label=f"{src.name} ({src.epochs:.2f} epochs)"
        )
        share_ax.axhline(src.weight / weight_sum, color=line.get_color(), ls=":", lw=1)
    share_ax.set(
        title="Cumulative share of samples per source (dotted: weight)",
        xlabel="global sample",
        ylabel="share of samples so far",
        ylim=(0, None),
    )
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
