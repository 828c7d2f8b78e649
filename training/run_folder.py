"""The run folder: every file a training run writes, named in one place for its writers and its readers.

``RunFolder(run_dir).last`` is ``run_dir/checkpoints/last.pt``, and so on for each file below. ``Trainer``
writes the folder; ``Trainer.resume``, ``rl_minrnn.api``, the command lines and the benchmarks read it. The
names are a contract with the run folders already on disk (and the results committed under
``benchmarks/results``), so they are never changed, only added to::

    RUN_DIR/
      config.yaml            the resolved config (Trainer.run)
      metrics.jsonl          one JSON object per logging event (MetricsLogger)
      final_eval.json        the final evaluation of last.pt and best.pt (Trainer.final_evaluation)
      error.log              the traceback of an evaluation that raised
      checkpoints/last.pt    the step reached: resume from it, evaluate it, export it (Trainer.save)
      checkpoints/best.pt    the best in-run evaluation's weights
      videos/step0001000.mp4 evaluation videos (eval.video)
      tensorboard/           the TensorBoard tracker's event files
      mlflow_run_id          the MLflow run a resumed run continues (its store is mlflow_store, outside)
      wandb_run_id, wandb/   the W&B run a resumed run continues, and its offline files
      .lock, .lock.owner     one trainer per folder (RunLock) and who holds it
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunFolder:
    """The paths inside one run folder; nothing is created or read here."""

    root: Path

    def __init__(self, root: str | os.PathLike):
        object.__setattr__(self, "root", Path(root))

    @property
    def config(self) -> Path:
        """``config.yaml``: the run's resolved config, written by ``Trainer.run`` at every start (a resume
        included), for people and tools to read (a resume takes the config from ``last.pt``, not from here)."""
        return self.root / "config.yaml"

    @property
    def metrics(self) -> Path:
        """``metrics.jsonl``: one JSON object per logging event (``{"step": ..., "train/loss": ...}``), appended
        by ``MetricsLogger``; readable without any tracker (``TrainResult.history``, ``benchmarks.main_job``)."""
        return self.root / "metrics.jsonl"

    @property
    def final_eval(self) -> Path:
        """``final_eval.json``: the last checkpoint (and ``best.pt`` where it is another step) on
        ``eval.final_episodes`` fresh episodes per target, the run's headline; written atomically by
        ``Trainer.final_evaluation``."""
        return self.root / "final_eval.json"

    @property
    def error_log(self) -> Path:
        """``error.log``: the full traceback of an evaluation that raised (its error message names it)."""
        return self.root / "error.log"

    @property
    def checkpoints(self) -> Path:
        """``checkpoints/``: ``last.pt`` and ``best.pt`` (``benchmarks.ray_suite`` keeps its progress file
        beside them, as Ray Tune copies this folder as the trial's checkpoint)."""
        return self.root / "checkpoints"

    def checkpoint(self, name: str) -> Path:
        """``checkpoints/<name>.pt`` (``Trainer.save(name)``): ``"last"`` or ``"best"``."""
        return self.checkpoints / f"{name}.pt"

    @property
    def last(self) -> Path:
        """``checkpoints/last.pt``: everything to continue the run exactly (``Trainer.resume``) or to
        evaluate and export its policy; written atomically every ``train.checkpoint_every`` steps, at the end,
        on Ctrl-C and after a failed evaluation. A folder holding it holds a run."""
        return self.checkpoint("last")

    @property
    def best(self) -> Path:
        """``checkpoints/best.pt``: the weights of the best in-run evaluation (an online selection),
        written at each evaluation that improved on the ones before."""
        return self.checkpoint("best")

    @property
    def videos(self) -> Path:
        """``videos/``: episode 0 of each evaluation as ``step<7 digits>.mp4`` (``eval.video``)."""
        return self.root / "videos"

    def video(self, step: int) -> Path:
        """``videos/step0001000.mp4``: the evaluation video of ``step``."""
        return self.videos / f"step{step:07d}.mp4"

    @property
    def tensorboard(self) -> Path:
        """``tensorboard/``: the TensorBoard tracker's event files (``tensorboard --logdir RUN_DIR``)."""
        return self.root / "tensorboard"

    @property
    def mlflow_run_id(self) -> Path:
        """``mlflow_run_id``: the id of the MLflow run this folder logs to, so a resumed run continues it."""
        return self.root / "mlflow_run_id"

    @property
    def mlflow_store(self) -> Path:
        """``<parent>/mlflow.db``: the local MLflow store shared by the run folders beside this one (outside
        the folder), used when ``$MLFLOW_TRACKING_URI`` names none."""
        return self.root.resolve().parent / "mlflow.db"

    @property
    def wandb_run_id(self) -> Path:
        """``wandb_run_id``: the id of the W&B run this folder logs to, so a resumed run continues it."""
        return self.root / "wandb_run_id"

    @property
    def wandb(self) -> Path:
        """``wandb/``: W&B's own files (offline runs, for ``wandb sync``)."""
        return self.root / "wandb"

    @property
    def lock(self) -> Path:
        """``.lock``: the OS file lock a trainer holds for its whole life (``RunLock``)."""
        return self.root / ".lock"

    @property
    def lock_owner(self) -> Path:
        """``.lock.owner``: who holds ``.lock`` (pid, host, since), for the message of a trainer refused."""
        return self.root / ".lock.owner"
