"""Batched rollout: batched = one by one = a hand-written single-env loop; masking; results; scores."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from rl_minrnn.agents.base import DecisionAgent
from rl_minrnn.envs.evaluation.environments import EnvironmentMismatchError
from rl_minrnn.envs.evaluation.results import EvaluationResult, results_markdown
from rl_minrnn.envs.evaluation.rollout import evaluate_agent
from rl_minrnn.envs.scores import ReferenceScores, d4rl_reference_scores, normalized_score

ENV_ID = "Hopper-v5"
MAX_STEPS = 60


class FixedPolicyAgent(torch.nn.Module):
    """Test double of the rollout protocol: seeded fixed weights, a carried recurrent state.

    ``recurrent``: h_t = 0.8 h_{t-1} + tanh(W [s_t, rtg_t / 1000, a_{t-1}]), a_t = tanh(A h_t + b).
    ``window``: the same recurrence re-run from zero over the last ``context`` steps (as DT does).
    Every row is computed on its own, so the output does not depend on the batch size.
    """

    rollout_modes = ("recurrent", "window")
    default_rollout_mode = "recurrent"

    def __init__(self, obs_dim: int = 11, act_dim: int = 3, hidden: int = 16, context: int = 4, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.obs_dim, self.act_dim, self.context = obs_dim, act_dim, context
        self.w_in = torch.nn.Parameter(torch.randn(obs_dim + 1 + act_dim, hidden, generator=g) * 0.4)
        self.w_out = torch.nn.Parameter(torch.randn(hidden, act_dim, generator=g) * 0.6)
        self.bias = torch.nn.Parameter(torch.randn(act_dim, generator=g) * 0.1)
        self.calls = {"act": 0, "observe": 0, "rows": set()}

    resolve_rollout_mode = classmethod(DecisionAgent.resolve_rollout_mode.__func__)  # the protocol's one rule

    def reset(self, batch_size: int, mode: str | None = None) -> None:
        self.mode = self.resolve_rollout_mode(mode)
        self.batch_size = batch_size
        self.h = torch.zeros(batch_size, self.w_in.shape[1], dtype=torch.float64)
        self.prev_action = torch.zeros(batch_size, self.act_dim, dtype=torch.float64)
        self.inputs: list[torch.Tensor] = []

    def _cell(self, h, x):
        # one row at a time, in float64: no batch-size-dependent kernels
        drive = torch.stack([torch.tanh(row @ self.w_in.double()) for row in x])
        return 0.8 * h + drive

    @torch.no_grad()
    def act(self, returns_to_go: np.ndarray, states: np.ndarray) -> np.ndarray:
        assert states.shape == (self.batch_size, self.obs_dim) and states.dtype == np.float32
        assert returns_to_go.shape == (self.batch_size,) and returns_to_go.dtype == np.float32
        self.calls["act"] += 1
        x = torch.cat(
            [
                torch.from_numpy(states).double(),
                torch.from_numpy(returns_to_go).double()[:, None] / 1000.0,
                self.prev_action,
            ],
            dim=1,
        )
        if self.mode == "recurrent":
            self.h = self._cell(self.h, x)
            h = self.h
        else:
            self.inputs = (self.inputs + [x])[-self.context :]
            h = torch.zeros_like(self.h)
            for past in self.inputs:
                h = self._cell(h, past)
        actions = torch.tanh(h @ self.w_out.double() + self.bias.double())
        return actions.float().numpy()

    def observe(self, actions: np.ndarray) -> None:
        assert actions.shape == (self.batch_size, self.act_dim)
        self.calls["observe"] += 1
        self.prev_action = torch.from_numpy(np.asarray(actions)).double()


def hand_written_returns(agent, num_episodes, target, seed, max_steps=MAX_STEPS, mode=None):
    """The plainest possible loop: one env, one episode at a time, batch of one."""
    returns, lengths = [], []
    for i in range(num_episodes):
        env = gym.make(ENV_ID)
        obs, _ = env.reset(seed=seed + i)
        agent.reset(1, mode=mode)
        total, rtg, t = 0.0, float(target), 0
        while True:
            action = agent.act(np.array([rtg], dtype=np.float32), np.asarray(obs, dtype=np.float32)[None])
            obs, reward, terminated, truncated, _ = env.step(action[0])
            agent.observe(action)
            total += float(reward)
            rtg = float(target) - total
            t += 1
            if terminated or truncated or t >= max_steps:
                break
        returns.append(total)
        lengths.append(t)
        env.close()
    return np.array(returns), np.array(lengths)


@pytest.fixture(scope="module")
def agent():
    return FixedPolicyAgent()


@pytest.fixture(scope="module")
def batched(agent):
    return evaluate_agent(agent, ENV_ID, 4, [3600.0, 1800.0], seed=3, max_episode_steps=MAX_STEPS, progress=False)


def test_batched_equals_one_by_one_and_hand_written_loop(agent, batched):
    one_by_one = evaluate_agent(
        agent, ENV_ID, 4, [3600.0, 1800.0], seed=3, max_episode_steps=MAX_STEPS, batch_size=1, progress=False
    )
    for a, b in zip(batched.targets, one_by_one.targets):
        np.testing.assert_array_equal(a.returns, b.returns)
        np.testing.assert_array_equal(a.lengths, b.lengths)
    returns, lengths = hand_written_returns(agent, 4, 3600.0, seed=3)
    np.testing.assert_array_equal(batched.targets[0].lengths, lengths)
    np.testing.assert_array_equal(batched.targets[0].returns, returns)


def test_episodes_have_different_lengths_and_finished_ones_are_not_stepped(batched):
    target = batched.targets[0]
    # this policy makes Hopper fall at different times, so masking is exercised
    assert len(set(target.lengths.tolist())) > 1
    assert target.lengths.max() <= MAX_STEPS
    assert len(target.active) == target.lengths.max()  # one batched call per env step
    assert target.active.sum() == target.lengths.sum()  # env steps taken = episode steps
    assert target.active[0] == 4 and target.active[-1] >= 1


def test_seed_fixes_every_episode(agent, batched):
    again = evaluate_agent(agent, ENV_ID, 4, 3600.0, seed=3, max_episode_steps=MAX_STEPS, progress=False)
    np.testing.assert_array_equal(again.targets[0].returns, batched.targets[0].returns)
    # episode i of seed 3 is episode i - 1 of seed 4
    shifted = evaluate_agent(agent, ENV_ID, 3, 3600.0, seed=4, max_episode_steps=MAX_STEPS, progress=False)
    np.testing.assert_array_equal(shifted.targets[0].returns, batched.targets[0].returns[1:])


def test_target_return_reaches_the_agent(agent, batched):
    # the return-to-go is an input of the test agent, so another target changes the actions
    assert not np.array_equal(batched.targets[0].returns, batched.targets[1].returns)


def test_window_mode_runs_and_differs(agent, batched):
    window = evaluate_agent(
        agent, ENV_ID, 4, 3600.0, seed=3, mode="window", max_episode_steps=MAX_STEPS, progress=False
    )
    assert window.mode == "window" and batched.mode == "recurrent"
    assert not np.array_equal(window.targets[0].returns, batched.targets[0].returns)
    returns, _ = hand_written_returns(agent, 4, 3600.0, seed=3, mode="window")
    np.testing.assert_array_equal(window.targets[0].returns, returns)
    with pytest.raises(ValueError, match="has rollout modes recurrent, window, not .chunked."):
        evaluate_agent(agent, ENV_ID, 1, 3600.0, mode="chunked", max_episode_steps=5, progress=False)


def test_normalized_score_formula_and_result_fields(batched):
    refs = d4rl_reference_scores(ENV_ID)
    assert batched.ref_scores == refs
    target = batched.targets[0]
    expected = 100.0 * (target.returns - refs.min_score) / (refs.max_score - refs.min_score)
    np.testing.assert_allclose(target.normalized_scores, expected)
    assert normalized_score(refs.min_score, refs.min_score, refs.max_score) == 0.0
    assert normalized_score(refs.max_score, refs.min_score, refs.max_score) == pytest.approx(100.0)
    s = target.summary()
    assert s["return_mean"] == pytest.approx(np.mean(target.returns))
    assert s["return_std"] == pytest.approx(np.std(target.returns))
    assert s["normalized_score_mean"] == pytest.approx(np.mean(expected))
    assert s["length_mean"] == pytest.approx(np.mean(target.lengths))
    for key in ("agent_ms_p50", "agent_ms_p99", "env_ms_p50", "env_ms_p99"):
        assert s[key] > 0
    assert s["agent_ms_p99"] >= s["agent_ms_p50"]


def test_dataset_reference_scores_are_used():
    agent = FixedPolicyAgent()
    refs = ReferenceScores(0.0, 1000.0, "dataset")
    result = evaluate_agent(agent, ENV_ID, 2, 3600.0, ref_scores=refs, max_episode_steps=10, progress=False)
    np.testing.assert_allclose(result.targets[0].normalized_scores, result.targets[0].returns / 10.0)


def test_to_dict_markdown_and_metrics(batched):
    data = json.loads(json.dumps(batched.to_dict()))
    assert data["env_id"] == ENV_ID and data["mode"] == "recurrent" and data["num_episodes"] == 4
    assert [t["target_return"] for t in data["targets"]] == [3600.0, 1800.0]
    assert len(data["targets"][0]["returns"]) == 4
    table = batched.to_markdown()
    assert table.count("\n| Hopper-v5 | recurrent |") == 2
    assert "3600" in table and "agent ms/step" in table
    metrics = batched.metrics()
    assert metrics["eval/3600_normalized_score_mean"] == pytest.approx(data["targets"][0]["normalized_score_mean"])
    assert "eval/1800_agent_ms_p50" in metrics
    assert results_markdown([batched, batched]).count("| recurrent |") == 4
    assert isinstance(batched, EvaluationResult)


def test_wrong_action_shape_is_a_clear_error():
    agent = FixedPolicyAgent()
    agent.act = lambda returns_to_go, states: np.zeros((len(states), 2), np.float32)
    with pytest.raises(ValueError, match=r"shape \(2, 2\), expected \(2, 3\)"):
        evaluate_agent(agent, ENV_ID, 2, 3600.0, max_episode_steps=3, progress=False)


def test_agent_is_left_in_its_training_mode_and_episode_cap_applies():
    agent = FixedPolicyAgent().train()
    result = evaluate_agent(agent, ENV_ID, 2, 3600.0, max_episode_steps=3, progress=False)
    assert agent.training
    np.testing.assert_array_equal(result.targets[0].lengths, [3, 3])
    returns, _ = hand_written_returns(agent, 2, 3600.0, seed=0, max_steps=3)
    np.testing.assert_array_equal(result.targets[0].returns, returns)


def test_mismatched_env_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # mujoco 4 writes MUJOCO_LOG.TXT (a Walker2d XML deprecation) to the cwd
    agent = FixedPolicyAgent()  # Hopper sizes: 11 / 3
    with pytest.raises(EnvironmentMismatchError) as error:
        evaluate_agent(agent, "Walker2d-v5", 1, 5000.0, max_episode_steps=3, progress=False, trained_on="Hopper-v5")
    message = str(error.value)
    assert "Walker2d-v5" in message and "17" in message and "6" in message
    assert "11" in message and "3" in message and "Hopper-v5" in message


@pytest.mark.parametrize("kind, mode", [("decision_rnn", "recurrent"), ("decision_rnn", "window"),
                                        ("decision_transformer", "window")])
def test_real_agents_batched_equals_one_by_one(kind, mode):
    """The real agents: float32 matrix kernels may pick another path for a single row, so returns agree
    to float32 rounding (about 1e-6 relative), not bit for bit; episode lengths agree exactly."""
    from rl_minrnn.agents import build_agent
    from rl_minrnn.configs.schema import ModelConfig

    torch.manual_seed(0)
    agent = build_agent(ModelConfig(kind=kind, width=16, depth=2, context=5, dropout=0.0), 11, 3)
    runs = [evaluate_agent(agent, ENV_ID, 4, [300.0], seed=3, mode=mode, max_episode_steps=40, progress=False,
                           batch_size=b).targets[0] for b in (None, 1)]
    np.testing.assert_array_equal(runs[0].lengths, runs[1].lengths)
    np.testing.assert_allclose(runs[0].returns, runs[1].returns, rtol=1e-4)
