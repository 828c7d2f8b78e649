"""The batched rollout loop, used by training-time evaluation and ``evaluate.py`` alike.

``evaluate_agent`` runs ``num_episodes`` episodes per target return at once: one environment per
episode, and one batched ``agent.act`` / ``agent.observe`` call per env step that advances every
episode's recurrent state together (O(1) per step for the Decision-RNN's ``recurrent`` mode).

Why a list of environments and not ``gymnasium.vector.SyncVectorEnv``: a vector env steps all its
sub-envs on every call and, in gymnasium 1.x, autoresets the finished ones (``autoreset_mode``
NEXT_STEP by default), so finished episodes would either be stepped for nothing or restarted with seeds
we did not choose. ``SyncVectorEnv`` is itself a Python loop over ``gym.make`` envs in this process;
holding that list here lets the loop step only the active episodes (finished ones are masked out, not
stepped) and reset episode ``i`` with seed ``seed + i`` exactly as ``SyncVectorEnv.reset(seed=seed)``
would, so batched and one-by-one runs (``batch_size=1``) give the same returns.

Agent protocol (``docs/design.md``), numpy in and out, raw env values: ``agent.reset(B, mode=...)``,
then per step ``actions = agent.act(returns_to_go (B,), states (B, obs_dim))`` and
``agent.observe(actions)`` (rewards reach the agent through the next return-to-go). The agent always sees
all B rows; finished rows get their last observation and an unchanged return-to-go, and their actions are
ignored.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Sequence

import numpy as np
import torch

from rl_minrnn.envs.scores import ReferenceScores, resolve_reference_scores
from rl_minrnn.ranges import Number, NumberList

from .environments import check_env_matches_agent, make_env
from .results import EvaluationResult, TargetResult


# ``evaluate_agent``'s options as the config gives them (``eval.episodes``, ``eval.target_returns``, ...):
# one environment per episode, so the episode count is bounded; reset seeds ``seed + i`` stay below 2**32.
EVALUATION_OPTIONS = {
    "episodes": Number(1, 1000, integer=True, why="one environment each, all at once"),
    "target_returns": NumberList(Number(-1e9, 1e9), min_len=1, max_len=32),
    "seed": Number(0, 2**31 - 1, integer=True),
    "max_episode_steps": Number(1, 10_000_000, integer=True),
}


class NonFiniteActionError(ValueError):
    """The agent produced NaN or Inf actions (a diverged checkpoint); MuJoCo is never stepped with them."""


# ----------------------------------------------------------------------------------------- environments


# ----------------------------------------------------------------------------------------- results


# ----------------------------------------------------------------------------------------- the loop


@contextlib.contextmanager
def _torch_threads(num_threads: int | None):
    if num_threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(int(num_threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _episode_limit(env, max_episode_steps: int | None) -> int | None:
    spec_limit = getattr(getattr(env, "spec", None), "max_episode_steps", None)
    limits = [n for n in (spec_limit, max_episode_steps) if n]
    return min(limits) if limits else None


def _run_batch(
    agent,
    envs: list,
    episode_ids: list[int],
    target_return: float,
    target_index: int,
    seed: int,
    mode: str | None,
    max_episode_steps: int | None,
    render,
    progress_bar,
) -> dict:
    """Run ``len(episode_ids)`` episodes at once; episode ``i`` resets with seed ``seed + i``."""
    batch = len(episode_ids)
    states = np.stack([np.asarray(env.reset(seed=seed + i)[0], dtype=np.float32) for env, i in zip(envs, episode_ids)])
    returns = np.zeros(batch, dtype=np.float64)
    lengths = np.zeros(batch, dtype=np.int64)
    active = np.ones(batch, dtype=bool)
    returns_to_go = np.full(batch, target_return, dtype=np.float32)
    recorded = [render is not None and render.records(target_index, i) for i in episode_ids]
    agent_ms, env_ms, n_active = [], [], []
    render_s, frames = 0.0, 0

    def capture(row: int, done: bool) -> None:
        nonlocal render_s, frames
        if recorded[row] and render.wants_frame(int(lengths[row]), done):
            start = time.perf_counter()
            frame = envs[row].render()
            render.add_frame(
                episode_ids[row], frame, int(lengths[row]), float(returns[row]), float(returns_to_go[row])
            )
            render_s += time.perf_counter() - start
            frames += 1

    for row in range(batch):
        capture(row, False)
    agent.reset(batch, mode=mode)
    while active.any():
        rows = np.flatnonzero(active)
        start = time.perf_counter()
        actions = np.asarray(agent.act(returns_to_go.copy(), states.copy()))
        agent_s = time.perf_counter() - start
        if actions.shape != (batch, int(agent.act_dim)):
            raise ValueError(f"agent.act returned actions of shape {actions.shape}, expected {(batch, agent.act_dim)}")
        finite = np.isfinite(actions[rows]).all(axis=1)
        if not finite.all():
            row = int(rows[np.argmin(finite)])
            raise NonFiniteActionError(
                f"The agent produced a non-finite action {actions[row].tolist()} at step {int(lengths[row])} of "
                f"episode {episode_ids[row]} (target return {target_return:g}); {_weights_note(agent)} A diverged "
                "checkpoint cannot be evaluated: use an earlier one (best.pt, or retrain with a lower train.lr)."
            )
        start = time.perf_counter()
        for row in rows:
            state, reward, terminated, truncated, _ = envs[row].step(actions[row])
            states[row] = state
            returns[row] += float(reward)
            lengths[row] += 1
            if terminated or truncated or (max_episode_steps is not None and lengths[row] >= max_episode_steps):
                active[row] = False
        env_s = time.perf_counter() - start
        returns_to_go[rows] = target_return - returns[rows]  # float64 sums, no float32 drift
        start = time.perf_counter()
        agent.observe(actions)
        agent_s += time.perf_counter() - start
        agent_ms.append(1e3 * agent_s)
        env_ms.append(1e3 * env_s)
        n_active.append(len(rows))
        if render is not None:
            for row in rows:
                capture(row, not active[row])
        if progress_bar is not None:
            progress_bar.update(1)
            progress_bar.set_postfix(active=int(active.sum()), frames=frames, refresh=False)
    return {
        "returns": returns,
        "lengths": lengths,
        "agent_ms": np.asarray(agent_ms),
        "env_ms": np.asarray(env_ms),
        "active": np.asarray(n_active),
        "render_s": render_s,
        "frames": frames,
    }


def _weights_note(agent) -> str:
    """Whether the agent's own weights are the cause, for the non-finite action message."""
    if not isinstance(agent, torch.nn.Module):
        return ""
    bad = [k for k, v in agent.state_dict().items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        return f"its weights hold non-finite values ({', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''})."
    return "its weights are finite, so the inputs drove it there."


def evaluate_agent(
    agent,
    env_id: str,
    num_episodes: int,
    target_returns: float | Sequence[float],
    seed: int = 0,
    mode: str | None = None,
    ref_scores: ReferenceScores | None | str = "auto",
    render=None,
    progress: bool = True,
    max_episode_steps: int | None = None,
    batch_size: int | None = None,
    num_threads: int | None = None,
    trained_on: str | None = None,
) -> EvaluationResult:
    """Roll ``agent`` out for ``num_episodes`` episodes per target return, all episodes at once.

    - ``env_id``: gymnasium id (or dataset id when ``envs.evaluation.environments`` resolves those).
    - ``seed``: episode ``i`` resets with ``seed + i``, the same for every target and batch size.
    - ``mode``: one of ``agent.rollout_modes``; None (or "auto") uses ``agent.default_rollout_mode``.
    - ``ref_scores``: ``ReferenceScores`` for the normalised score; ``"auto"`` resolves D4RL's from
      ``env_id``; None (or an unknown task under ``"auto"``) leaves normalised scores out.
    - ``render``: a ``envs.evaluation.render.VideoRecorder`` (or anything with its methods); it is closed here.
    - ``max_episode_steps``: extra cap on episode length (the env's own time limit still applies).
    - ``batch_size``: episodes run together (default all); 1 runs them one by one.
    - ``num_threads``: torch threads during the rollout (restored afterwards); None leaves them.
    - ``trained_on``: named in the error when the env does not match the agent's sizes.

    The agent is put in eval mode (and back), runs under ``torch.inference_mode()``, and its outputs
    for finished episodes are ignored.
    """
    if isinstance(target_returns, (int, float)):
        target_returns = [target_returns]
    target_returns = [float(t) for t in target_returns]
    if num_episodes < 1 or not target_returns:
        raise ValueError("Need at least one episode and one target return")
    batch_size = min(int(batch_size or num_episodes), num_episodes)
    if isinstance(ref_scores, str):
        try:
            ref_scores = resolve_reference_scores(env_id)
        except KeyError:
            ref_scores = None
    # the agent's own rule (DecisionAgent.resolve_rollout_mode); a minimal protocol agent without modes gets it as given
    mode = agent.resolve_rollout_mode(mode) if hasattr(agent, "resolve_rollout_mode") else mode
    env_kwargs = render.env_kwargs() if render is not None else {}
    envs = [make_env(env_id, **env_kwargs) for _ in range(batch_size)]
    was_training = agent.training if isinstance(agent, torch.nn.Module) else None
    result = EvaluationResult(
        env_id=env_id,
        mode=mode,
        num_episodes=num_episodes,
        seed=seed,
        batch_size=batch_size,
        max_episode_steps=max_episode_steps,
        ref_scores=ref_scores,
        video=str(render.path) if render is not None else None,
    )
    try:
        check_env_matches_agent(envs[0], agent, env_id, trained_on)
        if render is not None:
            render.configure(envs[0])
        limit = _episode_limit(envs[0], max_episode_steps)
        if was_training is not None:
            agent.eval()
        with torch.inference_mode(), _torch_threads(num_threads):
            for target_index, target in enumerate(target_returns):
                start = time.perf_counter()
                chunks = []
                total = limit * math.ceil(num_episodes / batch_size) if limit else None
                bar = _progress_bar(progress, total, f"{env_id} {mode or ''} target {target:g}")
                try:
                    for first in range(0, num_episodes, batch_size):
                        ids = list(range(first, min(first + batch_size, num_episodes)))
                        chunks.append(
                            _run_batch(
                                agent, envs[: len(ids)], ids, target, target_index, seed, mode,
                                max_episode_steps, render, bar,
                            )
                        )
                        if bar is not None and limit:  # early-finished batches: count the skipped steps
                            bar.n = limit * (first // batch_size + 1)
                            bar.refresh()
                finally:
                    if bar is not None:
                        bar.close()
                returns = np.concatenate([c["returns"] for c in chunks])
                result.targets.append(
                    TargetResult(
                        target_return=target,
                        returns=returns,
                        lengths=np.concatenate([c["lengths"] for c in chunks]),
                        normalized_scores=(
                            np.asarray(ref_scores.normalize(returns)) if ref_scores is not None else None
                        ),
                        agent_ms=np.concatenate([c["agent_ms"] for c in chunks]),
                        env_ms=np.concatenate([c["env_ms"] for c in chunks]),
                        active=np.concatenate([c["active"] for c in chunks]),
                        render_s=sum(c["render_s"] for c in chunks),
                        frames_rendered=sum(c["frames"] for c in chunks),
                        wall_s=time.perf_counter() - start,
                    )
                )
    finally:
        if was_training:
            agent.train()
        if render is not None:
            render.close()
        for env in envs:
            env.close()
    return result


def _progress_bar(enabled: bool, total: int | None, description: str):
    if not enabled:
        return None
    from rl_minrnn.progress import progress_bar

    return progress_bar(total, desc=description, unit="step", leave=False, percent=25)  # in a file: a line a quarter
