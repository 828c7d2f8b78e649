"""Shared fixtures: a private Minari store for the whole session, tiny policies and tiny datasets.

No test needs the network or ``../shared``: datasets are built here, in Minari's format, from a random
numpy MLP policy in the documented npz format (a few hundred Hopper steps, well under a second).

- ``minari_store`` (session, autouse): ``$MINARI_DATASETS_PATH`` points at a temporary folder and
  ``$RL_MINRNN_OFFLINE=1`` forbids download attempts, so no test reads or writes ``~/.minari``.
- ``tiny_policy_path``: a random Hopper MLP policy npz (stochastic, relu, tanh squash).
- ``tiny_dataset``: ``OfflineDataset`` 'test/hopper/tiny-v0', 400 steps built by ``envs.offline.build_dataset``.
- ``make_offline_dataset(lengths, obs_dim=3, act_dim=2, seed=0)``: an in-memory ``OfflineDataset`` of
  random episodes with the given lengths (no disk, no env), for sampler tests.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

TINY_DATASET_ID = "test/hopper/tiny-v0"


@pytest.fixture(scope="session", autouse=True)
def minari_store(tmp_path_factory):
    store = tmp_path_factory.mktemp("minari_store")
    saved = {k: os.environ.get(k) for k in ("MINARI_DATASETS_PATH", "RL_MINRNN_OFFLINE")}
    os.environ["MINARI_DATASETS_PATH"] = str(store)
    os.environ["RL_MINRNN_OFFLINE"] = "1"
    yield store
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def tiny_policy_path(tmp_path_factory):
    from rl_minrnn.envs.offline.policies import MLPPolicy

    path = tmp_path_factory.mktemp("policies") / "hopper-random.npz"
    MLPPolicy.random(11, 3, hidden=(16, 16), seed=0).save(path)
    return path


@pytest.fixture(scope="session")
def tiny_dataset(minari_store, tiny_policy_path):
    from rl_minrnn.envs.offline.build_dataset import build_dataset
    from rl_minrnn.envs.offline import load_dataset

    if not (minari_store / TINY_DATASET_ID).exists():
        build_dataset(tiny_policy_path, "Hopper-v5", 400, TINY_DATASET_ID, seed=0, num_envs=2,
                      progress=False, verbose=False)
    return load_dataset(TINY_DATASET_ID)


@pytest.fixture(scope="session")
def make_offline_dataset():
    from rl_minrnn.envs.offline import Episode, OfflineDataset

    def make(lengths, obs_dim: int = 3, act_dim: int = 2, seed: int = 0, env_id: str = "Hopper-v5"):
        rng = np.random.default_rng(seed)
        episodes = []
        for i, n in enumerate(lengths):
            episodes.append(
                Episode(
                    observations=rng.normal(size=(n + 1, obs_dim)),
                    actions=rng.uniform(-1, 1, size=(n, act_dim)),
                    rewards=rng.normal(size=n),
                    terminations=np.arange(n) == n - 1,
                    truncations=np.zeros(n, bool),
                    seed=i,
                )
            )
        return OfflineDataset(episodes, dataset_id="test/synthetic-v0", env_id=env_id)

    return make
