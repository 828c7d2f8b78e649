"""The locomotion tasks, one row each: what every part of the project needs to know about an environment.

A new environment is one row here: its gymnasium id and D4RL reference returns (normalised scores,
``envs.scores``), and the behaviour policies and build seed the local suite is built from
(``envs.offline.build_suite``). Its training config is ``configs/<task>-<kind>.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    name: str  # as in dataset ids: mujoco/<name>/medium-v0
    env_id: str  # the gymnasium environment evaluations run in
    ref_min_score: float  # D4RL's random-policy return (d4rl/infos.py REF_MIN_SCORE)
    ref_max_score: float  # D4RL's expert return (REF_MAX_SCORE); identical across D4RL versions
    medium_policy: str  # behaviour policies (<name>.npz in the policies folder) of the local suite
    expert_policy: str
    build_seed: int  # the local medium dataset's build seed; expert uses build_seed + 1 (no shared reset seeds)
    # medium-replay (envs.offline.build_replay): SAC trains until its deterministic evaluation reaches the
    # medium behaviour policy's stochastic mean return (shared/policies/policies.json), the level of the
    # local medium dataset, as D4RL's medium-replay is the buffer of training up to the medium policy
    replay_target: float


TASKS = {t.name: t for t in (
    Task("hopper", "Hopper-v5", -20.272305, 3234.3, "hopper-sac", "hopper-tqc", 0, 1665.6),
    Task("walker2d", "Walker2d-v5", 1.629008, 4592.3, "walker2d-trpo", "walker2d-tqc", 2, 2040.0),
    Task("halfcheetah", "HalfCheetah-v5", -280.178953, 12135.0, "halfcheetah-ppo", "halfcheetah-tqc", 4, 4987.3),
)}


def task_name(env_or_dataset_id: str) -> str | None:
    """'Hopper-v5', 'mujoco/hopper/medium-v0', 'hopper-medium-v2' -> 'hopper' (None when unknown)."""
    text = env_or_dataset_id.lower().replace("_", "").replace("-", "")
    for name in TASKS:
        if name in text:
            return name
    return None
