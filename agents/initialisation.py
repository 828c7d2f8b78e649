"""Parameter initialisation of the decision agents.

Why it matters: PyTorch initialises ``nn.Embedding`` from N(0, 1), so a fresh timestep embedding is several
times the size of the state, return and action embeddings it is added to; the agent then first learns to
read the timestep and, in closed loop, most HalfCheetah episodes never got going (BENCHMARKS.md, "Learning quality").
Schemes (``model.init``):

- ``gpt`` (default): every ``Linear`` and ``Embedding`` weight N(0, 0.02), zero biases, LayerNorms the
  identity, as GPT-2, minGPT and CORL's Decision Transformer do.
- ``d3rlpy``: ``gpt`` for the sequence model and the timestep/position embeddings, PyTorch's defaults for
  the input projections of R, s, a and for the action head (d3rlpy applies GPT's init before it creates
  those layers). The inputs then start far larger than the timestep embedding.
- ``pytorch``: PyTorch's per-layer defaults everywhere (kept for comparison: the timestep embedding starts N(0, 1)).

The minGRU / minLSTM gate projections are ``Linear`` layers too: under ``gpt`` every gate starts near
sigmoid(0) = 0.5, a state that halves its memory at each token at the start of training.
"""

from __future__ import annotations

from typing import Iterable

from torch import nn

from rl_minrnn.ranges import OneOf

INIT_SCHEMES = ("gpt", "d3rlpy", "pytorch")
INIT_OPTION = OneOf(INIT_SCHEMES)  # ``model.init``
GPT_STD = 0.02


def gpt_init_(module: nn.Module) -> None:
    """GPT-2's initialisation, applied to one module (use with ``Module.apply``)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=GPT_STD)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        if module.weight is not None:
            nn.init.ones_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def initialise(model: nn.Module, scheme: str, inputs_and_head: Iterable[nn.Module] = ()) -> nn.Module:
    """Re-initialise ``model``'s parameters with ``scheme`` (one of :data:`INIT_SCHEMES`).
    ``inputs_and_head``: the layers ``d3rlpy`` leaves at PyTorch's defaults."""
    INIT_OPTION.check(scheme, "init")
    if scheme in ("gpt", "d3rlpy"):
        model.apply(gpt_init_)
    if scheme == "d3rlpy":
        for layer in inputs_and_head:
            layer.reset_parameters()
    return model
