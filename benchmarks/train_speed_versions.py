#!/usr/bin/env python
"""Training speed of two versions of the code, side by side in one run: a git revision (the baseline)
against the working tree, each running its own ``Trainer`` (sampling + the training step, exactly what a
run does) on the shipped Hopper sample at a config and profile, in a process of its own.

Variants are timed round-robin: each round asks every agent's and variant's worker for ``--steps`` steps in
turn, so that whatever else the machine does hits them alike; the figure is the median over rounds, and with
``dt`` among the agents each agent's speed against DT's (``vs DT``: the median over rounds of the ratio within
a round), each agent in its own process as a run is. Two more
kinds of variant answer "one run on both cores, or two runs side by side?":

- ``NAME@T``: the version with T torch threads (``--threads`` sets the default);
- ``NAME@1x2``: two workers of that version, one thread each, running at the same time (their
  timesteps/s added: the throughput of two runs side by side);
- ``new@1p2``: one run whose batches are split between 2 processes of one thread each
  (``train.processes=2``, ``training/data_parallel.py``; revisions before it have no such key).

    python -m benchmarks.train_speed_versions --baseline 440c381 --agents mingru dt
    python -m benchmarks.train_speed_versions --baseline 440c381 --agents mingru --variants base@1 new@1 new@2 new@1x2
    python -m benchmarks.train_speed_versions --baseline 440c381 --variants base@1 new@1 new@1p2 new@1x2

Writes ``benchmarks/results/train_speed_versions.{json,md}`` (``--out``): per agent and variant the median
ms per step and timesteps/s, and every variant's ratio to the baseline at one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import fmt, machine_info, markdown_table, write_results
from rl_minrnn.threads import OPENMP_ENV

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_FOLDERS = ("agents", "configs", "deploy", "envs", "training")  # installed as rl_minrnn.<folder>
AGENTS = {"mingru": [], "minlstm": ["model.cell=minlstm"], "dt": ["model.kind=decision_transformer"]}

WORKER = r"""
import dataclasses, json, os, sys, tempfile, time
import torch
torch.set_num_threads(int(os.environ["RLM_THREADS"]))
try:
    from rl_minrnn.training.options import load_config
except ImportError:  # a revision whose config module also checked the values
    from rl_minrnn.configs.schema import load_config
from rl_minrnn.training.trainer import Trainer
import rl_minrnn.configs as configs_pkg
folder = os.path.dirname(configs_pkg.__file__)
spec = json.loads(sys.argv[1])
files = [os.path.join(folder, name) for name in spec["configs"]]
config = load_config(files, overrides=[*spec["overrides"], "train.threads=" + os.environ["RLM_THREADS"]])
trainer = Trainer(config, tempfile.mkdtemp(), log=lambda *a, **k: None, progress=False)
for _ in range(spec["warmup"]):
    trainer.train_step(trainer.sampler.sample())
model = dataclasses.asdict(config.model) if dataclasses.is_dataclass(getattr(config, "model", None)) else {}
print(json.dumps({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads(), "model": model}),
      flush=True)
for line in sys.stdin:
    steps = json.loads(line)["steps"]
    start, cpu_start = time.perf_counter(), time.process_time()
    timesteps = 0.0
    for _ in range(steps):
        timesteps += float(trainer.train_step(trainer.sampler.sample())["timesteps"])
    print(json.dumps({"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu_start,
                      "timesteps": timesteps}), flush=True)
"""


def assemble(source_root: Path, dest: Path) -> Path:
    """An importable copy of one version: ``dest/rl_minrnn`` with the package folders inside it, the layout
    ``pip install`` gives (``rl_minrnn.agents`` from ``agents/``, ...)."""
    package = dest / "rl_minrnn"
    shutil.copytree(source_root / "rl_minrnn", package, ignore=shutil.ignore_patterns("__pycache__"))
    for folder in PACKAGE_FOLDERS:
        shutil.copytree(source_root / folder, package / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def checkout(revision: str, dest: Path) -> Path:
    """The files of ``revision`` (``git archive``), assembled as :func:`assemble` does."""
    src = dest.with_name(dest.name + "-src")
    src.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "rl_minrnn", *PACKAGE_FOLDERS],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    return assemble(src, dest)


class Worker:
    """One version's trainer in its own process, stepped on request."""

    def __init__(self, site: Path, spec: dict, threads: int, processes: int | None = None):
        """``processes``: this tree's ``train.processes``, always set (the cpu profile's auto would otherwise pick
        for the variant); None for a baseline revision, which may not have the key."""
        if processes is not None:
            spec = {**spec, "overrides": [*spec["overrides"], f"train.processes={processes}"]}
        env = {**os.environ, "PYTHONPATH": str(site), "RLM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
               "MKL_NUM_THREADS": str(threads), **OPENMP_ENV}
        self.proc = subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(spec)], cwd=str(site), env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"a benchmark worker exited with code {self.proc.wait()} (its error is above)")
        return json.loads(line)

    def start(self, steps: int) -> None:
        self.proc.stdin.write(json.dumps({"steps": steps}) + "\n")
        self.proc.stdin.flush()

    def finish(self) -> dict:
        return self._read()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def model_differences(base: dict, new: dict) -> dict:
    """``{key: [base's, new's]}`` for the model settings both versions' configs have and give different values:
    the two versions read their own config files, so a changed default (the cpu profile's dropout, say) would
    otherwise pass for a change of speed in the code."""
    return {key: [base[key], new[key]] for key in sorted(base.keys() & new.keys()) if base[key] != new[key]}


def parse_variant(text: str) -> tuple[str, int, int, int]:
    """``base@1`` -> ('base', 1 thread, 1 worker, 1 process a run); ``new@1x2`` -> ('new', 1, 2, 1);
    ``new@1p2`` -> ('new', 1, 1, 2)."""
    name, _, rest = text.partition("@")
    rest, _, processes = (rest or "1").partition("p")
    threads, _, copies = rest.partition("x")
    if (name not in ("base", "new") or not threads.isdigit() or not (copies or "1").isdigit()
            or not (processes or "1").isdigit() or (copies and processes)):
        raise SystemExit(f"--variants: {text!r} is not base@T, new@T, new@TxN or new@TpP (e.g. new@2, new@1x2, new@1p2)")
    if name == "base" and processes:
        raise SystemExit(f"--variants: {text!r}: train.processes is this tree's; the baseline runs base@T or base@TxN")
    return name, int(threads), int(copies or 1), int(processes or 1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default="440c381", help="git revision to compare against (default: %(default)s)")
    parser.add_argument("--agents", nargs="+", choices=sorted(AGENTS), default=["mingru", "dt"])
    parser.add_argument("--configs", nargs="+", default=["hopper-medium.yaml", "profiles/cpu.yaml"],
                        help="config files inside rl_minrnn/configs (default: the main job's)")
    parser.add_argument("--set", action="append", default=[], dest="overrides", help="extra config overrides")
    parser.add_argument("--variants", nargs="+", default=["base@1", "new@1"])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20, help="steps per variant per round")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "train_speed_versions"))
    args = parser.parse_args(argv)
    variants = {v: parse_variant(v) for v in args.variants}
    log = lambda s: print(s, flush=True)  # noqa: E731

    tmp = Path(tempfile.mkdtemp(prefix="train-speed-versions-"))
    try:
        sites = {"base": checkout(args.baseline, tmp / "base"), "new": assemble(ROOT, tmp / "new")}
        records = []
        # every agent's workers alive at once and asked in turn within each round, so that whatever else the
        # machine does hits them alike and the agents' ratio (``vs_dt``) is measured in one run, each agent in a
        # process of its own as a run is (in one process, as benchmarks/train_speed.py times them, they share
        # one heap, and the later agent steps in memory the earlier one freed: BENCHMARKS.md, "Each agent in its
        # own process")
        workers, times = {}, {}
        for agent in args.agents:
            spec = {"configs": args.configs, "warmup": args.warmup,
                    "overrides": ["dataset.id=local/hopper/sample-v0", "eval.every=0", *AGENTS[agent], *args.overrides]}
            for v, (name, threads, copies, processes) in variants.items():
                workers[agent, v] = [Worker(sites[name], spec, threads, processes if name == "new" else None)
                                     for _ in range(copies)]
                times[agent, v] = []
        for r in range(args.rounds):
            for (agent, v), group in workers.items():
                for w in group:  # side-by-side copies start together
                    w.start(args.steps)
                results = [w.finish() for w in group]
                seconds = max(res["seconds"] for res in results)
                times[agent, v].append({"seconds": seconds, "timesteps": sum(res["timesteps"] for res in results),
                                        "cpu_seconds": sum(res["cpu_seconds"] for res in results)})
            log(f"round {r + 1}/{args.rounds}: " + ", ".join(
                f"{agent} {v} {1e3 * times[agent, v][-1]['seconds'] / args.steps:.1f} ms" for agent, v in workers))
        differences = {}
        for agent in args.agents:
            info = {name: next((group[0].info for (a, v), group in workers.items()
                                if a == agent and variants[v][0] == name), None) for name in ("base", "new")}
            if info["base"] is not None and info["new"] is not None:
                differences[agent] = model_differences(info["base"].get("model", {}), info["new"].get("model", {}))
        for group in workers.values():
            for w in group:
                w.close()
        for (agent, v), rounds in times.items():
            name, threads, copies, processes = variants[v]
            seconds = [t["seconds"] for t in rounds]
            per_s = [t["timesteps"] / t["seconds"] for t in rounds]
            records.append({"agent": agent, "variant": v, "version": args.baseline if name == "base" else "working tree",
                            "threads": threads, "processes": copies, "processes_per_run": processes,
                            "ms_per_step": 1e3 * statistics.median(seconds) / args.steps,
                            "timesteps_per_s": statistics.median(per_s), "rounds_timesteps_per_s": per_s,
                            "cpu_ms_per_step": 1e3 * statistics.median(t["cpu_seconds"] for t in rounds) / (args.steps * copies)})
        for rec in records:
            base = next((r for r in records if r["agent"] == rec["agent"] and r["variant"].startswith("base@1")
                         and r["processes"] == 1 and r["threads"] == 1), None)
            if base is not None:
                rec["ratio_to_baseline"] = rec["timesteps_per_s"] / base["timesteps_per_s"]
            dt = next((r for r in records if r["agent"] == "dt" and r["variant"] == rec["variant"]), None)
            if dt is not None:  # the median over rounds of the two agents' ratio in the same round
                rec["vs_dt"] = statistics.median(a / b for a, b in zip(rec["rounds_timesteps_per_s"],
                                                                      dt["rounds_timesteps_per_s"]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    rows = [[r["agent"], r["variant"], r["version"], r["threads"], r["processes"], r["processes_per_run"],
             fmt(r["ms_per_step"], 1),
             fmt(r["cpu_ms_per_step"], 1),
             fmt(r["timesteps_per_s"], 0), fmt(r.get("ratio_to_baseline"), 2, "x"), fmt(r.get("vs_dt"), 2, "x")]
            for r in records]
    differing = "; ".join(f"{agent}: " + ", ".join(f"{key} {a} -> {b}" for key, (a, b) in diff.items())
                          for agent, diff in differences.items() if diff)
    if differing:
        log(f"note: the versions' configs differ ({differing}); the ratios time those settings too "
            "(--set them to one value to time the code alone)")
    machine = machine_info("cpu")
    table = markdown_table(["agent", "variant", "code", "threads", "runs at once", "processes a run", "ms/step (median)",
                            "CPU ms/step per process", "timesteps/s",
                            f"vs {args.baseline} @1", "vs DT (same variant)"], rows)
    markdown = (f"Training speed, {args.baseline} against the working tree, round-robin over agents and variants ({args.rounds} rounds x "
                f"{args.steps} steps each), configs {', '.join(args.configs)} on the Hopper sample; "
                "sampling + `Trainer.train_step`; `@1x2`: two runs at once, timesteps/s added; `@1p2`: one run split "
                "over two processes (`train.processes=2`). CPU ms: the leader process's CPU time per step (all its "
                "threads; a helper's is not in it), less sensitive than wall time to other jobs.\n\n"
                f"Machine: {machine['cpu_model']}, {machine['usable_cores']} cores, torch {machine['torch']}; "
                f"date {machine['date']}.\n\nCommand: `{machine['command']}`\n\n"
                + (f"Model settings in which the two versions' configs differ, {args.baseline} -> working tree "
                   f"(the ratios time them too): {differing}.\n\n" if differing else "")
                + f"{table}\n")
    write_results(args.out, markdown, {"machine": machine, "args": vars(args), "results": records,
                                       "model_differences": differences})
    log(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
