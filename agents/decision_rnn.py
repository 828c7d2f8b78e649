"""Decision-RNN: Decision Transformer's tokens and head around a stack of minGRU / minLSTM blocks.

Rollouts carry the recurrent state (``recurrent`` mode): O(1) work and memory per env step whatever the
episode length. Training can start every window from a zero state (``window`` regime) or walk whole
episodes in consecutive chunks with the state carried between them (``sequence`` regime), which is
what a carried-state rollout sees.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from rl_minrnn import BlockState, MinRNNStack
from rl_minrnn.dropout import Dropout
from rl_minrnn.blocks import BLOCK_OPTIONS
from rl_minrnn.cells import CELL_OPTIONS, hidden_width
from rl_minrnn.ranges import OptionError

from .base import DecisionAgent


class RNNAgentState(NamedTuple):
    """The carried state: one entry per layer, and the last action (the fused layout's next a_{t-1})."""

    stack: list
    prev_action: torch.Tensor | None


class DecisionRNN(DecisionAgent):
    rollout_modes = ("recurrent", "window")
    default_rollout_mode = "recurrent"
    trains_on_sequences = True
    OPTION_RULES = {"cell": BLOCK_OPTIONS["cell"], "expansion": CELL_OPTIONS["expansion"], "conv": BLOCK_OPTIONS["conv"]}

    @classmethod
    def check_option_relations(cls, options: dict) -> None:
        super().check_option_relations(options)
        try:
            hidden_width(options["width"], options["expansion"])
        except ValueError as exc:
            raise OptionError(f"expansion: {exc}") from None

    def __init__(self, obs_dim: int, act_dim: int, *, cell: str = "mingru", expansion: float = 1.0, conv: int = 0,
                 **shared):
        """``cell``, ``expansion`` and ``conv`` shape the minRNN stack; ``shared``: ``DecisionAgent``'s."""
        super().__init__(obs_dim, act_dim, **shared)
        self.embed_dropout = Dropout(self.dropout_p)
        self.stack = MinRNNStack(self.width, self.depth, cell=cell, expansion=expansion, mlp_ratio=self.mlp_ratio,
                                 dropout=self.dropout_p, conv=conv)
        self.finish_layers()

    def forward(self, states, actions, returns_to_go, timesteps, state: RNNAgentState | None = None):
        stack_state, prev_action = (None, None) if state is None else state
        tokens = self.embed_dropout(self.embed(states, actions, returns_to_go, timesteps, prev_action))
        hidden, stack_state = self.stack(tokens, stack_state)
        preds = self.head(self.embed.action_outputs(hidden))
        last_action = actions[:, -1] if self.embed.layout == "fused" else None
        return preds, RNNAgentState(stack_state, last_action)

    def carried_state_to_payload(self, state: RNNAgentState | None):
        if state is None:
            return None
        return {"stack": [[s.h, s.conv] for s in state.stack], "prev_action": state.prev_action}

    def carried_state_from_payload(self, payload, device) -> RNNAgentState | None:
        if payload is None:
            return None
        to = lambda t: None if t is None else t.to(device)  # noqa: E731
        return RNNAgentState([BlockState(to(h), to(c)) for h, c in payload["stack"]], to(payload["prev_action"]))

    # ------------------------------------------------------------------ O(1) rollout
    def _reset_recurrent(self):
        self._state = None
        self._prev_action = None

    def _act_recurrent(self, returns, states):
        tokens = self.embed.step_tokens(states, returns, self._t, self._prev_action)
        if len(tokens) == 1:
            hidden, self._state = self.stack.step(tokens[0], self._state)
        else:  # a_{t-1}, R_t, s_t as one 3-token sequence: one call per layer instead of three (same numbers)
            hidden, self._state = self.stack(torch.stack(tokens, dim=1), self._state)
            hidden = hidden[:, -1]
        return self.head(hidden)

    def _observe_recurrent(self, actions):
        self._prev_action = actions
