"""Build an agent from the ``model`` section of the configuration."""

from __future__ import annotations

import dataclasses

from .base import DEFAULT_RETURN_SCALE, DecisionAgent
from .decision_rnn import DecisionRNN
from .decision_transformer import DecisionTransformer

AGENTS = {"decision_rnn": DecisionRNN, "decision_transformer": DecisionTransformer}
# ModelConfig fields each agent takes (the rest belong to the other agent).
_SHARED = ("context", "width", "depth", "tokens", "mlp_ratio", "dropout", "max_timestep", "init")
_FIELDS = {
    "decision_rnn": _SHARED + ("cell", "expansion", "conv"),
    "decision_transformer": _SHARED + ("heads", "position_embedding"),
}


def agent_kwargs(model) -> dict:
    model = dataclasses.asdict(model) if dataclasses.is_dataclass(model) else dict(model)
    kind = model["kind"]
    if kind not in AGENTS:
        raise ValueError(f"model.kind must be one of {sorted(AGENTS)}, got {kind!r}")
    return {name: model[name] for name in _FIELDS[kind]}


def build_agent(model, obs_dim: int, act_dim: int, state_mean=None, state_std=None, return_scale: float = DEFAULT_RETURN_SCALE) -> DecisionAgent:
    """``model``: a ``ModelConfig`` or its dict."""
    kind = model.kind if dataclasses.is_dataclass(model) else model["kind"]
    return AGENTS[kind](
        obs_dim, act_dim, state_mean=state_mean, state_std=state_std, return_scale=return_scale, **agent_kwargs(model)
    )
