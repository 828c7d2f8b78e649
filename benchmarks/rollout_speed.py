#!/usr/bin/env python
"""Rollout speed: agent milliseconds per env step through the real rollout protocol (``reset`` / ``act`` /
``observe``), and evaluation env steps per second against raw MuJoCo stepping (the floor). 1 torch thread.

Part 1, agent ms per env step (random inputs, no env): for the Decision-RNN in ``recurrent`` mode (carried
state, O(1) per step) and in ``window`` mode (re-run the last K steps), and Decision Transformer (window),
at episode steps 10, 100, 1000, contexts K = 20, 100, 500, batches of 1, 10, 50 episodes. At each episode
step N the figure is the median of ``--repeats`` consecutive ``act`` + ``observe`` calls starting at step N,
the variants of one (K, batch, N) timed round-robin.

Reaching step N: the recurrent mode runs the N - 1 earlier steps for real (cheap). A window-mode agent's
state after N - 1 steps is only its window (the last min(N - 1, K) steps and the step counter), so it is
fast-forwarded by filling that window with random steps (``--no-fast-forward`` runs every step for real;
``tests/test_benchmarks_smoke.py`` checks that a fast-forwarded agent acts exactly as one stepped for real).

Part 2, evaluation throughput: ``envs.evaluation.rollout.evaluate_agent`` (untrained agents, so episodes end early
and vary; the figure is env steps per wall second) with the recurrent agent and with DT (K = 20), against
stepping the same number of Hopper-v5 envs with random actions in a Python loop, resetting finished ones
(the floor: what an agent that cost nothing would get). Seconds are the rollout loop's (``wall_s``: resets and
steps), not making the envs; one untimed warm-up evaluation per agent first.

    python -m benchmarks.rollout_speed                     # full grid, both parts
    python -m benchmarks.rollout_speed --contexts 20 --batches 1 10 --steps 10 100

Writes ``benchmarks/results/rollout_speed.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from rl_minrnn.threads import passive_openmp  # noqa: E402  (before torch loads OpenMP)

passive_openmp()
ROOT = Path(__file__).resolve().parents[1]

import numpy as np
import torch

from rl_minrnn.agents.factory import build_agent
from rl_minrnn.agents.embeddings import TOKEN_LAYOUTS
from rl_minrnn.configs.schema import ModelConfig
from benchmarks.common import write_results, fmt, machine_info, markdown_table

OBS_DIM, ACT_DIM = 11, 3
VARIANTS = {  # name -> (model kind, rollout mode)
    "rnn-recurrent": ("decision_rnn", "recurrent"),
    "rnn-window": ("decision_rnn", "window"),
    "dt-window": ("decision_transformer", "window"),
}


def make_agent(kind: str, context: int, width: int, depth: int, tokens: str, cell: str = "mingru", seed: int = 0):
    torch.manual_seed(seed)
    cfg = ModelConfig(kind=kind, cell=cell, width=width, depth=depth, context=context, tokens=tokens)
    agent = build_agent(cfg, OBS_DIM, ACT_DIM)
    return agent.eval()


class RandomInputs:
    """Deterministic per-step inputs: returns-to-go (B,), states (B, obs), actions (B, act) for step t."""

    def __init__(self, batch: int, seed: int = 0):
        self.batch, self.seed = batch, seed

    def __call__(self, t: int):
        rng = np.random.default_rng((self.seed, t))
        return (rng.uniform(0, 3600, self.batch).astype(np.float32),
                rng.normal(size=(self.batch, OBS_DIM)).astype(np.float32),
                rng.uniform(-1, 1, (self.batch, ACT_DIM)).astype(np.float32))


def step(agent, inputs: RandomInputs, t: int) -> np.ndarray:
    rtg, states, actions = inputs(t)
    out = agent.act(rtg, states)
    agent.observe(actions)
    return out


def can_fast_forward(agent) -> bool:
    return "window" in getattr(agent, "rollout_modes", ())


@torch.inference_mode()
def fast_forward_window(agent, inputs: RandomInputs, steps: int) -> None:
    """Put a freshly ``reset`` window-mode agent in the state ``steps`` real act/observe calls with ``inputs``
    would leave, without running the model: the window state (``agents.base.WindowState``) holds the last
    min(steps, K) steps, normalised as ``step`` does, and the protocol's record (``agent.rollout``) that
    state, the last action and the step counter."""
    if steps == 0:
        return
    first = max(0, steps - agent.context)
    n = steps - first
    rtg, states, actions = (torch.as_tensor(np.stack(x, axis=1)) for x in zip(*(inputs(t) for t in range(first, steps))))
    states, rtg = agent.normalise(states, rtg)
    window = agent.initial_state(inputs.batch, "window")
    pad = lambda x, like: torch.cat([x.to(like.dtype), like[:, n:]], dim=1)  # noqa: E731  (slots past n stay 0)
    times = torch.arange(first, steps).expand(inputs.batch, n)
    window = window._replace(states=pad(states, window.states), returns=pad(rtg, window.returns),
                             actions=pad(actions, window.actions), timesteps=pad(times, window.timesteps),
                             length=torch.full_like(window.length, n))
    agent.rollout = agent.rollout._replace(state=window, prev_action=actions[:, -1].to(window.actions.dtype),
                                           t=torch.full_like(agent.rollout.t, steps))


def advance(agent, mode: str, inputs: RandomInputs, steps: int, fast_forward: bool) -> str:
    """Bring a reset agent to just before episode step ``steps + 1``; returns how."""
    if mode == "window" and fast_forward and can_fast_forward(agent):
        fast_forward_window(agent, inputs, steps)
        return "fast-forward"
    for t in range(steps):
        step(agent, inputs, t)
    return "real steps"


def agent_step_times(args, log) -> list[dict]:
    records = []
    for k in args.contexts:
        agents = {name: make_agent(kind, k, args.width, args.depth, args.tokens) for name, (kind, _) in VARIANTS.items()
                  if name in args.variants}
        for batch in args.batches:
            inputs = RandomInputs(batch)
            for n in args.steps:
                how = {}
                for name, agent in agents.items():
                    mode = VARIANTS[name][1]
                    agent.reset(batch, mode=mode)
                    how[name] = advance(agent, mode, inputs, n - 1, not args.no_fast_forward)
                times = {name: [] for name in agents}
                for r in range(args.repeats):  # round-robin: steps n, n+1, ... of every variant in turn
                    for name, agent in agents.items():
                        start = time.perf_counter()
                        step(agent, inputs, n - 1 + r)
                        times[name].append(1e3 * (time.perf_counter() - start))
                for name in agents:
                    rec = {"variant": name, "context": k, "batch": batch, "episode_step": n, "reached_by": how[name],
                           "ms_median": statistics.median(times[name]), "ms_min": min(times[name]), "ms": times[name],
                           "tokens": args.tokens, "width": args.width, "depth": args.depth}
                    records.append(rec)
                log(f"K={k} B={batch} step {n}: " + ", ".join(
                    f"{name} {statistics.median(times[name]):.2f} ms" for name in agents))
    return records


def raw_env_floor(env_id: str, num_envs: int, total_steps: int, seed: int = 0) -> dict:
    """Step ``num_envs`` envs with random actions in a Python loop until ``total_steps`` env steps, resetting
    finished ones: env steps per second with a free agent."""
    from rl_minrnn.envs.evaluation.environments import make_env

    envs = [make_env(env_id) for _ in range(num_envs)]
    rng = np.random.default_rng(seed)
    try:
        done_steps, start = 0, time.perf_counter()  # resets timed, as in the evaluation loop
        for i, env in enumerate(envs):
            env.reset(seed=seed + i)
        while done_steps < total_steps:
            for env in envs:
                action = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
                _, _, terminated, truncated, _ = env.step(action)
                done_steps += 1
                if terminated or truncated:
                    env.reset()
        seconds = time.perf_counter() - start
    finally:
        for env in envs:
            env.close()
    return {"env_steps": done_steps, "seconds": seconds, "env_steps_per_s": done_steps / seconds}


def evaluation_throughput(args, log) -> list[dict]:
    from rl_minrnn.envs.evaluation.rollout import evaluate_agent

    records = []
    agents = {"rnn-recurrent": (make_agent("decision_rnn", 20, args.width, args.depth, args.tokens), "recurrent"),
              "dt-window": (make_agent("decision_transformer", 20, args.width, args.depth, args.tokens), "window")}
    for num in args.eval_envs:
        per = {name: [] for name in [*agents, "floor"]}
        for agent, mode in agents.values():  # warm-up (first-call costs)
            evaluate_agent(agent, args.env, num, [3600.0], seed=999_999, mode=mode, ref_scores=None, progress=False,
                           num_threads=1, max_episode_steps=min(50, args.eval_max_steps))
        for r in range(args.eval_repeats):  # interleaved: each agent, then the floor, per repeat
            steps_seen = []
            for name, (agent, mode) in agents.items():
                result = evaluate_agent(agent, args.env, num, [3600.0], seed=1000 * r, mode=mode, ref_scores=None,
                                        progress=False, num_threads=1, max_episode_steps=args.eval_max_steps)
                s = result.targets[0].summary()
                seconds = s["wall_s"]  # the rollout loop (resets included), not making the envs
                per[name].append({"env_steps": s["episode_steps"], "seconds": seconds,
                                  "env_steps_per_s": s["episode_steps"] / seconds,
                                  "agent_ms_p50": s["agent_ms_p50"], "env_ms_p50": s["env_ms_p50"],
                                  "batched_steps": s["batched_steps"]})
                steps_seen.append(s["episode_steps"])
            per["floor"].append(raw_env_floor(args.env, num, int(max(steps_seen)), seed=1000 * r))
        for name, runs in per.items():
            rec = {"variant": name, "num_envs": num, "runs": runs,
                   "env_steps_per_s_median": statistics.median(x["env_steps_per_s"] for x in runs),
                   "env_steps_median": statistics.median(x["env_steps"] for x in runs)}
            if name != "floor":
                rec["agent_ms_p50_median"] = statistics.median(x["agent_ms_p50"] for x in runs)
            records.append(rec)
        floor = statistics.median(x["env_steps_per_s"] for x in per["floor"])
        log(f"eval {num} env(s): " + ", ".join(
            f"{name} {statistics.median(x['env_steps_per_s'] for x in runs):,.0f} steps/s" for name, runs in per.items())
            + f" (floor {floor:,.0f})")
    return records


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--contexts", type=int, nargs="+", default=[20, 100, 500])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 100, 1000], help="episode steps N")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls (steps N, N+1, ...) per point")
    parser.add_argument("--tokens", choices=TOKEN_LAYOUTS, default=ModelConfig.tokens)
    parser.add_argument("--width", type=int, default=ModelConfig.width, help="default: the config's")
    parser.add_argument("--depth", type=int, default=ModelConfig.depth, help="default: the config's")
    parser.add_argument("--no-fast-forward", action="store_true", help="reach step N by real act/observe calls")
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--eval-envs", type=int, nargs="+", default=[1, 10, 50], help="episodes run together (part 2)")
    parser.add_argument("--eval-repeats", type=int, default=3)
    parser.add_argument("--eval-max-steps", type=int, default=1000)
    parser.add_argument("--skip-eval", action="store_true", help="part 1 only")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "rollout_speed"))
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    log = lambda s: print(s, flush=True)  # noqa: E731
    step_records = agent_step_times(args, log)
    eval_records = [] if args.skip_eval else evaluation_throughput(args, log)

    machine = machine_info()
    # table 1: rows (variant, K, batch), columns episode steps
    rows = []
    for name in args.variants:
        for k in args.contexts:
            for b in args.batches:
                cells = []
                for n in args.steps:
                    rec = next(r for r in step_records if (r["variant"], r["context"], r["batch"], r["episode_step"]) == (name, k, b, n))
                    cells.append(fmt(rec["ms_median"], 2))
                rows.append([name, k, b, *cells])
    table1 = markdown_table(["variant", "K", "batch", *[f"ms at step {n}" for n in args.steps]], rows)
    md = [f"Agent ms per env step (act + observe for the whole batch), {args.tokens} tokens, width {args.width}, "
          f"depth {args.depth}, {args.threads} thread(s); median of {args.repeats} consecutive calls from step N, "
          "variants interleaved. Window modes reach step N by fast-forward (see the script's docstring)"
          + (" -- disabled here (real steps)." if args.no_fast_forward else "."),
          "", f"Machine: {machine['cpu_model']}, {machine['usable_cores']} cores, torch {machine['torch']}; "
          f"date {machine['date']}.", "", f"Command: `{machine['command']}`", "", table1]
    if eval_records:
        rows = []
        for num in args.eval_envs:
            floor = next(r for r in eval_records if r["variant"] == "floor" and r["num_envs"] == num)
            for r in eval_records:
                if r["num_envs"] != num:
                    continue
                rows.append([num, r["variant"], fmt(r["env_steps_median"], 0), fmt(r["env_steps_per_s_median"], 0),
                             fmt(r["env_steps_per_s_median"] / floor["env_steps_per_s_median"] * 100, 0, "%"),
                             fmt(r.get("agent_ms_p50_median"), 2)])
        md += ["", f"Evaluation throughput on {args.env} (`evaluate_agent`, untrained agents, K = 20, 1 target; "
               f"median of {args.eval_repeats}) vs the floor: the same number of envs stepped with random actions.", "",
               markdown_table(["envs", "variant", "env steps", "env steps/s", "of floor", "agent ms/step p50"], rows)]
    markdown = "\n".join(md) + "\n"
    write_results(args.out, markdown, {"machine": machine, "args": vars(args), "agent_steps": step_records,
                                       "evaluation": eval_records})
    return 0


if __name__ == "__main__":
    sys.exit(main())
