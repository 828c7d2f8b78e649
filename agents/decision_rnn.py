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

from .base import MODEL, DecisionAgent


class RNNAgentState(NamedTuple):
    """The carried state: one entry per layer, and the last action (the fused layout's next a_{t-1})."""

    stack: list
    prev_action: torch.Tensor | None


class DecisionRNN(DecisionAgent):
    kind = "decision_rnn"
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

    def __init__(self, obs_dim: int, act_dim: int, *, cell: str = MODEL.cell, expansion: float = MODEL.expansion,
                 conv: int = MODEL.conv, **shared):
        """``cell``, ``expansion`` and ``conv`` shape the minRNN stack; ``shared``: ``DecisionAgent``'s."""
        super().__init__(obs_dim, act_dim, **shared)
        self.cell_name, self.expansion, self.conv_width = cell, float(expansion), int(conv)
        self.hidden = hidden_width(self.width, self.expansion)
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

    @property
    def sequence_model(self) -> str:
        return self.cell_name

    @classmethod
    def layer_activation_floats(cls, model, tokens: int) -> float:
        hidden = hidden_width(model.width, model.expansion)
        projections = 3 if model.cell == "minlstm" else 2
        # LayerNorms, residuals, output projection, dropout; gate pre-activations and the scan's log-space terms
        # (coefficients, cumulative sums, the state); conv input and output; the MLP's two hidden tensors
        return (8 * model.width + (projections + 6) * hidden + (2 * model.width if model.conv else 0)
                + 2.5 * int(model.width * model.mlp_ratio))

    @classmethod
    def widest_activation(cls, model) -> int:
        return max(super().widest_activation(model), hidden_width(model.width, model.expansion))

    @classmethod
    def memory_keys(cls, model) -> tuple[list[str], list[str]]:
        return (["model.expansion"] if model.expansion > 1 else []), []

    def summary(self) -> dict:
        return {**super().summary(), "cell": self.cell_name, "depth": self.depth, "hidden": self.hidden,
                "conv": self.conv_width}

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
    def rollout_state_specs(self, mode: str | None = None) -> list[dict]:
        """``recurrent``: per layer ``h{i}`` ``(B, hidden)`` (and ``conv{i}`` ``(B, k - 1, width)`` with a
        convolution), plus, for interleaved tokens, ``started`` ``(B,)``: 0 before an episode's first step,
        whose step has no previous-action token. Zeros are the start of an episode: the cell's first step
        ``h = b`` equals ``a * 0 + b``, and a missing convolution input is zero."""
        if self.resolve_rollout_mode(mode) != "recurrent":
            return super().rollout_state_specs(mode)
        specs = []
        for i in range(self.depth):
            specs.append({"name": f"h{i}", "shape": [None, self.hidden], "dtype": "float32", "initial": 0.0,
                          "doc": f"layer {i}'s recurrent state"})
            if self.conv_width:
                specs.append({"name": f"conv{i}", "shape": [None, self.conv_width - 1, self.width], "dtype": "float32",
                              "initial": 0.0, "doc": f"layer {i}'s last {self.conv_width - 1} convolution inputs"})
        if self.embed.layout == "interleaved":
            specs.append({"name": "started", "shape": [None], "dtype": "float32", "initial": 0.0,
                          "doc": "1 once the episode has taken a step (the first step has no previous-action token)"})
        return specs

    def pack_state(self, state) -> tuple[torch.Tensor, ...]:
        if not isinstance(state, RecurrentState):
            return super().pack_state(state)
        out = []
        for layer in state.layers:
            out.extend(layer if self.conv_width else layer[:1])
        return tuple(out) + (() if state.started is None else (state.started,))

    def unpack_state(self, mode: str | None, tensors):
        if self.resolve_rollout_mode(mode) != "recurrent":
            return super().unpack_state(mode, tensors)
        per_layer = 2 if self.conv_width else 1
        layers = [BlockState(*tensors[i * per_layer:(i + 1) * per_layer]) for i in range(self.depth)]
        started = tensors[-1] if self.embed.layout == "interleaved" else None
        return RecurrentState(layers, started)

    def _recurrent_step(self, states, returns, prev_action, timestep, state: RecurrentState):
        """O(1): this step's tokens (interleaved ``a_{t-1}, R_t, s_t``, fused the one) through the stack at once
        (``MinRNNStack.step_tokens``). Always three interleaved tokens, so that the step is one fixed graph:
        where the episode has not ``started``, the action token leaves the state as it was, which is exactly
        the two-token first step."""
        x = self.embed.step_rows(states, returns, timestep, prev_action)
        keep = None if state.started is None else state.started.unsqueeze(-1) > 0.5  # (B, 1)
        hidden, layers = self.stack.step_tokens(x, self.embed.tokens_per_step, state.layers, keep_first=keep)
        started = None if state.started is None else torch.ones_like(state.started)
        return self.head(hidden), RecurrentState(layers, started)

    def prepare_for_tracing(self) -> None:
        """The reference step loop in the window mode's forward: plain operators, no autograd.Function."""
        self.stack.set_scan("sequential")


class RecurrentState(NamedTuple):
    """The ``recurrent`` mode's rollout state: one :class:`BlockState` per layer, and (interleaved tokens)
    ``started (B,)``, 1 once an episode has taken its first step."""

    layers: list
    started: torch.Tensor | None
