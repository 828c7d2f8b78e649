"""Train and evaluate d3rlpy's DecisionTransformer from a JSON spec: runs INSIDE the peer virtual
environment (d3rlpy 2.8.1 pins gymnasium 1.0.0), so it imports nothing from this project.

    <peer venv>/bin/python benchmarks/peers/d3rlpy_worker.py SPEC.json OUT.json

SPEC (written by ``benchmarks/peers/d3rlpy_dt.py``): ``data`` (an npz of flat D4RL-style arrays:
observations, actions, rewards, terminals, timeouts), ``env_id``, ``seed``, ``threads``, ``device``, the
model and optimiser settings, and the evaluation plan (``steps``, ``eval_every``, ``episodes``,
``target_returns``, ``eval_seed``, ``max_episode_steps``, ``final_episodes``, ``final_seed``). OUT: per
evaluation, the raw return and length of every episode with per-step agent and env milliseconds, the
training / evaluation seconds, and ``final``: the last model and the best in-run evaluation's model (its
weights kept in memory when it was evaluated) each evaluated again with ``final_episodes`` episodes per
target on seeds ``final_seed + i``, as the project's ``Trainer.final_evaluation`` does.

Training is d3rlpy's own ``fit`` loop; evaluation runs in its ``callback`` at the same steps as the
suite's agents, with d3rlpy's ``StatefulTransformerWrapper`` (the way d3rlpy evaluates a DT), episode
``i`` reset with seed ``eval_seed + i`` for every target return, as ``envs.evaluation.rollout.evaluate_agent`` does.
"""

from __future__ import annotations

import copy
import json
import sys
import time


def evaluate(algo, env, spec: dict, episodes: int | None = None, seed: int | None = None) -> list[dict]:
    """Every target return: ``episodes`` episodes (the in-run evaluation's by default), one at a time,
    through the stateful wrapper, episode ``i`` reset with ``seed + i``."""
    import numpy as np

    episodes = spec["episodes"] if episodes is None else episodes
    seed = spec["eval_seed"] if seed is None else seed
    results = []
    for target in spec["target_returns"]:
        wrapper = algo.as_stateful_wrapper(target_return=float(target))
        returns, lengths, agent_ms, env_ms, tick = [], [], [], [], time.perf_counter()
        for i in range(episodes):
            wrapper.reset()
            observation, _ = env.reset(seed=seed + i)
            reward, total, steps = 0.0, 0.0, 0
            while steps < spec["max_episode_steps"]:
                t0 = time.perf_counter()
                action = wrapper.predict(np.asarray(observation, dtype=np.float32), reward)
                t1 = time.perf_counter()
                observation, r, terminated, truncated, _ = env.step(action)
                agent_ms.append(1e3 * (t1 - t0))
                env_ms.append(1e3 * (time.perf_counter() - t1))
                reward = float(r)
                total += reward
                steps += 1
                if terminated or truncated:
                    break
            returns.append(total)
            lengths.append(steps)
        results.append({"target_return": float(target), "returns": returns, "lengths": lengths,
                        "agent_ms": [round(x, 4) for x in agent_ms], "env_ms": [round(x, 4) for x in env_ms],
                        "wall_s": time.perf_counter() - tick})
    return results


def lr_scheduler(d3rlpy, spec: dict):
    """d3rlpy's own schedulers: its warm-up (the constant schedule after it), or its cosine annealing from
    ``lr`` to ``lr * lr_final`` over the run for ``lr_schedule: cosine`` (d3rlpy has no warm-up before a
    cosine: the cosine starts at the first step)."""
    if spec.get("lr_schedule", "constant") == "cosine":
        return d3rlpy.optimizers.CosineAnnealingLRFactory(T_max=int(spec["steps"]),
                                                          eta_min=float(spec["lr"]) * float(spec["lr_final"]))
    if spec.get("lr_schedule", "constant") != "constant":
        raise SystemExit(f"d3rlpy has no {spec['lr_schedule']!r} schedule; use constant or cosine")
    return d3rlpy.optimizers.WarmupSchedulerFactory(max(1, spec["warmup_steps"]))


def main(spec_path: str, out_path: str) -> int:
    spec = json.loads(open(spec_path).read())
    wall_start = time.perf_counter()
    import numpy as np
    import torch

    torch.set_num_threads(int(spec["threads"]))
    import d3rlpy
    import gymnasium as gym
    from d3rlpy.algos.utility import build_scalers_with_trajectory_slicer

    arrays = np.load(spec["data"])
    dataset = d3rlpy.dataset.MDPDataset(
        observations=arrays["observations"], actions=arrays["actions"], rewards=arrays["rewards"],
        terminals=arrays["terminals"], timeouts=arrays["timeouts"],
    )
    d3rlpy.seed(int(spec["seed"]))
    config = d3rlpy.algos.DecisionTransformerConfig(
        batch_size=spec["batch_size"],
        learning_rate=spec["lr"],
        context_size=spec["context"],
        max_timestep=spec["max_timestep"],
        num_heads=spec["heads"],
        num_layers=spec["depth"],
        attn_dropout=spec["dropout"],
        resid_dropout=spec["dropout"],
        embed_dropout=spec["dropout"],
        position_encoding_type=d3rlpy.PositionEncodingType.GLOBAL,
        encoder_factory=d3rlpy.models.VectorEncoderFactory([spec["width"]], exclude_last_activation=True),
        observation_scaler=d3rlpy.preprocessing.StandardObservationScaler(),
        reward_scaler=d3rlpy.preprocessing.MultiplyRewardScaler(1.0 / spec["return_scale"]),
        optim_factory=d3rlpy.optimizers.GPTAdamWFactory(
            weight_decay=spec["weight_decay"],
            clip_grad_norm=spec["grad_clip"] or None,
            lr_scheduler_factory=lr_scheduler(d3rlpy, spec),
        ),
    )
    algo = config.create(device=spec["device"])
    build_scalers_with_trajectory_slicer(algo, dataset)  # what fit() does first, here so it counts as set-up
    algo.build_with_dataset(dataset)
    parameters = sum(p.numel() for p in algo.impl.modules.transformer.parameters())
    env = gym.make(spec["env_id"])
    setup_s = time.perf_counter() - wall_start

    evals, clock = [], {"train_s": 0.0, "eval_s": 0.0, "tick": time.perf_counter()}
    best = {"score": None, "step": None, "weights": None}  # the best in-run evaluation's model (best target's mean return)
    steps, every = int(spec["steps"]), int(spec["eval_every"])

    def callback(algo, epoch, step):
        if (every and step % every == 0) or step == steps:
            clock["train_s"] += time.perf_counter() - clock["tick"]
            tick = time.perf_counter()
            targets = evaluate(algo, env, spec)
            seconds = time.perf_counter() - tick
            clock["eval_s"] += seconds
            evals.append({"step": step, "train_s": clock["train_s"], "eval_s": seconds, "targets": targets})
            score = max(float(np.mean(t["returns"])) for t in targets)
            if best["score"] is None or score > best["score"]:
                best.update(score=score, step=step,
                            weights=copy.deepcopy(algo.impl.modules.transformer.state_dict()))
            means = ", ".join(f"{t['target_return']:g}: {np.mean(t['returns']):.0f}" for t in targets)
            print(f"step {step}: mean return {means} (train {clock['train_s']:.0f}s, eval {seconds:.1f}s)", flush=True)
            clock["tick"] = time.perf_counter()

    algo.fit(dataset, n_steps=steps, n_steps_per_epoch=steps, show_progress=False, save_interval=steps + 1,
             logger_adapter=d3rlpy.logging.NoopAdapterFactory(), callback=callback)
    final = None
    if spec.get("final_episodes") and evals:
        tick = time.perf_counter()
        final = {"episodes": int(spec["final_episodes"]), "seed": int(spec["final_seed"]),
                 "last": {"step": steps, "targets": evaluate(algo, env, spec, spec["final_episodes"], spec["final_seed"])}}
        if best["step"] != steps:
            algo.impl.modules.transformer.load_state_dict(best["weights"])
            final["best"] = {"step": best["step"],
                             "targets": evaluate(algo, env, spec, spec["final_episodes"], spec["final_seed"])}
        final["seconds"] = time.perf_counter() - tick
        print(f"final evaluation ({spec['final_episodes']} episodes per target): {final['seconds']:.0f} s", flush=True)
    out = {"d3rlpy": d3rlpy.__version__, "final": final, "gymnasium": gym.__version__, "torch": torch.__version__,
           "parameters": parameters, "setup_s": setup_s, "train_s": clock["train_s"], "eval_s": clock["eval_s"],
           "wall_s": time.perf_counter() - wall_start, "steps": steps, "evals": evals}
    open(out_path, "w").write(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
