"""State normalisation with the dataset's mean/std: the training windows are normalised with it, and the
agent copies ``mean``/``std`` into its own buffers (so a checkpoint is self-contained and a rollout
normalises with the same numbers)."""

from __future__ import annotations

import numpy as np


class StateNormalizer:
    """``normalize(s) = (s - mean) / std``; float32 numpy in and out; ``std`` floored at ``eps``."""

    def __init__(self, mean, std, eps: float = 1e-6):
        self.mean = np.asarray(mean, dtype=np.float32).reshape(-1)
        self.std = np.maximum(np.asarray(std, dtype=np.float32).reshape(-1), np.float32(eps))
        if self.mean.shape != self.std.shape:
            raise ValueError(f"mean {self.mean.shape} and std {self.std.shape} differ in shape")

    @classmethod
    def from_dataset(cls, dataset) -> "StateNormalizer":
        """From an ``OfflineDataset`` (its ``state_mean``/``state_std`` over observations[:-1] of every episode)."""
        return cls(dataset.state_mean, dataset.state_std)

    def normalize(self, states) -> np.ndarray:
        return ((np.asarray(states, dtype=np.float32) - self.mean) / self.std).astype(np.float32, copy=False)
