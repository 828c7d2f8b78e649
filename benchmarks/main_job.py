#!/usr/bin/env python
"""The README's main job, measured as a new user runs it: ``python train_agent.py`` with no arguments
(Hopper medium, cpu profile, offline: the shipped Hopper sample), its wall-clock time from the command's
start to its exit, its headline (the last checkpoint over ``eval.final_episodes`` fresh episodes per target,
``final_eval.json``; the best in-run evaluation's checkpoint re-evaluated beside it, an online selection) and
the normalised score of every in-run evaluation. More seeds run the same
configuration with ``--set seed=K`` (which, being an argument, also spells out the profile and the
fallback that the no-argument job implies), for the spread.

With ``--reference``, d3rlpy's Decision Transformer (``benchmarks/peers/``) then trains on what each job
trained on, with that job's own resolved config (its ``config.yaml``: data, budget, width, lr, evaluation
episodes, targets and seed), so that the job's score has the outside reference beside it.

    python -m benchmarks.main_job                    # seeds 0 (the no-argument command), 1, 2; ~7 min
    python -m benchmarks.main_job --reference        # and d3rlpy's DT on the same; ~30 min more
    python -m benchmarks.main_job --seeds 0
    python -m benchmarks.main_job --baseline 09e1c35  # and that revision's job per seed, alternating: the time ratio

``--baseline REV`` runs that revision's job (``git archive``, imported from a copy, ``python -m
rl_minrnn.cli.train`` with the same arguments) before each seed's job, so both see the same machine load.

Writes ``benchmarks/results/main_job.json`` and ``main_job.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import numpy as np

from benchmarks.common import write_results, machine_info, markdown_table
from rl_minrnn.training import RunFolder


def job_command(seed: int, run_dir: Path, entry: list[str] | None = None, overrides: list[str] = ()) -> list[str]:
    """``entry``: how the job is started (default ``train_agent.py``, the README's; a baseline revision's copy
    is started as ``-m rl_minrnn.cli.train``). ``overrides``: ``--set`` values for this tree's job only (e.g.
    ``train.processes=1``: what the job costs in one process)."""
    entry = entry or ["train_agent.py"]
    extra = [a for o in overrides for a in ("--set", o)]
    if seed == 0 and not overrides:  # the README's command itself (plus where to write, so that runs do not collide)
        return [sys.executable, *entry, "--no-progress", "--run-dir", str(run_dir)]
    return [sys.executable, *entry, "--no-progress", "--profile", "cpu", "--set", "dataset.fallback_to_sample=true",
            "--set", f"seed={seed}", *extra, "--run-dir", str(run_dir)]


def final_scores(run_dir: Path) -> dict:
    """``final_eval.json`` of a run: the last checkpoint's and the best one's scores on fresh episodes."""
    path = RunFolder(run_dir).final_eval
    if not path.is_file():  # a revision without the final evaluation
        return {"final_last": None, "final_best": None, "final_s": 0.0, "final_episodes": None}
    final = json.loads(path.read_text())
    best = final.get("best") or final["last"]
    return {"final_last": final["last"]["score"], "final_best": best["score"], "final_best_step": best["step"],
            "final_s": final["seconds"], "final_episodes": final["episodes"],
            "final_targets": {name: final[name]["targets"] for name in ("last", "best") if final.get(name)}}


def evaluations(run_dir: Path) -> list[dict]:
    """Each evaluation in ``metrics.jsonl``: its step and the best target's mean normalised score."""
    out = []
    for line in RunFolder(run_dir).metrics.read_text().splitlines():
        row = json.loads(line)
        scores = {k.split("/")[1].rsplit("_normalized_score_mean", 1)[0]: v for k, v in row.items()
                  if k.startswith("eval/") and k.endswith("_normalized_score_mean")}
        if scores:
            out.append({"step": row["step"], "score": max(scores.values()), "by_target": scores,
                        "eval_s": row.get("eval/seconds")})
    return out


def evaluate_checkpoints(run_dir: Path) -> dict:
    """A run without a final evaluation of its own (a revision before it): its ``last.pt`` and ``best.pt``
    evaluated here the way ``Trainer.final_evaluation`` does (this tree's defaults: ``eval.final_episodes``
    episodes per target on seeds ``eval.final_seed + i``, the run's targets), written as its
    ``final_eval.json``, so both sides of ``--baseline`` are scored on the same episodes."""
    from rl_minrnn.api import reference_scores
    from rl_minrnn.configs.schema import EvalConfig
    from rl_minrnn.envs.evaluation.rollout import evaluate_agent
    from rl_minrnn.training import load_agent

    defaults, out = EvalConfig(), {}
    start = time.perf_counter()
    for name in ("last", "best"):
        path = RunFolder(run_dir).checkpoint(name)
        if not path.is_file():
            continue
        agent, info = load_agent(path)
        targets = info["config"]["eval"]["target_returns"]
        result = evaluate_agent(agent, info["env_id"], defaults.final_episodes, targets, seed=defaults.final_seed,
                                ref_scores=reference_scores(info), progress=False,
                                max_episode_steps=info["config"]["eval"]["max_episode_steps"], num_threads=1)
        out[name] = {"step": info["step"], "score": result.score(), "episodes": defaults.final_episodes,
                     "targets": [t.summary() for t in result.targets]}
    final = {"episodes": defaults.final_episodes, "seed": defaults.final_seed, "evaluated_by": "benchmarks.main_job",
             "seconds": time.perf_counter() - start, **out}
    RunFolder(run_dir).final_eval.write_text(json.dumps(final, indent=2))
    return final


def baseline_site(revision: str, dest: Path) -> Path:
    """An importable copy of ``revision`` (``git archive``), checked to import its own files, not this tree's."""
    from benchmarks.train_speed_versions import checkout

    site = checkout(revision, dest)
    where = subprocess.run([sys.executable, "-c", "import rl_minrnn.training.trainer as t; print(t.__file__)"],
                           cwd=site, env={**os.environ, "PYTHONPATH": str(site)}, capture_output=True, text=True)
    if not where.stdout.strip().startswith(str(site)):
        raise SystemExit(f"the copy of {revision} imports {where.stdout.strip() or where.stderr[-300:]}, "
                         f"not its own files under {site}")
    return site


def run_job(seed: int, root: Path, site: Path | None = None, overrides: list[str] = ()) -> dict:
    """``site``: an importable copy of another revision (``--baseline``), run instead of this tree."""
    run_dir = root / f"seed{seed}"
    command = job_command(seed, run_dir, ["-m", "rl_minrnn.cli.train"] if site else None, overrides)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **({"PYTHONPATH": str(site)} if site else {})}
    start = time.perf_counter()
    # a revision runs from its own copy: from the repository root, ``-m`` would import this tree's rl_minrnn/
    done = subprocess.run(command, cwd=site or ROOT, env=env, capture_output=True, text=True)
    wall_s = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"the main job failed (seed {seed}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    if not RunFolder(run_dir).final_eval.is_file():  # after the timing: the revision did not evaluate on fresh episodes
        evaluate_checkpoints(run_dir)
    evals = evaluations(run_dir)
    # the line naming the dataset trained on (a fallback notice, also starting "Dataset", may come before it)
    dataset_line = next((l for l in done.stdout.splitlines() if l.startswith("Dataset ") and " episodes, " in l), "")
    return {"seed": seed, "command": shlex.join(["python", *command[1:]]), "wall_s": wall_s,
            "last": evals[-1]["score"], "best": max(e["score"] for e in evals),
            "eval_s": sum(e["eval_s"] or 0.0 for e in evals), **final_scores(run_dir), "evals": evals,
            "dataset": dataset_line,
            "stdout_tail": done.stdout.splitlines()[-4:]}


def reference_run(run_dir: Path, log=print) -> dict:
    """d3rlpy's DT with the job's resolved config (``run_dir/config.yaml``) on the dataset the job used."""
    from rl_minrnn.training.resources import load_training_dataset
    from benchmarks.peers import d3rlpy_dt
    from rl_minrnn.training.options import load_config

    config = load_config([RunFolder(run_dir).config])
    dataset = load_training_dataset(config, log=lambda *a: None)
    outcome = d3rlpy_dt.train_and_evaluate(config, dataset, log=log, data_dir=run_dir.parent / "peer-data")
    scores = [e["score"] for e in outcome["evals"]]
    final = outcome.get("final")
    return {"final_last": final["last"]["score"] if final else None,
            "final_best": (final.get("best") or final["last"])["score"] if final else None,
            "last": scores[-1], "best": max(scores), "wall_s": outcome["wall_s"], "train_s": outcome["train_s"],
            "evals": [{"step": e["step"], "score": e["score"]} for e in outcome["evals"]], "peer": outcome["peer"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "main_job"))
    parser.add_argument("--baseline", default=None, metavar="REV",
                        help="also run this git revision's job before each seed's (e.g. 09e1c35): the wall-clock ratio")
    parser.add_argument("--reference", action="store_true",
                        help="also train d3rlpy's DT with each job's config, after all the jobs (their timing stays alone)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for this tree's jobs, not the baseline's (seed 0 then runs with the "
                             "profile spelled out, as the other seeds do)")
    args = parser.parse_args(argv)
    runs, baseline = [], []
    with tempfile.TemporaryDirectory(prefix="main_job_") as tmp:
        site = None
        if args.baseline:
            site = baseline_site(args.baseline, Path(tmp) / "baseline-site")
        for seed in args.seeds:
            if site is not None:
                print(f"seed {seed}, {args.baseline}: the same job from that revision", flush=True)
                baseline.append(run_job(seed, Path(tmp) / "baseline", site))
                print(f"  {baseline[-1]['wall_s'] / 60:.1f} min, in-run last {baseline[-1]['last']:.1f}", flush=True)
            print(f"seed {seed}: {shlex.join(job_command(seed, Path(tmp) / f'seed{seed}', None, args.overrides)[1:])}", flush=True)
            runs.append(run_job(seed, Path(tmp), overrides=args.overrides))
            r = runs[-1]
            headline = "" if r["final_last"] is None else f"last ({r['final_episodes']} episodes) {r['final_last']:.1f}, " \
                f"best re-evaluated {r['final_best']:.1f}; "
            print(f"  {r['wall_s'] / 60:.1f} min, {headline}in-run last {r['last']:.1f}, best {r['best']:.1f}", flush=True)
        if args.reference:
            for r in runs:
                print(f"seed {r['seed']}: d3rlpy DT with the job's config", flush=True)
                r["d3rlpy_dt"] = reference_run(Path(tmp) / f"seed{r['seed']}")
                print(f"  last {r['d3rlpy_dt']['last']:.1f}, best {r['d3rlpy_dt']['best']:.1f}", flush=True)
    fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    heads = ["seed", "wall min", "in-run eval s", "final eval s", "**last, final evaluation**",
             "best re-evaluated (online selection)", "in-run score at each evaluation", "in-run last", "in-run best"]
    rows = [[r["seed"], f"{r['wall_s'] / 60:.2f}", f"{r['eval_s']:.0f}", f"{r['final_s']:.0f}", fmt(r["final_last"]),
             fmt(r["final_best"]), " / ".join(f"{e['score']:.1f}" for e in r["evals"]), f"{r['last']:.1f}",
             f"{r['best']:.1f}"] for r in runs]
    last, best, wall = [r["last"] for r in runs], [r["best"] for r in runs], [r["wall_s"] / 60 for r in runs]
    summary = []
    if all(r["final_last"] is not None for r in runs):
        fl, fb = [r["final_last"] for r in runs], [r["final_best"] for r in runs]
        summary.append(f"**Headline, mean over {len(runs)} seed(s): the last checkpoint scores {np.mean(fl):.1f} ± "
                       f"{np.std(fl):.1f}** ({runs[0]['final_episodes']} fresh episodes per target each); the best in-run "
                       f"evaluation's checkpoint, re-evaluated on the same episodes, {np.mean(fb):.1f} ± {np.std(fb):.1f} "
                       "(an online selection).")
    summary.append(f"In-run evaluations: last {np.mean(last):.1f} ± {np.std(last):.1f}, best (their maximum) {np.mean(best):.1f} ± "
                   f"{np.std(best):.1f}; wall {np.mean(wall):.2f} min (min {min(wall):.2f}, max {max(wall):.2f}).")
    if baseline:
        base_wall = [b["wall_s"] / 60 for b in baseline]
        bl, bb = [b["final_last"] for b in baseline], [b["final_best"] for b in baseline]
        summary.append(f"Revision {args.baseline}, the same job run just before each seed's (its last.pt and best.pt "
                       f"evaluated afterwards on the same fresh episodes): last {np.mean(bl):.1f} ± {np.std(bl):.1f}, best "
                       f"re-evaluated {np.mean(bb):.1f} ± {np.std(bb):.1f}; wall {np.mean(base_wall):.2f} min, "
                       f"in-run last {np.mean([b['last'] for b in baseline]):.1f}, best {np.mean([b['best'] for b in baseline]):.1f}; "
                       f"this tree's wall-clock is **{np.mean(wall) / np.mean(base_wall):.2f}x** that revision's.")
    if args.reference:
        heads += ["d3rlpy last, final evaluation", "d3rlpy best re-evaluated", "d3rlpy DT at each evaluation",
                  "d3rlpy in-run last", "d3rlpy in-run best"]
        for row, r in zip(rows, runs):
            ref = r["d3rlpy_dt"]
            row += [fmt(ref["final_last"]), fmt(ref["final_best"]), " / ".join(f"{e['score']:.1f}" for e in ref["evals"]),
                    f"{ref['last']:.1f}", f"{ref['best']:.1f}"]
        ref_last, ref_best = [r["d3rlpy_dt"]["last"] for r in runs], [r["d3rlpy_dt"]["best"] for r in runs]
        refs = [r["d3rlpy_dt"] for r in runs]
        final = ""
        if all(x["final_last"] is not None for x in refs):
            final = (f"last checkpoint, final evaluation {np.mean([x['final_last'] for x in refs]):.1f} ± "
                     f"{np.std([x['final_last'] for x in refs]):.1f}, best re-evaluated "
                     f"{np.mean([x['final_best'] for x in refs]):.1f} ± {np.std([x['final_best'] for x in refs]):.1f}; ")
        summary.append(f"d3rlpy's DT, same data, config, budget, evaluation episodes and seeds: {final}in-run last "
                       f"{np.mean(ref_last):.1f} ± {np.std(ref_last):.1f}, best {np.mean(ref_best):.1f} ± {np.std(ref_best):.1f}.")
    machine = machine_info()
    md = "\n".join([
        "Main job (`python train_agent.py`, no arguments"
        + (f"; this tree's jobs with {' '.join('--set ' + o for o in args.overrides)}" if args.overrides else "")
        + f"), {runs[0]['dataset']}", "",
        f"Machine: {machine['cpu_model']}, {machine['usable_cores']} cores, torch {machine['torch']}; date {machine['date']}.",
        f"Command: `{shlex.join(['python', '-m', 'benchmarks.main_job', *(sys.argv[1:] if argv is None else argv)])}`", "",
        markdown_table(heads, rows), "", *summary, ""])
    write_results(args.out, md, {"machine": machine, "runs": runs, "baseline": {"revision": args.baseline, "runs": baseline},
                                 "last_mean": float(np.mean(last)), "best_mean": float(np.mean(best)),
                                 "wall_min_mean": float(np.mean(wall))})
    return 0


if __name__ == "__main__":
    sys.exit(main())
