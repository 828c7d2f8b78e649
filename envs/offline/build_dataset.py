"""Build a D4RL-style dataset by running a behaviour policy, and write it in Minari format.

    python -m rl_minrnn.envs.offline.build_dataset --policy POLICY.npz --env ENV_ID --steps N --id DATASET_ID \
        [--seed S] [--num-envs E] [--deterministic]

The way D4RL made its locomotion datasets: run a (partially) trained policy for N steps in episodes of
at most 1000 steps, sampling from the stochastic policy (``--deterministic`` uses its mean action).
E environments run side by side; the policy runs in numpy, one matmul per layer for all of them.

Reproducible: env slot j runs its share of the N steps and takes the reset seed and policy noise of its
k-th episode from ``numpy.random.SeedSequence([seed, j, k])``, so the same ``--seed``, ``--num-envs`` (and
``--workers``, which splits the slots over processes) give identical arrays. Each episode's reset seed is recorded (Minari's episode ``seed``), and the stored actions are
exactly the ones applied (cast to the action space's float32 before stepping), so replaying an episode's
actions in a fresh env reset with its seed reproduces its observations bit for bit. The N-th step ends
the build: episodes still running then are kept, marked truncated on their last step.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from rl_minrnn.envs.offline.commands import run_command
from rl_minrnn.envs.offline import DatasetError, DatasetExistsError, Episode, datasets_root, write_dataset
from rl_minrnn.envs.offline.writing import written_summary
from rl_minrnn.envs.offline.policies import MLPPolicy, PolicyError

DEFAULT_MAX_EPISODE_STEPS = 1000


def episode_seeds(seed: int, slot: int, k: int) -> tuple[int, np.random.Generator]:
    """(reset seed, noise generator) of the k-th episode run by env slot ``slot`` in a build seeded ``seed``."""
    ss = np.random.SeedSequence([int(seed), int(slot), int(k)])
    reset_seed = int(ss.generate_state(1, np.uint32)[0] & 0x7FFFFFFF)
    return reset_seed, np.random.default_rng(ss.spawn(1)[0])


def slot_budgets(steps: int, num_envs: int) -> list[int]:
    """Steps run by each env slot: the total split as evenly as possible (first slots take the remainder)."""
    return [steps // num_envs + (j < steps % num_envs) for j in range(num_envs)]


def _to_action_space(actions: np.ndarray, space) -> np.ndarray:
    """Policy actions in [-1, 1] -> the env's action bounds and dtype (identity for the MuJoCo tasks)."""
    low, high = np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
    if not (np.all(low == -1.0) and np.all(high == 1.0)):
        actions = low + (actions.astype(np.float64) + 1.0) * 0.5 * (high - low)
    return np.asarray(actions, dtype=space.dtype)


def _run_slots(
    policy: MLPPolicy,
    env_id: str,
    slots: list[int],
    budgets: list[int],
    seed: int,
    deterministic: bool,
    max_episode_steps: int,
    env_kwargs: dict | None,
    report=None,
) -> list[tuple[int, int, Episode]]:
    """Run env slots in lockstep (one policy batch for all of them); returns (start step, slot, episode).

    Slot j runs exactly ``budgets[i]`` steps; its k-th episode is seeded by ``episode_seeds(seed, j, k)``.
    The episode still running when a slot's budget ends is kept, marked truncated on its last step.
    ``report(n)`` is called with the number of steps done since the last call.
    """
    import gymnasium as gym

    E = len(slots)
    envs = [
        gym.make(env_id, max_episode_steps=max_episode_steps, disable_env_checker=True, **(env_kwargs or {}))
        for _ in range(E)
    ]
    try:
        obs_space, act_space = envs[0].observation_space, envs[0].action_space
        obs_dim, act_dim = int(np.prod(obs_space.shape)), int(np.prod(act_space.shape))
        if policy.obs_dim != obs_dim or policy.act_dim != act_dim:
            raise PolicyError(
                f"Policy {policy.name!r} takes {policy.obs_dim} observations and gives {policy.act_dim} actions, "
                f"but {env_id} has {obs_dim} and {act_dim}: is it the policy of another environment?"
            )
        T = int(max_episode_steps)
        obs_buf = np.zeros((E, T + 1, obs_dim), np.float64)
        act_buf = np.zeros((E, T, act_dim), np.float32)
        rew_buf = np.zeros((E, T), np.float64)
        term_buf = np.zeros((E, T), bool)
        trunc_buf = np.zeros((E, T), bool)
        noise_buf = np.zeros((E, T, act_dim), np.float32)
        t_env = np.zeros(E, np.int64)  # step within the current episode
        done = np.zeros(E, np.int64)  # steps done by the slot
        ep_count = np.zeros(E, np.int64)
        ep_start = np.zeros(E, np.int64)
        ep_seed = np.zeros(E, np.int64)
        budgets = np.asarray(budgets, np.int64)
        stochastic = policy.stochastic and not deterministic
        finished: list[tuple[int, int, Episode]] = []

        def start(i: int) -> None:
            reset_seed, rng = episode_seeds(seed, slots[i], ep_count[i])
            ep_count[i] += 1
            ep_seed[i], ep_start[i], t_env[i] = reset_seed, done[i], 0
            obs_buf[i, 0] = envs[i].reset(seed=reset_seed)[0]
            if stochastic:
                noise_buf[i] = rng.standard_normal((T, act_dim), dtype=np.float32)

        def finish(i: int, cut: bool = False) -> None:
            t = int(t_env[i])
            if t == 0:
                return
            trunc = trunc_buf[i, :t].copy()
            if cut and not term_buf[i, t - 1]:
                trunc[t - 1] = True
            episode = Episode(
                observations=obs_buf[i, : t + 1].astype(np.float32),
                actions=act_buf[i, :t].copy(),
                rewards=rew_buf[i, :t].astype(np.float32),
                terminations=term_buf[i, :t].copy(),
                truncations=trunc,
                seed=int(ep_seed[i]),
            )
            finished.append((int(ep_start[i]), int(slots[i]), episode))
            t_env[i] = 0

        for i in range(E):
            start(i)
        rows = np.arange(E)
        pending = 0
        while True:
            active = np.flatnonzero(done < budgets)
            if len(active) == 0:
                break
            # the policy always runs on all E rows, so a row's numbers never depend on which slots are active
            obs = obs_buf[rows, t_env]
            noise = noise_buf[rows, t_env] if stochastic else None
            actions = _to_action_space(policy.act(obs, noise), act_space)
            for i in active:
                t = t_env[i]
                a = actions[i]
                o, r, terminated, truncated, _ = envs[i].step(a)
                act_buf[i, t] = a
                obs_buf[i, t + 1] = o
                rew_buf[i, t] = r
                term_buf[i, t] = terminated
                trunc_buf[i, t] = truncated or (t + 1 >= T and not terminated)
                t_env[i] = t + 1
                done[i] += 1
                if terminated or truncated or t + 1 >= T:
                    finish(i)
                    if done[i] < budgets[i]:
                        start(i)
            pending += len(active)
            if report is not None and pending >= 2000:
                report(pending)
                pending = 0
        for i in range(E):
            finish(i, cut=True)
        if report is not None and pending:
            report(pending)
    finally:
        for env in envs:
            env.close()
    return finished


def _worker(args):
    policy, env_id, slots, budgets, seed, deterministic, max_episode_steps, env_kwargs, queue = args
    report = (lambda n: queue.put(n)) if queue is not None else None
    return _run_slots(policy, env_id, slots, budgets, seed, deterministic, max_episode_steps, env_kwargs, report)


def collect(
    policy: MLPPolicy,
    env_id: str,
    steps: int,
    seed: int = 0,
    num_envs: int = 16,
    deterministic: bool = False,
    max_episode_steps: int = DEFAULT_MAX_EPISODE_STEPS,
    progress: bool = True,
    env_kwargs: dict | None = None,
    workers: int = 1,
) -> list[Episode]:
    """Run ``policy`` for exactly ``steps`` env steps over ``num_envs`` env slots; episodes in start order.

    Env slot j runs ``slot_budgets(steps, num_envs)[j]`` steps and seeds its k-th episode from
    ``(seed, j, k)``, so the episodes are fixed by ``(seed, num_envs, steps)``. ``workers`` > 1 splits the
    slots over processes (both cores); the policy then runs on smaller batches, and BLAS may round a row
    differently for another batch size, so exact equality is guaranteed for the same
    ``(seed, num_envs, workers)``.
    """
    from rl_minrnn.progress import progress_bar

    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}")
    num_envs = max(1, min(int(num_envs), int(steps)))
    workers = max(1, min(int(workers), num_envs))
    budgets = slot_budgets(int(steps), num_envs)
    groups = [list(range(w, num_envs, workers)) for w in range(workers)]
    bar = progress_bar(steps, unit="step", enabled=progress, desc=f"{policy.name} on {env_id}",
                       unit_scale=True, mininterval=0.5, smoothing=0.05)
    try:
        if workers == 1:
            results = _run_slots(policy, env_id, groups[0], budgets, seed, deterministic, max_episode_steps,
                                 env_kwargs, bar.update)
        else:
            import multiprocessing as mp
            import queue as queue_mod
            from concurrent.futures import ProcessPoolExecutor

            ctx = mp.get_context("spawn")
            with ctx.Manager() as manager, ProcessPoolExecutor(workers, mp_context=ctx) as pool:
                q = manager.Queue()
                futures = [
                    pool.submit(_worker, (policy, env_id, g, [budgets[j] for j in g], seed, deterministic,
                                          max_episode_steps, env_kwargs, q))
                    for g in groups
                ]
                while not all(f.done() for f in futures):
                    try:
                        bar.update(q.get(timeout=0.2))
                    except queue_mod.Empty:
                        pass
                while True:
                    try:
                        bar.update(q.get_nowait())
                    except queue_mod.Empty:
                        break
                results = [r for f in futures for r in f.result()]
    finally:
        bar.close()
    results.sort(key=lambda r: (r[0], r[1]))
    return [episode for _, _, episode in results]


def build_dataset(
    policy_path: str | os.PathLike,
    env_id: str,
    steps: int,
    dataset_id: str,
    seed: int = 0,
    num_envs: int = 16,
    deterministic: bool = False,
    root: str | os.PathLike | None = None,
    overwrite: bool = False,
    activation: str | None = None,
    squash: str | None = None,
    max_episode_steps: int = DEFAULT_MAX_EPISODE_STEPS,
    progress: bool = True,
    verbose: bool = True,
    workers: int = 1,
) -> Path:
    """Collect with the policy at ``policy_path`` and write the Minari dataset; returns its folder."""
    root = Path(root) if root is not None else datasets_root()
    if (root / dataset_id).exists() and not overwrite:
        raise DatasetExistsError(
            f"Dataset {dataset_id!r} already exists at {root / dataset_id}. Delete it, pick another id, or pass --overwrite."
        )
    import gymnasium as gym

    try:  # before the policy is loaded or any worker started: a typo in the env id is one line
        gym.spec(env_id)
    except gym.error.Error as exc:
        raise DatasetError(f"Unknown environment {env_id!r} ({exc}); give a gymnasium id such as Hopper-v5") from None
    policy = MLPPolicy.load(policy_path, activation=activation, squash=squash)
    t0 = time.perf_counter()
    episodes = collect(policy, env_id, steps, seed, num_envs, deterministic, max_episode_steps, progress,
                       workers=workers)
    elapsed = time.perf_counter() - t0
    command = "python -m rl_minrnn.envs.offline.build_dataset " + " ".join(
        shlex.quote(a)
        for a in [
            "--policy", Path(policy_path).name, "--env", env_id, "--steps", str(steps), "--id", dataset_id,
            "--seed", str(seed), "--num-envs", str(num_envs),
        ] + (["--deterministic"] if deterministic else []) + (["--workers", str(workers)] if workers > 1 else [])
    )
    mode = "deterministic" if deterministic or not policy.stochastic else "stochastic"
    path = write_dataset(
        dataset_id,
        episodes,
        env_id,
        description=(
            f"D4RL-style dataset: {steps} steps of the {mode} behaviour policy {Path(policy_path).name} on "
            f"{env_id}, episodes of at most {max_episode_steps} steps, seed {seed}, {num_envs} envs."
        ),
        algorithm_name=f"behaviour-policy:{Path(policy_path).stem}:{mode}",
        extra_metadata={
            "build_command": command,
            "behaviour_policy": Path(policy_path).name,
            "behaviour_mode": mode,
            "build_seed": int(seed),
            "build_num_envs": int(num_envs),
            "build_workers": int(workers),
            "max_episode_steps": int(max_episode_steps),
        },
        root=root,
        overwrite=overwrite,
    )
    if verbose:
        print(written_summary(dataset_id, episodes, path, elapsed))
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m rl_minrnn.envs.offline.build_dataset",
        description="Run a behaviour policy (npz MLP) and record a Minari dataset, the way D4RL built its datasets.",
    )
    p.add_argument("--policy", required=True, help="policy npz (format: shared/policies/README.md)")
    p.add_argument("--env", required=True, help="gymnasium id, e.g. Hopper-v5")
    p.add_argument("--steps", type=int, required=True, help="total env steps to record (D4RL: 1000000)")
    p.add_argument("--id", required=True, dest="dataset_id", help="dataset id, e.g. local/hopper/medium-v0")
    p.add_argument("--seed", type=int, default=0, help="build seed (episode reset seeds and policy noise derive from it)")
    p.add_argument("--num-envs", type=int, default=16, help="environments run side by side (results depend on it)")
    p.add_argument("--deterministic", action="store_true", help="use the policy's mean action instead of sampling")
    p.add_argument("--workers", type=int, default=1,
                   help="processes to split the envs over (2 uses both cores; same seed, envs and workers: same data)")
    p.add_argument("--max-episode-steps", type=int, default=DEFAULT_MAX_EPISODE_STEPS)
    p.add_argument("--root", default=None, help="store folder (default: $MINARI_DATASETS_PATH or ~/.minari/datasets)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset with this id")
    p.add_argument("--activation", choices=("relu", "tanh"), default=None, help="when neither npz nor policies.json says")
    p.add_argument("--squash", choices=("tanh", "clip"), default=None, help="when neither npz nor policies.json says")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if min(args.steps, args.num_envs, args.max_episode_steps, args.workers) <= 0:
        p.error("--steps, --num-envs, --workers and --max-episode-steps must be positive")
    if args.seed < 0:  # numpy's SeedSequence, which derives every episode's seeds from it, takes none below 0
        p.error(f"--seed must be >= 0, got {args.seed}")
    return run_command(lambda: build_dataset(
        args.policy, args.env, args.steps, args.dataset_id, seed=args.seed, num_envs=args.num_envs,
        deterministic=args.deterministic, root=args.root, overwrite=args.overwrite,
        activation=args.activation, squash=args.squash, max_episode_steps=args.max_episode_steps,
        progress=not args.no_progress, workers=args.workers,
    ))


if __name__ == "__main__":
    sys.exit(main())
