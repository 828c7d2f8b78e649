"""Learning curves of the score suite: normalised score against training step and training seconds.

One PNG per dataset, two panels (x = training step, x = training seconds, evaluations excluded), a line
per agent: the mean over seeds at each evaluation, with a band from the lowest to the highest seed.
Against seconds, each seed's evaluations are at its own times: the line is drawn at the mean time of each
evaluation step, and the band spans the seeds' scores there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

COLOURS = {"mingru": "tab:blue", "minlstm": "tab:green", "dt": "tab:orange", "d3rlpy_dt": "tab:red",
           "d3rlpy_dt_cosine": "tab:purple"}


def curve(runs: list[dict]) -> dict[str, np.ndarray]:
    """Mean, min and max score over seeds at each evaluation step, and the mean training seconds there
    (steps that not every seed reached are dropped)."""
    steps = sorted(set.intersection(*({e["step"] for e in r["evals"]} for r in runs)))
    by_step = [[next(e for e in r["evals"] if e["step"] == s) for r in runs] for s in steps]
    scores = np.array([[e["score"] for e in evals] for evals in by_step])
    seconds = np.array([[e["train_s"] for e in evals] for evals in by_step])
    return {"step": np.array(steps), "seconds": seconds.mean(axis=1), "mean": scores.mean(axis=1),
            "low": scores.min(axis=1), "high": scores.max(axis=1)}


def plot_learning_curves(runs: list[dict], dataset_id: str, agents: list[str], names: dict[str, str],
                         path: str | Path, title_note: str = "") -> Path | None:
    """Write ``path`` (PNG) for ``dataset_id``; returns None when no agent has a run on it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {}
    for agent in agents:
        mine = [r for r in runs if r["dataset"] == dataset_id and r["agent"] == agent]
        if mine:
            curves[agent] = (curve(mine), len(mine))
    if not curves:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for agent, (c, n) in curves.items():
        colour = COLOURS.get(agent)
        for ax, x in zip(axes, (c["step"], c["seconds"])):
            ax.plot(x, c["mean"], marker="o", markersize=3, color=colour, label=f"{names.get(agent, agent)} (n={n})")
            ax.fill_between(x, c["low"], c["high"], color=colour, alpha=0.15, linewidth=0)
    axes[0].set_xlabel("training step")
    axes[1].set_xlabel("training seconds (evaluations excluded)")
    axes[0].set_ylabel("normalised score (best target)")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(f"{dataset_id}: mean over seeds, band = lowest to highest seed{title_note}", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
