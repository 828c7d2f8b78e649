"""What both agents share: token embeddings of (return-to-go, state, action, timestep), the two token
layouts, and the tanh action head. One definition, so the recurrent agent and the Transformer baseline
differ only in their sequence model."""

from __future__ import annotations

import torch
from torch import nn

from rl_minrnn.ranges import Number, OneOf

TOKEN_LAYOUTS = ("interleaved", "fused")
TOKENS_PER_STEP = {"interleaved": 3, "fused": 1}
# The embedding's options (``model.tokens``, ``model.max_timestep``: rows of the timestep table).
EMBEDDING_OPTIONS = {
    "tokens": OneOf(TOKEN_LAYOUTS),
    "max_timestep": Number(1, 1_000_000, integer=True, why="rows of the timestep embedding"),
}


class TrajectoryEmbedding(nn.Module):
    """Linear embeddings of R_t, s_t, a_t plus a learned timestep embedding (Decision Transformer's).

    ``interleaved``: tokens ``R_0, s_0, a_0, R_1, ...`` (3K tokens); the action is predicted at ``s_t``.
    ``fused``: one token ``R_t + s_t + a_{t-1}`` per timestep (K tokens); ``a_{-1}`` is a zero action.
    """

    def __init__(self, obs_dim: int, act_dim: int, width: int, max_timestep: int, layout: str):
        super().__init__()
        EMBEDDING_OPTIONS["tokens"].check(layout, "token layout")
        EMBEDDING_OPTIONS["max_timestep"].check(max_timestep, "max_timestep")
        self.layout, self.max_timestep = layout, max_timestep
        self.state = nn.Linear(obs_dim, width)
        self.action = nn.Linear(act_dim, width)
        self.ret = nn.Linear(1, width)
        self.timestep = nn.Embedding(max_timestep, width)
        self.norm = nn.LayerNorm(width)

    @property
    def input_projections(self) -> tuple[nn.Linear, nn.Linear, nn.Linear]:
        """The Linear layers that embed R, s and a (``model.init=d3rlpy`` leaves them at PyTorch's defaults)."""
        return self.ret, self.state, self.action

    def time(self, timesteps: torch.Tensor) -> torch.Tensor:
        return self.timestep(timesteps.clamp(0, self.max_timestep - 1))

    def forward(self, states, actions, returns_to_go, timesteps, prev_action=None) -> torch.Tensor:
        """``(B, K, ·)`` inputs -> ``(B, K * tokens_per_step, width)`` tokens. ``prev_action (B, act_dim)``
        is the action before the window (fused layout; zeros when None)."""
        time = self.time(timesteps)
        r = self.ret(returns_to_go.unsqueeze(-1)) + time
        s = self.state(states) + time
        if self.layout == "interleaved":
            a = self.action(actions) + time
            tokens = torch.stack([r, s, a], dim=2).flatten(1, 2)
        else:
            first = torch.zeros_like(actions[:, :1]) if prev_action is None else prev_action.unsqueeze(1).to(actions.dtype)
            previous = torch.cat([first, actions[:, :-1]], dim=1)
            tokens = r + s + self.action(previous)
        return self.norm(tokens)

    @property
    def tokens_per_step(self) -> int:
        return TOKENS_PER_STEP[self.layout]

    def step_rows(self, state, return_to_go, timestep, prev_action) -> torch.Tensor:
        """The tokens one rollout step feeds, as token-major rows (token j is rows ``j*B:(j+1)*B``):
        interleaved ``a_{t-1}, R_t, s_t`` ``(3B, width)``, normalised in one call (at an episode's first
        step the action token is the caller's to skip), or the one fused token ``(B, width)``."""
        time = self.time(timestep)
        if self.layout == "interleaved":
            tokens = [self.action(prev_action) + self.time(timestep - 1),
                      self.ret(return_to_go.unsqueeze(-1)) + time, self.state(state) + time]
            return self.norm(torch.cat(tokens, dim=0))
        r = self.ret(return_to_go.unsqueeze(-1)) + time
        s = self.state(state) + time
        return self.norm(r + s + self.action(prev_action))

    def action_outputs(self, hidden: torch.Tensor) -> torch.Tensor:
        """The outputs that predict a_t: at the s_t tokens (interleaved) or every token (fused)."""
        return hidden[:, 1::3] if self.layout == "interleaved" else hidden


class ActionHead(nn.Module):
    """Linear then tanh: actions of these tasks lie in [-1, 1]."""

    def __init__(self, width: int, act_dim: int):
        super().__init__()
        self.linear = nn.Linear(width, act_dim)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.linear(hidden))
