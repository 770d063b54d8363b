"""The demo's results: curves per run and seed gathered into JSON, a table and a plot."""

from __future__ import annotations

import math
from pathlib import Path

CURVES = {"en": "held-out English", "zh": "held-out Chinese", "poems": "held-out poems"}


def spread(values: list[float]) -> dict:
    """Mean and sample standard deviation (0 for one seed) of per-seed values."""
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if values[1:] else 0.0
    return {"mean": round(mean, 4), "sd": round(sd, 4), "seeds": [round(v, 4) for v in values]}


def summarize(settings: dict, runs, plans: dict, results: dict[str, dict]) -> dict:
    """The JSON document: settings, final pretraining losses, curves and the table.

    ``plans`` maps a run's name to its seed-0 build's plan (``builds.plan_summary``);
    ``results`` maps a job name (``pretrain/seed-S``, ``RUN/seed-S``) to what
    ``forgetting.train.run`` returned."""
    seeds = settings["seeds"]
    pre = [results[f"pretrain/seed-{s}"] for s in seeds]
    doc = {
        "settings": settings,
        "pretrain": {k: spread([r[k][-1] for r in pre]) for k in CURVES},
        "runs": {},
        "table": [],
    }
    for run in runs:
        got = [results[f"{run.name}/seed-{s}"] for s in seeds]
        doc["runs"][run.name] = {
            "label": run.label,
            "recipe": f"recipes/forgetting/{run.recipe}",
            "replay": run.replay,
            "new_source": run.new_source,
            "plan": plans[run.name],
            "steps": got[0]["steps"],
            "curves": {k: [[round(v, 4) for v in r[k]] for r in got] for k in CURVES},
        }
        doc["table"].append(
            {
                "run": run.name,
                "label": run.label,
                "new_passes": plans[run.name][run.new_source]["epochs"],
                "en_before": spread([r["en"][0] for r in got]),
                "en_after": spread([r["en"][-1] for r in got]),
                "en_increase": spread([r["en"][-1] - r["en"][0] for r in got]),
                "zh_after": spread([r["zh"][-1] for r in got]),
                "poems_after": spread([r["poems"][-1] for r in got]),
            }
        )
    return doc


def table(doc: dict) -> str:
    """The table as Markdown (README pastes it as printed)."""
    n = len(doc["settings"]["seeds"])
    head = (
        "| run | passes over the new data | English before | English after | English increase"
        " | Chinese after | poems after |"
    )
    lines = [
        f"Held-out loss (nats per token), mean ± sd over {n} seeds:",
        "",
        head,
        "|---|---|---|---|---|---|---|",
    ]

    def f(c: dict) -> str:
        return f"{c['mean']:.2f} ± {c['sd']:.2f}"

    for row in doc["table"]:
        lines.append(
            f"| {row['label']} | {row['new_passes']:.1f} | {f(row['en_before'])}"
            f" | {f(row['en_after'])} | {f(row['en_increase'])} | {f(row['zh_after'])}"
            f" | {f(row['poems_after'])} |"
        )
    return "\n".join(lines)


def plot(doc: dict, path: Path) -> None:
    """One panel per held-out set: mean loss per run over continued training, ± sd band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(CURVES), figsize=(5 * len(CURVES), 4.2), sharex=True)
    colors = ["tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange"]
    for ax, (key, title) in zip(axes, CURVES.items(), strict=True):
        for color, (_, run) in zip(colors, doc["runs"].items(), strict=False):
            curves = run["curves"][key]
            steps = run["steps"]
            mean = [sum(c) / len(c) for c in zip(*curves, strict=True)]
            sds = [spread(list(c))["sd"] for c in zip(*curves, strict=True)]
            style = "--" if run["recipe"].endswith("repeat.yaml") else "-"
            ax.plot(steps, mean, style, color=color, label=run["label"], lw=1.6)
            ax.fill_between(
                steps,
                [m - s for m, s in zip(mean, sds, strict=True)],
                [m + s for m, s in zip(mean, sds, strict=True)],
                color=color,
                alpha=0.2,
                lw=0,
            )
        _clip_start(ax, doc, key)
        ax.set_title(title)
        ax.set_xlabel("continued pre-training step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("loss (nats per token)")
    axes[0].legend(fontsize=8)
    s = doc["settings"]
    fig.suptitle(
        f"Continued pre-training on Chinese after English pretraining:"
        f" {s['parameters'] / 1e6:.2f}M-parameter GPT-2, mean ± sd over {len(s['seeds'])} seeds",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _clip_start(ax, doc: dict, key: str) -> None:
    """Keep the y scale on training when step 0 is far above it (Chinese before any Chinese:
    ~10 nats against ~5 after), and say where step 0 is."""
    runs = list(doc["runs"].values())
    later = [v for r in runs for c in r["curves"][key] for v in c[1:]]
    start = spread([c[0] for c in runs[0]["curves"][key]])
    low, high = min(later), max(later)
    if start["mean"] - high <= 2 * (high - low):
        return
    pad = 0.15 * (high - low)
    ax.set_ylim(low - pad, high + 3 * pad)
    ax.text(
        0.98,
        0.97,
        f"step 0 (English only): {start['mean']:.1f} ± {start['sd']:.1f}, above the scale",
        transform=ax.transAxes,
        ha="right",
        va="top",
        fontsize=8,
    )
