"""Decision Transformer baseline (Chen et al. 2021): GPT-style causal self-attention over the same
tokens, embeddings and head as the Decision-RNN. Rollouts re-run the last K steps at every env step."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rl_minrnn.dropout import Dropout
from rl_minrnn.ranges import Number, OptionError

from .base import MODEL, DecisionAgent
from .embeddings import TOKENS_PER_STEP


class CausalSelfAttentionBlock(nn.Module):
    """Pre-norm GPT block: ``x + Attn(LN(x))``, ``x + MLP(LN(x))`` with causal ``scaled_dot_product_attention``."""

    def __init__(self, width: int, heads: int = 1, mlp_ratio: float = 4.0, dropout: float = 0.1):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm_attn = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.resid_dropout = Dropout(dropout)
        self.norm_mlp = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width), Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(self.norm_attn(x)).view(batch, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        x = x + self.resid_dropout(self.proj(attn.transpose(1, 2).reshape(batch, length, width)))
        return x + self.mlp(self.norm_mlp(x))


class DecisionTransformer(DecisionAgent):
    kind = "decision_transformer"
    self_attention = True
    rollout_modes = ("window",)
    default_rollout_mode = "window"
    OPTION_RULES = {"heads": Number(1, 256, integer=True, why="and a divisor of model.width")}

    @classmethod
    def check_option_relations(cls, options: dict) -> None:
        super().check_option_relations(options)
        if options["width"] % options["heads"]:
            raise OptionError(f"heads: must divide model.width ({options['width']}), got {options['heads']}")

    def __init__(self, obs_dim: int, act_dim: int, *, heads: int = MODEL.heads,
                 position_embedding: bool = MODEL.position_embedding, **shared):
        """``heads`` and ``position_embedding`` shape the attention; ``shared``: ``DecisionAgent``'s."""
        super().__init__(obs_dim, act_dim, **shared)
        self.heads = int(heads)
        max_tokens = self.context * TOKENS_PER_STEP[self.embed.layout]
        self.position = nn.Embedding(max_tokens, self.width) if position_embedding else None
        self.embed_dropout = Dropout(self.dropout_p)
        self.blocks = nn.ModuleList(CausalSelfAttentionBlock(self.width, heads, self.mlp_ratio, self.dropout_p)
                                    for _ in range(self.depth))
        self.norm = nn.LayerNorm(self.width)
        self.finish_layers()

    @property
    def sequence_model(self) -> str:
        return "attention"

    @classmethod
    def layer_activation_floats(cls, model, tokens: int) -> float:
        # two LayerNorms, qkv, attention output, projection, residuals, dropout masks; the MLP's two hidden
        # tensors; the attention weights (and their dropout) per head over the window's tokens
        return 10 * model.width + 2.5 * int(model.width * model.mlp_ratio) + 2 * model.heads * tokens

    @classmethod
    def widest_activation(cls, model) -> int:
        return 3 * max(model.width, int(model.width * model.mlp_ratio))  # qkv

    @classmethod
    def memory_keys(cls, model) -> tuple[list[str], list[str]]:
        return [], ["model.heads"]

    def summary(self) -> dict:
        return {**super().summary(), "depth": self.depth, "heads": self.heads}

    def forward(self, states, actions, returns_to_go, timesteps, state=None):
        """Windows of at most K steps. Padding sits at the end of a window, so causal attention keeps it
        out of every real position's output and no attention mask is needed."""
        if states.shape[1] > self.context:
            raise ValueError(f"DecisionTransformer windows hold at most {self.context} steps, got {states.shape[1]}")
        x = self.embed(states, actions, returns_to_go, timesteps)
        if self.position is not None:
            x = x + self.position.weight[: x.shape[1]]
        x = self.embed_dropout(x)
        for block in self.blocks:
            x = block(x)
        return self.head(self.embed.action_outputs(self.norm(x))), None
