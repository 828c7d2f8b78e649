"""The training loss: mean squared error of the predicted actions over the real (unpadded) steps. Its own
module because the training step and its helper processes (``training/data_parallel.py``) both compute it."""

from __future__ import annotations

import torch


def loss_denominator(actions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """How many numbers the action loss averages: real (unpadded) steps x action dimensions (at least 1)."""
    return (mask.sum() * actions.shape[-1]).clamp_min(1.0)


def masked_action_loss(preds: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor,
                       denominator: torch.Tensor | float | None = None) -> torch.Tensor:
    """Mean squared error over the real (unpadded) steps and every action dimension. ``denominator``: the
    whole batch's (``loss_denominator``) when these rows are a part of it (``training/data_parallel.py``),
    so that the parts' losses and gradients add up to the whole batch's."""
    if denominator is None:
        denominator = loss_denominator(actions, mask)
    return ((preds.float() - actions).square() * mask.unsqueeze(-1)).sum() / denominator
