#!/usr/bin/env python
"""Which change made the agents learn: each of the shipped training choices undone on its own, at the suite's budget.

Every variant is a list of config overrides on top of the suite's protocol (``benchmarks/suite.py``: the
same configs, budget, evaluation episodes and seeds); a run is the suite's ``train_and_evaluate``. The
table has a row per variant and a column per (dataset, agent): ``last ± std / best ± std`` over seeds of
the normalised score, plus the score at each target return (how the return-to-go conditioning behaves).

    python -m benchmarks.ablations                                   # all variants, default datasets/agents
    python -m benchmarks.ablations --variants fixed init-pytorch --agents mingru --seeds 0
    python -m benchmarks.ablations --aggregate-only

Writes ``<out>/runs/<variant>__<dataset>__<agent>__seed<k>.json`` (the suite's run record plus the
variant) and ``<out>/ablations.md`` / ``ablations.json`` (default out: ``benchmarks/results/ablations``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import numpy as np

from benchmarks import suite, suite_tables
from benchmarks.common import machine_info, markdown_table, write_json

# name -> (what it is, overrides, the agents it is run for). "fixed" is the configuration as shipped; the
# others undo one choice or try an alternative.
ALL, RNN, DT = ("mingru", "minlstm", "dt"), ("mingru", "minlstm"), ("dt",)
VARIANTS = {
    "before": ("all three undone: PyTorch init, decay on every parameter, windows from a uniform start",
               ["model.init=pytorch", "train.weight_decay_on=all", "train.window_sampling=start"], ALL),
    "fixed": ("as shipped", [], ALL),
    "init-pytorch": ("PyTorch's default initialisation (timestep embedding N(0, 1))", ["model.init=pytorch"], ALL),
    "init-d3rlpy": ("d3rlpy's initialisation: GPT's, but PyTorch's defaults for the R, s, a projections and the head",
                    ["model.init=d3rlpy"], ALL),
    "decay-all": ("weight decay on every parameter (biases, LayerNorms, embeddings too)",
                  ["train.weight_decay_on=all"], ALL),
    "sampling-end": ("windows end at a uniform timestep (d3rlpy)", ["train.window_sampling=end"], ALL),
    "sampling-cover": ("every timestep in K windows", ["train.window_sampling=cover"], ALL),
    "interleaved": ("R, s, a as three tokens instead of one fused token", ["model.tokens=interleaved"], ALL),
    "interleaved-init-d3rlpy": ("both: the closest this project's DT comes to d3rlpy's",
                                ["model.tokens=interleaved", "model.init=d3rlpy"], DT),
    "rollout-window": ("the Decision-RNN re-runs the last K steps at every env step instead of carrying its state",
                       ["eval.mode=window"], RNN),
    "regime-sequence": ("the Decision-RNN trains on whole episodes in consecutive chunks, state carried (TBPTT)",
                        ["train.regime=sequence"], RNN),
}
DEFAULT_DATASETS = ["local/halfcheetah/medium-v0", "local/walker2d/medium-v0", "local/hopper/medium-v0"]


def run_file(runs_dir: Path, variant: str, dataset_id: str, agent: str, seed: int) -> Path:
    return runs_dir / f"{variant}__{suite.run_name(dataset_id, agent, seed)}.json"


def aggregate(runs: list[dict], variants: list[str], datasets: list[str], agents: list[str]) -> tuple[str, dict]:
    by = {}
    for r in runs:
        by.setdefault((r["variant"], r["dataset"], r["agent"]), []).append(r)
    columns = [(d, a) for d in datasets for a in agents if any((v, d, a) in by for v in variants)]
    rows, late_rows, target_rows, final_rows, summary = [], [], [], [], {}
    for v in variants:
        if not any((v, d, a) in by for d, a in columns):
            continue
        row, lrow, trow, frow = [f"`{v}`"], [f"`{v}`"], [f"`{v}`"], [f"`{v}`"]
        for d, a in columns:
            rs = by.get((v, d, a), [])
            if not rs:
                for r_ in (row, lrow, trow, frow):
                    r_.append("-")
                continue
            # the headline: the last checkpoint and the in-run best one, each on the final evaluation's fresh episodes
            fl = [r["final_last"] for r in rs if r.get("final_last") is not None]
            fb = [r["final_best"] for r in rs if r.get("final_best") is not None]
            frow.append(f"{np.mean(fl):.1f} ± {np.std(fl):.1f} / {np.mean(fb):.1f} ± {np.std(fb):.1f} (n={len(fl)})"
                        if fl else "-")
            last, best = [r["last"] for r in rs], [r["best"] for r in rs]
            late = [suite_tables.late_score(r) for r in rs]
            row.append(f"{np.mean(last):.1f} ± {np.std(last):.1f} / {np.mean(best):.1f} ± {np.std(best):.1f} (n={len(rs)})")
            lrow.append(f"{np.mean(late):.1f} ± {np.std(late):.1f} (n={len(rs)})")
            # per target return: the final evaluation's mean normalised score, mean over seeds
            finals = {}
            for r in rs:
                for t in r["evals"][-1]["targets"]:
                    finals.setdefault(t["target_return"], []).append(t["normalized_score_mean"])
            trow.append(" / ".join(f"{k:g}: {np.mean(x):.1f}" for k, x in finals.items()))
            summary[f"{v}|{d}|{a}"] = {"n": len(rs), "last_mean": float(np.mean(last)), "last_std": float(np.std(last)),
                                       "best_mean": float(np.mean(best)), "best_std": float(np.std(best)),
                                       "late_mean": float(np.mean(late)), "late_std": float(np.std(late)),
                                       "last_by_target": {str(k): float(np.mean(x)) for k, x in finals.items()},
                                       **({"final_last_mean": float(np.mean(fl)), "final_last_std": float(np.std(fl)),
                                           "final_best_mean": float(np.mean(fb)), "final_best_std": float(np.std(fb)),
                                           "final_n": len(fl)} if fl else {})}
        rows.append(row)
        final_rows.append(frow)
        late_rows.append(lrow)
        target_rows.append(trow)
    heads = ["variant"] + [f"{d.split('/')[1]} {d.split('/')[2].rsplit('-v', 1)[0]}, {suite_tables.AGENT_NAMES[a]}" for d, a in columns]
    legend = "\n".join(f"- `{v}`: {VARIANTS[v][0]}" + (f" (`{' '.join(VARIANTS[v][1])}`)" if VARIANTS[v][1] else "")
                       + ("" if VARIANTS[v][2] == ALL else f"; run for {', '.join(VARIANTS[v][2])} only")
                       for v in variants)
    finals_md = [] if all(c == "-" for r_ in final_rows for c in r_[1:]) else [
        "### Final evaluation, fresh episodes (the headline): last checkpoint ± std / best checkpoint ± std over seeds",
        "", "The best checkpoint is the one the in-run evaluations picked (an online selection), re-evaluated.", "",
        markdown_table(heads, final_rows), ""]
    md = "\n".join([
        *finals_md,
        "### In-run evaluations: last ± std / best ± std over seeds", "", markdown_table(heads, rows), "",
        f"### Late-training score: mean of each run's last {suite_tables.LATE_EVALUATIONS} evaluations, mean ± std over seeds",
        "", markdown_table(heads, late_rows), "",
        "### Last evaluation, per target return (mean normalised score over seeds)", "",
        markdown_table(heads, target_rows), "", "Variants:", "", legend, ""])
    return md, summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--datasets", nargs="+", default=DEFAULT_DATASETS)
    parser.add_argument("--agents", nargs="+", choices=[a for a in suite.AGENTS if a not in suite.PEERS],
                        default=["mingru", "dt"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--protocol", choices=sorted(suite.PROTOCOLS), default="cpu")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the protocol's)")
    parser.add_argument("--eval-every", type=int, default=None, help="default: the protocol's")
    parser.add_argument("--episodes", type=int, default=None, help="episodes per target (default: the protocol's)")
    parser.add_argument("--final-episodes", type=int, default=None,
                        help="episodes per target of the final evaluation (default: the protocol's; 0: none)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="extra config override key=value, applied to every run before the variant's")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ablations"))
    parser.add_argument("--run-root", default="/tmp/rl_minrnn_ablations")
    parser.add_argument("--resume-ok", action="store_true", help="skip runs whose JSON already exists")
    parser.add_argument("--aggregate-only", action="store_true")
    args = parser.parse_args(argv)

    out = Path(args.out)
    runs_dir = out / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    proto = suite.PROTOCOLS[args.protocol]
    command = shlex.join(["python", "-m", "benchmarks.ablations", *(sys.argv[1:] if argv is None else argv)])
    log = lambda *a: print(*a, flush=True)  # noqa: E731
    steps = args.steps or proto["steps"]
    eval_every = args.eval_every if args.eval_every is not None else proto["eval_every"]
    episodes = args.episodes or proto["episodes"]
    final_episodes = args.final_episodes if args.final_episodes is not None else proto["final_episodes"]
    if not args.aggregate_only:
        datasets = {d: suite.dataset_available(d)[0] for d in args.datasets}
        todo = [(v, d, a, s) for s in args.seeds for d in args.datasets for v in args.variants for a in args.agents
                if datasets[d] is not None and a in VARIANTS[v][2]]
        todo = [t for t in todo if not (args.resume_ok and run_file(runs_dir, *t).is_file())]
        log(f"{len(todo)} runs to do ({args.protocol} protocol, {steps} steps each)")
        for i, (v, d, a, s) in enumerate(todo):
            log(f"[{i + 1}/{len(todo)}] {v}: {d} {a} seed {s}")
            plan = {"protocol": args.protocol, "steps": steps, "eval_every": eval_every, "episodes": episodes,
                    "final_episodes": final_episodes,
                    "threads": proto["threads"], "device": proto["device"],
                    "overrides": [*args.overrides, *VARIANTS[v][1]], "out": str(out), "run_root": args.run_root}
            record = suite.train_and_evaluate(d, a, s, plan, dataset=datasets[d], log=log)
            record.update(variant=v, variant_overrides=VARIANTS[v][1], ablation_command=command)
            write_json(run_file(runs_dir, v, d, a, s), record)
            log(f"  done: last {record['last']:.1f}, best {record['best']:.1f}")
    runs = [json.loads(p.read_text()) for p in sorted(runs_dir.glob("*.json"))]
    runs = [r for r in runs if r["variant"] in args.variants and r["dataset"] in args.datasets
            and r["agent"] in args.agents and r["seed"] in args.seeds]
    if not runs:
        log("No runs to aggregate.")
        return 1
    table, summary = aggregate(runs, args.variants, args.datasets, args.agents)
    machine = machine_info()
    header = (f"Ablations of the shipped training choices, `{args.protocol}` protocol ({steps} steps, evaluation every "
              f"{eval_every}, {episodes} episodes per target, seeds {' '.join(map(str, args.seeds))}).\n\n"
              f"Machine: {machine['cpu_model']}, {machine['usable_cores']} cores, torch {machine['torch']}; "
              f"date {machine['date']}.\n\nCommand: `{command}`\n\n")
    print(header + table)
    (out / "ablations.md").write_text(header + table)
    write_json(out / "ablations.json", {"command": command, "machine": machine, "summary": summary,
                                        "variants": {v: VARIANTS[v][:2] for v in args.variants}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
