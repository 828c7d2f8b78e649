"""State normalisation with the dataset's mean/std (saved with the model, so a checkpoint is self-contained)."""

from __future__ import annotations

import numpy as np


class StateNormalizer:
    """``normalize(s) = (s - mean) / std``; float32 numpy in and out.

    ``state_dict()`` holds plain Python lists (safe for ``torch.load(weights_only=True)`` and JSON);
    the agent copies ``mean``/``std`` into its own buffers.
    """

    def __init__(self, mean, std, eps: float = 1e-6):
        self.mean = np.asarray(mean, dtype=np.float32).reshape(-1)
        self.std = np.maximum(np.asarray(std, dtype=np.float32).reshape(-1), np.float32(eps))
        if self.mean.shape != self.std.shape:
            raise ValueError(f"mean {self.mean.shape} and std {self.std.shape} differ in shape")

    @classmethod
    def from_dataset(cls, dataset) -> "StateNormalizer":
        """From an ``OfflineDataset`` (its ``state_mean``/``state_std`` over observations[:-1] of every episode)."""
        return cls(dataset.state_mean, dataset.state_std)

    @classmethod
    def identity(cls, dim: int) -> "StateNormalizer":
        return cls(np.zeros(dim, np.float32), np.ones(dim, np.float32))

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def normalize(self, states) -> np.ndarray:
        return ((np.asarray(states, dtype=np.float32) - self.mean) / self.std).astype(np.float32, copy=False)

    __call__ = normalize

    def denormalize(self, states) -> np.ndarray:
        return (np.asarray(states, dtype=np.float32) * self.std + self.mean).astype(np.float32, copy=False)

    def state_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_state_dict(cls, state: dict) -> "StateNormalizer":
        return cls(np.asarray(state["mean"], np.float32), np.asarray(state["std"], np.float32))

    def load_state_dict(self, state: dict) -> None:
        other = self.from_state_dict(state)
        self.mean, self.std = other.mean, other.std

    def __repr__(self) -> str:
        return f"StateNormalizer(dim={self.dim})"
