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
suite's agents, episode ``i`` reset with seed ``eval_seed + i`` for every target return, as
``envs.evaluation.rollout.evaluate_agent`` does. Each episode keeps its context in d3rlpy's
``StatefulTransformerWrapper`` (the way d3rlpy evaluates a DT); the episodes of a target are stepped
together and their model inputs, built by d3rlpy, go through d3rlpy's model in one forward pass
(``play_batch``), because one episode at a time costs about 2.5 ms of Python per step and made d3rlpy's
100-episode final evaluations take up to 16 minutes. ``eval_batch: 1`` plays one episode at a time through
the wrapper alone (``play_one``).

    <peer venv>/bin/python benchmarks/peers/d3rlpy_worker.py SPEC.json OUT.json --check-batched

trains as usual, then writes ``check``'s comparison instead: every batched episode replayed step by step
through a fresh wrapper (the largest action difference), and returns played both ways.
"""

from __future__ import annotations

import copy
import json
import sys
import time


def evaluate(algo, envs: "EnvPool", spec: dict, episodes: int | None = None, seed: int | None = None,
             batch: int | None = None, record: list | None = None) -> list[dict]:
    """Every target return: ``episodes`` episodes (the in-run evaluation's by default), episode ``i`` reset
    with ``seed + i``, ``batch`` of them stepped together (``spec["eval_batch"]``; 0: all of a target's
    episodes at once, as the project's agents are evaluated; 1: one at a time through d3rlpy's own
    ``StatefulTransformerWrapper.predict``, the way d3rlpy's documentation evaluates a DT). ``record``, when
    given, gets every episode's observations, rewards and actions (``check`` replays them)."""
    episodes = spec["episodes"] if episodes is None else episodes
    seed = spec["eval_seed"] if seed is None else seed
    batch = spec.get("eval_batch", 0) if batch is None else batch
    batch = episodes if batch <= 0 else min(batch, episodes)
    results = []
    for target in spec["target_returns"]:
        out = {"target_return": float(target), "returns": [], "lengths": [], "agent_ms": [], "env_ms": [], "active": []}
        tick = time.perf_counter()
        for first in range(0, episodes, batch):
            rows = range(first, min(first + batch, episodes))
            roll = play_one if len(rows) == 1 else play_batch
            roll(algo, envs, spec, float(target), [seed + i for i in rows], out, record)
        out["agent_ms"] = [round(x, 4) for x in out["agent_ms"]]
        out["env_ms"] = [round(x, 4) for x in out["env_ms"]]
        out["wall_s"] = time.perf_counter() - tick
        results.append(out)
    return results


def play_one(algo, envs: "EnvPool", spec: dict, target: float, seeds: list[int], out: dict, record) -> None:
    """One episode through d3rlpy's ``StatefulTransformerWrapper`` as its documentation runs it."""
    import numpy as np

    (episode_seed,) = seeds
    wrapper, env = algo.as_stateful_wrapper(target_return=target), envs.get(1)[0]
    observation, _ = env.reset(seed=episode_seed)
    reward, total, steps, trace = 0.0, 0.0, 0, {"observations": [], "rewards": [], "actions": []}
    while steps < spec["max_episode_steps"]:
        observation = np.asarray(observation, dtype=np.float32)
        t0 = time.perf_counter()
        action = wrapper.predict(observation, reward)
        t1 = time.perf_counter()
        if record is not None:
            trace["observations"].append(observation), trace["rewards"].append(reward), trace["actions"].append(action)
        observation, r, terminated, truncated, _ = env.step(action)
        out["agent_ms"].append(1e3 * (t1 - t0))
        out["env_ms"].append(1e3 * (time.perf_counter() - t1))
        out["active"].append(1)
        reward = float(r)
        total += reward
        steps += 1
        if terminated or truncated:
            break
    out["returns"].append(total)
    out["lengths"].append(steps)
    if record is not None:
        record.append({"target_return": target, "seed": episode_seed, **trace})


class DeferredModel:
    """Stands in for the algorithm inside d3rlpy's ``StatefulTransformerWrapper``: the wrapper keeps each
    episode's context exactly as d3rlpy does (padding, the timestep clamp, returns-to-go, the action slots)
    and hands its model input here; ``play_batch`` then runs d3rlpy's own input conversion and model on all
    of them in one forward pass and writes each action into its wrapper's slot. Everything else is looked
    up on the real algorithm."""

    def __init__(self, algo, action_size: int):
        import numpy as np

        self._algo = algo
        self.pending: list = []
        self._placeholder = np.zeros(action_size, dtype=np.float32)

    def __getattr__(self, name):
        return getattr(self._algo, name)

    def predict(self, inpt):
        self.pending.append(inpt)
        return self._placeholder


def batched_actions(algo, inputs: list):
    """``algo.predict`` for many ``TransformerInput`` at once, the episodes of one batch being at the same
    step (so of one length): each input cut to the last ``context_size`` steps or zero-padded on the left,
    with its mask, as ``TorchTransformerInput.from_numpy`` does (with d3rlpy's own padding function), the
    rows stacked, converted and scaled once (d3rlpy's scalers are elementwise), d3rlpy's model run in eval
    mode without grad, and the last position's action taken for each row as
    ``DecisionTransformerImpl.inner_predict`` takes it for its one row. ``check`` replays every batched step
    through d3rlpy's wrapper alone."""
    import numpy as np
    import torch
    from d3rlpy.dataset.utils import batch_pad_array
    from d3rlpy.torch_utility import convert_to_torch

    c, device, context = algo.config, algo.impl.device, algo.config.context_size
    (length,) = {x.length for x in inputs}

    def window(array):
        return array[-context:] if context < length else batch_pad_array(array, context - length)

    def stacked(name):
        return convert_to_torch(np.stack([window(getattr(x, name)) for x in inputs]), device)

    observations, actions, returns_to_go = stacked("observations"), stacked("actions"), stacked("returns_to_go")
    timesteps = stacked("timesteps").long()
    masks = convert_to_torch(np.repeat(window(np.ones(length, dtype=np.float32))[None], len(inputs), 0), device)
    if c.observation_scaler:
        observations = c.observation_scaler.transform(observations)
    if c.action_scaler:
        actions = c.action_scaler.transform(actions)
    if c.reward_scaler:
        returns_to_go = c.reward_scaler.transform(returns_to_go)
    algo.impl.modules.set_eval()
    with torch.no_grad():
        out = algo.impl.modules.transformer(observations, actions, returns_to_go, timesteps, 1 - masks)[:, -1]
        if c.action_scaler:
            out = c.action_scaler.reverse_transform(out)
    return out.cpu().numpy()


def play_batch(algo, envs: "EnvPool", spec: dict, target: float, seeds: list[int], out: dict, record) -> None:
    """``len(seeds)`` episodes stepped together: one d3rlpy wrapper each (its bookkeeping), one forward pass
    for all the episodes still running (``batched_actions``), the envs stepped one after another."""
    import numpy as np

    deferred = DeferredModel(algo, algo.impl.action_size)
    wrappers, pool = [], envs.get(len(seeds))
    for _ in seeds:
        wrapper = algo.as_stateful_wrapper(target_return=target)  # d3rlpy's choice of action sampler
        wrapper._algo = deferred
        wrappers.append(wrapper)
    observations = [np.asarray(env.reset(seed=s)[0], dtype=np.float32) for env, s in zip(pool, seeds)]
    rewards, totals, lengths = [0.0] * len(seeds), [0.0] * len(seeds), [0] * len(seeds)
    traces = [{"observations": [], "rewards": [], "actions": []} for _ in seeds]
    running = list(range(len(seeds)))
    while running:
        t0 = time.perf_counter()
        deferred.pending.clear()
        for i in running:
            wrappers[i].predict(observations[i], rewards[i])
        actions = [wrappers[i]._action_sampler(a) for i, a in zip(running, batched_actions(algo, deferred.pending))]
        for i, action in zip(running, actions):
            wrappers[i]._actions[-2] = action  # the slot predict() filled with the placeholder
            if record is not None:
                traces[i]["observations"].append(observations[i]), traces[i]["rewards"].append(rewards[i])
                traces[i]["actions"].append(action)
        t1 = time.perf_counter()
        still = []
        for i, action in zip(running, actions):
            observation, r, terminated, truncated, _ = pool[i].step(action)
            observations[i], rewards[i] = np.asarray(observation, dtype=np.float32), float(r)
            totals[i] += rewards[i]
            lengths[i] += 1
            if not (terminated or truncated or lengths[i] >= spec["max_episode_steps"]):
                still.append(i)
        out["agent_ms"].append(1e3 * (t1 - t0))
        out["env_ms"].append(1e3 * (time.perf_counter() - t1))
        out["active"].append(len(running))
        running = still
    out["returns"].extend(totals)
    out["lengths"].extend(lengths)
    if record is not None:
        record.extend({"target_return": target, "seed": s, **t} for s, t in zip(seeds, traces))


class EnvPool:
    """The evaluation's environments, made once and reused (``gym.make`` of a MuJoCo env is not free)."""

    def __init__(self, env_id: str):
        self.env_id, self.envs = env_id, []

    def get(self, n: int) -> list:
        import gymnasium as gym

        while len(self.envs) < n:
            self.envs.append(gym.make(self.env_id))
        return self.envs[:n]


def check(algo, envs: EnvPool, spec: dict) -> dict:
    """The batched evaluation against d3rlpy's own wrapper: every episode the batch played is replayed, its
    observations and rewards fed one step at a time to a fresh ``StatefulTransformerWrapper``, and the
    actions compared; then the first episodes are played one at a time (closed loop) to compare returns."""
    import numpy as np

    record: list = []
    tick = time.perf_counter()
    batched = evaluate(algo, envs, spec, batch=0, record=record)
    batched_s = time.perf_counter() - tick
    worst = 0.0
    for episode in record:
        wrapper = algo.as_stateful_wrapper(target_return=episode["target_return"])
        for observation, reward, action in zip(episode["observations"], episode["rewards"], episode["actions"]):
            worst = max(worst, float(np.max(np.abs(wrapper.predict(observation, reward) - action))))
    tick = time.perf_counter()
    single = evaluate(algo, envs, spec, batch=1)
    single_s = time.perf_counter() - tick
    return {"max_abs_action_difference": worst, "steps_replayed": sum(len(e["actions"]) for e in record),
            "batched_returns": [t["returns"] for t in batched], "one_at_a_time_returns": [t["returns"] for t in single],
            "batched_s": batched_s, "one_at_a_time_s": single_s}


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


def main(spec_path: str, out_path: str, check_batched: bool = False) -> int:
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
    envs = EnvPool(spec["env_id"])
    setup_s = time.perf_counter() - wall_start

    evals, clock = [], {"train_s": 0.0, "eval_s": 0.0, "tick": time.perf_counter()}
    best = {"score": None, "step": None, "weights": None}  # the best in-run evaluation's model (best target's mean return)
    steps, every = int(spec["steps"]), int(spec["eval_every"])

    def callback(algo, epoch, step):
        if (every and step % every == 0) or step == steps:
            clock["train_s"] += time.perf_counter() - clock["tick"]
            tick = time.perf_counter()
            targets = evaluate(algo, envs, spec)
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
    if check_batched:
        open(out_path, "w").write(json.dumps(check(algo, envs, spec)))
        return 0
    final = None
    if spec.get("final_episodes") and evals:
        tick = time.perf_counter()
        final = {"episodes": int(spec["final_episodes"]), "seed": int(spec["final_seed"]),
                 "last": {"step": steps, "targets": evaluate(algo, envs, spec, spec["final_episodes"], spec["final_seed"])}}
        if best["step"] != steps:
            algo.impl.modules.transformer.load_state_dict(best["weights"])
            final["best"] = {"step": best["step"],
                             "targets": evaluate(algo, envs, spec, spec["final_episodes"], spec["final_seed"])}
        final["seconds"] = time.perf_counter() - tick
        print(f"final evaluation ({spec['final_episodes']} episodes per target): {final['seconds']:.0f} s", flush=True)
    out = {"d3rlpy": d3rlpy.__version__, "final": final, "gymnasium": gym.__version__, "torch": torch.__version__,
           "parameters": parameters, "setup_s": setup_s, "train_s": clock["train_s"], "eval_s": clock["eval_s"],
           "wall_s": time.perf_counter() - wall_start, "steps": steps, "evals": evals}
    open(out_path, "w").write(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], check_batched="--check-batched" in sys.argv[3:]))
