#!/usr/bin/env python
"""How steady is the policy a run ends with: a sweep's runs (``benchmarks/sweep.py``, e.g.
``benchmarks/sweeps/steady-final.yaml``) per variant and dataset, the final evaluation first, and the in-run
evaluations' swings split into the evaluation's noise and the policy's movement.

Per (variant, dataset), mean ± std over seeds:

- ``last``: the last checkpoint over ``eval.final_episodes`` fresh episodes per target (the headline);
  ``best``: the checkpoint the in-run evaluations picked, re-evaluated on the same episodes (an online
  selection); ``last / best``: their ratio (issue 19's bar: at least 0.95).
- ``late spread``: the standard deviation of a run's in-run scores over the second half of training (what a
  user sees move from one evaluation to the next).
- ``eval noise``: the standard error of one in-run evaluation, the best target's per-episode standard
  deviation over sqrt(episodes), averaged over those evaluations: what the spread would be if the policy
  stood still.
- ``movement``: ``sqrt(max(0, spread² - noise²))``, the part of the spread the policy's own changes make.
- ``final s.e.``: the standard error of the last checkpoint's final score (the best target's per-episode std
  over sqrt(final episodes)).

Runs trained with held-out episodes (``dataset.holdout``) also get a table of the held-out action loss
(``training/validation.py``) beside the in-run score: where it was lowest, whether it rose again after its
minimum (overfitting) or kept falling while the score fell from its in-run best (a policy that imitates
better and acts worse).

    python -m benchmarks.steady_final benchmarks/results/steady-final

Writes ``<dir>/steady_final.{md,json}`` and ``<dir>/curves-<dataset>.png`` (a line per variant).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from benchmarks.common import machine_info, markdown_table, write_json
from benchmarks.plots import plot_learning_curves


def variant_name(overrides: list[str]) -> str:
    return ", ".join(o.split(".", 1)[-1] for o in overrides) or "protocol as it is"


def best_target(targets: list[dict]) -> dict:
    return max(targets, key=lambda t: t["normalized_score_mean"])


def run_statistics(run: dict) -> dict:
    """One run's final scores and the split of its late in-run swings into noise and movement."""
    evals = run["evals"]
    late = [e for e in evals if e["step"] > run["steps"] / 2]
    scores = [e["score"] for e in late]
    episodes = run["config"]["eval"]["episodes"]
    noise = float(np.mean([best_target(e["targets"])["normalized_score_std"] / math.sqrt(episodes) for e in late]))
    spread = float(np.std(scores, ddof=1)) if len(scores) > 1 else math.nan
    final = run["final"]
    last_target = best_target(final["last"]["targets"])
    return {"last": run["final_last"], "best": run["final_best"], "best_step": (final.get("best") or final["last"])["step"],
            "spread": spread, "noise": noise, "movement": math.sqrt(max(0.0, spread ** 2 - noise ** 2)),
            "final_se": last_target["normalized_score_std"] / math.sqrt(final["episodes"]),
            "final_s": final["seconds"], "train_s": run["train_s"], "late_evaluations": len(scores)}


def validation_statistics(run: dict) -> dict | None:
    """The held-out action loss over a run's in-run evaluations against its in-run score; None without one."""
    evals = [e for e in run["evals"] if e.get("validation")]
    if not evals:
        return None
    held = [e["validation"]["val/action_loss"] for e in evals]
    train = [e["validation"]["val/train_action_loss"] for e in evals]
    scores = [e["score"] for e in evals]
    low, top = int(np.argmin(held)), int(np.argmax(scores))
    return {"held_first": held[0], "held_last": held[-1], "held_min_step": evals[low]["step"],
            "held_rise": held[-1] / held[low] - 1.0, "gap_last": held[-1] - train[-1],
            "score_best_step": evals[top]["step"], "score_best": scores[top], "score_last": scores[-1],
            "held_fell_after_best": held[-1] < held[top]}


def validation_rows(runs: list[dict]) -> tuple[list[list], dict]:
    """A row per (variant, dataset) whose runs logged a held-out loss, and the per-run figures (JSON)."""
    by = {}
    for r in runs:
        stats = validation_statistics(r)
        if stats is not None:
            by.setdefault((variant_name(r["variant"]), r["dataset"]), []).append({"seed": r["seed"], **stats})
    rows = []
    for (v, d), stats in by.items():
        m = {k: float(np.mean([s[k] for s in stats])) for k in stats[0] if k not in ("seed", "held_fell_after_best")}
        fell = sum(s["held_fell_after_best"] for s in stats)
        rows.append([v, d, len(stats), f"{m['held_first']:.4f} -> {m['held_last']:.4f}", f"{m['held_min_step']:.0f}",
                     f"{100 * m['held_rise']:+.1f}%", f"{m['gap_last']:+.4f}", f"{m['score_best_step']:.0f}",
                     f"{m['score_best']:.1f} -> {m['score_last']:.1f}", f"{fell} of {len(stats)}"])
    return rows, {f"{v}|{d}": stats for (v, d), stats in by.items()}


def mean_std(values) -> tuple[float, float]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return (float(np.mean(values)), float(np.std(values))) if values else (math.nan, math.nan)


def summarise(runs: list[dict]) -> tuple[list[str], list[str], dict, list[tuple]]:
    variants = list(dict.fromkeys(tuple(r["variant"]) for r in runs))
    datasets = list(dict.fromkeys(r["dataset"] for r in runs))
    by = {}
    for r in runs:
        by.setdefault((tuple(r["variant"]), r["dataset"]), []).append(run_statistics(r))
    summary, rows = {}, []
    for d in datasets:
        for v in variants:
            stats = by.get((v, d))
            if not stats:
                continue
            cell = {k: mean_std([s[k] for s in stats]) for k in ("last", "best", "spread", "noise", "movement", "final_se",
                                                                 "final_s", "train_s")}
            ratio = cell["last"][0] / cell["best"][0] if cell["best"][0] else math.nan
            summary[f"{variant_name(list(v))}|{d}"] = {"variant": list(v), "dataset": d, "n": len(stats),
                                                       "last_over_best": ratio, "runs": stats,
                                                       **{f"{k}_mean": m for k, (m, _) in cell.items()},
                                                       **{f"{k}_std": s for k, (_, s) in cell.items()}}
            rows.append((v, d, len(stats), cell, ratio))
    return variants, datasets, summary, rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", help="a sweep's --out folder (its runs/*.json)")
    args = parser.parse_args(argv)
    out = Path(args.sweep_dir)
    runs = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    runs = [r for r in runs if r.get("final")]
    if not runs:
        print(f"error: no run with a final evaluation in {out / 'runs'}", file=sys.stderr)
        return 2
    variants, datasets, summary, rows = summarise(runs)
    fmt = lambda c, k: f"{c[k][0]:.1f} ± {c[k][1]:.1f}"  # noqa: E731
    table = markdown_table(
        ["variant", "dataset", "seeds", "**last**", "best re-evaluated", "last / best", "late spread", "eval noise",
         "movement", "final s.e.", "train s", "final eval s"],
        [[variant_name(list(v)), d, n, f"**{fmt(c, 'last')}**", fmt(c, "best"), f"{ratio:.2f}", fmt(c, "spread"),
          fmt(c, "noise"), fmt(c, "movement"), f"{c['final_se'][0]:.1f}", f"{c['train_s'][0]:.0f}",
          f"{c['final_s'][0]:.0f}"] for v, d, n, c, ratio in rows])
    averages = []
    for v in variants:
        cells = [summary.get(f"{variant_name(list(v))}|{d}") for d in datasets]
        if all(cells):
            averages.append([variant_name(list(v)), f"**{np.mean([c['last_mean'] for c in cells]):.1f}**",
                             f"{np.mean([c['best_mean'] for c in cells]):.1f}",
                             f"{np.mean([c['movement_mean'] for c in cells]):.1f}",
                             f"{min(c['last_over_best'] for c in cells):.2f}"])
    held_rows, held_runs = validation_rows(runs)
    held_table = [] if not held_rows else [
        "### Held-out action loss (runs trained with `dataset.holdout`)", "",
        "The evaluated policy's action MSE, without dropout, on the held-out episodes' windows at each in-run "
        "evaluation, mean over seeds: first -> last evaluation; the step where it was lowest; its rise from that "
        "minimum to the last evaluation (overfitting shows as a rise); held-out minus training windows at the end "
        "(the generalisation gap); the in-run score's best step and best -> last; the runs whose held-out loss "
        "at the last evaluation is below its value at their best-scoring one (imitating better, acting worse).", "",
        markdown_table(["variant", "dataset", "seeds", "held-out loss", "lowest at step", "rise after lowest",
                        "gap at the end", "best score at step", "in-run score best -> last",
                        "held-out loss lower at the end than at the best score"], held_rows), ""]
    plots = []
    names = {variant_name(list(v)): variant_name(list(v)) for v in variants}
    relabelled = [{**r, "agent": variant_name(r["variant"])} for r in runs]
    for d in datasets:
        png = plot_learning_curves(relabelled, d, list(names), names, out / f"curves-{d.replace('/', '_')}.png",
                                   title_note=" (in-run evaluations)")
        if png is not None:
            plots.append(f"![{d}]({png.name})")
    machine = machine_info()
    command = " ".join(["python", "-m", "benchmarks.steady_final", *(sys.argv[1:] if argv is None else argv)])
    md = "\n".join([
        f"Steady final policies: the runs of `{out}` ({len(runs)} runs; sweep command in each run JSON's `suite_command`).",
        "", f"Machine: {machine['cpu_model']}, {machine['usable_cores']} cores, torch {machine['torch']}; date {machine['date']}.",
        f"Command: `{command}`", "",
        "`last`: the last checkpoint on the final evaluation's fresh episodes (the headline); `best`: the in-run "
        "evaluations' pick re-evaluated on them (online selection). `late spread`: std of the in-run scores over the "
        "second half of training; `eval noise`: one in-run evaluation's standard error; `movement`: "
        "sqrt(spread² - noise²), what the policy's own changes add; `final s.e.`: the final score's standard error.", "",
        table, "", "Averages over the datasets (variants with every dataset):", "",
        markdown_table(["variant", "**last**", "best re-evaluated", "movement", "worst last / best"], averages), "",
        *held_table,
        "### Learning curves (in-run evaluations, mean over seeds, band = lowest to highest seed)", "",
        "\n\n".join(plots), ""])
    (out / "steady_final.md").write_text(md)
    write_json(out / "steady_final.json", {"command": command, "machine": machine, "summary": summary,
                                            **({"held_out_loss": held_runs} if held_runs else {})})
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
