"""What stops a run after it started, each with a message that says what was kept and what to try
(``docs/faults.md``). ``train_agent.py`` exits with 3 for any of them."""

from __future__ import annotations

from pathlib import Path

from rl_minrnn.configs.schema import TrainConfig

from .checkpoint import CheckpointError, read_checkpoint
from .run_folder import RunFolder


class TrainingStopped(Exception):
    """Training started and stopped on a fault; the message says what was kept and what to try."""


class TrainingDivergedError(TrainingStopped):
    """A non-finite loss, gradient or weight."""


class EvaluationFailedError(TrainingStopped):
    """An evaluation raised (an environment or renderer error); ``last.pt`` holds the step reached."""


class RunWriteError(TrainingStopped):
    """A checkpoint or a log could not be written (disk full, folder not writable)."""


def kept_checkpoint(run_dir: Path) -> str:
    """What the run folder holds to continue from, for the messages above."""
    path = RunFolder(run_dir).last
    try:
        step = read_checkpoint(path)["step"]
    except CheckpointError:
        return "No checkpoint of this run could be read; it must start again."
    return f"{path} holds step {step}."


def resume_command(run_dir: Path) -> str:
    return f"python train_agent.py --resume {run_dir}"


def divergence_advice(train: TrainConfig) -> str:
    clip = f"now {train.grad_clip:g}" if train.grad_clip else f"now off; the default is {TrainConfig().grad_clip:g}"
    return (f"Try, in a new run: a lower train.lr (now {train.lr:g}), gradient clipping train.grad_clip ({clip}), "
            f"or a longer train.warmup_steps (now {train.warmup_steps}).")
