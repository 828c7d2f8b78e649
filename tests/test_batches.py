"""Training batches: return-to-go, masks and padding, episode boundaries, sampling, exact resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rl_minrnn.envs.offline.batches import SequenceSampler, WindowSampler
from rl_minrnn.envs.offline.normalization import StateNormalizer

KEYS = {"states", "actions", "returns_to_go", "timesteps", "mask"}


def locate(ds, norm, states_row):
    """(episode, position) of a real normalised state, found by brute force."""
    for e, ep in enumerate(ds.episodes):
        hits = np.flatnonzero(np.all(norm.normalize(ep.observations[:-1]) == states_row, axis=1))
        if len(hits):
            return e, int(hits[0])
    raise AssertionError("state not found in any episode")


def brute_rtg(rewards, t):
    return sum(float(r) for r in rewards[t:])


def test_window_batch_contract(make_offline_dataset):
    ds = make_offline_dataset([7, 30, 3, 12], obs_dim=4, act_dim=2)
    sampler = WindowSampler(ds, context=10, batch_size=32, return_scale=10.0, seed=0)
    b = sampler.sample()
    assert set(b) == KEYS
    assert b["states"].shape == (32, 10, 4) and b["states"].dtype == np.float32
    assert b["actions"].shape == (32, 10, 2) and b["actions"].dtype == np.float32
    assert b["returns_to_go"].shape == (32, 10) and b["returns_to_go"].dtype == np.float32
    assert b["timesteps"].shape == (32, 10) and b["timesteps"].dtype == np.int64
    assert b["mask"].shape == (32, 10) and b["mask"].dtype == np.float32
    np.testing.assert_array_equal(sampler.normalizer.mean, ds.state_mean)


@pytest.mark.parametrize("sampler_kind", ["window", "sequence"])
def test_rows_match_brute_force(make_offline_dataset, sampler_kind):
    """Every real step equals the episode's own data; rtg is the brute-force suffix sum; padding at the end."""
    ds = make_offline_dataset([5, 17, 2, 9, 40], obs_dim=3, act_dim=2, seed=1)
    scale = 7.0
    norm = StateNormalizer.from_dataset(ds)
    if sampler_kind == "window":
        sampler = WindowSampler(ds, context=8, batch_size=64, return_scale=scale, normalizer=norm, seed=2)
    else:
        sampler = SequenceSampler(ds, chunk_len=6, batch_size=4, return_scale=scale, normalizer=norm, seed=2)
    for _ in range(5):
        b = sampler.sample()
        for i in range(b["mask"].shape[0]):
            m = b["mask"][i]
            n_real = int(m.sum())
            assert n_real >= 1
            np.testing.assert_array_equal(m[:n_real], 1.0)  # real steps first ...
            np.testing.assert_array_equal(m[n_real:], 0.0)  # ... padding at the end
            e, t0 = locate(ds, norm, b["states"][i, 0])
            ep = ds.episodes[e]
            ts = np.arange(t0, t0 + n_real)
            assert ts[-1] < len(ep)  # never crosses the episode's end
            assert n_real == min(b["mask"].shape[1], len(ep) - t0)  # and stops only there
            np.testing.assert_array_equal(b["states"][i, :n_real], norm.normalize(ep.observations[ts]))
            np.testing.assert_array_equal(b["actions"][i, :n_real], ep.actions[ts])
            np.testing.assert_array_equal(b["timesteps"][i, :n_real], ts)
            expected = np.array([brute_rtg(ep.rewards, t) for t in ts]) / scale
            np.testing.assert_allclose(b["returns_to_go"][i, :n_real], expected, rtol=1e-5, atol=1e-6)
            for key in ("states", "actions", "returns_to_go", "timesteps"):
                assert not np.any(b[key][i, n_real:])  # padding is zeros


def test_episodes_sampled_in_proportion_to_length(make_offline_dataset):
    ds = make_offline_dataset([10, 90], obs_dim=2, act_dim=1)
    norm = StateNormalizer(np.zeros(2), np.ones(2))  # identity
    sampler = WindowSampler(ds, context=1, batch_size=20_000, return_scale=1000.0, normalizer=norm, seed=0)
    b = sampler.sample()
    first_states = ds.episodes[0].observations[:-1]
    in_first = (b["states"][:, 0, None, :] == first_states[None]).all(-1).any(-1)
    assert abs(in_first.mean() - 0.1) < 0.01


def test_timesteps_clipped_to_max_timestep(make_offline_dataset):
    ds = make_offline_dataset([50], obs_dim=2, act_dim=1)
    b = WindowSampler(ds, context=50, batch_size=8, return_scale=1000.0, seed=0, max_timestep=20).sample()
    assert b["timesteps"].max() == 19
    b = SequenceSampler(ds, chunk_len=None, batch_size=2, return_scale=1000.0, seed=0, max_timestep=20).sample()
    assert b["timesteps"].max() == 19 and b["timesteps"].shape == (2, 50)


def test_sequence_lanes_walk_episodes_in_order(make_offline_dataset):
    lengths = [5, 12, 3, 8]
    ds = make_offline_dataset(lengths, obs_dim=3, act_dim=1, seed=4)
    norm = StateNormalizer.from_dataset(ds)
    sampler = SequenceSampler(ds, chunk_len=4, batch_size=2, return_scale=1000.0, normalizer=norm, seed=0)
    lane_steps = [[] for _ in range(2)]  # per lane: list of (episode, t)
    for _ in range(40):
        b = sampler.sample()
        for i in range(2):
            e, t0 = locate(ds, norm, b["states"][i, 0])
            assert b["reset"][i] == (t0 == 0)
            if not b["reset"][i]:  # continues exactly where the lane stopped
                assert lane_steps[i][-1] == (e, t0 - 1)
            n = int(b["mask"][i].sum())
            lane_steps[i] += [(e, t0 + k) for k in range(n)]
    assert b["reset"].dtype == bool
    # every episode is visited from start to end; episodes come from a shuffled queue (each once per pass)
    visits = [e for steps in lane_steps for (e, t) in steps if t == 0]
    counts = np.bincount(visits, minlength=len(lengths))
    assert counts.max() - counts.min() <= 2


def test_whole_episodes_mode(make_offline_dataset):
    ds = make_offline_dataset([4, 9, 6], obs_dim=2, act_dim=1)
    sampler = SequenceSampler(ds, chunk_len=None, batch_size=3, return_scale=1000.0, seed=0)
    b = sampler.sample()
    assert b["reset"].all()
    assert b["mask"].shape == (3, 9)
    assert sorted(b["mask"].sum(1).astype(int).tolist()) == [4, 6, 9]  # one pass: each episode once


@pytest.mark.parametrize("make", [
    lambda ds: WindowSampler(ds, context=5, batch_size=16, return_scale=1000.0, seed=3),
    lambda ds: SequenceSampler(ds, chunk_len=5, batch_size=3, return_scale=1000.0, seed=3),
    lambda ds: SequenceSampler(ds, chunk_len=None, batch_size=2, return_scale=1000.0, seed=3),
])
def test_state_dict_resumes_exactly(make_offline_dataset, make):
    ds = make_offline_dataset([11, 4, 23, 7, 15])
    a = make(ds)
    for _ in range(7):
        a.sample()
    state = json.loads(json.dumps(a.state_dict()))  # plain Python values
    expected = [a.sample() for _ in range(5)]
    b = make(ds)
    b.load_state_dict(state)
    for want in expected:
        got = b.sample()
        assert set(got) == set(want)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])


def test_state_dict_of_another_dataset_is_rejected(make_offline_dataset):
    a = WindowSampler(make_offline_dataset([5, 6]), context=3, batch_size=4, return_scale=1000.0, seed=0)
    b = WindowSampler(make_offline_dataset([5, 7]), context=3, batch_size=4, return_scale=1000.0, seed=0)
    with pytest.raises(ValueError, match="does not match"):
        b.load_state_dict(a.state_dict())


def test_samplers_on_a_built_dataset(tiny_dataset):
    b = WindowSampler(tiny_dataset, context=20, batch_size=64, return_scale=1000.0, seed=0).sample()
    assert b["states"].shape == (64, 20, 11)
    assert np.isfinite(b["states"]).all()
    b = SequenceSampler(tiny_dataset, chunk_len=16, batch_size=4, return_scale=1000.0, seed=0).sample()
    assert b["states"].shape == (4, 16, 11) and b["reset"].all()


@pytest.mark.parametrize("sampling", ["start", "end", "cover"])
def test_window_sampling_covers_each_step_as_documented(make_offline_dataset, sampling):
    """All windows a sampling mode allows, enumerated: each is a real slice of its episode, padded at the
    end, and the number of windows holding step t is the documented one (brute-force count)."""
    lengths, k = [3, 8, 25], 5
    ds = make_offline_dataset(lengths, obs_dim=2, act_dim=1, seed=4)
    norm = StateNormalizer.from_dataset(ds)
    sampler = WindowSampler(ds, context=k, batch_size=4, return_scale=1000.0, normalizer=norm, seed=0, sampling=sampling)
    extra = {"start": 0, "end": 0, "cover": k - 1}[sampling]
    assert sampler.num_windows == sum(lengths) + extra * len(lengths)
    b = sampler.windows(np.arange(sampler.num_windows))
    counts = [np.zeros(n, dtype=int) for n in lengths]
    for i in range(sampler.num_windows):
        n_real = int(b["mask"][i].sum())
        np.testing.assert_array_equal(b["mask"][i, :n_real], 1.0)
        np.testing.assert_array_equal(b["mask"][i, n_real:], 0.0)
        e, t0 = locate(ds, norm, b["states"][i, 0])
        np.testing.assert_array_equal(b["timesteps"][i, :n_real], np.arange(t0, t0 + n_real))
        counts[e][t0:t0 + n_real] += 1
    for n, c in zip(lengths, counts):
        t = np.arange(n)
        expected = {"start": np.minimum(t + 1, k), "end": np.minimum(n - t, k), "cover": np.full(n, k)}[sampling]
        np.testing.assert_array_equal(c, expected)


def test_window_sampling_is_checked_on_resume(make_offline_dataset):
    ds = make_offline_dataset([10, 12], obs_dim=2, act_dim=1)
    state = WindowSampler(ds, context=4, batch_size=2, return_scale=1000.0, sampling="cover").state_dict()
    with pytest.raises(ValueError, match="sampling"):
        WindowSampler(ds, context=4, batch_size=2, return_scale=1000.0, sampling="start").load_state_dict(state)
    with pytest.raises(ValueError, match="sampling must be one of"):
        WindowSampler(ds, context=4, batch_size=2, return_scale=1000.0, sampling="middle")
