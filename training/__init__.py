"""Training: the loop (``Trainer``), its optimiser, checkpoints, run logging, the run folder (``RunFolder``) and its lock.

Above ``agents`` (the models) and ``envs`` (data and evaluation): it takes a config, a dataset and an
agent and produces a run folder; nothing below imports it.
"""

from .checkpoint import CheckpointError, CheckpointWriteError, load_agent, read_checkpoint, save_checkpoint
from .run_folder import RunFolder
from .run_lock import RunFolderError, RunInUseError, RunLock
from .callbacks import TrainerCallback
from .faults import EvaluationFailedError, RunWriteError, TrainingDivergedError, TrainingStopped
from .trainer import Trainer

__all__ = [
    "CheckpointError", "CheckpointWriteError", "load_agent", "read_checkpoint", "save_checkpoint",
    "RunFolder", "RunFolderError", "RunInUseError", "RunLock",
    "EvaluationFailedError", "Trainer", "TrainerCallback", "TrainingDivergedError", "TrainingStopped", "RunWriteError",
]
