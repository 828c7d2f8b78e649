"""The rollout step that gets exported: one env step of an agent as a module with explicit tensors in and out.

An exported step takes raw environment values and the carried state, and gives the action and the next
state; nothing is hidden in Python objects between calls::

    action, *next_state = step(observation (B, obs_dim) float32, return_to_go (B,) float32,
                               prev_action (B, act_dim) float32, timestep (B,) int64, *state)

It is the agent's own functional step (``DecisionAgent.step``), wrapped: the state goes in and out as the
flat tensors ``pack_state`` gives, named by ``rollout_state_specs``, and the action is clipped to the
environment's action bounds (``torch.clamp``; a no-op where the bounds are [-1, 1], the tanh's own range,
as in every D4RL locomotion task). Inside the step: the state normalisation ``(s - mean) / std`` and return
scale ``R / return_scale`` (the agent's buffers, as constants), the timestep clamp to ``max_timestep - 1``,
the network and the tanh head. The step is written with fixed shapes, so one graph serves every step of an
episode: the Decision-RNN's ``recurrent`` step always feeds the three interleaved tokens, the state
keeping what it was before the action token where ``started`` is 0 (the two-token first step exactly);
the ``window`` step always runs K steps, the filled ones first, which causal models read the same.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from rl_minrnn.agents.base import DecisionAgent

FIRST_INPUTS = ("observation", "return_to_go", "prev_action", "timestep")


def _frozen_float32(agent: DecisionAgent) -> DecisionAgent:
    """A float32 copy in eval mode (dropout off) that traces, so exporting never changes the caller's agent."""
    agent = copy.deepcopy(agent).float().eval()
    for p in agent.parameters():
        p.requires_grad_(False)
    agent.prepare_for_tracing()
    return agent


class RolloutStep(nn.Module):
    """``agent.step`` for rollout ``mode`` with flat state tensors and the action clipped to the bounds."""

    def __init__(self, agent: DecisionAgent, mode: str, action_low, action_high):
        super().__init__()
        self.mode = agent.resolve_rollout_mode(mode)
        self.agent = _frozen_float32(agent)
        low = torch.as_tensor(action_low, dtype=torch.float32).reshape(-1)
        high = torch.as_tensor(action_high, dtype=torch.float32).reshape(-1)
        if low.shape != (agent.act_dim,) or high.shape != (agent.act_dim,):
            raise ValueError(f"action bounds must have {agent.act_dim} entries, got {tuple(low.shape)} and {tuple(high.shape)}")
        self.register_buffer("action_low", low)
        self.register_buffer("action_high", high)

    def state_specs(self) -> list[dict]:
        """``[{"name", "shape" (None = batch), "dtype", "initial", "doc"}]`` in the order the step takes them."""
        return self.agent.rollout_state_specs(self.mode)

    def example_state(self, batch: int) -> tuple[torch.Tensor, ...]:
        """Initial state tensors for ``batch`` rows (what every episode starts from)."""
        return self.agent.pack_state(self.agent.initial_state(batch, self.mode))

    def forward(self, observation, return_to_go, prev_action, timestep, *state):
        agent = self.agent
        action, next_state = agent.step(observation, return_to_go, prev_action, timestep,
                                        agent.unpack_state(self.mode, state))
        return (torch.clamp(action, self.action_low, self.action_high), *agent.pack_state(next_state))


def step_module(agent: DecisionAgent, mode: str, action_low, action_high) -> RolloutStep:
    """The exported step of ``agent`` for rollout ``mode`` (one of ``agent.rollout_modes``)."""
    if mode not in agent.rollout_modes:
        raise ValueError(f"{type(agent).__name__} has rollout modes {agent.rollout_modes}, not {mode!r}")
    return RolloutStep(agent, mode, action_low, action_high)
