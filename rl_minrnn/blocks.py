"""Residual blocks and stacks of minimal RNN cells, with parallel and step modes.

Block (the paper's, appendix C.3): ``x + Dropout(Cell(Conv(Norm(x))))`` then ``x + MLP(Norm(x))``, pre-norm
LayerNorm, GELU MLP of ``mlp_ratio * dim``. The optional causal depthwise convolution of width ``k`` (the
paper's language-model block) makes the last ``k - 1`` cell inputs part of the step state.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import nn

from .cells import CELLS, token_rows
from .dropout import Dropout
from .ranges import Number, OneOf

# The blocks' options (``model.cell``, ``model.mlp_ratio``, ``model.dropout``, ``model.conv``,
# ``model.depth``), checked by the config before a block is built; the Transformer's blocks share the
# MLP's and dropout's rules.
BLOCK_OPTIONS = {
    "cell": OneOf(tuple(CELLS)),
    "mlp_ratio": Number(0, 64, low_open=True, why="the MLP's width is int(width * mlp_ratio)"),
    "dropout": Number(0, 1, high_open=True, why="a probability"),
    "conv": Number(0, 64, integer=True, excluded=(1,), why="0: no convolution; a convolution needs width >= 2"),
    "depth": Number(1, 1024, integer=True),
}


def mlp_width(dim: int, mlp_ratio: float) -> int:
    """``int(dim * mlp_ratio)``, the MLP's hidden width, or ``ValueError`` when it is below 1."""
    BLOCK_OPTIONS["mlp_ratio"].check(mlp_ratio, "mlp_ratio")
    hidden = int(dim * mlp_ratio)
    if hidden < 1:
        raise ValueError(f"int(width * mlp_ratio) must be >= 1, got width={dim}, mlp_ratio={mlp_ratio}")
    return hidden


class BlockState(NamedTuple):
    """What a block carries between calls: the cell state ``(B, hidden)`` and, with a convolution, its
    last ``k - 1`` inputs ``(B, k - 1, dim)`` (None without one)."""

    h: torch.Tensor
    conv: torch.Tensor | None = None


class CausalDepthwiseConv(nn.Module):
    """``y_t = sum_j w_j * u_{t - k + 1 + j} + bias`` per channel; inputs before the sequence come from the
    carried buffer (zeros at the start)."""

    def __init__(self, dim: int, kernel_size: int):
        super().__init__()
        if kernel_size < 2:
            raise ValueError(f"conv kernel size must be >= 2 (0 disables it), got {kernel_size}")
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(dim, dim, kernel_size, groups=dim)

    def initial_buffer(self, u: torch.Tensor) -> torch.Tensor:
        return u.new_zeros(u.shape[0], self.kernel_size - 1, u.shape[-1])

    def forward(self, u: torch.Tensor, buffer: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``u (B, T, dim)`` -> ``(B, T, dim)`` and the new buffer (the last ``k - 1`` inputs)."""
        buffer = self.initial_buffer(u) if buffer is None else buffer.to(u.dtype)
        full = torch.cat([buffer, u], dim=1)
        y = self.conv(full.transpose(1, 2)).transpose(1, 2)
        return y, full[:, -(self.kernel_size - 1):]

    def step(self, u_t: torch.Tensor, buffer: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        buffer = self.initial_buffer(u_t) if buffer is None else buffer.to(u_t.dtype)
        window = torch.cat([buffer, u_t.unsqueeze(1)], dim=1)  # (B, k, dim)
        weight = self.conv.weight.squeeze(1).transpose(0, 1)  # (k, dim)
        y = (window * weight).sum(dim=1) + self.conv.bias
        return y, window[:, 1:]


class MinRNNBlock(nn.Module):
    """Pre-norm residual minGRU/minLSTM, then pre-norm residual GELU MLP."""

    def __init__(
        self,
        dim: int,
        cell: str = "mingru",
        expansion: float = 1.0,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        conv: int = 0,
        scan: str = "fused",
        chunk_size: int | None = None,
    ):
        super().__init__()
        BLOCK_OPTIONS["cell"].check(cell, "cell")
        BLOCK_OPTIONS["dropout"].check(dropout, "dropout")
        self.norm_cell = nn.LayerNorm(dim)
        self.conv = CausalDepthwiseConv(dim, conv) if conv else None
        self.cell = CELLS[cell](dim, expansion, scan=scan, chunk_size=chunk_size)
        self.norm_mlp = nn.LayerNorm(dim)
        hidden = mlp_width(dim, mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim), Dropout(dropout))
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, state: BlockState | None = None) -> tuple[torch.Tensor, BlockState]:
        h, conv_buffer = (None, None) if state is None else state
        u = self.norm_cell(x)
        if self.conv is not None:
            u, conv_buffer = self.conv(u, conv_buffer)
        y, h = self.cell(u, h)
        x = x + self.dropout(y)
        x = x + self.mlp(self.norm_mlp(x))
        return x, BlockState(h, conv_buffer)

    def step(self, x_t: torch.Tensor, state: BlockState | None = None) -> tuple[torch.Tensor, BlockState]:
        h, conv_buffer = (None, None) if state is None else state
        u = self.norm_cell(x_t)
        if self.conv is not None:
            u, conv_buffer = self.conv.step(u, conv_buffer)
        y, h = self.cell.step(u, h)
        x_t = x_t + self.dropout(y)
        x_t = x_t + self.mlp(self.norm_mlp(x_t))
        return x_t, BlockState(h, conv_buffer)

    def steps(self, x: torch.Tensor, state: BlockState, n: int, keep_first: torch.Tensor | None = None,
              last_only: bool = False) -> tuple[torch.Tensor, BlockState]:
        """``n`` consecutive steps at once (no convolution): ``x (n * B, dim)`` token-major rows, the LayerNorms,
        projections and MLP on all rows together, the recurrence step by step (``cell.steps``); ``keep_first``
        as there. ``last_only``: only the last step's output ``(B, dim)`` (what the top layer needs)."""
        states = self.cell.steps(self.norm_cell(x), state.h, n, keep_first)
        h = states[-1]
        if last_only and n > 1:
            x, y = token_rows(x, n)[-1], self.cell.to_out(h)
        else:
            y = self.cell.to_out(torch.cat(states, dim=0) if n > 1 else h)
        x = x + self.dropout(y)
        x = x + self.mlp(self.norm_mlp(x))
        return x, BlockState(h)


class MinRNNStack(nn.Module):
    """``depth`` blocks and a final LayerNorm; the state is a list with one :class:`BlockState` per layer."""

    def __init__(self, dim: int, depth: int, final_norm: bool = True, **block_kwargs):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.blocks = nn.ModuleList(MinRNNBlock(dim, **block_kwargs) for _ in range(depth))
        self.norm = nn.LayerNorm(dim) if final_norm else nn.Identity()

    def forward(self, x: torch.Tensor, state: Sequence[BlockState] | None = None):
        states = self._split(state)
        new_states = []
        for block, s in zip(self.blocks, states):
            x, s = block(x, s)
            new_states.append(s)
        return self.norm(x), new_states

    def step(self, x_t: torch.Tensor, state: Sequence[BlockState] | None = None):
        states = self._split(state)
        new_states = []
        for block, s in zip(self.blocks, states):
            x_t, s = block.step(x_t, s)
            new_states.append(s)
        return self.norm(x_t), new_states

    def step_tokens(self, x: torch.Tensor, n: int, state: Sequence[BlockState],
                    keep_first: torch.Tensor | None = None) -> tuple[torch.Tensor, list[BlockState]]:
        """``n`` consecutive tokens of one batch as token-major rows ``x (n * B, dim)``, from ``state`` (one
        :class:`BlockState` of tensors per layer) -> the last token's output ``(B, dim)`` and the new state;
        the same numbers as ``n`` calls of ``step`` (a rollout step's three interleaved tokens in one call).
        ``keep_first (B, 1)`` bool: where False the first token does not change the state (an episode's first
        step, which has no previous-action token), so one fixed graph serves every step. Without a
        convolution each layer takes all tokens at once (``MinRNNBlock.steps``: a third of the operators of
        three passes); with one the tokens go through ``block.step`` one by one."""
        states = self._split(state)
        if all(block.conv is None for block in self.blocks):
            new_states, top = [], len(self.blocks) - 1
            for i, (block, s) in enumerate(zip(self.blocks, states)):
                x, s = block.steps(x, s, n, keep_first, last_only=i == top)
                new_states.append(s)
            return self.norm(x), new_states
        hidden = None
        for j, x_t in enumerate(token_rows(x, n)):
            new_states = []
            for block, s in zip(self.blocks, states):
                x_t, s_next = block.step(x_t, s)
                if j == 0 and keep_first is not None:
                    s_next = BlockState(torch.where(keep_first, s_next.h, s.h),
                                        torch.where(keep_first.unsqueeze(-1), s_next.conv, s.conv))
                new_states.append(s_next)
            states, hidden = new_states, x_t
        return self.norm(hidden), states

    def set_scan(self, scan: str) -> None:
        """Every cell's parallel scan (``rl_minrnn.cells.CELL_SCANS``); ``sequential`` traces as plain operators."""
        for block in self.blocks:
            block.cell.scan = scan

    def _split(self, state):
        if state is None:
            return [None] * len(self.blocks)
        if len(state) != len(self.blocks):
            raise ValueError(f"state has {len(state)} entries but the stack has {len(self.blocks)} layers")
        return list(state)


def mask_state(state, keep: torch.Tensor):
    """Zero the rows of a (nested) recurrent state where ``keep`` (B,) is False: the initial state of a
    new episode in a carried-state batch. ``None`` stays ``None``."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        k = keep.to(state.dtype).view(-1, *([1] * (state.dim() - 1)))
        return state * k
    if hasattr(state, "_fields"):  # a NamedTuple such as BlockState
        return type(state)(*(mask_state(s, keep) for s in state))
    return type(state)(mask_state(s, keep) for s in state)


def detach_state(state):
    """Detach a (nested) recurrent state from the graph: truncated backpropagation through time."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.detach()
    if hasattr(state, "_fields"):  # a NamedTuple such as BlockState
        return type(state)(*(detach_state(s) for s in state))
    return type(state)(detach_state(s) for s in state)
