"""The demo's results: curves per run and seed gathered into JSON, a table and a plot."""

from __future__ import annotations

import math
from pathlib import Path

CURVES = {"en": "held-out English", "zh": "held-out Chinese", "poems": "held-out poems"}
REPLAY = "en"


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
            "budget": run.budget,
            "recipe": f"recipes/forgetting/{run.recipe}",
            "replay": run.replay,
            "new_source": run.new_source,
            "plan": plans[run.name],
            "steps": got[0]["steps"],
            "curves": {k: [[round(v, 4) for v in r[k]] for r in got] for k in CURVES},
            "served": [r["served"] for r in got],
            "changes": [r["changes"] for r in got],
            "journal": [r["journal"] for r in got],
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
                "replay_tokens": spread([r["tokens"].get(REPLAY, 0) for r in got]),
                "replay_share": spread([_share(r["served"]) for r in got]),
            }
        )
    doc["controller"] = verdicts(doc)
    return doc


def _share(served: dict[str, int]) -> float:
    return served.get(REPLAY, 0) / sum(served.values())


def peak_rise(run: dict) -> tuple[float, int]:
    """The largest English loss increase over a run (mean over seeds at each evaluation), and
    its step: what "stays within the budget" throughout has to bound."""
    rises = [[v - c[0] for v in c] for c in run["curves"]["en"]]
    mean = [sum(x) / len(x) for x in zip(*rises, strict=True)]
    top = max(range(len(mean)), key=mean.__getitem__)
    return round(mean[top], 4), run["steps"][top]


def verdicts(doc: dict) -> list[dict]:
    """Issue 19's question, per controller arm and per reading of "stays within the budget"
    (the increase at the end, and its peak over the run): at new-domain loss within 1% of the
    fixed arm's, does the controller stay within its budget with >= 25% fewer replay tokens
    than the cheapest fixed ratio that does? Means over seeds; a negative answer is reported."""
    rows = {row["run"]: row for row in doc["table"]}
    runs = doc["runs"]
    fixed = [n for n, r in runs.items() if r["budget"] is None and "continue" in r["recipe"]]
    rise = {
        "end": lambda n: rows[n]["en_increase"]["mean"],
        "peak": lambda n: peak_rise(runs[n])[0],
    }
    out = []
    for name in (n for n, r in runs.items() if r["budget"] is not None):
        budget, mine = runs[name]["budget"], rows[name]
        for reading, of in rise.items():
            within = [n for n in fixed if of(n) <= budget]
            cheapest = min(within, key=lambda n: rows[n]["replay_tokens"]["mean"], default=None)
            v = {
                "run": name,
                "budget": budget,
                "reading": reading,
                "rise": of(name),
                "within_budget": of(name) <= budget,
                "replay_tokens": mine["replay_tokens"]["mean"],
                "cheapest_fixed": cheapest,
                "answer": None,  # None: no fixed ratio stays within the budget
            }
            if cheapest is not None:
                ref = rows[cheapest]
                v["fixed_replay_tokens"] = ref["replay_tokens"]["mean"]
                v["saving"] = round(1 - v["replay_tokens"] / v["fixed_replay_tokens"], 4)
                v["new_loss_gap"] = round(mine["zh_after"]["mean"] / ref["zh_after"]["mean"] - 1, 4)
                v["answer"] = (
                    v["within_budget"] and v["saving"] >= 0.25 and abs(v["new_loss_gap"]) <= 0.01
                )
            out.append(v)
    return out


def table(doc: dict) -> str:
    """The table as Markdown (README pastes it as printed)."""
    n = len(doc["settings"]["seeds"])
    head = (
        "| run | replay share | replay tokens | passes over the new data | English before"
        " | English after | English increase | peak increase (step) | Chinese after | poems after |"
    )
    lines = [
        f"Held-out loss (nats per token), mean ± sd over {n} seeds:",
        "",
        head,
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def f(c: dict) -> str:
        return f"{c['mean']:.2f} ± {c['sd']:.2f}"

    for row in doc["table"]:
        peak, at = peak_rise(doc["runs"][row["run"]])
        lines.append(
            f"| {row['label']} | {100 * row['replay_share']['mean']:.1f}%"
            f" | {row['replay_tokens']['mean'] / 1000:.1f}k | {row['new_passes']:.1f}"
            f" | {f(row['en_before'])}"
            f" | {f(row['en_after'])} | {f(row['en_increase'])} | {peak:.2f} ({at})"
            f" | {f(row['zh_after'])} | {f(row['poems_after'])} |"
        )
    lines += ["", *(answer(v) for v in doc.get("controller", []))]
    return "\n".join(lines)


def answer(v: dict) -> str:
    """One controller arm's verdict, under one reading, as a sentence."""
    when = "at the end" if v["reading"] == "end" else "at its peak over the run"
    head = (
        f"- Controller, budget {v['budget']:g}, English increase {when}: {v['rise']:.3f}"
        f" ({'within' if v['within_budget'] else 'above'} the budget),"
        f" {v['replay_tokens'] / 1000:.1f}k replay tokens"
    )
    if v["cheapest_fixed"] is None:
        return head + "; no fixed ratio stays within this budget: **no answer**."
    saving = v["saving"]
    more = f"{100 * saving:.0f}% fewer" if saving >= 0 else f"{-100 * saving:.0f}% more"
    return head + (
        f" against {v['fixed_replay_tokens'] / 1000:.1f}k for {v['cheapest_fixed']}, the cheapest"
        f" fixed ratio within it ({more}), Chinese loss {100 * v['new_loss_gap']:+.1f}%: "
        + ("**yes**" if v["answer"] else "**no**")
    )


def plot(doc: dict, path: Path) -> None:
    """One panel per held-out set: mean loss per run over continued training, ± sd band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(CURVES) + 1, figsize=(5 * (len(CURVES) + 1), 4.2))
    colors = [plt.get_cmap("tab10")(i) for i in range(len(doc["runs"]))]
    for ax, (key, title) in zip(axes, CURVES.items(), strict=False):
        for color, (_, run) in zip(colors, doc["runs"].items(), strict=True):
            curves = run["curves"][key]
            steps = run["steps"]
            mean = [sum(c) / len(c) for c in zip(*curves, strict=True)]
            sds = [spread(list(c))["sd"] for c in zip(*curves, strict=True)]
            style = "--" if run["recipe"].endswith("repeat.yaml") else "-"
            style = ":" if run.get("budget") is not None else style
            ax.plot(steps, mean, style, color=color, label=run["label"], lw=1.6)
            ax.fill_between(
                steps,
                [m - s for m, s in zip(mean, sds, strict=True)],
                [m + s for m, s in zip(mean, sds, strict=True)],
                color=color,
                alpha=0.15,
                lw=0,
            )
        _clip_start(ax, doc, key)
        ax.set_title(title)
        ax.set_xlabel("continued pre-training step")
        ax.grid(alpha=0.3)
    _tradeoff(axes[-1], doc, colors)
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


def _tradeoff(ax, doc: dict, colors) -> None:
    """Replay tokens against the English loss rise: the fixed ratios as a line, the controller
    arms as stars, their budgets as dotted lines."""
    rows = {row["run"]: row for row in doc["table"]}
    fixed, x, y = [], [], []
    for color, (name, run) in zip(colors, doc["runs"].items(), strict=True):
        if run["recipe"].endswith("repeat.yaml"):
            continue
        row = rows[name]
        tx, ty = row["replay_tokens"]["mean"] / 1000, row["en_increase"]["mean"]
        star = run.get("budget") is not None
        ax.errorbar(
            tx,
            ty,
            yerr=row["en_increase"]["sd"],
            fmt="*" if star else "o",
            color=color,
            ms=12 if star else 6,
            label=run["label"] if star else None,
        )
        if star:
            ax.axhline(run["budget"], color=color, ls=":", lw=1)
        else:
            fixed.append((tx, ty))
    if fixed:
        x, y = zip(*sorted(fixed), strict=True)
        ax.plot(x, y, "-", color="grey", lw=1, label="fixed ratios")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_title("replay tokens against forgetting")
    ax.set_xlabel("replay tokens trained (thousands)")
    ax.set_ylabel("English loss increase")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


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
