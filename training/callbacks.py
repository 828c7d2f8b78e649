"""Hooks into ``Trainer.run``: benchmarks time and collect evaluations through them, a scheduler can
report them as they happen, without copying the loop."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .trainer import Trainer


class TrainerCallback:
    """Hooks into ``Trainer.run`` (benchmarks time and collect evaluations, a scheduler reports them):
    subclass and override what you need; each gets the trainer, whose ``step`` is the step just done."""

    def on_step(self, trainer: "Trainer", stats: dict) -> None:
        """After every optimisation step; ``stats`` holds ``loss``, ``grad_norm``, ``timesteps`` (tensors)."""

    def on_evaluation(self, trainer: "Trainer", result, seconds: float) -> None:
        """After every evaluation: ``result`` is the ``EvaluationResult``, ``seconds`` its duration."""

    def on_save(self, trainer: "Trainer", path: Path) -> None:
        """After a checkpoint was written."""

