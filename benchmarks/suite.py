#!/usr/bin/env python
"""The score suite: Decision-minGRU, Decision-minLSTM, this project's Decision Transformer and d3rlpy's (the
outside reference, ``benchmarks/peers/``) on the same data, seeds, settings and budget.

For every dataset x agent x seed this trains one agent, evaluates it at a fixed cadence during training
(same episode seeds for every agent: ``eval.seed``), and writes one JSON per run; then it aggregates every run
JSON found in the out dir into Markdown tables like the paper's:

- **score**: rows datasets, columns agents; ``last ± std / best ± std`` over seeds (D4RL-normalised; at each
  evaluation the score is the best target return's mean normalised score, as ``Trainer.evaluate`` reports it;
  ``last`` = the final evaluation, ``best`` = the best evaluation seen during training);
- **time**: wall-clock per run, training seconds (evaluations excluded), evaluation seconds, train steps/s,
  and the training-time ratio to Decision Transformer measured in the same suite;
- **equal CPU time**: for each dataset the budget is the fastest agent's mean training seconds; each agent's
  cell is the best score it had reached within that many training seconds (evaluations at or before it),
  mean ± std over seeds, with the median step reached.

Protocols (``--protocol``):

- ``cpu``: ``configs/<env>-<kind>.yaml`` (with the local dataset's id) + ``configs/profiles/cpu.yaml`` (width 64, fused tokens)
  and its files for the dataset (``configs/profiles/cpu/``),
  3000 steps on up to 200k transitions and more in proportion on a larger dataset (6000 on the medium-expert
  datasets' 400k; ``dataset_steps``; ``--steps`` sets one budget for all), where the learning curves of the
  defaults have flattened (BENCHMARKS.md, "Steady final policies"), an evaluation every 500 steps, 10 episodes per target, then the last
  and the best checkpoint on 100 fresh episodes per target, seeds 0 1 2, 1 torch thread, one run at a time
  (``--ray``: one per core); the plan and its estimated time are printed before starting.
- ``paper``: the dataset config alone (the paper's hyperparameters), 100k steps, an evaluation every 10k,
  100 episodes per target, seeds 0..4 (a GPU job).

    python -m benchmarks.suite --protocol cpu                       # the nine local datasets, in the background
    python -m benchmarks.suite --protocol cpu --resume-ok           # continue an interrupted suite
    python -m benchmarks.suite --protocol cpu --datasets local/hopper/medium-v0 --seeds 0 --agents mingru dt
    python -m benchmarks.suite --protocol cpu --aggregate-only      # only rebuild the tables from the JSONs

Writes ``<out>/runs/<dataset>__<agent>__seed<k>.json`` (config, per-evaluation scores with training seconds,
last, best, timings, the command that reproduces the run), ``<out>/suite.md`` / ``suite.json`` and a
learning-curve plot per dataset, ``<out>/curves-<dataset>.png`` (default out:
``benchmarks/results/suite-<protocol>/``). Run directories (checkpoints, logs) go to ``--run-root``.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from pathlib import Path

from rl_minrnn.threads import passive_openmp  # noqa: E402  (before torch loads OpenMP)

passive_openmp()
ROOT = Path(__file__).resolve().parents[1]

import numpy as np
import torch

from rl_minrnn.training import (
    CheckpointError, RunFolderError, RunInUseError, Trainer, TrainerCallback, TrainingStopped,
)
from benchmarks.common import machine_info, write_json
from benchmarks.peers.d3rlpy_dt import PeerUnavailable
from benchmarks.plots import plot_learning_curves
from benchmarks.suite_tables import AGENT_NAMES, aggregate, load_runs
from benchmarks.ray_suite import add_runner_arguments
from rl_minrnn.configs.schema import ConfigError
from rl_minrnn.configs.loading import CONFIG_DIR, config_for_dataset, profile_files_for
from rl_minrnn.training.options import load_config
from rl_minrnn.envs.offline import DatasetError, DatasetNotFoundError, load_dataset

# The paper's nine (each environment's medium, medium-replay and medium-expert), as ``build_suite`` makes them
# locally, in the order of the paper's table.
LOCAL_SUITE = [f"local/{env}/{kind}-v0" for kind in ("medium", "medium-replay", "medium-expert")
               for env in ("halfcheetah", "hopper", "walker2d")]
AGENTS = {
    "mingru": ["model.kind=decision_rnn", "model.cell=mingru"],
    "minlstm": ["model.kind=decision_rnn", "model.cell=minlstm"],
    "dt": ["model.kind=decision_transformer"],
    # the peer: d3rlpy's DT with our DT's settings and d3rlpy's own warm-up schedule (it has no weight average)
    "d3rlpy_dt": ["model.kind=decision_transformer", "train.lr_schedule=constant"],
    # and with d3rlpy's cosine annealing to the same final lr: the peer with the same means as our schedule
    "d3rlpy_dt_cosine": ["model.kind=decision_transformer", "train.lr_schedule=cosine"],
}
PEERS = ("d3rlpy_dt", "d3rlpy_dt_cosine")  # agents trained by another library, in its own environment (benchmarks/peers/)
PROTOCOLS = {
    # budget_transitions: ``steps`` is the budget up to this many transitions, a larger dataset gets more in
    # proportion (``dataset_steps``): the medium-expert datasets' learning curves still climbed at 3000 steps
    # and had flattened at 6000 (BENCHMARKS.md, "Steady final policies"); the smaller medium-replay buffers
    # did no better with fewer
    "cpu": {"profile": "cpu", "seeds": [0, 1, 2], "steps": 3000, "budget_transitions": 200_000,
            "eval_every": 500, "episodes": 10, "final_episodes": 100, "threads": 1, "device": "cpu"},
    "paper": {"profile": None, "seeds": [0, 1, 2, 3, 4], "steps": 100_000, "eval_every": 10_000,
              "episodes": 100, "final_episodes": 100, "threads": 0, "device": "auto"},
}


# ----------------------------------------------------------------------------------------------- configs

def protocol_plan(protocol: str, steps: int | None = None, eval_every: int | None = None, episodes: int | None = None,
                  final_episodes: int | None = None, threads: int | None = None, device: str | None = None,
                  overrides=(), **where) -> dict:
    """The run plan of a protocol (what ``run_overrides`` turns into each run's settings), each value the
    protocol's unless given; a given ``steps`` is every dataset's budget (no ``budget_transitions`` rule).
    ``where``: the plan's places (``out``, ``run_root``). The suite, sweeps and ``compose_suite`` build it here."""
    proto = PROTOCOLS[protocol]
    given = lambda value, default: default if value is None else value  # noqa: E731
    return {"protocol": protocol, "steps": given(steps, proto["steps"]),
            "budget_transitions": None if steps is not None else proto.get("budget_transitions"),
            "eval_every": given(eval_every, proto["eval_every"]), "episodes": given(episodes, proto["episodes"]),
            "final_episodes": given(final_episodes, proto["final_episodes"]), "threads": given(threads, proto["threads"]),
            "device": given(device, proto["device"]), "overrides": list(overrides), **where}


def config_files(dataset_id: str, protocol: str, overrides) -> tuple[list[Path], str | None]:
    """The dataset's config (``configs/<env>-<kind>.yaml``, ``config_for_dataset``; the run's overrides set
    ``dataset.id``), plus, for the cpu protocol, the cpu profile's files for the dataset and for the agent that
    ``overrides`` (a run's ``run_overrides``) name (``profile_files``). ``overrides`` is required: without it every
    agent would silently get the default agent's files. ``run_config`` joins the two."""
    path, note = config_for_dataset(dataset_id)
    files = [path]
    if PROTOCOLS[protocol]["profile"] is not None:
        files += profile_files_for(PROTOCOLS[protocol]["profile"], files, [f"dataset.id={dataset_id}", *overrides])
    return files, note


def run_config(dataset_id: str, agent: str, seed: int, plan: dict):
    """The config of one run: ``config_files`` for its dataset and agent, then ``run_overrides``."""
    overrides = run_overrides(dataset_id, agent, seed, plan)
    return load_config(config_files(dataset_id, plan["protocol"], overrides)[0], overrides)


def dataset_steps(plan: dict, transitions: int) -> int:
    """The training steps of a run on a dataset of ``transitions``: the plan's ``steps``, and for a dataset larger
    than its ``budget_transitions`` (None: every dataset gets ``steps``) as many more in proportion, rounded up
    to whole evaluations (the cpu protocol: 3000 up to 200k transitions, 6000 at 400k)."""
    per = plan.get("budget_transitions")
    if not per or transitions <= per:
        return plan["steps"]
    every = max(int(plan["eval_every"]), 1)
    return int(math.ceil(plan["steps"] * transitions / per / every)) * every


def dataset_plans(plan: dict, datasets: dict) -> dict:
    """``{dataset id: the plan with that dataset's steps}`` for loaded datasets (``dataset_steps``)."""
    return {d: {**plan, "steps": dataset_steps(plan, ds.num_steps)} for d, ds in datasets.items()}


def run_overrides(dataset_id: str, agent: str, seed: int, plan: dict) -> list[str]:
    return [f"dataset.id={dataset_id}", *AGENTS[agent], f"seed={seed}", f"train.steps={plan['steps']}",
            f"eval.every={plan['eval_every']}", f"eval.episodes={plan['episodes']}", "eval.at_end=true",
            f"train.threads={plan['threads']}", f"train.device={plan['device']}",
            "train.processes=1",  # one process a run: the suite's runs share the cores (--ray: one a core)
            f"train.checkpoint_every={10**9}",
            *([f"eval.final_episodes={plan['final_episodes']}"] if "final_episodes" in plan else []), *plan["overrides"]]


def run_name(dataset_id: str, agent: str, seed: int) -> str:
    return f"{dataset_id.replace('/', '_')}__{agent}__seed{seed}"


def run_command(dataset_id: str, agent: str, seed: int, plan: dict) -> str:
    """The suite command that reproduces exactly this run (and only it)."""
    args = ["python", "-m", "benchmarks.suite", "--protocol", plan["protocol"], "--datasets", dataset_id,
            "--agents", agent, "--seeds", str(seed), "--steps", str(plan["steps"]), "--eval-every",
            str(plan["eval_every"]), "--episodes", str(plan["episodes"]),
            *(["--final-episodes", str(plan["final_episodes"])] if "final_episodes" in plan else []),
            "--threads", str(plan["threads"]),
            "--device", plan["device"], "--out", str(plan["out"])]
    for o in plan["overrides"]:
        args += ["--set", o]
    return shlex.join(args)


# ---------------------------------------------------------------------------------------------- one run

def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def run_dir_of(dataset_id: str, agent: str, seed: int, plan: dict) -> Path:
    """The run folder (checkpoints, logs) of one run: ``<run_root>/<protocol>/<run name>``."""
    return Path(plan["run_root"]) / plan["protocol"] / plan.get("name", run_name(dataset_id, agent, seed))


def train_and_evaluate(dataset_id: str, agent: str, seed: int, plan: dict, dataset=None, log=print,
                       timed: "TimedEvaluations | None" = None, callbacks=(), resume: bool = False) -> dict:
    """Train one agent with evaluations every ``eval_every`` steps (and at the end) and return its run record;
    training and evaluation are timed separately. Peers (``PEERS``) run in their own environment.

    For a scheduler (``benchmarks/ray_suite.py``): ``timed`` carries the evaluations of an earlier attempt,
    ``callbacks`` are added to the trainer's, and ``resume`` continues from the run folder's ``last.pt``
    (``Trainer.resume``, exact) instead of starting afresh; peers ignore the three."""
    overrides = run_overrides(dataset_id, agent, seed, plan)
    files, note = config_files(dataset_id, plan["protocol"], overrides)
    config = load_config(files, overrides)
    if agent in PEERS:
        from benchmarks.peers import d3rlpy_dt

        if dataset is None:
            dataset = load_dataset(dataset_id, download=False)
        outcome = d3rlpy_dt.train_and_evaluate(config, dataset, log=log, data_dir=Path(plan["run_root"]) / "peer-data")
        outcome["dataset_used"] = dataset.dataset_id
        outcome["machine"] = machine_info(outcome["peer"]["spec"]["device"].split(":")[0])
    else:
        outcome = _train_and_evaluate_here(dataset_id, agent, seed, plan, config, dataset, log, timed, callbacks, resume)
    evals = outcome["evals"]
    scores = [e["score"] for e in evals]
    best_i = int(np.argmax(scores))
    steps, train_s = outcome["steps"], outcome["train_s"]
    return {
        "dataset": dataset_id, "agent": agent, "agent_name": AGENT_NAMES[agent], "seed": seed,
        "protocol": plan["protocol"], "command": run_command(dataset_id, agent, seed, plan),
        "config_files": [f"configs/{Path(f).relative_to(CONFIG_DIR)}" for f in files], "config_note": note,
        "overrides": run_overrides(dataset_id, agent, seed, plan), "config": config.to_dict(),
        "dataset_used": outcome["dataset_used"], "parameters": outcome["parameters"],
        "steps": steps, "last": scores[-1], "best": scores[best_i], "best_step": evals[best_i]["step"],
        **final_scores(outcome.get("final")),
        "wall_s": outcome["wall_s"], "setup_s": outcome["setup_s"], "train_s": train_s, "eval_s": outcome["eval_s"],
        "train_steps_per_s": steps / max(train_s, 1e-9),
        "train_timesteps_per_s": steps * config.train.batch_size * config.model.context / max(train_s, 1e-9),
        "evals": evals, "machine": outcome["machine"], **({"peer": outcome["peer"]} if "peer" in outcome else {}),
        **({"variant": plan["variant"]} if "variant" in plan else {}),  # a sweep's overrides (benchmarks/sweep.py)
    }


def final_scores(final: dict | None) -> dict:
    """The run's headline (``Trainer.final_evaluation``): ``final_last``, the last checkpoint's score over
    ``eval.final_episodes`` fresh episodes per target, and ``final_best``, the best in-run evaluation's
    checkpoint re-evaluated on the same episodes (an online selection); None where there was none."""
    if not final:
        return {"final_last": None, "final_best": None, "final_episodes": None, "final": None}
    best = final.get("best") or final["last"]
    return {"final_last": final["last"]["score"], "final_best": best["score"], "final_episodes": final["episodes"],
            "final": final}


class TimedEvaluations(TrainerCallback):
    """Collects each evaluation of ``Trainer.run`` with the training seconds before it (evaluation time,
    and the device's queued work, kept out of them). ``previous`` (``state()`` of an earlier attempt of the
    same run, cut at the step it resumes from) continues its list and its clocks."""

    def __init__(self, name: str, log, previous: dict | None = None):
        self.name, self.log = name, log
        previous = previous or {"evals": [], "train_s": 0.0, "eval_s": 0.0}
        self.evals, self.eval_s = list(previous["evals"]), float(previous["eval_s"])
        self.start = time.perf_counter() - float(previous["train_s"]) - self.eval_s

    def train_s(self) -> float:
        return time.perf_counter() - self.start - self.eval_s

    def state(self) -> dict:
        """The evaluations so far and the clocks (JSON), for a later attempt to continue from."""
        return {"evals": self.evals, "train_s": self.train_s(), "eval_s": self.eval_s}

    def on_evaluation(self, trainer, result, seconds: float) -> None:
        _sync(trainer.device)
        self.eval_s += seconds
        train_s = self.train_s()
        self.evals = [e for e in self.evals if e["step"] != trainer.step]  # a resumed run's final one, again
        validation = (trainer.last_eval or {}).get("validation")  # with dataset.holdout: the held-out action loss
        self.evals.append({"step": trainer.step, "train_s": train_s, "eval_s": seconds, "score": result.score(),
                           "targets": [t.summary() for t in result.targets], **({"validation": validation} if validation else {})})
        self.log(f"  {self.name} step {trainer.step}: score {self.evals[-1]['score']:.1f} "
                 f"(train {train_s:.0f}s, eval {seconds:.1f}s)")


def _train_and_evaluate_here(dataset_id: str, agent: str, seed: int, plan: dict, config, dataset, log,
                             timed=None, callbacks=(), resume: bool = False) -> dict:
    """This project's agents: ``Trainer.run`` (its loop, evaluations and checkpoints), timed by a callback."""
    run_dir = run_dir_of(dataset_id, agent, seed, plan)
    wall_start = time.perf_counter()
    if resume:
        trainer = Trainer.resume(run_dir, progress=False, dataset=dataset, log=log)
    else:
        trainer = Trainer(config, run_dir, progress=False, dataset=dataset, log=log)
    device = trainer.device
    setup_s = time.perf_counter() - wall_start
    timed = timed or TimedEvaluations(plan.get("name", run_name(dataset_id, agent, seed)), log)
    summary = trainer.run(callbacks=[timed, *callbacks])
    train_s = timed.train_s()
    return {"evals": timed.evals, "final": summary["final"], "steps": trainer.step, "parameters": sum(p.numel() for p in trainer.agent.parameters()),
            "setup_s": setup_s, "train_s": train_s, "eval_s": timed.eval_s, "wall_s": time.perf_counter() - wall_start,
            "dataset_used": trainer.dataset.dataset_id, "machine": machine_info(device)}


# -------------------------------------------------------------------------------------------------- main

def dataset_available(dataset_id: str) -> tuple[object | None, str | None]:
    try:
        return load_dataset(dataset_id, download=False), None
    except DatasetNotFoundError as exc:
        return None, str(exc).splitlines()[0]


def _peers_ready(pending: list, notes: list, log) -> list:
    """Create the peers' environments once, here, before trials run them side by side (``--ray``)."""
    if not any(a in PEERS for _, a, _ in pending):
        return pending
    from benchmarks.peers import d3rlpy_dt

    try:
        d3rlpy_dt.ensure_venv(log=log)
        return pending
    except PeerUnavailable as exc:
        for a in {a for _, a, _ in pending if a in PEERS}:
            notes.append(f"skipped {AGENT_NAMES[a]}: {exc}")
            log(f"SKIP {AGENT_NAMES[a]}: {exc}")
        return [t for t in pending if t[1] not in PEERS]


def _run_on_ray(pending: list, plans: dict, available: dict, args, runs_dir: Path, command: str, log) -> list[str]:
    """The pending runs as Ray Tune trials (``benchmarks/ray_suite.py``), each with its dataset's plan
    (``plans``); returns notes on runs that failed."""
    from benchmarks import ray_suite

    jobs = [ray_suite.Job(run_name(d, a, s), d, a, s, plans[d]) for d, a, s in pending]
    return ray_suite.run_jobs(jobs, available, args, runs_dir, command, ray_runs(), log)


def ray_runs():
    """This suite's one-run functions for the Ray trials (``benchmarks.ray_suite.RunFunctions``)."""
    from benchmarks.ray_suite import RunFunctions

    return RunFunctions(run_dir_of, TimedEvaluations, train_and_evaluate, PEERS)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="cpu")
    parser.add_argument("--datasets", nargs="+", default=LOCAL_SUITE)
    parser.add_argument("--agents", nargs="+", choices=sorted(AGENTS), default=["mingru", "minlstm", "dt", "d3rlpy_dt", "d3rlpy_dt_cosine"])
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: the protocol's")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the protocol's)")
    parser.add_argument("--eval-every", type=int, default=None, help="steps between evaluations (default: the protocol's)")
    parser.add_argument("--episodes", type=int, default=None, help="episodes per target return (default: the protocol's)")
    parser.add_argument("--final-episodes", type=int, default=None,
                        help="episodes per target of the final evaluation of the last and the best checkpoint "
                             "(default: the protocol's, 100; 0: none)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run (default: the protocol's)")
    parser.add_argument("--device", default=None, help="train.device (default: the protocol's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="extra config override key=value, applied to every run (e.g. model.width=32)")
    parser.add_argument("--out", default=None, help="default: benchmarks/results/suite-<protocol>")
    parser.add_argument("--aggregate-only", action="store_true", help="only rebuild the tables from the run JSONs")
    add_runner_arguments(parser, run_root="/tmp/rl_minrnn_suite")
    args = parser.parse_args(argv)

    proto = PROTOCOLS[args.protocol]
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"suite-{args.protocol}")
    plan = protocol_plan(args.protocol, steps=args.steps or None, eval_every=args.eval_every,  # --steps: every dataset's
                         episodes=args.episodes or None, final_episodes=args.final_episodes, threads=args.threads,
                         device=args.device or None, overrides=args.overrides, out=str(out), run_root=args.run_root)
    seeds = args.seeds if args.seeds is not None else proto["seeds"]
    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    runs_dir = out / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    command = shlex.join(["python", "-m", "benchmarks.suite", *(sys.argv[1:] if argv is None else argv)])
    notes = []

    if not args.aggregate_only:
        available = {}
        for d in args.datasets:
            ds, why = dataset_available(d)
            if ds is None:
                notes.append(f"skipped {d}: not available ({why})")
                log(f"SKIP {d}: not available ({why})")
            else:
                available[d] = ds
        plans = dataset_plans(plan, available)
        # seeds outermost: a long suite stopped part-way leaves whole seeds over every dataset, not some datasets
        todo = [(d, a, s) for s in seeds for d in available for a in args.agents]
        if plan["eval_every"] < 1:  # a run's score is its evaluations
            print(f"error: --eval-every must be at least 1 (the suite scores each run by its evaluations), "
                  f"got {plan['eval_every']}", file=sys.stderr)
            return 2
        targets = {}  # target returns per dataset: each evaluation runs its episodes for every one
        try:  # every run's config checked before anything runs
            for d, a, s in todo:
                config = run_config(d, a, s, plans[d])
                targets[d] = len(config.eval.target_returns)
        except ConfigError as exc:
            print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
            return 2
        pending = [t for t in todo if not (args.resume_ok and (runs_dir / f"{run_name(*t)}.json").is_file())]
        # planned total: ~25 steps/s for the cpu profile on one core, d3rlpy ~10; an episode ~0.3 s batched,
        # d3rlpy's ~1.5 s one at a time (2 s on HalfCheetah's 1000 steps); the final evaluation runs the last and
        # the best checkpoint
        def planned_s(d: str, a: str) -> float:
            steps = plans[d]["steps"]
            episodes = ((steps // max(plan["eval_every"], 1) + 1) * plan["episodes"] + 2 * plan["final_episodes"]) * targets[d]
            return steps / (10.0 if a in PEERS else 25.0) + episodes * (1.5 if a in PEERS else 0.3)
        steps_text = ", ".join(f"{n} steps ({', '.join(d for d in plans if plans[d]['steps'] == n)})"
                               for n in sorted({p["steps"] for p in plans.values()})) or f"{plan['steps']} steps"
        log(f"{args.protocol} protocol: {len(available)} dataset(s) x {len(args.agents)} agent(s) x {len(seeds)} "
            f"seed(s) = {len(todo)} runs, {len(todo) - len(pending)} already done; {steps_text}, "
            f"evaluation every {plan['eval_every']} ({plan['episodes']} episodes per target), "
            f"{plan['threads'] or 'auto'} thread(s), device {plan['device']}.")
        if args.protocol == "cpu":
            total = sum(planned_s(d, a) for d, a, _ in pending)
            log(f"Planned: about {total / 60:.0f} min in all (estimate for an idle core; every run prints its measured "
                f"time){' on one worker' if args.ray or args.ray_address else ''}")
        if args.ray or args.ray_address:
            pending = _peers_ready(pending, notes, log)
            notes += _run_on_ray(pending, plans, available, args, runs_dir, command, log)
            pending = []
        total_tick, unavailable = time.perf_counter(), set()
        for i, (d, a, s) in enumerate(pending):  # agents inner: the agents of one dataset and seed run close in time
            if a in unavailable:
                continue
            log(f"[{i + 1}/{len(pending)}] {d} {a} seed {s}  (elapsed {(time.perf_counter() - total_tick) / 60:.1f} min)")
            try:
                record = train_and_evaluate(d, a, s, plans[d], dataset=available[d], log=log)
            except PeerUnavailable as exc:
                unavailable.add(a)
                notes.append(f"skipped {AGENT_NAMES[a]}: {exc}")
                log(f"SKIP {AGENT_NAMES[a]}: {exc}")
                continue
            except TrainingStopped as exc:  # as train_agent.py: started, stopped on a fault, the message says what was kept
                print(f"error: {d} {a} seed {s}: {exc}", file=sys.stderr)
                return 3
            except (ConfigError, DatasetError, CheckpointError, RunInUseError, RunFolderError) as exc:
                print(f"error: {d} {a} seed {s}: {exc}", file=sys.stderr)
                return 2
            record["suite_command"] = command
            write_json(runs_dir / f"{run_name(d, a, s)}.json", record)
            headline = (f"last ({record['final_episodes']} episodes) {record['final_last']:.1f}, best re-evaluated "
                        f"{record['final_best']:.1f}; in-run " if record.get("final_last") is not None else "")
            log(f"  done: {headline}last {record['last']:.1f}, best {record['best']:.1f}, train {record['train_s']:.0f}s, "
                f"eval {record['eval_s']:.0f}s, wall {record['wall_s']:.0f}s")

    runs = load_runs(runs_dir, args.datasets, args.agents, seeds)
    if not runs:
        print(f"error: no runs to aggregate in {runs_dir}" + (f" ({'; '.join(notes)})" if notes else ""), file=sys.stderr)
        return 2
    table, summary = aggregate(runs, args.datasets, args.agents)
    machine = machine_info()
    larger = sorted({(r["dataset"], r.get("steps")) for r in runs if r.get("steps") != plan["steps"]})
    budget = (f" on {plan['budget_transitions']:,} transitions or fewer, more in proportion on a larger dataset ("
              + ", ".join(f"{steps} on {d}" for d, steps in larger) + ")" if plan.get("budget_transitions") and larger else "")
    header = (f"Suite, `{args.protocol}` protocol: {plan['steps']} steps{budget}, evaluation every {plan['eval_every']} "
              f"steps, {plan['episodes']} episodes per target, the last and the best checkpoint evaluated again "
              f"with {plan['final_episodes']} fresh episodes per target at the end, seeds {' '.join(map(str, seeds))}, "
              f"{plan['threads'] or 'auto'} torch thread(s).\n\n"
              f"Machine: {machine['cpu_model']}, {machine['usable_cores']} cores, torch {machine['torch']}; "
              f"date {machine['date']}.\n\nCommand: `{command}`\n")
    run_commands = sorted({r["suite_command"] for r in runs if r.get("suite_command")} - {command})
    if run_commands:  # tables rebuilt (--aggregate-only) or runs of earlier invocations: what ran them
        header += "\nThe runs' suite command(s): " + "; ".join(f"`{c}`" for c in run_commands) + "\n"
    plots = []
    for d in args.datasets:
        png = plot_learning_curves(runs, d, args.agents, AGENT_NAMES, out / f"curves-{d.replace('/', '_')}.png")
        if png is not None:
            plots.append(f"![{d}]({png.name})")
    markdown = (header + "\n" + ("\n".join(f"- {n}" for n in notes) + "\n\n" if notes else "") + table + "\n"
                + ("\n### Learning curves\n\n" + "\n\n".join(plots) + "\n" if plots else ""))
    print(markdown)
    (out / "suite.md").write_text(markdown)
    write_json(out / "suite.json", {"command": command, "plan": plan, "seeds": seeds, "notes": notes,
                                    "machine": machine, "summary": summary,
                                    "runs": [{k: r.get(k) for k in ("dataset", "agent", "seed", "final_last", "final_best", "last", "best",
                                                                "best_step", "train_s", "eval_s", "wall_s")}
                                             for r in runs]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
