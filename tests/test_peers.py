"""The d3rlpy peer (benchmarks/peers): the data it is given, the settings it runs with, how its evaluations
are scored, and (slow) one real run in its own virtual environment."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.peers import d3rlpy_dt
from rl_minrnn.training.options import load_config
from rl_minrnn.envs.scores import normalized_score


def test_export_is_the_episodes_in_d4rl_layout(make_offline_dataset, tmp_path):
    ds = make_offline_dataset([4, 7, 3], obs_dim=3, act_dim=2, seed=5)
    ds.episodes[1].terminations[:] = False  # episode 1 was truncated (a time limit), not terminated
    ds.episodes[1].truncations[-1] = True
    path = d3rlpy_dt.export_dataset(ds, tmp_path / "flat.npz")
    flat = np.load(path)
    np.testing.assert_array_equal(flat["observations"], np.concatenate([ep.observations[:-1] for ep in ds.episodes]))
    np.testing.assert_array_equal(flat["actions"], np.concatenate([ep.actions for ep in ds.episodes]).astype(np.float32))
    np.testing.assert_array_equal(flat["rewards"], np.concatenate([ep.rewards for ep in ds.episodes]).astype(np.float32))
    ends = np.cumsum([4, 7, 3]) - 1
    assert list(np.flatnonzero(flat["terminals"])) == [ends[0], ends[2]]
    assert list(np.flatnonzero(flat["timeouts"])) == [ends[1]]


def test_worker_spec_follows_the_run_config(make_offline_dataset, tmp_path):
    config = load_config(overrides=["model.kind=decision_transformer", "model.width=48", "model.depth=2",
                                    "model.heads=2", "model.context=7", "train.lr=3e-4", "train.grad_clip=0.5",
                                    "train.warmup_steps=50", "train.steps=300", "eval.every=100", "seed=3",
                                    "eval.target_returns=[1000, 500]", "dataset.return_scale=100", "train.threads=1"])
    ds = make_offline_dataset([5], obs_dim=3, act_dim=2)
    spec = d3rlpy_dt.worker_spec(config, ds, tmp_path / "x.npz")
    assert {k: spec[k] for k in ("width", "depth", "heads", "context", "lr", "grad_clip", "warmup_steps", "steps",
                                 "eval_every", "seed", "return_scale", "threads", "eval_seed")} == {
        "width": 48, "depth": 2, "heads": 2, "context": 7, "lr": 3e-4, "grad_clip": 0.5, "warmup_steps": 50,
        "steps": 300, "eval_every": 100, "seed": 3, "return_scale": 100.0, "threads": 1, "eval_seed": config.eval.seed}
    assert spec["target_returns"] == [1000.0, 500.0] and spec["env_id"] == ds.env_id


def test_peer_evaluations_are_scored_like_ours(make_offline_dataset):
    ds = make_offline_dataset([5])
    ds.ref_min_score, ds.ref_max_score = -20.0, 3000.0
    raw = [{"target_return": 3600.0, "returns": [100.0, 900.0], "lengths": [50, 200], "agent_ms": [1.0, 2.0, 3.0],
            "env_ms": [0.1, 0.1, 0.2], "wall_s": 1.0},
           {"target_return": 1800.0, "returns": [1500.0, 1700.0], "lengths": [400, 600], "agent_ms": [1.0],
            "env_ms": [0.1], "wall_s": 1.0}]
    result = d3rlpy_dt.to_evaluation(raw, ds, {"episodes": 2, "eval_seed": 0, "max_episode_steps": 1000})
    assert result.score() == pytest.approx(float(np.mean(normalized_score(np.array([1500.0, 1700.0]), -20.0, 3000.0))))
    summary = result.targets[0].summary()
    assert summary["agent_ms_p50"] == 2.0 and summary["length_mean"] == 125.0
    raw[0]["active"] = [2, 2, 1]  # batched: both episodes stepped together, then the longer one alone
    batched = d3rlpy_dt.to_evaluation(raw, ds, {"episodes": 2, "eval_seed": 0, "max_episode_steps": 1000, "eval_batch": 0})
    assert batched.batch_size == 2 and list(batched.targets[0].active) == [2, 2, 1]


@pytest.mark.slow
def test_d3rlpy_runs_in_its_own_environment(tiny_dataset, tmp_path):
    """A real (tiny) run: creates the peer venv if needed (d3rlpy from the package index), trains 6 steps,
    evaluates at steps 3 and 6, and comes back scored."""
    config = load_config(overrides=["model.kind=decision_transformer", "model.width=16", "model.depth=1",
                                    "model.context=4", "train.batch_size=8", "train.steps=6", "eval.every=3",
                                    "eval.episodes=1", "eval.max_episode_steps=10", "eval.target_returns=[300]",
                                    "train.threads=1", "train.device=cpu", "eval.final_episodes=2",
                                    "eval.final_seed=50", "train.lr_schedule=cosine"])
    try:
        outcome = d3rlpy_dt.train_and_evaluate(config, tiny_dataset, log=lambda *a: None, data_dir=tmp_path)
    except d3rlpy_dt.PeerUnavailable as exc:
        pytest.skip(f"no d3rlpy environment here: {exc}")
    assert [e["step"] for e in outcome["evals"]] == [3, 6]
    assert outcome["peer"]["version"] == "2.8.1" and outcome["parameters"] > 0
    for e in outcome["evals"]:
        (target,) = e["targets"]
        assert 1 <= target["length_mean"] <= 10 and np.isfinite(e["score"])
    assert 0 < outcome["evals"][0]["train_s"] <= outcome["evals"][1]["train_s"]
    final = outcome["final"]  # the last model, and the best in-run evaluation's, on 2 fresh episodes each
    assert final["episodes"] == 2 and final["seed"] == 50 and final["last"]["step"] == 6
    assert final["best"]["step"] in (3, 6) and np.isfinite(final["last"]["score"])
    assert final["best"].get("same_as_last", False) == (final["best"]["step"] == 6)


@pytest.mark.slow
def test_batched_peer_evaluation_plays_as_d3rlpy_wrapper_does(tiny_dataset, tmp_path):
    """The worker steps a target's episodes together (one forward pass of d3rlpy's model for all of them):
    every batched step, replayed through a fresh ``StatefulTransformerWrapper`` alone, gives the same
    action, and the episodes played one at a time end with the same returns."""
    config = load_config(overrides=["model.kind=decision_transformer", "model.width=16", "model.depth=1",
                                    "model.context=4", "train.batch_size=8", "train.steps=4", "eval.every=4",
                                    "eval.episodes=3", "eval.max_episode_steps=30", "eval.target_returns=[300, 100]",
                                    "train.threads=1", "train.device=cpu"])
    try:
        out = d3rlpy_dt.check_batched_evaluation(config, tiny_dataset, log=lambda *a: None, data_dir=tmp_path)
    except d3rlpy_dt.PeerUnavailable as exc:
        pytest.skip(f"no d3rlpy environment here: {exc}")
    assert out["steps_replayed"] >= 2 * 3 * 4  # past the context (4), so both the padded and the cut windows
    assert out["max_abs_action_difference"] == 0.0
    assert out["batched_returns"] == out["one_at_a_time_returns"]
    assert [len(r) for r in out["batched_returns"]] == [3, 3]
