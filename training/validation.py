"""The training objective measured on held-out episodes (``dataset.holdout``), at every evaluation.

Offline RL picks no checkpoint by a held-out loss (the closed-loop score is the measure), but the loss
tells two failures apart that look alike in the score: overfitting (the held-out action loss turns up while
the training windows' keeps falling) and a policy that imitates the data ever better and still gets worse in
closed loop (both keep falling). The same number of training windows is measured beside the held-out ones,
without dropout as the held-out ones are, so that the gap between the two is the generalisation gap alone.

Both sets of windows are drawn once, by their own seeded generator (the training sampler's draws are
untouched), so that the numbers move with the weights alone and a resumed run measures what it measured.
"""

from __future__ import annotations

import numpy as np
import torch

from rl_minrnn.envs.offline.batches import WindowSampler

from .loss import loss_denominator, masked_action_loss

WINDOWS = 1024  # windows in each set: the loss's standard error well below its movement over a run
BATCH = 256  # windows per forward pass


class ValidationLoss:
    """``validation(policy) -> {"val/action_loss": held-out, "val/train_action_loss": training windows}``, each
    the masked action MSE over all of its windows' real steps, the policy in eval mode (no dropout)."""

    def __init__(self, train_part, held_out, config, normalizer, device: torch.device, windows: int = WINDOWS):
        self.device = device
        seeds = np.random.SeedSequence([int(config.seed), 0x5EED]).spawn(2)  # the training sampler's seed is config.seed
        self.sets = {"val/action_loss": self._windows(held_out, config, normalizer, windows, seeds[0]),
                     "val/train_action_loss": self._windows(train_part, config, normalizer, windows, seeds[1])}

    def _windows(self, dataset, config, normalizer, windows: int, seed) -> list[dict]:
        # the sampler's flat copy of the episodes lives only while the windows are drawn: a run keeps the windows
        sampler = WindowSampler(dataset, config.model.context, BATCH, config.dataset.return_scale, normalizer,
                                seed=seed, max_timestep=config.model.max_timestep, sampling=config.train.window_sampling)
        batches, left = [], windows
        while left > 0:
            batch = sampler.sample()
            batches.append({k: torch.as_tensor(v[:left], device=self.device) for k, v in batch.items()})
            left -= BATCH
        return batches

    @torch.no_grad()
    def __call__(self, policy: torch.nn.Module) -> dict[str, float]:
        was_training = policy.training
        policy.eval()
        try:
            out = {}
            for name, batches in self.sets.items():
                total = count = 0.0
                for b in batches:
                    preds, _ = policy(b["states"], b["actions"], b["returns_to_go"], b["timesteps"], None)
                    total += float(masked_action_loss(preds, b["actions"], b["mask"], denominator=1.0))
                    count += float(loss_denominator(b["actions"], b["mask"]))
                out[name] = total / count
            return out
        finally:
            policy.train(was_training)
