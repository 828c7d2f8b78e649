"""The offline data model: an ``Episode`` in Minari's layout, an ``OfflineDataset`` of episodes, and the
errors every dataset function raises (each message says what is wrong and what to do).

Minari layout (kept as is): an episode holds T+1 observations (the last is the final next-observation)
and T actions, rewards, terminations, truncations; action t pairs with observation t. Episodes are
validated when made, whatever made them (read from Minari, imported from D4RL, built from a policy)."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from rl_minrnn.envs.scores import ReferenceScores, resolve_reference_scores

class DatasetError(Exception):
    """Base class of the dataset errors; the message says what is wrong and what to do."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """The dataset id resolves to nothing: not in the local store, not shipped, not downloadable."""


class DatasetFormatError(DatasetError, ValueError):
    """A file or dataset exists but cannot be read as expected (corrupt, wrong arrays, wrong shapes)."""


class DatasetExistsError(DatasetError, FileExistsError):
    """Refusing to overwrite an existing dataset."""


@dataclass
class Episode:
    """One episode in Minari layout: ``observations`` (T+1, obs_dim); the rest (T, ...)."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    seed: int | None = None

    def __post_init__(self):
        for name in ("observations", "actions", "rewards", "terminations", "truncations"):
            kind = np.asarray(getattr(self, name)).dtype.kind
            if kind not in "biuf":  # strings, objects, complex numbers: not what a transition holds
                raise DatasetFormatError(f"Malformed episode: {name} hold {np.asarray(getattr(self, name)).dtype} "
                                         "values; they must be real numbers (or booleans).")
        self.observations = np.asarray(self.observations, dtype=np.float32)
        self.actions = np.asarray(self.actions, dtype=np.float32)
        self.rewards = np.asarray(self.rewards, dtype=np.float32).reshape(-1)
        self.terminations = np.asarray(self.terminations, dtype=bool).reshape(-1)
        self.truncations = np.asarray(self.truncations, dtype=bool).reshape(-1)
        if self.observations.ndim == 1:
            self.observations = self.observations[:, None]
        if self.actions.ndim == 1:
            self.actions = self.actions[:, None]
        if self.observations.ndim != 2 or self.actions.ndim != 2:
            raise DatasetFormatError(f"Malformed episode: observations {self.observations.shape} and actions "
                                     f"{self.actions.shape} must be 2-d (steps, dim).")
        if self.seed is not None:
            self.seed = int(self.seed)
        self.validate()

    def validate(self) -> None:
        t = len(self.rewards)
        problems = []
        if t == 0:
            problems.append("it has no steps")
        if self.observations.shape[0] != t + 1:
            problems.append(f"{self.observations.shape[0]} observations for {t} rewards (Minari needs T+1)")
        for name in ("actions", "terminations", "truncations"):
            n = len(getattr(self, name))
            if n != t:
                problems.append(f"{n} {name} for {t} rewards")
        if problems:
            raise DatasetFormatError(
                "Malformed episode: " + "; ".join(problems) + ". An episode holds T+1 observations and "
                "T actions, rewards, terminations and truncations."
            )
        for name in ("observations", "actions", "rewards"):  # one NaN would make every loss NaN
            values = getattr(self, name)
            finite = np.isfinite(values)
            if not finite.all():
                bad = np.argwhere(~finite)
                step = int(bad[0][0])
                raise DatasetFormatError(
                    f"{name} hold {len(bad)} non-finite value(s) (NaN or Inf), the first at step {step}: "
                    f"{values[tuple(bad[0])]}. Fix or drop this episode and rebuild the dataset; training on "
                    "it would make every loss NaN."
                )

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def states(self) -> np.ndarray:
        """The T observations the agent acts on (the final next-observation dropped)."""
        return self.observations[:-1]

    @property
    def total_return(self) -> float:
        return float(np.sum(self.rewards, dtype=np.float64))


class OfflineDataset:
    """Episodes of one dataset plus what evaluation needs (env id, reference scores, state statistics)."""

    def __init__(
        self,
        episodes: Sequence[Episode],
        dataset_id: str,
        env_id: str | None = None,
        ref_min_score: float | None = None,
        ref_max_score: float | None = None,
        eval_env_spec=None,
        metadata: dict | None = None,
        path: str | os.PathLike | None = None,
    ):
        if len(episodes) == 0:
            raise DatasetFormatError(f"Dataset {dataset_id!r} has no episodes.")
        self.episodes = list(episodes)
        self.dataset_id = dataset_id
        self.env_id = env_id
        self.eval_env_spec = eval_env_spec
        self.metadata = dict(metadata or {})
        self.path = Path(path) if path is not None else None
        self.obs_dim = int(self.episodes[0].observations.shape[1])
        self.act_dim = int(self.episodes[0].actions.shape[1])
        for i, ep in enumerate(self.episodes):
            if ep.observations.shape[1] != self.obs_dim or ep.actions.shape[1] != self.act_dim:
                raise DatasetFormatError(
                    f"Dataset {dataset_id!r}: episode {i} has obs/action dims "
                    f"{ep.observations.shape[1]}/{ep.actions.shape[1]}, episode 0 has {self.obs_dim}/{self.act_dim}."
                )
        try:
            ref = resolve_reference_scores(env_id or dataset_id, ref_min_score, ref_max_score)
        except KeyError:
            ref = None
        self.reference_scores: ReferenceScores | None = ref
        self.ref_min_score = ref.min_score if ref is not None else None
        self.ref_max_score = ref.max_score if ref is not None else None
        self._stats: tuple[np.ndarray, np.ndarray] | None = None

    def subset(self, indices: Sequence[int]) -> "OfflineDataset":
        """The same dataset (id, env, reference scores and their source, metadata) holding only the episodes at
        ``indices``, in that order; its state statistics are its own episodes'."""
        episodes = [self.episodes[int(i)] for i in indices]
        if not episodes:
            raise DatasetFormatError(f"A subset of dataset {self.dataset_id!r} needs at least one episode.")
        part = copy.copy(self)
        part.episodes, part._stats = episodes, None
        return part

    # sizes -----------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.episodes)

    def __iter__(self) -> Iterator[Episode]:
        return iter(self.episodes)

    def __getitem__(self, i: int) -> Episode:
        return self.episodes[i]

    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(ep) for ep in self.episodes], dtype=np.int64)

    @property
    def num_steps(self) -> int:
        return int(self.lengths.sum())

    @property
    def returns(self) -> np.ndarray:
        """Undiscounted return of every episode, float64 (num_episodes,)."""
        return np.array([ep.total_return for ep in self.episodes], dtype=np.float64)

    # state statistics -------------------------------------------------------------------------------
    def _state_stats(self) -> tuple[np.ndarray, np.ndarray]:
        if self._stats is None:
            states = np.concatenate([ep.states for ep in self.episodes]).astype(np.float64)
            mean = states.mean(axis=0)
            std = np.maximum(states.std(axis=0), 1e-6)
            self._stats = (mean.astype(np.float32), std.astype(np.float32))
        return self._stats

    @property
    def state_mean(self) -> np.ndarray:
        """Mean of the states the agent sees (observations[:-1] of every episode), float32."""
        return self._state_stats()[0]

    @property
    def state_std(self) -> np.ndarray:
        """Std of those states, clipped below at 1e-6, float32."""
        return self._state_stats()[1]

    # evaluation -------------------------------------------------------------------------------------
    def normalized_score(self, returns):
        if self.reference_scores is None:
            raise DatasetFormatError(
                f"Dataset {self.dataset_id!r} (env {self.env_id!r}) has no reference scores: its metadata lacks "
                "ref_min_score/ref_max_score and it is not a D4RL locomotion task."
            )
        return self.reference_scores.normalize(returns)

    def summary(self) -> str:
        ret = self.returns
        lens = self.lengths
        text = (
            f"{self.dataset_id}: {self.num_episodes} episodes, {self.num_steps} steps, env {self.env_id}, "
            f"obs_dim {self.obs_dim}, act_dim {self.act_dim}; return mean {ret.mean():.1f} "
            f"(min {ret.min():.1f}, max {ret.max():.1f}), length mean {lens.mean():.1f}"
        )
        if self.reference_scores is not None:
            text += f"; normalised return mean {float(np.mean(self.normalized_score(ret))):.1f}"
        return text

    def __repr__(self) -> str:
        return (
            f"OfflineDataset({self.dataset_id!r}, env_id={self.env_id!r}, episodes={self.num_episodes}, "
            f"steps={self.num_steps})"
        )

