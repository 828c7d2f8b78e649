"""Loading datasets: the episode contract, alignment, metadata, environments and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from rl_minrnn.envs import offline as D
from rl_minrnn.envs.offline import store
from rl_minrnn.envs.offline import (
    SAMPLE_DATASET_ID,
    DatasetFormatError,
    DatasetNotFoundError,
    Episode,
    OfflineDataset,
    load_dataset,
    write_dataset,
)
from rl_minrnn.envs.evaluation.environments import make_env
from rl_minrnn.envs.offline.normalization import StateNormalizer


def test_episode_contract(tiny_dataset):
    ds = tiny_dataset
    assert ds.dataset_id == "test/hopper/tiny-v0"
    assert ds.env_id == "Hopper-v5"
    assert (ds.obs_dim, ds.act_dim) == (11, 3)
    assert ds.num_steps == 400 and len(ds.episodes) >= 2
    for ep in ds.episodes:
        T = len(ep)
        assert ep.observations.shape == (T + 1, 11) and ep.observations.dtype == np.float32
        assert ep.actions.shape == (T, 3) and ep.actions.dtype == np.float32
        assert ep.rewards.shape == (T,) and ep.rewards.dtype == np.float32
        assert ep.terminations.dtype == bool and ep.truncations.dtype == bool
        assert isinstance(ep.seed, int)
        assert not (ep.terminations[:-1] | ep.truncations[:-1]).any()  # ends only at the last step
        assert ep.terminations[-1] or ep.truncations[-1]
    assert len({ep.seed for ep in ds.episodes}) == len(ds.episodes)


def test_statistics_and_reference_scores(tiny_dataset):
    ds = tiny_dataset
    states = np.concatenate([ep.observations[:-1] for ep in ds.episodes]).astype(np.float64)
    np.testing.assert_allclose(ds.state_mean, states.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ds.state_std, np.maximum(states.std(0), 1e-6), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ds.returns, [np.sum(ep.rewards, dtype=np.float64) for ep in ds.episodes])
    assert (ds.ref_min_score, ds.ref_max_score) == (-20.272305, 3234.3)  # written into the metadata
    assert ds.metadata["ref_min_score"] == -20.272305
    assert ds.normalized_score(3234.3) == pytest.approx(100.0)
    norm = StateNormalizer.from_dataset(ds)  # what the trainer gives the sampler and the agent
    np.testing.assert_array_equal(norm.mean, np.asarray(ds.state_mean, np.float32))
    np.testing.assert_array_equal(norm.std, np.maximum(np.asarray(ds.state_std, np.float32), np.float32(1e-6)))
    np.testing.assert_allclose(norm.normalize(states[:5]) * norm.std + norm.mean, states[:5], rtol=1e-5, atol=1e-5)


def test_reference_scores_metadata_first_then_d4rl(make_offline_dataset):
    base = make_offline_dataset([5])
    own = OfflineDataset(base.episodes, "x/walker2d/a-v0", env_id="Walker2d-v5", ref_min_score=1.0, ref_max_score=2.0)
    assert (own.ref_min_score, own.ref_max_score) == (1.0, 2.0)
    fallback = OfflineDataset(base.episodes, "x/walker2d/a-v0", env_id="Walker2d-v5")
    assert (fallback.ref_min_score, fallback.ref_max_score) == (1.629008, 4592.3)
    unknown = OfflineDataset(base.episodes, "x/cartpole/a-v0", env_id="CartPole-v1")
    assert unknown.ref_min_score is None
    with pytest.raises(DatasetFormatError, match="reference scores"):
        unknown.normalized_score(1.0)


def test_obs_action_alignment(tmp_path, minari_store):
    """Actions that are a known function of the observation: action t must pair with observation t."""
    from rl_minrnn.envs.offline.build_dataset import build_dataset
    from rl_minrnn.envs.offline.policies import MLPPolicy

    W = np.zeros((3, 11), np.float32)
    W[0, 0], W[1, 5], W[2, 8] = 2.0, 1.5, -1.0  # a = tanh(W @ obs): a linear policy, no hidden layer
    params = {"obs_mean": np.zeros(11, np.float32), "obs_var": np.ones(11, np.float32) - 1e-8,
              "obs_clip": np.float32(np.inf), "mu.weight": W, "mu.bias": np.zeros(3, np.float32)}
    path = tmp_path / "linear.npz"
    MLPPolicy(params, "relu", "tanh").save(path)
    build_dataset(path, "Hopper-v5", 300, "test/hopper/aligned-v0", seed=3, num_envs=3, progress=False, verbose=False)
    ds = load_dataset("test/hopper/aligned-v0")
    for ep in ds.episodes:
        obs = ep.observations.astype(np.float64)
        expected = np.tanh(obs[:-1] @ W.T.astype(np.float64))
        np.testing.assert_allclose(ep.actions, expected, atol=1e-5)
        shifted = np.tanh(obs[1:] @ W.T.astype(np.float64))
        assert np.abs(ep.actions - shifted).max() > 1e-3  # pairing with t+1 would be detected


def test_minari_reads_our_files_and_env(tiny_dataset):
    import minari

    m = minari.load_dataset(tiny_dataset.dataset_id)
    assert m.total_steps == 400 and m.total_episodes == len(tiny_dataset.episodes)
    first = next(m.iterate_episodes())
    np.testing.assert_array_equal(first.observations, tiny_dataset.episodes[0].observations)
    assert first.id == 0
    env = m.recover_environment(eval_env=True)
    assert env.spec.id == "Hopper-v5" and env.spec.max_episode_steps == 1000
    env.close()


def test_make_env_from_dataset_and_ids(tiny_dataset):
    for source in (tiny_dataset, tiny_dataset.dataset_id, "Hopper-v5"):
        env = make_env(source)
        obs, _ = env.reset(seed=0)
        assert obs.shape == (11,) and env.spec.id == "Hopper-v5"
        env.close()


def test_unknown_id_is_one_clear_error(tiny_dataset, minari_store):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("mujoco/hopper/medium-v0")
    text = str(info.value)
    assert "mujoco/hopper/medium-v0" in text
    assert str(minari_store) in text  # the folder searched
    assert tiny_dataset.dataset_id in text  # what is there
    assert "minari download" in text and "rl_minrnn.envs.offline.build_suite" in text  # the ways out
    assert "offline" in text
    with pytest.raises(DatasetNotFoundError, match="not a valid"):
        load_dataset("not a dataset id!")


def test_download_is_attempted_only_when_a_remote_answers(monkeypatch):
    calls = []
    monkeypatch.delenv("RL_MINRNN_OFFLINE", raising=False)
    monkeypatch.setattr(store, "_offline_reason", lambda timeout: "no connection (test)")
    import minari

    monkeypatch.setattr(minari, "download_dataset", lambda *a, **k: calls.append(a))
    with pytest.raises(DatasetNotFoundError, match="no connection"):
        load_dataset("mujoco/walker2d/medium-v0")
    assert calls == []
    monkeypatch.setattr(store, "_offline_reason", lambda timeout: None)

    def boom(*a, **k):
        raise RuntimeError("deep inside minari")

    monkeypatch.setattr(minari, "download_dataset", boom)
    with pytest.raises(DatasetNotFoundError, match="deep inside minari"):
        load_dataset("mujoco/walker2d/medium-v0")


def test_local_namespace_and_store_first(make_offline_dataset, minari_store):
    ds = make_offline_dataset([4, 6], obs_dim=11, act_dim=3)
    write_dataset("mujoco/hopper/medium-v0", ds.episodes, "Hopper-v5")  # a stand-in for the real one
    loaded = load_dataset("mujoco/hopper/medium-v0")
    assert loaded.path == minari_store / "mujoco/hopper/medium-v0"
    assert [len(e) for e in loaded.episodes] == [4, 6]
    assert [e.seed for e in loaded.episodes] == [0, 1]
    with pytest.raises(D.DatasetExistsError):
        write_dataset("mujoco/hopper/medium-v0", ds.episodes, "Hopper-v5")
    D.delete_dataset("mujoco/hopper/medium-v0")
    assert "mujoco/hopper/medium-v0" not in D.list_local_datasets()


def test_corrupt_files_give_format_errors(make_offline_dataset, minari_store):
    ds = make_offline_dataset([5], obs_dim=11, act_dim=3)
    path = write_dataset("test/hopper/corrupt-v0", ds.episodes, "Hopper-v5")
    (path / "data" / "main_data.hdf5").write_bytes(b"this is not hdf5")
    with pytest.raises(DatasetFormatError, match="corrupt") as info:
        load_dataset("test/hopper/corrupt-v0")
    assert "test/hopper/corrupt-v0" in str(info.value)
    (path / "data" / "metadata.json").write_text("{ not json")
    with pytest.raises(DatasetFormatError, match="metadata"):
        load_dataset("test/hopper/corrupt-v0")


def test_unequal_lengths_are_rejected():
    with pytest.raises(DatasetFormatError, match="T\\+1"):
        Episode(np.zeros((5, 2)), np.zeros((5, 1)), np.zeros(5), np.zeros(5, bool), np.zeros(5, bool))
    with pytest.raises(DatasetFormatError, match="actions"):
        Episode(np.zeros((6, 2)), np.zeros((4, 1)), np.zeros(5), np.zeros(5, bool), np.zeros(5, bool))


def test_sample_dataset_is_shipped_and_loads():
    if not (store.PACKAGE_DATA_DIR / SAMPLE_DATASET_ID / "data" / "metadata.json").is_file():
        pytest.skip("sample dataset not built yet")
    ds = load_dataset(SAMPLE_DATASET_ID)
    assert ds.env_id == "Hopper-v5" and ds.obs_dim == 11 and ds.act_dim == 3
    assert ds.path == store.PACKAGE_DATA_DIR / SAMPLE_DATASET_ID
    assert ds.num_steps >= 50_000
