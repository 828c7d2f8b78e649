"""Dropout whose masks are cheap to draw on the CPU.

``torch.nn.Dropout`` draws its CPU masks with ``bernoulli_``, which at the cpu profile (batch 64, K = 20,
width 64, seven dropouts a step) was a sixth of the training step; numpy's PCG64 draws float32 uniforms
about three times faster (BENCHMARKS.md, "The training step against 440c381"), so this module draws the
same masks there: keep an element where ``u >= p`` for ``u`` uniform on [0, 1) in steps of 2^-24 (so
P(drop) is ``p`` to within 6e-8), scale the kept ones by ``1 / (1 - p)``, as ``nn.Dropout`` does.

Determinism and exact resume come from torch's generator, which the trainer already seeds and saves:
each call takes one 63-bit seed from ``torch.randint`` and builds a PCG64 from it, so the masks are a
function of torch's RNG state and nothing else needs saving. On other devices, and inside
``torch.compile`` (which cannot trace numpy calls), the call is ``torch.nn.functional.dropout``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def _seed() -> int:
    return int(torch.randint(0, 2**63 - 1, (), dtype=torch.int64))


def dropout_mask(shape: tuple[int, ...], p: float) -> torch.Tensor:
    """A float32 CPU tensor of ``0`` (probability ``p``) and ``1 / (1 - p)``, from torch's RNG state."""
    u = np.random.Generator(np.random.PCG64(_seed())).random(shape, dtype=np.float32)
    mask = (u >= np.float32(p)).astype(np.float32)
    mask *= np.float32(1.0 / (1.0 - p))
    return torch.from_numpy(mask)


class _MaskMultiply(torch.autograd.Function):
    """``x * mask`` with the mask saved, not its product with ``x``: the backward is one multiply."""

    @staticmethod
    def forward(ctx, x, mask):
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        return grad * mask, None


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``torch.nn.functional.dropout`` with numpy-drawn masks for CPU float32 tensors."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or x.dtype != torch.float32 or p >= 1.0 or torch.compiler.is_compiling():
        return nn.functional.dropout(x, p, training)
    return _MaskMultiply.apply(x, dropout_mask(tuple(x.shape), p))


class Dropout(nn.Module):
    """Drop-in ``nn.Dropout`` (same arguments, no state) using :func:`dropout`."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be between 0 and 1, got {p}")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
