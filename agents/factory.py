"""Build an agent from the ``model`` section of the configuration."""

from __future__ import annotations

import dataclasses
import inspect

from rl_minrnn.configs.schema import DEFAULT_RETURN_SCALE

from .base import DecisionAgent
from .decision_rnn import DecisionRNN
from .decision_transformer import DecisionTransformer

AGENTS = {cls.kind: cls for cls in (DecisionRNN, DecisionTransformer)}  # a new kind: its class here


def constructor_options(cls: type) -> tuple[str, ...]:
    """The keyword options an agent class takes: its own ``__init__``'s and those of the classes it builds on
    (``DecisionAgent``'s shared ones), so the registry line is all a new agent kind needs here."""
    names = []
    for klass in cls.__mro__:
        if isinstance(klass, type) and issubclass(klass, DecisionAgent):
            for p in inspect.signature(klass.__init__).parameters.values():
                if p.kind is p.KEYWORD_ONLY and p.name not in names:
                    names.append(p.name)
    return tuple(names)


def agent_kwargs(model) -> dict:
    """The ``model`` config fields the agent of ``model.kind`` takes (the rest belong to other kinds)."""
    model = dataclasses.asdict(model) if dataclasses.is_dataclass(model) else dict(model)
    kind = model["kind"]
    if kind not in AGENTS:
        raise ValueError(f"model.kind must be one of {sorted(AGENTS)}, got {kind!r}")
    return {name: model[name] for name in constructor_options(AGENTS[kind]) if name in model}


def build_agent(model, obs_dim: int, act_dim: int, state_mean=None, state_std=None, return_scale: float = DEFAULT_RETURN_SCALE) -> DecisionAgent:
    """``model``: a ``ModelConfig`` or its dict."""
    kind = model.kind if dataclasses.is_dataclass(model) else model["kind"]
    return AGENTS[kind](
        obs_dim, act_dim, state_mean=state_mean, state_std=state_std, return_scale=return_scale, **agent_kwargs(model)
    )
