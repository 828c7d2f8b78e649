"""Held-out episodes (``dataset.holdout``): a seeded fraction of a dataset's episodes kept out of training,
so that the training objective can be measured on data the model never saw.

Why: a falling closed-loop score late in training reads like overfitting, but only a held-out loss can say
whether it is (the action loss on held-out episodes rises) or whether the policy gets worse in closed loop
while it imitates the data better (the held-out loss keeps falling). ``training.validation`` measures it.

Whole episodes are held out, not windows: windows of one episode overlap and share its behaviour, so a
window split would leak. The draw depends on the seed and the fraction alone, so a resumed run splits as
it did.
"""

from __future__ import annotations

import numpy as np

from rl_minrnn.ranges import Number

from .episodes import DatasetFormatError, OfflineDataset

HOLDOUT_OPTION = Number(0, 1, high_open=True, why="the fraction of episodes kept out of training; 0: none")


def holdout_count(num_episodes: int, fraction: float) -> int:
    """How many episodes ``fraction`` holds out: rounded, at least one when ``fraction`` > 0, and never all.
    ``DatasetFormatError`` when the dataset has too few episodes to hold any out."""
    if fraction <= 0:
        return 0
    if num_episodes < 2:
        raise DatasetFormatError(f"dataset.holdout={fraction:g} needs at least 2 episodes (one to train on, one to hold "
                                 f"out); this dataset has {num_episodes}: set dataset.holdout=0")
    return int(min(max(round(fraction * num_episodes), 1), num_episodes - 1))


def split_episodes(dataset: OfflineDataset, fraction: float, seed: int) -> tuple[OfflineDataset, OfflineDataset | None]:
    """``(training part, held-out part)``: ``holdout_count`` episodes drawn without replacement by numpy's
    generator seeded with ``seed``, each part keeping the dataset's order; ``(dataset, None)`` when
    ``fraction`` is 0, the dataset itself, untouched."""
    count = holdout_count(dataset.num_episodes, fraction)
    if count == 0:
        return dataset, None
    held = np.zeros(dataset.num_episodes, dtype=bool)
    held[np.random.default_rng(seed).choice(dataset.num_episodes, size=count, replace=False)] = True
    return dataset.subset(np.flatnonzero(~held)), dataset.subset(np.flatnonzero(held))
