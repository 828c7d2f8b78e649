"""The score suite's tables: run JSONs (``benchmarks/suite.py``, ``ray_suite.py``, ``sweep.py``) aggregated
into the score, late-score, time and equal-training-time tables, mean ± std over seeds."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import numpy as np

from benchmarks.common import fmt, markdown_table

AGENT_NAMES = {"mingru": "Decision-minGRU", "minlstm": "Decision-minLSTM", "dt": "Decision Transformer",
               "d3rlpy_dt": "d3rlpy DT", "d3rlpy_dt_cosine": "d3rlpy DT, cosine lr"}

# Published Decision Transformer scores on D4RL's v2 datasets (other data than the local ones, 100k steps on a
# GPU): context for the table, never a column of it. (DT paper: Chen et al. 2021, Table 2; CORL's DT: last and
# best evaluation, Tarasov et al. 2023.)
PUBLISHED_DT = {
    "halfcheetah-medium": (42.6, 42.2, 42.7), "hopper-medium": (67.6, 65.1, 69.4), "walker2d-medium": (74.0, 67.6, 74.7),
    "halfcheetah-medium-replay": (36.6, 38.9, 40.3), "hopper-medium-replay": (82.7, 81.8, 88.7),
    "walker2d-medium-replay": (66.6, 59.9, 68.2), "halfcheetah-medium-expert": (86.8, 91.6, 93.4),
    "hopper-medium-expert": (107.6, 110.4, 111.2), "walker2d-medium-expert": (108.1, 107.1, 108.7),
}


def d4rl_name(dataset_id: str) -> str | None:
    """``local/hopper/medium-v0`` -> ``hopper-medium``: the D4RL dataset a local one is built after, if any."""
    parts = dataset_id.split("/")
    if len(parts) != 3 or not parts[2].endswith("-v0"):
        return None
    name = f"{parts[1]}-{parts[2][:-3]}"
    return name if name in PUBLISHED_DT else None


def published_table(datasets: list[str]) -> list[str]:
    """Markdown lines: the published DT numbers for the D4RL datasets these local ones are built after."""
    scores = {d: PUBLISHED_DT[n] for d in datasets if (n := d4rl_name(d))}
    if not scores:
        return []
    if len(scores) > 1:
        scores["**average**"] = tuple(np.mean(list(scores.values()), axis=0))
    rows = [[d, f"{paper:.1f}", f"{last:.1f} / {best:.1f}"] for d, (paper, last, best) in scores.items()]
    return ["### Context, on other data: Decision Transformer's published D4RL scores", "",
            "D4RL's v2 datasets of the same names (other behaviour policies and sizes), 100k training "
            "steps on a GPU, not the local datasets and budget above: what the paper protocol aims at, not a "
            "column to compare with.", "",
            markdown_table(["dataset", "DT paper", "CORL DT last / best"], rows), ""]


def mean_std(values) -> tuple[float, float]:
    values = [v for v in values if v is not None]
    if not values:
        return math.nan, math.nan
    return float(np.mean(values)), float(np.std(values))


LATE_EVALUATIONS = 3


def late_score(run: dict) -> float:
    """Mean score of the run's last ``LATE_EVALUATIONS`` evaluations."""
    return float(np.mean([e["score"] for e in run["evals"][-LATE_EVALUATIONS:]]))


def best_within(run: dict, budget_s: float) -> tuple[float | None, int | None]:
    """The best score among evaluations made within ``budget_s`` training seconds, and the last such step."""
    inside = [e for e in run["evals"] if e["train_s"] <= budget_s * (1 + 1e-9)]
    if not inside:
        return None, None
    return max(e["score"] for e in inside), inside[-1]["step"]


def aggregate(runs: list[dict], datasets: list[str], agents: list[str]) -> tuple[str, dict]:
    """Markdown tables and a JSON summary from run records (any subset may be missing)."""
    by = {}
    for r in runs:
        by.setdefault((r["dataset"], r["agent"]), []).append(r)
    datasets = [d for d in datasets if any((d, a) in by for a in agents)]
    summary = {"cells": {}, "equal_time": {}}
    score_rows, late_rows, time_rows, equal_rows, final_rows = [], [], [], [], []
    avg_final = {a: [] for a in agents}
    avg_final_best = {a: [] for a in agents}
    final_episodes = sorted({r.get("final_episodes") for r in runs if r.get("final_last") is not None})
    avg_last = {a: [] for a in agents}
    avg_best = {a: [] for a in agents}
    avg_late = {a: [] for a in agents}
    for d in datasets:
        srow, lrow, erow, frow = [d], [d], [d], [d]
        train_means = {a: statistics.mean(r["train_s"] for r in by[(d, a)]) for a in agents if (d, a) in by}
        budget = min(train_means.values()) if train_means else math.nan
        summary["equal_time"][d] = {"budget_train_s": budget, "agents": {}}
        for a in agents:
            rs = sorted(by.get((d, a), []), key=lambda r: r["seed"])
            if not rs:
                srow.append("-")
                frow.append("-")
                lrow.append("-")
                erow.append("-")
                time_rows.append([d, AGENT_NAMES[a], "-", "-", "-", "-", "-", "-", "-"])
                continue
            last, last_sd = mean_std([r["last"] for r in rs])
            best, best_sd = mean_std([r["best"] for r in rs])
            avg_last[a].append(last)
            avg_best[a].append(best)
            srow.append(f"{last:.1f} ± {last_sd:.1f} / {best:.1f} ± {best_sd:.1f} (n={len(rs)})")
            finals = [r for r in rs if r.get("final_last") is not None]
            fl, fl_sd = mean_std([r["final_last"] for r in finals])
            fb, fb_sd = mean_std([r["final_best"] for r in finals])
            if finals:
                avg_final[a].append(fl)
                avg_final_best[a].append(fb)
                frow.append(f"**{fl:.1f}** ± {fl_sd:.1f} / {fb:.1f} ± {fb_sd:.1f} (n={len(finals)})")
            else:
                frow.append("-")
            late, late_sd = mean_std([late_score(r) for r in rs])
            avg_late[a].append(late)
            lrow.append(f"{late:.1f} ± {late_sd:.1f}")
            within = [best_within(r, budget) for r in rs]
            ws, wsd = mean_std([w[0] for w in within])
            steps = [w[1] for w in within if w[1] is not None]
            missing = sum(w[0] is None for w in within)
            erow.append("-" if math.isnan(ws) else
                        f"{ws:.1f} ± {wsd:.1f} (step {statistics.median_low(steps)}"
                        + (f", {missing} seed(s) had no eval yet" if missing else "") + ")")
            train_s = statistics.median(r["train_s"] for r in rs)
            dt_runs = by.get((d, "dt"))
            ratio = statistics.median(r["train_s"] for r in dt_runs) / train_s if dt_runs else None
            time_rows.append([d, AGENT_NAMES[a], fmt(statistics.median(r["wall_s"] for r in rs), 1),
                              fmt(train_s, 1), fmt(statistics.median(r["eval_s"] for r in rs), 1),
                              fmt(statistics.median(r["final"]["seconds"] for r in finals), 1) if finals else "-",
                              fmt(statistics.median(r["train_steps_per_s"] for r in rs), 1),
                              fmt(ratio, 2, "x"), str(rs[0]["steps"])])
            summary["cells"][f"{d}|{a}"] = {"n": len(rs), "final_last_mean": fl, "final_last_std": fl_sd,
                                            "final_best_mean": fb, "final_best_std": fb_sd, "last_mean": last, "last_std": last_sd,
                                            "best_mean": best, "best_std": best_sd,
                                            "last3_mean": late, "last3_std": late_sd,
                                            "train_s_median": train_s, "dt_train_s_over_this": ratio,
                                            "equal_time_best_mean": ws, "equal_time_best_std": wsd}
            summary["equal_time"][d]["agents"][a] = {"scores": [w[0] for w in within], "steps": [w[1] for w in within]}
        score_rows.append(srow)
        final_rows.append(frow)
        late_rows.append(lrow)
        erow[0] = f"{d} ({budget:.0f} s)"
        equal_rows.append(erow)
    if len(datasets) > 1:
        final_rows.append(["**average**"] + [
            f"**{np.mean(avg_final[a]):.1f}** / {np.mean(avg_final_best[a]):.1f}"
            if len(avg_final[a]) == len(datasets) else "-" for a in agents])
        score_rows.append(["**average**"] + [
            f"{np.mean(avg_last[a]):.1f} / {np.mean(avg_best[a]):.1f}" if len(avg_last[a]) == len(datasets) else "-"
            for a in agents])
        late_rows.append(["**average**"] + [
            f"{np.mean(avg_late[a]):.1f}" if len(avg_late[a]) == len(datasets) else "-" for a in agents])
    heads = [AGENT_NAMES[a] for a in agents]
    episodes = "/".join(str(e) for e in final_episodes) or "-"
    md = [
        f"### Normalised score, the headline: last checkpoint ({episodes} episodes per target) ± std over seeds / "
        "best checkpoint re-evaluated on the same episodes",
        "",
        "Both on fresh episodes no in-run evaluation used (`eval.final_seed`). `best` is the checkpoint the in-run "
        "evaluations picked: an online selection, which offline RL does not have; `last` is what a user ends with.",
        "",
        markdown_table(["dataset"] + heads, final_rows),
        "",
        "### In-run evaluations: last ± std / best ± std over seeds (10-episode evaluations; best = their maximum, "
        "an online selection)",
        "",
        markdown_table(["dataset"] + heads, score_rows),
        "",
        f"### Late-training score: mean of the last {LATE_EVALUATIONS} evaluations of each run, mean ± std over seeds",
        "",
        "A single evaluation swings by 10-30 points from one checkpoint to the next at this budget (Hopper most), so "
        "`last` is partly the luck of the final checkpoint and `best` the luckiest one; this is the policy "
        "quality late in training.",
        "",
        markdown_table(["dataset"] + heads, late_rows),
        "",
        "### Time per run (medians over seeds)",
        "",
        markdown_table(["dataset", "agent", "wall s", "train s", "in-run eval s", "final eval s", "train steps/s",
                        "DT train s / this", "steps"], time_rows),
        "",
        "### Equal training time: best score reached within the fastest agent's mean training seconds",
        "",
        markdown_table(["dataset (budget)"] + heads, equal_rows),
        "",
        *published_table(datasets),
    ]
    return "\n".join(md), summary


def load_runs(runs_dir: Path, datasets, agents, seeds) -> list[dict]:
    out = []
    for path in sorted(runs_dir.glob("*.json")):
        r = json.loads(path.read_text())
        if r["dataset"] in datasets and r["agent"] in agents and r["seed"] in seeds:
            out.append(r)
    return out
