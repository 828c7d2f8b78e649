#!/usr/bin/env python
"""The score suite on Ray against the suite one run at a time, side by side in one invocation.

1. ``python -m benchmarks.suite ARGS`` (one run at a time, as today), then ``python -m benchmarks.suite ARGS --ray
   --ray-cpus N`` (a local Ray, a trial per core): the same command lines but the flag, each timed from start to
   exit, into ``<out>/sequential`` and ``<out>/ray`` (each with its own run JSONs and tables).
2. Same results: every run's evaluations (step and score) compared between the two, run by run.
3. What Ray adds per trial: N trivial trials through the same Tune path (resources, a dataset reference,
   one report), timed after ``ray.init`` (the same function in-process costs nothing measurable); and
   Ray's start and stop. From the suites themselves: per trial, the core-seconds of the Ray suite not spent inside a run
   (``(wall x workers - sum of run wall seconds) / runs``).

Writes ``<out>/compare.json`` and ``<out>/compare.md`` (default ``benchmarks/results/suite-ray/``).

    nice -n 5 python -m benchmarks.ray_overhead --datasets local/hopper/medium-v0 --agents mingru minlstm dt --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import fmt, machine_info, markdown_table, write_json
from rl_minrnn.threads import OPENMP_ENV

ROOT = Path(__file__).resolve().parents[1]


def run_suite(args: list[str], log) -> float:
    command = [sys.executable, "-m", "benchmarks.suite", *args]
    log("$ " + shlex.join(["python", "-m", "benchmarks.suite", *args]))
    tick = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - tick
    if done.returncode != 0:
        raise SystemExit(f"error: the suite failed ({done.returncode}):\n{done.stdout[-3000:]}")
    log(f"  {wall:.1f} s")
    return wall


def runs_of(out: Path) -> dict:
    return {p.stem: json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))}


def _empty_trial(config: dict, data: dict) -> None:
    import ray
    from ray import tune

    ray.get(data["ref"])
    tune.report({"step": 0, "score": 0.0})


def trial_overhead(n: int, cpus: int, log) -> dict:
    """Seconds Ray adds: start and stop, and per trivial trial through Tune with ``cpus`` trials at once."""
    import numpy as np
    import ray
    from ray import tune

    tick = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {**OPENMP_ENV, "PYTHONPATH": str(ROOT)}})
    init_s = time.perf_counter() - tick
    try:
        ref = ray.put(np.zeros(1000, np.float32))
        fit_s = {}
        for reuse in (True, False):  # the suite's setting, then a fresh worker process per trial
            tick = time.perf_counter()
            tuner = tune.Tuner(tune.with_resources(tune.with_parameters(_empty_trial, data={"ref": ref}), {"cpu": 1}),
                               param_space={"i": tune.grid_search(list(range(n)))},
                               tune_config=tune.TuneConfig(reuse_actors=reuse),
                               run_config=tune.RunConfig(name=f"overhead-{os.getpid()}-{reuse}", verbose=0,
                                                         storage_path="/tmp/rl_minrnn_ray_overhead"))
            results = tuner.fit()
            fit_s[reuse] = time.perf_counter() - tick
            assert not results.errors, results.errors
    finally:
        tick = time.perf_counter()
        ray.shutdown()
        shutdown_s = time.perf_counter() - tick
    out = {"trials": n, "cpus": cpus, "init_s": init_s, "fit_s": fit_s[True], "shutdown_s": shutdown_s,
           "per_trial_s": fit_s[True] * cpus / n, "fit_s_new_process_each": fit_s[False],
           "per_trial_s_new_process_each": fit_s[False] * cpus / n}
    log(f"  Ray start {init_s:.1f} s, {n} trivial trials {fit_s[True]:.1f} s ({out['per_trial_s']:.2f} s of a core each; "
        f"{out['per_trial_s_new_process_each']:.2f} s with a new worker process each), stop {shutdown_s:.1f} s")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["local/hopper/medium-v0"])
    parser.add_argument("--agents", nargs="+", default=["mingru", "minlstm", "dt"])
    parser.add_argument("--seeds", nargs="+", default=["0", "1"])
    parser.add_argument("--workers", type=int, default=2, help="CPUs of the local Ray (a trial each)")
    parser.add_argument("--trivial-trials", type=int, default=8)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="passed to both suites")
    parser.add_argument("--steps", default=None, help="passed to both suites (default: the protocol's)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "suite-ray"))
    parser.add_argument("--run-root", default="/tmp/rl_minrnn_suite_ray")
    args = parser.parse_args(argv)
    log = lambda *a: print(*a, flush=True)  # noqa: E731
    out = Path(args.out)
    common = ["--protocol", "cpu", "--datasets", *args.datasets, "--agents", *args.agents, "--seeds", *args.seeds,
              *(["--steps", args.steps] if args.steps else [])]
    for o in args.overrides:
        common += ["--set", o]
    sequential_args = common + ["--out", str(out / "sequential"), "--run-root", f"{args.run_root}/sequential"]
    ray_args = common + ["--out", str(out / "ray"), "--run-root", f"{args.run_root}/ray", "--ray",
                         "--ray-cpus", str(args.workers)]
    for d in ("sequential", "ray"):
        for p in (out / d / "runs").glob("*.json"):
            p.unlink()
    seq_wall = run_suite(sequential_args, log)
    ray_wall = run_suite(ray_args, log)
    seq, on_ray = runs_of(out / "sequential"), runs_of(out / "ray")
    rows, same = [], 0
    for name, a in seq.items():
        b = on_ray.get(name)
        equal = b is not None and [(e["step"], e["score"]) for e in a["evals"]] == [(e["step"], e["score"]) for e in b["evals"]]
        same += equal
        rows.append([a["dataset"], a["agent_name"], str(a["seed"]), f"{a['last']:.1f} / {a['best']:.1f}",
                     f"{b['last']:.1f} / {b['best']:.1f}" if b else "missing", "yes" if equal else "NO",
                     fmt(a["wall_s"], 1), fmt(b["wall_s"], 1) if b else "-",
                     fmt(a["train_steps_per_s"], 1), fmt(b["train_steps_per_s"], 1) if b else "-"])
    in_runs = sum(r["wall_s"] for r in on_ray.values())
    outside = (ray_wall * args.workers - in_runs) / max(1, len(on_ray))
    fetch = [r["ray"]["dataset_fetch_s"] for r in on_ray.values()]
    log("Trivial trials:")
    overhead = trial_overhead(args.trivial_trials, args.workers, log)
    machine = machine_info()
    result = {
        "sequential_command": shlex.join(["python", "-m", "benchmarks.suite", *sequential_args]),
        "ray_command": shlex.join(["python", "-m", "benchmarks.suite", *ray_args]),
        "command": shlex.join(["python", "-m", "benchmarks.ray_overhead", *(sys.argv[1:] if argv is None else argv)]),
        "runs": len(seq), "identical_evaluations": same, "sequential_wall_s": seq_wall, "ray_wall_s": ray_wall,
        "speedup": seq_wall / ray_wall, "workers": args.workers,
        "sum_run_wall_s": {"sequential": sum(r["wall_s"] for r in seq.values()), "ray": in_runs},
        "median_train_steps_per_s": {"sequential": statistics.median(r["train_steps_per_s"] for r in seq.values()),
                                     "ray": statistics.median(r["train_steps_per_s"] for r in on_ray.values())},
        "ray_core_s_outside_runs_per_trial": outside, "dataset_fetch_s_median": statistics.median(fetch),
        "trivial_trials": overhead, "machine": machine,
    }
    md = [f"Score suite (`cpu` protocol) on a local Ray with {args.workers} workers against one run at a time: "
          f"{', '.join(args.datasets)} x {', '.join(args.agents)} x seeds {' '.join(args.seeds)} ({len(seq)} runs).",
          "", f"Machine: {machine['cpu_model']}, {machine['usable_cores']} cores, torch {machine['torch']}; date {machine['date']}.",
          "", f"Command: `{result['command']}`, which runs", "",
          f"- one at a time: `{result['sequential_command']}`", f"- on Ray: `{result['ray_command']}`", "",
          markdown_table(["", "wall s", "sum of run wall s", "median train steps/s"], [
              ["one at a time", fmt(seq_wall, 1), fmt(result["sum_run_wall_s"]["sequential"], 1),
               fmt(result["median_train_steps_per_s"]["sequential"], 1)],
              [f"Ray, {args.workers} workers", fmt(ray_wall, 1), fmt(in_runs, 1),
               fmt(result["median_train_steps_per_s"]["ray"], 1)]]),
          "", f"Wall-clock ratio (one at a time / Ray): **{result['speedup']:.2f}x**. Same results: "
          f"{same}/{len(seq)} runs have identical evaluations (every step's score).", "",
          f"Ray's cost: start {overhead['init_s']:.1f} s and stop {overhead['shutdown_s']:.1f} s once; a trivial trial "
          f"through Tune (resources, dataset reference, one report) {overhead['per_trial_s']:.2f} s of a core "
          f"({overhead['trials']} trials in {overhead['fit_s']:.1f} s on {overhead['cpus']} CPUs, workers reused as the suite "
          f"does; {overhead['per_trial_s_new_process_each']:.2f} s with a new worker process per trial); in the suite, "
          f"{outside:.1f} core-seconds per trial outside its run (Ray start, worker start and imports, scheduling, "
          f"reports and checkpoint copies, and the idle core while the last run finishes); fetching a dataset from "
          f"the object store, median {result['dataset_fetch_s_median']:.3f} s.", "",
          markdown_table(["dataset", "agent", "seed", "one at a time: last / best", "Ray: last / best", "identical",
                          "wall s (one)", "wall s (Ray)", "steps/s (one)", "steps/s (Ray)"], rows)]
    text = "\n".join(md) + "\n"
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text(text)
    write_json(out / "compare.json", result)
    return 0 if same == len(seq) else 1


if __name__ == "__main__":
    sys.exit(main())
