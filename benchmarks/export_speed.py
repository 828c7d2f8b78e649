#!/usr/bin/env python
"""Exported-policy latency: agent milliseconds per env step at batch 1 and 50 for PyTorch eager, the
exported TorchScript file and the exported ONNX file in onnxruntime, next to the simulator's own step
(Hopper-v5 ``env.step``), all measured in one run, round-robin, one thread.

Agents (``CONFIGS``; untrained: the cost of a step does not depend on the weights' values):

- ``main-job``: the README's main job, ``configs/hopper-medium.yaml`` + the ``cpu`` profile (Decision-minGRU,
  width 64, fused tokens, 3 layers);
- ``paper``: the paper-sized Decision-minGRU, width 128, 3 layers, interleaved tokens;
- ``dt-window``: Decision Transformer of the paper's size (K = 20, interleaved), whose exported step
  re-runs its window, as d3rlpy's export does.

Variants per agent and batch size B:

- ``eager``: ``agent.act`` + ``agent.observe`` (the project's rollout protocol, ``torch.inference_mode``);
- ``torchscript``, ``onnxruntime``: ``deploy.runtime.ExportedAgent`` ``act`` + ``observe`` on the exported file
  (input checks included: what ``evaluate.py`` runs);
- ``ort-session``: ``InferenceSession.run`` alone on ready arrays, the state fed back (what the README
  example's loop pays);
- ``env``: B Hopper-v5 envs stepped one after another with random actions (resets untimed).

Timing: ``--rounds`` rounds; in each, every variant in turn takes ``--warmup`` untimed steps and then
``--steps`` individually timed ones (random inputs drawn beforehand). Figures are medians over all timed
steps. onnxruntime runs with ``intra_op_num_threads = inter_op_num_threads = 1`` and all graph
optimisations, torch with ``set_num_threads(1)``.

    python -m benchmarks.export_speed                     # all agents, batches 1 and 50
    python -m benchmarks.export_speed --configs main-job --batches 1 --rounds 3

Writes ``benchmarks/results/export_speed.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rl_minrnn.threads import passive_openmp  # noqa: E402  (before torch loads OpenMP)

passive_openmp()
os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]

import numpy as np
import torch

from rl_minrnn.agents.factory import build_agent
from benchmarks.common import write_results, fmt, machine_info, markdown_table
from rl_minrnn.configs.loading import CONFIG_DIR, profile_path
from rl_minrnn.training.options import load_config
from rl_minrnn.deploy.export import export_agent
from rl_minrnn.deploy.runtime import ExportedAgent, ExportedPolicy

ENV_ID, OBS_DIM, ACT_DIM = "Hopper-v5", 11, 3
CONFIGS = {  # name -> (config files, overrides, rollout mode)
    "main-job": ([CONFIG_DIR / "hopper-medium.yaml", profile_path("cpu")], [], "recurrent"),
    "paper": ([], ["model.cell=mingru", "model.width=128", "model.depth=3", "model.tokens=interleaved"], "recurrent"),
    "dt-window": ([], ["model.kind=decision_transformer", "model.width=128", "model.depth=3", "model.context=20",
                       "model.tokens=interleaved"], "window"),
}
GOALS = {"main-job": 1.0, "paper": 2.0}  # the targets: exported onnxruntime step <= this many Hopper-v5 steps (batch 1)
VARIANTS = ("eager", "torchscript", "onnxruntime", "ort-session", "env")


def make_agent(name: str, seed: int = 0):
    files, overrides, mode = CONFIGS[name]
    model = load_config(files, overrides).model
    torch.manual_seed(seed)
    return build_agent(model, OBS_DIM, ACT_DIM).eval(), model, mode


class Inputs:
    """Random returns-to-go, observations and actions for ``steps`` env steps of ``batch`` episodes."""

    def __init__(self, steps: int, batch: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.returns = rng.uniform(0, 3600, (steps, batch)).astype(np.float32)
        self.states = rng.normal(size=(steps, batch, OBS_DIM)).astype(np.float32)
        self.actions = rng.uniform(-1, 1, (steps, batch, ACT_DIM)).astype(np.float32)


def protocol_runner(agent, mode: str, batch: int, inputs: Inputs):
    """reset, then one ``act`` + ``observe`` per call (step ``i`` of the drawn inputs)."""
    agent.reset(batch, mode)

    def step(i: int) -> None:
        agent.act(inputs.returns[i], inputs.states[i])
        agent.observe(inputs.actions[i])

    return step


def session_runner(policy: ExportedPolicy, batch: int, inputs: Inputs):
    """``InferenceSession.run`` on ready float32/int64 arrays, the next state fed back by name."""
    session = policy._backend.session
    names = [s["name"] for s in policy.state_specs]
    outputs = ["action"] + [s["next"] for s in policy.state_specs]
    state = policy.initial_state(batch)
    timestep = np.zeros(batch, np.int64)

    def step(i: int) -> None:
        nonlocal state
        feed = {"observation": inputs.states[i], "return_to_go": inputs.returns[i],
                "prev_action": inputs.actions[i - 1] if i else np.zeros((batch, ACT_DIM), np.float32),
                "timestep": timestep + i, **state}
        _, *next_state = session.run(outputs, feed)
        state = dict(zip(names, next_state))

    return step


def env_runner(batch: int, inputs: Inputs, seed: int = 0):
    """``batch`` Hopper-v5 envs stepped one after another; finished ones reset untimed (before the next call)."""
    from rl_minrnn.envs.evaluation.environments import make_env as make_eval_env

    envs = [make_eval_env(ENV_ID) for _ in range(batch)]
    for j, env in enumerate(envs):
        env.reset(seed=seed + j)
    done = np.zeros(batch, bool)

    def reset_finished() -> None:
        for j in np.flatnonzero(done):
            envs[j].reset()
            done[j] = False

    def step(i: int) -> None:
        for j, env in enumerate(envs):
            _, _, terminated, truncated, _ = env.step(inputs.actions[i, j])
            done[j] = terminated or truncated

    return step, reset_finished, envs


def measure(name: str, batch: int, files: dict, args, log) -> dict:
    agent, model, mode = make_agent(name)
    total = args.warmup + args.steps
    inputs = Inputs(total, batch)
    onnx_policy = ExportedPolicy(files["onnx"], threads=1)
    ts_policy = ExportedPolicy(files["torchscript"])
    env_step, env_reset, envs = env_runner(batch, inputs)
    makers = {
        "eager": lambda: protocol_runner(agent, mode, batch, inputs),
        "torchscript": lambda: protocol_runner(ExportedAgent(ts_policy), mode, batch, inputs),
        "onnxruntime": lambda: protocol_runner(ExportedAgent(onnx_policy), mode, batch, inputs),
        "ort-session": lambda: session_runner(onnx_policy, batch, inputs),
        "env": lambda: env_step,
    }
    times = {v: [] for v in VARIANTS}
    with torch.inference_mode():
        for _ in range(args.rounds):
            for variant in VARIANTS:
                step = makers[variant]()
                for i in range(total):
                    if variant == "env":
                        env_reset()
                    start = time.perf_counter()
                    step(i)
                    elapsed = time.perf_counter() - start
                    if i >= args.warmup:
                        times[variant].append(1e3 * elapsed)
    for env in envs:
        env.close()
    ms = {v: statistics.median(t) for v, t in times.items()}
    log(f"{name} B={batch}: " + ", ".join(f"{v} {ms[v]:.3f} ms" for v in VARIANTS))
    return {"config": name, "batch": batch, "mode": mode, "model": {k: getattr(model, k) for k in
            ("kind", "cell", "width", "depth", "tokens", "context")},
            "ms_median": ms, "ms_p90": {v: float(np.percentile(t, 90)) for v, t in times.items()},
            "timed_steps": len(times["env"])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 50])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=50, help="untimed steps before each variant's timed ones")
    parser.add_argument("--steps", type=int, default=200, help="timed steps per variant and round")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "export_speed"))
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    log = lambda s: print(s, flush=True)  # noqa: E731
    load_before = os.getloadavg()
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs:
            agent, _, mode = make_agent(name)
            files = {"onnx": Path(tmp) / f"{name}.onnx", "torchscript": Path(tmp) / f"{name}.pt"}
            for fmt_name, path in files.items():
                export_agent(agent, path, fmt_name, mode=mode, info={"env_id": ENV_ID})
            sizes = {k: p.stat().st_size for k, p in files.items()}
            for batch in args.batches:
                records.append({**measure(name, batch, files, args, log), "file_bytes": sizes})
    load_after = os.getloadavg()

    machine = machine_info()
    machine["load_average_before"], machine["load_average_after"] = list(load_before), list(load_after)
    import onnxruntime

    machine["onnxruntime"] = onnxruntime.__version__
    rows = []
    for r in records:
        ms = r["ms_median"]
        rows.append([r["config"], r["batch"], *(fmt(ms[v], 3) for v in VARIANTS),
                     fmt(ms["onnxruntime"] / ms["env"], 2, "x"), fmt(ms["eager"] / ms["onnxruntime"], 1, "x")])
    table = markdown_table(["agent", "batch", "PyTorch eager", "TorchScript", "onnxruntime", "ort session.run",
                            f"{ENV_ID} env.step x batch", "onnxruntime / env", "eager / onnxruntime"], rows)
    verdicts = []
    for name, goal in GOALS.items():
        rec = next((r for r in records if r["config"] == name and r["batch"] == 1), None)
        if rec is not None:
            ratio = rec["ms_median"]["onnxruntime"] / rec["ms_median"]["env"]
            verdicts.append({"config": name, "goal_env_steps": goal, "ratio": ratio, "holds": ratio <= goal})
    md = [f"Agent ms per env step (median; act + observe for the whole batch), one thread, side by side with "
          f"{ENV_ID}'s own step (B envs stepped in a loop); {args.rounds} rounds x {args.steps} timed steps per "
          f"variant after {args.warmup} untimed.", "",
          f"Machine: {machine['cpu_model']}, {machine['usable_cores']} cores, torch {machine['torch']}, onnxruntime "
          f"{machine['onnxruntime']}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after; "
          f"date {machine['date']}.", "", f"Command: `{machine['command']}`", "", table, ""]
    md += [f"- {v['config']}: exported onnxruntime step at batch 1 = {v['ratio']:.2f} Hopper-v5 steps "
           f"(goal <= {v['goal_env_steps']:g}): {'holds' if v['holds'] else 'does not hold'}" for v in verdicts]
    markdown = "\n".join(md) + "\n"
    write_results(args.out, markdown, {"machine": machine, "args": vars(args), "records": records, "goals": verdicts})
    return 0


if __name__ == "__main__":
    sys.exit(main())
