"""D4RL-normalised scores: the one place the formula and the reference returns live.

normalised = 100 * (R - R_random) / (R_expert - R_random)  (D4RL, ``d4rl/infos.py``).
Minari datasets carry their own ``ref_min_score`` / ``ref_max_score``; D4RL's (in the task table,
``envs.tasks``) are the fallback for the D4RL locomotion tasks and for datasets built locally.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rl_minrnn.envs.tasks import TASKS, task_name


@dataclass(frozen=True)
class ReferenceScores:
    """Random-policy and expert returns of one task, in raw (un-normalised) return units."""

    min_score: float
    max_score: float
    source: str

    def normalize(self, returns):
        return normalized_score(returns, self.min_score, self.max_score)


# D4RL's reference returns for the locomotion tasks (the task table, ``envs.tasks``).
D4RL_REFERENCE_SCORES = {
    name: ReferenceScores(task.ref_min_score, task.ref_max_score, "d4rl") for name, task in TASKS.items()
}


def d4rl_reference_scores(env_or_dataset_id: str) -> ReferenceScores:
    name = task_name(env_or_dataset_id)
    if name is None:
        known = ", ".join(sorted(D4RL_REFERENCE_SCORES))
        raise KeyError(
            f"No D4RL reference scores for {env_or_dataset_id!r}: known tasks are {known}. "
            "Give ref_min_score/ref_max_score in the dataset's metadata instead."
        )
    return D4RL_REFERENCE_SCORES[name]


def resolve_reference_scores(
    env_or_dataset_id: str, ref_min_score: float | None = None, ref_max_score: float | None = None,
    source: str = "dataset",
) -> ReferenceScores:
    """The given reference scores when both are given (``source`` says where they came from: a dataset's
    metadata, or a checkpoint that recorded its dataset's), D4RL's constants otherwise."""
    if ref_min_score is not None and ref_max_score is not None:
        return ReferenceScores(float(ref_min_score), float(ref_max_score), source)
    return d4rl_reference_scores(env_or_dataset_id)


def normalized_score(returns, ref_min_score: float, ref_max_score: float):
    """100 * (R - min) / (max - min); works on floats and arrays."""
    if ref_max_score == ref_min_score:
        raise ValueError(f"Reference scores must differ, got min = max = {ref_min_score}")
    scale = 100.0 / (ref_max_score - ref_min_score)
    if np.isscalar(returns):
        return float((returns - ref_min_score) * scale)
    return (np.asarray(returns, dtype=np.float64) - ref_min_score) * scale
