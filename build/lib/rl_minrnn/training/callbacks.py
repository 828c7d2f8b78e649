"""Hooks into ``Trainer.run``: benchmarks time and collect evaluations through them, a scheduler can
report them as they happen, without copying the loop."""

from __future__ import annotations

from pathlib import Path


class TrainerCallback:
    """Hooks into ``Trainer.run`` (benchmarks time and collect evaluations, a scheduler reports them):
    subclass and override what you need; each gets the trainer, whose ``step`` is the step just done."""

    def on_step(self, trainer, stats: dict) -> None:
        """After every optimisation step; ``stats`` holds ``loss``, ``grad_norm``, ``timesteps`` (tensors)."""

    def on_evaluation(self, trainer, result, seconds: float) -> None:
        """After every evaluation: ``result`` is the ``EvaluationResult``, ``seconds`` its duration."""

    def on_save(self, trainer, path: Path) -> None:
        """After a checkpoint was written."""

