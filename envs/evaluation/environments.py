"""Evaluation environments from a dataset's metadata or a gymnasium id.

Order of preference: the dataset's recorded evaluation env spec (Minari's ``eval_env_spec``, the spec
``recover_environment(eval_env=True)`` would use), then its collection ``env_spec``, then a gymnasium id
recorded in the metadata (``env_id``). A plain string is used as a gymnasium id when gymnasium knows it,
else as a dataset id (only its metadata is read, no episodes are loaded).
"""

from __future__ import annotations

import gymnasium as gym

from rl_minrnn.envs.tasks import TASKS
from rl_minrnn.envs.offline import DatasetError, OfflineDataset, dataset_metadata, env_id_from_metadata


class EnvironmentNotFoundError(DatasetError):
    """No evaluation environment can be made for this dataset or id."""


def env_spec_for(env_id_or_dataset):
    """The EnvSpec (or gymnasium id) to make for a dataset, a dataset id, an EnvSpec or a gymnasium id."""
    if isinstance(env_id_or_dataset, gym.envs.registration.EnvSpec):
        return env_id_or_dataset
    if isinstance(env_id_or_dataset, OfflineDataset):
        ds = env_id_or_dataset
        if ds.eval_env_spec is not None:
            return ds.eval_env_spec
        if ds.env_id:
            return ds.env_id
        raise EnvironmentNotFoundError(
            f"Dataset {ds.dataset_id!r} records no environment (no eval_env_spec, env_spec or env_id in its "
            "metadata); pass a gymnasium id instead, e.g. 'Hopper-v5'."
        )
    if isinstance(env_id_or_dataset, str):
        if env_id_or_dataset in gym.registry:
            return env_id_or_dataset
        if "/" in env_id_or_dataset:  # a dataset id: read only its metadata
            env_id, spec = env_id_from_metadata(dataset_metadata(env_id_or_dataset))
            if spec is not None:
                return spec
            if env_id:
                return env_id
            raise EnvironmentNotFoundError(f"Dataset {env_id_or_dataset!r} records no environment in its metadata.")
        known = ", ".join(task.env_id for task in TASKS.values() if task.env_id in gym.registry)
        raise EnvironmentNotFoundError(
            f"{env_id_or_dataset!r} is neither a registered gymnasium id (e.g. {known}) nor a dataset id."
        )
    raise TypeError(f"Expected a gymnasium id, an EnvSpec, a dataset id or an OfflineDataset, got {type(env_id_or_dataset)}")


def make_env(env_id_or_dataset, render_mode=None, **kwargs) -> gym.Env:
    """One evaluation env (with the spec's TimeLimit, e.g. 1000 steps for the MuJoCo locomotion tasks)."""
    spec = env_spec_for(env_id_or_dataset)
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    return gym.make(spec, **kwargs)


class EnvironmentMismatchError(ValueError):
    """The environment's observation or action size differs from what the agent was trained on."""


def env_dims(env) -> tuple[int, int]:
    """(obs_dim, act_dim) of a flat Box-observation, Box-action env."""
    obs_shape = env.observation_space.shape
    act_shape = env.action_space.shape
    if obs_shape is None or len(obs_shape) != 1 or act_shape is None or len(act_shape) != 1:
        raise EnvironmentMismatchError(
            f"Expected flat observation and action vectors, got observation shape {obs_shape} and "
            f"action shape {act_shape}"
        )
    return int(obs_shape[0]), int(act_shape[0])


def check_env_matches_agent(env, agent, env_id: str = "the environment", trained_on: str | None = None) -> None:
    """Raise ``EnvironmentMismatchError`` naming both sizes when env and agent disagree."""
    obs_dim, act_dim = env_dims(env)
    if (obs_dim, act_dim) != (int(agent.obs_dim), int(agent.act_dim)):
        origin = f" (trained on {trained_on})" if trained_on else ""
        raise EnvironmentMismatchError(
            f"{env_id} has observations of size {obs_dim} and actions of size {act_dim}, but the "
            f"agent{origin} expects observations of size {agent.obs_dim} and actions of size "
            f"{agent.act_dim}. Pick an environment of the same task (or drop --env)."
        )

