"""Build a medium-replay dataset the way D4RL did: the whole replay buffer of SAC trained from scratch
until its deterministic evaluation first reaches a target return.

    python -m rl_minrnn.envs.offline.build_replay --env Walker2d-v5 --target-return 2040 \
        --id local/walker2d/medium-replay-v0 [--seed 0] [--eval-every 10000] [--eval-episodes 5] \
        [--max-steps 1000000] [--checkpoint-every 10000] [--checkpoint-dir DIR] [--npz FILE] [--fresh]

SAC is a library's (``--library``: sbx-rl, the JAX port of stable-baselines3, by default; or
stable-baselines3 itself; ``pip install -e ".[replay]"``), with its default hyperparameters: 100 uniformly
random warm-up steps, then one gradient step of batch 256 after every env step. This module runs the
env loop itself, so that it owns what the dataset records: each training episode is reset with a seed
from ``(--seed, episode index)``, the actions stored are exactly those applied, terminations and
time-limit truncations are kept as the env gave them, and every ``--eval-every`` steps the policy's
mean action is evaluated on ``--eval-episodes`` episodes with fixed seeds. The first evaluation whose
mean return reaches ``--target-return`` stops training; the buffer, every transition in time order, is
written as a Minari dataset (the running episode, cut off there, marked truncated), with the evaluation
curve, the settings and the library versions in its metadata. ``--npz`` also writes it as a compressed
D4RL-style file that ``import_d4rl`` (and so ``build_suite``) reads back to the same dataset.

Resumable: at the first episode boundary after every ``--checkpoint-every`` steps, the learner (weights,
optimiser states, entropy coefficient), every RNG it draws from and the episodes so far are written
atomically to ``--checkpoint-dir`` (default ``~/.cache/rl_minrnn/replay-builds/<id>``, outside any work
tree). The same command continues a killed build from its last checkpoint, to the same result as an
uninterrupted build; the replay buffer is refilled from the recorded episodes, which hold exactly the
values it held. A checkpoint made with other settings is an error (``--fresh`` starts over).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from rl_minrnn.envs.offline import DatasetError, DatasetExistsError, Episode, datasets_root, write_dataset
from rl_minrnn.envs.offline.commands import run_command
from rl_minrnn.envs.offline.store import check_dataset_id
from rl_minrnn.files import write_atomically

LIBRARIES = ("sbx", "sb3")
DEFAULT_LIBRARY = "sbx"  # benchmarks/sac_speed.py: the faster of the two on one core
CHECKPOINT_FORMAT = 1
INSTALL_HINT = 'pip install -e ".[replay]"'
ONE_THREAD_XLA = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


class ReplayBuildError(DatasetError):
    """Bad input to a replay build, or a checkpoint that does not belong to it."""


@dataclass(frozen=True)
class ReplaySettings:
    """Everything that fixes a build's result; a checkpoint resumes only under the same settings."""

    env_id: str
    target_return: float
    seed: int = 0
    eval_every: int = 10_000
    eval_episodes: int = 5
    max_steps: int = 1_000_000
    library: str = DEFAULT_LIBRARY
    learning_starts: int = 100  # both libraries' default
    batch_size: int = 256  # both libraries' default

    def check(self) -> None:
        for name in ("eval_every", "eval_episodes", "max_steps", "batch_size"):
            if getattr(self, name) <= 0:
                raise ReplayBuildError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}.")
        if self.learning_starts < 0:
            raise ReplayBuildError(f"--learning-starts must be >= 0, got {self.learning_starts}.")
        if self.library not in LIBRARIES:
            raise ReplayBuildError(f"--library must be one of {LIBRARIES}, got {self.library!r}.")
        if not np.isfinite(self.target_return):
            raise ReplayBuildError(f"--target-return must be a finite number, got {self.target_return}.")

    def command_args(self) -> list[str]:
        """The command-line flags that give these settings (each field's flag: ``--env``, then its name)."""
        args = []
        for f in fields(self):
            value = getattr(self, f.name)
            flag = "--env" if f.name == "env_id" else "--" + f.name.replace("_", "-")
            args += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
        return args


def reset_seed(seed: int, stream: int, k: int) -> int:
    """Reset seed of the k-th episode of a stream (0: training episodes, 1: evaluation episodes)."""
    return int(np.random.SeedSequence([int(seed), int(stream), int(k)]).generate_state(1, np.uint32)[0] & 0x7FFFFFFF)


def default_checkpoint_dir(dataset_id: str) -> Path:
    return Path("~/.cache/rl_minrnn/replay-builds").expanduser() / dataset_id


def library_versions(library: str) -> dict:
    import gymnasium
    import mujoco

    versions = {"python": platform.python_version(), "numpy": np.__version__, "gymnasium": gymnasium.__version__,
                "mujoco": mujoco.__version__}
    import stable_baselines3

    versions["stable_baselines3"] = stable_baselines3.__version__
    if library == "sbx":
        import flax
        import jax
        import sbx

        versions.update(sbx=sbx.__version__, jax=jax.__version__, flax=flax.__version__)
    else:
        import torch

        versions["torch"] = torch.__version__
    return versions


# --- the learner: one library's SAC, and how its state is saved and restored ------------------------------

def _import_sac(library: str, threads: int | None):
    try:
        if library == "sbx":
            if threads == 1:
                os.environ.setdefault("XLA_FLAGS", ONE_THREAD_XLA)
            os.environ.setdefault("JAX_PLATFORMS", "cpu")
            from sbx import SAC
        else:
            import torch
            from stable_baselines3 import SAC

            if threads:
                torch.set_num_threads(threads)
    except ImportError as exc:
        raise ReplayBuildError(
            f"The SAC library for --library {library} is not installed ({exc.name or exc}): {INSTALL_HINT}"
        ) from None
    return SAC


def _make_learner(settings: ReplaySettings, env, threads: int | None):
    """The library's SAC with its defaults; its buffer holds every step of the build (never wraps)."""
    SAC = _import_sac(settings.library, threads)
    from stable_baselines3.common.logger import Logger

    kwargs = dict(buffer_size=settings.max_steps, learning_starts=settings.learning_starts,
                  batch_size=settings.batch_size, seed=settings.seed, verbose=0)
    if settings.library == "sb3":
        kwargs["device"] = "cpu"
    model = SAC("MlpPolicy", env, **kwargs)
    model.set_logger(Logger(folder=None, output_formats=[]))  # train() records losses; nothing is written
    return model


def _to_numpy_tree(tree):
    import jax

    return jax.tree_util.tree_map(lambda x: np.array(x) if hasattr(x, "shape") else x, tree)


def _learner_state(model, library: str) -> dict:
    state = {"n_updates": int(model._n_updates), "np_global_rng": np.random.get_state()}
    if library == "sbx":
        from flax import serialization

        state.update(
            actor=_to_numpy_tree(serialization.to_state_dict(model.policy.actor_state)),
            qf=_to_numpy_tree(serialization.to_state_dict(model.policy.qf_state)),
            ent_coef=_to_numpy_tree(serialization.to_state_dict(model.ent_coef_state)),
            keys=[np.array(k) for k in (model.key, model.policy.key, model.policy.noise_key)],
        )
    else:
        import torch

        state.update(
            params={k: {n: (t.detach().clone() if hasattr(t, "detach") else t) for n, t in v.items()}
                    for k, v in model.get_parameters().items()},
            log_ent_coef=None if model.log_ent_coef is None else model.log_ent_coef.detach().clone(),
            torch_rng=torch.get_rng_state(),
        )
    return state


def _load_learner_state(model, library: str, state: dict) -> None:
    model._n_updates = state["n_updates"]
    np.random.set_state(state["np_global_rng"])
    if library == "sbx":
        import jax.numpy as jnp
        from flax import serialization

        restore = lambda target, s: serialization.from_state_dict(target, s)  # noqa: E731
        model.policy.actor_state = restore(model.policy.actor_state, state["actor"])
        model.policy.qf_state = restore(model.policy.qf_state, state["qf"])
        model.ent_coef_state = restore(model.ent_coef_state, state["ent_coef"])
        model.key, model.policy.key, model.policy.noise_key = (jnp.asarray(k) for k in state["keys"])
    else:
        import torch

        model.set_parameters(state["params"], exact_match=True, device="cpu")
        if state["log_ent_coef"] is not None:
            with torch.no_grad():
                model.log_ent_coef.copy_(state["log_ent_coef"])  # in place: the optimiser holds this tensor
        torch.set_rng_state(state["torch_rng"])


# --- checkpoints ----------------------------------------------------------------------------------------

def _save(path: Path, payload: dict) -> None:
    """Atomic (``rl_minrnn.files.write_atomically``): a crash mid-write leaves the previous checkpoint."""
    import pickle

    def write(tmp):
        with open(tmp, "wb") as f:
            pickle.dump({"format": CHECKPOINT_FORMAT, **payload}, f, protocol=pickle.HIGHEST_PROTOCOL)

    try:
        write_atomically(path, write)
    except OSError as exc:
        raise ReplayBuildError(f"Could not write the checkpoint {path} ({exc.strerror or exc}); "
                               "the previous one is intact. Free disk space or pass --checkpoint-dir.") from exc


def _load(path: Path, settings: ReplaySettings) -> dict:
    import pickle

    try:
        with open(path, "rb") as f:
            state = pickle.load(f)
    except Exception as exc:
        raise ReplayBuildError(f"Cannot read the checkpoint {path} ({exc.__class__.__name__}: {exc}); "
                               "delete it or pass --fresh to start over.") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ReplayBuildError(f"{path} is not a replay-build checkpoint of format {CHECKPOINT_FORMAT}; "
                               "pass --fresh to start over.")
    if state["settings"] != asdict(settings):
        diff = {k: (v, asdict(settings)[k]) for k, v in state["settings"].items() if asdict(settings).get(k) != v}
        raise ReplayBuildError(
            f"The checkpoint {path} is of a build with other settings (checkpoint, now: {diff}); run with the "
            "same settings to resume it, or pass --fresh (or another --checkpoint-dir) to start over."
        )
    return state


# --- the build ------------------------------------------------------------------------------------------

def _make_env(env_id: str):
    import gymnasium as gym

    try:
        env = gym.make(env_id)
    except Exception as exc:
        raise ReplayBuildError(f"Cannot make the environment {env_id!r} ({exc.__class__.__name__}: {exc}); "
                               "give a gymnasium id such as Hopper-v5, Walker2d-v5 or HalfCheetah-v5.") from None
    if not isinstance(env.action_space, gym.spaces.Box):
        raise ReplayBuildError(f"{env_id} has a {type(env.action_space).__name__} action space; SAC needs a Box.")
    return env


def evaluate(model, env, seeds) -> float:
    """Mean return of the policy's mean action over episodes reset with ``seeds``."""
    returns = []
    for s in seeds:
        obs, _ = env.reset(seed=int(s))
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, r, terminated, truncated, _ = env.step(action)
            total += float(r)
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


def run_sac(settings: ReplaySettings, checkpoint_dir: Path, checkpoint_every: int = 10_000, fresh: bool = False,
            progress: bool = True, threads: int | None = 1, log=print) -> dict:
    """Train until the target (or ``max_steps``), checkpointing; returns the final state (see ``_save``)."""
    from tqdm import tqdm

    settings.check()
    if checkpoint_every <= 0:
        raise ReplayBuildError(f"--checkpoint-every must be positive, got {checkpoint_every}.")
    env, eval_env, spaces_env = (_make_env(settings.env_id) for _ in range(3))
    path = Path(checkpoint_dir) / "state.pkl"
    model = _make_learner(settings, spaces_env, threads)
    act_space = env.action_space
    eval_seeds = [reset_seed(settings.seed, 1, i) for i in range(settings.eval_episodes)]
    warmup_rng = np.random.default_rng(np.random.SeedSequence([settings.seed, 2]))
    if path.is_file() and not fresh:
        state = _load(path, settings)
        _load_learner_state(model, settings.library, state["learner"])
        warmup_rng.bit_generator.state = state["warmup_rng"]
        for ep in state["episodes"] if state["status"] == "running" else ():  # refill the buffer: the same values, in the same order
            for t in range(len(ep["actions"])):
                model.replay_buffer.add(ep["observations"][t], ep["observations"][t + 1],
                                        model.policy.scale_action(ep["actions"][t]), np.array([ep["rewards"][t]]),
                                        np.array([ep["terminations"][t]]), [{}])
        log(f"resuming {settings.env_id} from step {state['step']} ({path})")
    else:
        state = {"settings": asdict(settings), "step": 0, "episodes": [], "curve": [], "status": "running",
                 "elapsed_s": 0.0, "versions": library_versions(settings.library)}
    if state["status"] == "finished":
        return state
    step, episodes, curve = state["step"], state["episodes"], state["curve"]
    last_checkpoint = step
    t0 = time.perf_counter() - state["elapsed_s"]

    def checkpoint(status: str = "running") -> None:
        state.update(step=step, status=status, elapsed_s=time.perf_counter() - t0,
                     learner=_learner_state(model, settings.library), warmup_rng=warmup_rng.bit_generator.state)
        _save(path, state)

    interval = 1.0 if sys.stderr.isatty() else 30.0  # a log file gets a line every 30 s, not every second
    bar = tqdm(total=settings.max_steps, initial=step, unit="step", disable=not progress, mininterval=interval,
               desc=f"SAC on {settings.env_id} (stops at eval >= {settings.target_return:g})", smoothing=0.02)
    if curve:
        bar.set_postfix(eval=f"{curve[-1]['eval_return']:.0f}", episodes=len(episodes))
    current = None
    reached = False
    try:
        while step < settings.max_steps:
            if current is None:
                seed = reset_seed(settings.seed, 0, len(episodes))
                obs, _ = env.reset(seed=seed)
                current = {"seed": seed, "observations": [obs], "actions": [], "rewards": [], "terminations": [],
                           "truncations": []}
            if step < settings.learning_starts:
                action = warmup_rng.uniform(act_space.low, act_space.high).astype(act_space.dtype)
            else:
                action = np.asarray(model.predict(obs, deterministic=False)[0], dtype=act_space.dtype)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            model.replay_buffer.add(obs, next_obs, model.policy.scale_action(action), np.array([reward]),
                                    np.array([terminated]), [{}])
            for k, v in (("observations", next_obs), ("actions", action), ("rewards", reward),
                         ("terminations", terminated), ("truncations", truncated)):
                current[k].append(v)
            obs = next_obs
            step += 1
            model.num_timesteps = step
            if step > settings.learning_starts:
                model.train(gradient_steps=1, batch_size=settings.batch_size)
            if terminated or truncated:
                episodes.append(_pack_episode(current))
                current = None
            bar.update(1)
            if step % settings.eval_every == 0:
                ret = evaluate(model, eval_env, eval_seeds)
                curve.append({"step": step, "eval_return": ret, "seconds": round(time.perf_counter() - t0, 1)})
                bar.set_postfix(eval=f"{ret:.0f}", episodes=len(episodes) + (current is not None))
                if progress:
                    bar.write(f"step {step}: evaluation return {ret:.1f} (target {settings.target_return:g})")
                else:
                    log(f"step {step}: evaluation return {ret:.1f} (target {settings.target_return:g}), "
                        f"{time.perf_counter() - t0:.0f} s")
                if ret >= settings.target_return:
                    reached = True
                    break
            if current is None and step - last_checkpoint >= checkpoint_every:
                checkpoint()
                last_checkpoint = step
    finally:
        bar.close()
    if current is not None:  # the episode running when training stopped: cut off there
        current["truncations"][-1] = True
        episodes.append(_pack_episode(current))
    state["reached"] = reached
    checkpoint("finished")
    return state


def _pack_episode(ep: dict) -> dict:
    return {
        "seed": ep["seed"],
        "observations": np.asarray(ep["observations"], np.float64),  # as the env gave them (the buffer's dtype)
        "actions": np.asarray(ep["actions"], np.float32),
        "rewards": np.asarray(ep["rewards"], np.float64),
        "terminations": np.asarray(ep["terminations"], bool),
        "truncations": np.asarray(ep["truncations"], bool),
    }


def replay_metadata(state: dict, command: str) -> dict:
    s = state["settings"]
    returns = [float(ep["rewards"].sum()) for ep in state["episodes"]]
    return {
        "build_command": command,
        "replay_recipe": "D4RL medium-replay: the whole replay buffer of SAC trained from scratch until its "
                         "deterministic evaluation first reached the target return",
        "replay_settings": s,
        "replay_target_reached": bool(state.get("reached")),
        "replay_steps": int(state["step"]),
        "replay_eval_curve": state["curve"],
        "replay_build_seconds": round(float(state["elapsed_s"]), 1),
        "replay_library_versions": state["versions"],
        "replay_episode_return_mean": float(np.mean(returns)),
        "replay_episode_return_max": float(np.max(returns)),
        "build_seed": int(s["seed"]),
    }


def episodes_of(state: dict) -> list[Episode]:
    return [
        Episode(observations=ep["observations"].astype(np.float32), actions=ep["actions"],
                rewards=ep["rewards"].astype(np.float32), terminations=ep["terminations"],
                truncations=ep["truncations"], seed=int(ep["seed"]))
        for ep in state["episodes"]
    ]


def write_npz(path, episodes: list[Episode], metadata: dict) -> Path:
    """Episodes as a compressed D4RL-style npz (observations, actions, rewards, terminals, timeouts) plus
    one final observation and reset seed per episode and the metadata as JSON: ``import_d4rl`` reads it
    back to the same episodes and metadata. No ``next_observations``: within an episode they are the next
    row, so the file is about half the size of D4RL's layout."""
    import json

    cat = lambda f: np.concatenate([f(ep) for ep in episodes])  # noqa: E731
    arrays = {
        "observations": cat(lambda ep: ep.observations[:-1]).astype(np.float32),
        "actions": cat(lambda ep: ep.actions).astype(np.float32),
        "rewards": cat(lambda ep: ep.rewards).astype(np.float32),
        "terminals": cat(lambda ep: ep.terminations).astype(bool),
        "timeouts": cat(lambda ep: ep.truncations).astype(bool),
        "final_observations": np.stack([ep.observations[-1] for ep in episodes]).astype(np.float32),
        "metadata_json": np.array(json.dumps(metadata)),
    }
    if all(ep.seed is not None for ep in episodes):
        arrays["episode_seeds"] = np.array([ep.seed for ep in episodes], np.int64)
    def write(tmp):
        with open(tmp, "wb") as f:  # a file object: given a name, numpy would append ".npz" to it
            np.savez_compressed(f, **arrays)

    return write_atomically(path, write)


def describe_replay(path) -> str:
    """A buffer file's provenance as Markdown (what docs/datasets.md records for each committed buffer)."""
    import json

    from rl_minrnn.envs.offline.import_d4rl import read_d4rl_arrays, split_episodes
    from rl_minrnn.envs.scores import normalized_score, resolve_reference_scores

    path = Path(path)
    arrays = read_d4rl_arrays(path)
    if "metadata_json" not in arrays:
        raise ReplayBuildError(f"{path} has no build metadata (metadata_json): it was not written by build_replay --npz.")
    meta = json.loads(str(arrays["metadata_json"]))
    episodes = split_episodes(arrays)
    returns = np.array([ep.total_return for ep in episodes])
    s = meta["replay_settings"]
    ref = resolve_reference_scores(s["env_id"])
    norm = normalized_score(returns, ref.min_score, ref.max_score)
    ended = sum(bool(ep.terminations[-1]) for ep in episodes)
    curve = ", ".join(f"{c['step'] / 1000:g}k: {c['eval_return']:.0f}" for c in meta["replay_eval_curve"])
    versions = ", ".join(f"{k} {v}" for k, v in meta["replay_library_versions"].items())
    lines = [
        f"- file: `{path.name}`, {path.stat().st_size / 1e6:.1f} MB; {len(arrays['rewards']):,} transitions, "
        f"{len(episodes)} episodes ({ended} terminated, {len(episodes) - ended} truncated)",
        f"- command: `{meta.get('build_command', 'n/a')}`" + (f" ({meta['replay_note']})" if "replay_note" in meta else ""),
        f"- settings: seed {s['seed']}, target {s['target_return']:g}, learning starts {s.get('learning_starts', 100)}, "
        f"batch {s.get('batch_size', 256)}, evaluation every {s['eval_every']} steps "
        f"({s['eval_episodes']} deterministic episodes); target reached: {meta['replay_target_reached']} "
        f"at {meta['replay_steps']:,} steps" + (f" in {meta['replay_build_seconds'] / 3600:.1f} h"
                                                if "replay_build_seconds" in meta else ""),
        f"- evaluation curve: {curve}",
        f"- behaviour (episode returns): mean {returns.mean():.0f}, median {np.median(returns):.0f}, max "
        f"{returns.max():.0f}; D4RL-normalised mean {norm.mean():.1f}, max {norm.max():.1f}",
        f"- versions: {versions}",
    ]
    return "\n".join(lines)


def build_replay(
    settings: ReplaySettings,
    dataset_id: str,
    *,
    checkpoint_every: int = 10_000,
    checkpoint_dir=None,
    fresh: bool = False,
    npz=None,
    root=None,
    overwrite: bool = False,
    progress: bool = True,
    threads: int | None = 1,
    verbose: bool = True,
) -> Path:
    """Train SAC with ``settings`` (what fixes the result), checkpointing every ``checkpoint_every`` steps, and write
    the dataset ``dataset_id`` (and ``npz`` when given); returns its folder. The other arguments say where and how,
    not what."""
    check_dataset_id(dataset_id)
    root = Path(root) if root is not None else datasets_root()
    if (root / dataset_id).exists() and not overwrite:
        raise DatasetExistsError(
            f"Dataset {dataset_id!r} already exists at {root / dataset_id}. Delete it, pick another id, or pass --overwrite."
        )
    settings.check()
    checkpoint_dir = Path(checkpoint_dir).expanduser() if checkpoint_dir else default_checkpoint_dir(dataset_id)
    from filelock import FileLock, Timeout

    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(checkpoint_dir / "build.lock")  # an OS lock: released when its process dies
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ReplayBuildError(f"Another build is running with the checkpoint folder {checkpoint_dir}; wait for it "
                               "(or stop it) before resuming, or pass another --checkpoint-dir.") from None
    try:
        state = run_sac(settings, checkpoint_dir, checkpoint_every, fresh, progress, threads)
    finally:
        lock.release()
    command = "python -m rl_minrnn.envs.offline.build_replay " + shlex.join(["--id", dataset_id, *settings.command_args()])
    metadata = replay_metadata(state, command)
    if not state["reached"]:
        print(f"warning: no evaluation reached {settings.target_return:g} in {settings.max_steps} steps (best "
              f"{max((c['eval_return'] for c in state['curve']), default=float('nan')):.1f}); writing the buffer anyway "
              "(metadata replay_target_reached: false)", file=sys.stderr)
    episodes = episodes_of(state)
    out = write_dataset(
        dataset_id, episodes, settings.env_id,
        description=(f"Medium-replay (D4RL's recipe): the replay buffer, in time order, of {settings.library} SAC "
                     f"(seed {settings.seed}) trained on {settings.env_id} until its deterministic evaluation "
                     f"({settings.eval_episodes} episodes every {settings.eval_every} steps) first reached "
                     f"{settings.target_return:g}: {state['step']} steps."),
        algorithm_name=f"sac-replay:{settings.library}", extra_metadata=metadata, root=root, overwrite=overwrite,
    )
    if npz is not None:
        write_npz(npz, episodes, metadata)
    if verbose:
        returns = np.array([ep.total_return for ep in episodes])
        last = state["curve"][-1]["eval_return"] if state["curve"] else float("nan")
        print(f"{dataset_id}: {len(episodes)} episodes, {state['step']} steps in {state['elapsed_s']:.0f} s, last "
              f"evaluation {last:.1f}; episode return mean {returns.mean():.1f} (max {returns.max():.1f}) -> {out}"
              + (f" and {npz}" if npz else ""))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m rl_minrnn.envs.offline.build_replay",
                                description=__doc__.splitlines()[0])
    p.add_argument("--env", dest="env_id", help="gymnasium id, e.g. Walker2d-v5 (required unless --describe)")
    p.add_argument("--target-return", type=float, default=None,
                   help="stop at the first evaluation whose mean return reaches this (default: the task's "
                        "replay_target in envs/tasks.py, the medium behaviour policy's return)")
    p.add_argument("--id", dest="dataset_id", help="dataset id, e.g. local/walker2d/medium-replay-v0 (required unless --describe)")
    p.add_argument("--seed", type=int, default=0, help="SAC's seed; episode reset seeds derive from it")
    p.add_argument("--eval-every", type=int, default=10_000, help="env steps between evaluations")
    p.add_argument("--eval-episodes", type=int, default=5, help="episodes per evaluation (fixed reset seeds)")
    p.add_argument("--max-steps", type=int, default=1_000_000, help="give up (and write what there is) after this many steps")
    p.add_argument("--library", choices=LIBRARIES, default=DEFAULT_LIBRARY, help="whose SAC (sbx: JAX, sb3: PyTorch)")
    p.add_argument("--learning-starts", type=int, default=100, help="uniformly random steps before learning")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--checkpoint-every", type=int, default=10_000, help="env steps between checkpoints")
    p.add_argument("--checkpoint-dir", default=None,
                   help="where the resumable state lives (default ~/.cache/rl_minrnn/replay-builds/<id>)")
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint and start over")
    p.add_argument("--npz", default=None, help="also write the buffer as a compressed npz that import_d4rl reads")
    p.add_argument("--threads", type=int, default=1, help="threads of the learner (1: the build shares the machine)")
    p.add_argument("--root", default=None, help="store folder (default: $MINARI_DATASETS_PATH or ~/.minari/datasets)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset with this id")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log lines at evaluations instead)")
    p.add_argument("--describe", metavar="NPZ", help="print a buffer file's provenance (Markdown) and exit")
    args = p.parse_args(argv)
    if args.describe:
        return run_command(lambda: print(describe_replay(args.describe)))
    if not args.env_id or not args.dataset_id:
        p.error("--env and --id are required")
    for name in ("eval_every", "eval_episodes", "max_steps", "checkpoint_every", "batch_size", "threads"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.learning_starts < 0:
        p.error("--learning-starts must be >= 0")
    if args.target_return is None:
        from rl_minrnn.envs.tasks import TASKS, task_name

        name = task_name(args.env_id)
        if name is None:
            p.error(f"--target-return is needed for {args.env_id} (no row in envs/tasks.py gives it)")
        args.target_return = TASKS[name].replay_target
    settings = ReplaySettings(**{f.name: getattr(args, f.name) for f in fields(ReplaySettings)})
    return run_command(lambda: build_replay(
        settings, args.dataset_id, checkpoint_every=args.checkpoint_every, checkpoint_dir=args.checkpoint_dir,
        fresh=args.fresh, npz=args.npz, root=args.root, overwrite=args.overwrite, progress=not args.no_progress,
        threads=args.threads,
    ))


if __name__ == "__main__":
    sys.exit(main())
