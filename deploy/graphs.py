"""The rollout steps that get exported: one env step of an agent as a module with explicit tensors in and out.

An exported step takes raw environment values and the carried state, and gives the action and the next
state; nothing is hidden in Python objects between calls::

    action, *next_state = step(observation (B, obs_dim) float32, return_to_go (B,) float32,
                               prev_action (B, act_dim) float32, timestep (B,) int64, *state)

Inside: the agent's state normalisation ``(s - mean) / std`` and return scale ``R / return_scale`` (its
buffers, as constants), the timestep clamp to ``max_timestep - 1``, the network, the tanh head, and
clipping to the environment's action bounds (``torch.clamp``; a no-op where the bounds are [-1, 1], the
tanh's own range, as in every D4RL locomotion task).

- :class:`RecurrentStep`: the Decision-RNN's ``recurrent`` rollout (``DecisionRNN._act_recurrent``), O(1)
  per step. State: ``h{i}`` per layer ``(B, hidden)`` (and ``conv{i}`` ``(B, k - 1, width)`` with a
  convolution), plus, for interleaved tokens, ``started`` ``(B,)``: 0 before an episode's first step.
  The interleaved layout feeds ``a_{t-1}, R_t, s_t`` but only ``R_0, s_0`` on the first step; a fixed
  graph always feeds the three tokens and keeps the state from before the action token where ``started``
  is 0, which is exactly the two-token step (the state before it is untouched, not approximated).
  Zero initial states equal PyTorch's ``None``: the cell's first step ``h = b`` equals ``a * 0 + b``, and a
  missing convolution buffer is zeros.
- :class:`WindowStep`: the ``window`` rollout (re-run the last K steps, Decision Transformer's), for any
  agent. The window is the state: ``window_states``, ``window_actions``, ``window_returns`` (normalised,
  as the agent stores them), ``window_timesteps`` and ``window_length``. The graph always runs K steps;
  the filled steps come first and every model here is causal, so the steps after them (zeros) cannot
  change the action read at the last filled step.

Why the recurrent step is not simply ``agent.stack.step`` per token: with no convolution the three
interleaved tokens go through each layer together (one LayerNorm, one gate projection, one MLP on the
``(3B, width)`` rows, token-major so that slices take the tokens apart) and only the recurrence is
unrolled, a third of the operators of three sequential passes; at batch 1 a step costs about its number
of operators, not its arithmetic. With a convolution the tokens go through ``block.step`` one by one.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from rl_minrnn.agents.base import DecisionAgent
from rl_minrnn.agents.decision_rnn import DecisionRNN
from rl_minrnn.blocks import BlockState

FIRST_INPUTS = ("observation", "return_to_go", "prev_action", "timestep")


def _frozen_float32(agent: DecisionAgent) -> DecisionAgent:
    """A float32 copy in eval mode (dropout off), so exporting never changes the caller's agent."""
    agent = copy.deepcopy(agent).float().eval()
    for p in agent.parameters():
        p.requires_grad_(False)
    return agent


class _Step(nn.Module):
    """What both steps share: normalisation of the raw inputs and the clipped action."""

    def __init__(self, agent: DecisionAgent, action_low, action_high):
        super().__init__()
        self.agent = _frozen_float32(agent)
        low = torch.as_tensor(action_low, dtype=torch.float32).reshape(-1)
        high = torch.as_tensor(action_high, dtype=torch.float32).reshape(-1)
        if low.shape != (agent.act_dim,) or high.shape != (agent.act_dim,):
            raise ValueError(f"action bounds must have {agent.act_dim} entries, got {tuple(low.shape)} and {tuple(high.shape)}")
        self.register_buffer("action_low", low)
        self.register_buffer("action_high", high)

    def normalise(self, observation, return_to_go):
        agent = self.agent
        return (observation - agent.state_mean) / agent.state_std, return_to_go / agent.return_scale

    def clip(self, action):
        return torch.clamp(action, self.action_low, self.action_high)

    def state_specs(self) -> list[dict]:
        """``[{"name", "shape" (None = batch), "dtype", "initial", "doc"}]`` in the order the step takes them."""
        raise NotImplementedError

    def example_state(self, batch: int) -> tuple[torch.Tensor, ...]:
        """Initial state tensors for ``batch`` rows (what every episode starts from)."""
        out = []
        for spec in self.state_specs():
            shape = [batch if n is None else n for n in spec["shape"]]
            dtype = torch.int64 if spec["dtype"] == "int64" else torch.float32
            out.append(torch.full(shape, spec["initial"], dtype=dtype))
        return tuple(out)


class RecurrentStep(_Step):
    """The Decision-RNN's O(1) recurrent step (see the module docstring)."""

    def __init__(self, agent: DecisionRNN, action_low, action_high):
        if not isinstance(agent, DecisionRNN):
            raise TypeError(f"RecurrentStep needs a DecisionRNN, got {type(agent).__name__}")
        super().__init__(agent, action_low, action_high)
        blocks = self.agent.stack.blocks
        self.depth = len(blocks)
        self.hidden = blocks[0].cell.hidden_dim
        self.width = blocks[0].cell.dim
        self.conv_width = blocks[0].conv.kernel_size if blocks[0].conv is not None else 0
        self.interleaved = self.agent.embed.layout == "interleaved"

    def state_specs(self) -> list[dict]:
        specs = []
        for i in range(self.depth):
            specs.append({"name": f"h{i}", "shape": [None, self.hidden], "dtype": "float32", "initial": 0.0,
                          "doc": f"layer {i}'s recurrent state"})
            if self.conv_width:
                specs.append({"name": f"conv{i}", "shape": [None, self.conv_width - 1, self.width], "dtype": "float32",
                              "initial": 0.0, "doc": f"layer {i}'s last {self.conv_width - 1} convolution inputs"})
        if self.interleaved:
            specs.append({"name": "started", "shape": [None], "dtype": "float32", "initial": 0.0,
                          "doc": "1 once the episode has taken a step (the first step has no previous-action token)"})
        return specs

    def forward(self, observation, return_to_go, prev_action, timestep, *state):
        states, returns = self.normalise(observation, return_to_go)
        embed = self.agent.embed
        per_layer = 2 if self.conv_width else 1
        layers = [tuple(state[i * per_layer:(i + 1) * per_layer]) for i in range(self.depth)]
        if self.interleaved:
            started = state[-1]
            time = embed.time(timestep)
            tokens = [embed.action(prev_action) + embed.time(timestep - 1),  # as DecisionRNN's step_tokens
                      embed.ret(returns.unsqueeze(-1)) + time, embed.state(states) + time]
            # token-major rows (3B, width): each token's rows are one slice of them
            x = embed.norm(torch.cat(tokens, dim=0))
            keep = started.unsqueeze(-1) > 0.5  # (B, 1): the action token counts
        else:
            (x,) = embed.step_tokens(states, returns, timestep, prev_action)  # (B, width)
            keep = None
        if self.conv_width:
            hidden, new_layers = self._tokens_one_by_one(x, layers, keep)
        else:
            hidden, new_layers = self._tokens_together(x, [h for (h,) in layers], keep)
        action = self.clip(self.agent.head(self.agent.stack.norm(hidden)))
        out = [action]
        for layer in new_layers:
            out.extend(layer)
        if self.interleaved:
            out.append(torch.ones_like(started))
        return tuple(out)

    def _tokens_together(self, x, hs, keep):
        """No convolution: each layer takes all tokens at once (``x`` ``(T * B, width)``, token-major, T = 3
        interleaved, 1 fused); only ``h = a * h + b`` is unrolled over the T tokens."""
        n = 3 if self.interleaved else 1
        new_layers, top = [], len(self.agent.stack.blocks) - 1
        for i, block in enumerate(self.agent.stack.blocks):
            cell = block.cell
            a, b = cell.coefficients(cell.to_gates(block.norm_cell(x)))
            h, states = hs[i], []
            for j, (a_j, b_j) in enumerate(zip(_token_rows(a, n), _token_rows(b, n))):
                h_next = torch.addcmul(b_j, a_j, h)
                if j == 0 and keep is not None:  # the first step has no action token: keep the state
                    h_next = torch.where(keep, h_next, h)
                h = h_next
                states.append(h)
            new_layers.append((h,))
            if i == top and n > 1:  # the top layer: only the last token is read
                x, y = _token_rows(x, n)[-1], cell.to_out(h)
            else:
                y = cell.to_out(torch.cat(states, dim=0) if n > 1 else h)
            x = x + y
            x = x + block.mlp(block.norm_mlp(x))
        return x, new_layers

    def _tokens_one_by_one(self, x, layers, keep):
        """With a convolution: every token through ``block.step``, the state after the action token kept
        only where the episode has started."""
        layers = [BlockState(*layer) for layer in layers]
        hidden = None
        for j, x_t in enumerate(_token_rows(x, 3 if self.interleaved else 1)):
            new = []
            for block, layer in zip(self.agent.stack.blocks, layers):
                x_t, layer_next = block.step(x_t, layer)
                if j == 0 and keep is not None:
                    conv_keep = keep.unsqueeze(-1)
                    layer_next = BlockState(torch.where(keep, layer_next.h, layer.h),
                                            torch.where(conv_keep, layer_next.conv, layer.conv))
                new.append(layer_next)
            layers, hidden = new, x_t
        return hidden, [tuple(layer) for layer in layers]


def _token_rows(x: torch.Tensor, n: int) -> list[torch.Tensor]:
    """The ``n`` token-major blocks of rows of ``x`` ``(n * B, ...)``, by slicing: ``chunk``/``split`` would
    make torch.export fix the batch size."""
    if n == 1:
        return [x]
    batch = x.shape[0] // n
    return [x[j * batch:(j + 1) * batch] for j in range(n)]


class WindowStep(_Step):
    """The ``window`` rollout step of any agent: the last K steps re-run at every env step."""

    def __init__(self, agent: DecisionAgent, action_low, action_high):
        super().__init__(agent, action_low, action_high)
        if isinstance(self.agent, DecisionRNN):  # the reference step loop: plain operators, no autograd.Function
            for block in self.agent.stack.blocks:
                block.cell.scan = "sequential"
        self.context = int(agent.context)
        self.register_buffer("positions", torch.arange(self.context), persistent=False)

    def state_specs(self) -> list[dict]:
        k, agent = self.context, self.agent
        return [
            {"name": "window_states", "shape": [None, k, agent.obs_dim], "dtype": "float32", "initial": 0.0,
             "doc": "the last K normalised observations, oldest first"},
            {"name": "window_actions", "shape": [None, k, agent.act_dim], "dtype": "float32", "initial": 0.0,
             "doc": "the actions taken at those steps (the current one 0)"},
            {"name": "window_returns", "shape": [None, k], "dtype": "float32", "initial": 0.0,
             "doc": "the scaled returns-to-go at those steps"},
            {"name": "window_timesteps", "shape": [None, k], "dtype": "int64", "initial": 0,
             "doc": "the timesteps of those steps"},
            {"name": "window_length", "shape": [None], "dtype": "int64", "initial": 0,
             "doc": "steps in the window (0 to K)"},
        ]

    def forward(self, observation, return_to_go, prev_action, timestep, *state):
        window_states, window_actions, window_returns, window_timesteps, window_length = state
        states, returns = self.normalise(observation, return_to_go)
        positions = self.positions.unsqueeze(0)  # (1, K)
        # the previous step's action, now known (DecisionAgent.observe writes it there)
        previous = (positions == (window_length - 1).unsqueeze(1)).unsqueeze(-1)
        window_actions = torch.where(previous, prev_action.unsqueeze(1), window_actions)
        # a full window drops its oldest step
        full = (window_length >= self.context).unsqueeze(1)
        window_states = torch.where(full.unsqueeze(-1), _shift(window_states), window_states)
        window_actions = torch.where(full.unsqueeze(-1), _shift(window_actions), window_actions)
        window_returns = torch.where(full, _shift(window_returns), window_returns)
        window_timesteps = torch.where(full, _shift(window_timesteps), window_timesteps)
        # this step goes to the first free slot, its action unknown (0)
        index = torch.clamp(window_length, max=self.context - 1)
        slot = positions == index.unsqueeze(1)  # (B, K)
        window_states = torch.where(slot.unsqueeze(-1), states.unsqueeze(1), window_states)
        window_actions = torch.where(slot.unsqueeze(-1), torch.zeros_like(window_actions), window_actions)
        window_returns = torch.where(slot, returns.unsqueeze(1), window_returns)
        window_timesteps = torch.where(slot, timestep.unsqueeze(1), window_timesteps)
        preds, _ = self.agent(window_states, window_actions, window_returns, window_timesteps)
        action = torch.gather(preds, 1, index.view(-1, 1, 1).expand(-1, 1, preds.shape[-1])).squeeze(1)
        return (self.clip(action), window_states, window_actions, window_returns, window_timesteps, index + 1)


def _shift(buffer: torch.Tensor) -> torch.Tensor:
    """Drop the oldest step (index 0); the last slot keeps a copy and is overwritten next."""
    return torch.cat([buffer[:, 1:], buffer[:, -1:]], dim=1)


def step_module(agent: DecisionAgent, mode: str, action_low, action_high) -> _Step:
    """The exported step of ``agent`` for rollout ``mode`` (``recurrent`` or ``window``)."""
    if mode not in agent.rollout_modes:
        raise ValueError(f"{type(agent).__name__} has rollout modes {agent.rollout_modes}, not {mode!r}")
    if mode == "recurrent":
        return RecurrentStep(agent, action_low, action_high)
    return WindowStep(agent, action_low, action_high)
