"""Where training metrics go: ``metrics.jsonl`` (always: one JSON object per logging event, readable
without any tracker) and the experiment trackers of ``train.loggers``, each behind one small protocol
(d3rlpy's logger adapters are the model): TensorBoard (a dependency), MLflow and W&B (optional extras).

Every sink gets the same metric names (``train/loss``, ``eval/score``, ...) at the same steps, and the
run's config as parameters (flattened keys: ``train.lr``, ``model.width``, ...). A tracker whose package
is missing is refused before training starts, with the pip command that installs it.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Protocol

from rl_minrnn.configs.schema import ConfigError

from .run_folder import RunFolder


class Tracker(Protocol):
    """One experiment tracker. ``params``: the run's config, flattened to ``{"train.lr": 0.001, ...}``."""

    def write_params(self, params: dict) -> None: ...

    def write_metrics(self, step: int, metrics: dict[str, float]) -> None: ...

    def write_video(self, step: int, tag: str, path: Path) -> None: ...

    def close(self) -> None: ...


def flatten(config: dict, prefix: str = "") -> dict:
    """``{"train": {"lr": 1e-3}}`` -> ``{"train.lr": 1e-3}`` (lists kept as they are)."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _missing(name: str, package: str) -> ConfigError:
    return ConfigError(f"train.loggers: {name} is not installed; pip install 'rl_minrnn[{name}]' (or pip install {package})")


class TensorBoardTracker:
    """``run_dir/tensorboard``: scalars, the config as a YAML text panel, evaluation videos as animations."""

    def __init__(self, run_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(RunFolder(run_dir).tensorboard))

    def write_params(self, params: dict) -> None:
        import yaml

        self.writer.add_text("config", "```\n" + yaml.safe_dump(params, sort_keys=False) + "```")

    def write_metrics(self, step: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def write_video(self, step: int, tag: str, path: Path) -> None:
        from rl_minrnn.envs.evaluation.render import log_video_tensorboard

        log_video_tensorboard(self.writer, tag, path, step)

    def close(self) -> None:
        self.writer.close()


class MLflowTracker:
    """An MLflow run in experiment ``rl_minrnn`` named after the run folder, in ``$MLFLOW_TRACKING_URI``
    or else the local store ``sqlite:///<run folder's parent>/mlflow.db`` (offline; ``mlflow ui
    --backend-store-uri sqlite:///runs/mlflow.db`` shows it). Through ``MlflowClient``, so a caller's own
    active MLflow run is left alone. A resumed run continues the same MLflow run (its id is kept in
    ``run_dir/mlflow_run_id``); parameters it already has are not written again."""

    EXPERIMENT = "rl_minrnn"

    def __init__(self, run_dir: Path):
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise _missing("mlflow", "mlflow-skinny sqlalchemy alembic") from None
        import logging

        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # its table set-up notes, each new store
        uri = self.tracking_uri(run_dir)
        self.client = MlflowClient(tracking_uri=uri)
        self.uri = uri
        id_file = RunFolder(run_dir).mlflow_run_id
        run_id = id_file.read_text().strip() if id_file.is_file() else None
        self._existing = {}
        if run_id:
            try:
                run = self.client.get_run(run_id)
                self._existing = dict(run.data.params)
                self.client.update_run(run_id, status="RUNNING")
            except Exception:  # the store was moved or cleared: start a new MLflow run
                run_id = None
        if not run_id:
            experiment = self.client.get_experiment_by_name(self.EXPERIMENT)
            experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(self.EXPERIMENT)
            run_id = self.client.create_run(experiment_id, run_name=run_dir.name).info.run_id
            id_file.write_text(run_id + "\n")
        self.run_id = run_id

    @staticmethod
    def tracking_uri(run_dir: Path) -> str:
        """``$MLFLOW_TRACKING_URI``, or else the local store beside the run folder (``RunFolder.mlflow_store``)."""
        return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{RunFolder(run_dir).mlflow_store.as_posix()}"

    def write_params(self, params: dict) -> None:
        from mlflow.entities import Param

        new = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in self._existing]
        for i in range(0, len(new), 100):  # MLflow's batch limit for parameters
            self.client.log_batch(self.run_id, params=new[i:i + 100])

    def write_metrics(self, step: int, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()])

    def write_video(self, step: int, tag: str, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path="videos")

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


class WandbTracker:
    """A W&B run in project ``rl_minrnn`` named after the run folder, files under ``run_dir/wandb``;
    offline unless ``$WANDB_MODE`` says otherwise (``wandb sync run_dir/wandb/offline-run-*`` uploads it
    later). A resumed run continues the same W&B run (its id is kept in ``run_dir/wandb_run_id``)."""

    PROJECT = "rl_minrnn"

    def __init__(self, run_dir: Path):
        try:
            import wandb
        except ImportError:
            raise _missing("wandb", "wandb") from None
        self.wandb = wandb
        folder = RunFolder(run_dir)
        id_file = folder.wandb_run_id
        run_id = id_file.read_text().strip() if id_file.is_file() else wandb.util.generate_id()
        id_file.write_text(run_id + "\n")
        folder.wandb.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", self.PROJECT), name=run_dir.name, id=run_id,
                              dir=str(run_dir), resume="allow", mode=os.environ.get("WANDB_MODE", "offline"))

    def write_params(self, params: dict) -> None:
        self.run.config.update(params, allow_val_change=True)

    def write_metrics(self, step: int, metrics: dict[str, float]) -> None:
        self.run.log(metrics, step=step)

    def write_video(self, step: int, tag: str, path: Path) -> None:
        self.run.save(str(path), base_path=str(path.parent.parent), policy="now")

    def close(self) -> None:
        self.run.finish()


TRACKERS = {"tensorboard": TensorBoardTracker, "mlflow": MLflowTracker, "wandb": WandbTracker}


def check_trackers(names) -> None:
    """Refuse a tracker whose package is missing, before anything slow (one line with the pip command)."""
    import importlib.util

    packages = {"mlflow": ("mlflow", "mlflow-skinny sqlalchemy alembic"), "wandb": ("wandb", "wandb")}
    for name in names:
        if name not in TRACKERS:
            raise ConfigError(f"train.loggers: unknown tracker {name!r}; choose from {', '.join(TRACKERS)}")
        if name in packages and importlib.util.find_spec(packages[name][0]) is None:
            raise _missing(name, packages[name][1])


class MetricsLogger:
    """``log(step, {"train/loss": ...})`` writes to ``metrics.jsonl`` and every tracker; ``close()`` flushes
    them. ``trackers``: names from ``TRACKERS`` (``train.loggers``); ``params``: the run's config (a nested
    dict), written once as parameters."""

    def __init__(self, run_dir: str | Path, trackers=("tensorboard",), params: dict | None = None):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        check_trackers(trackers)
        self._jsonl = open(RunFolder(self.run_dir).metrics, "a", buffering=1)
        self.trackers: list = []
        try:
            for name in dict.fromkeys(trackers):
                self.trackers.append(TRACKERS[name](self.run_dir))
            if params is not None:
                flat = flatten(params)
                for tracker in self.trackers:
                    tracker.write_params(flat)
        except BaseException:
            self.close()
            raise

    def log(self, step: int, metrics: dict) -> None:
        clean = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
        self._jsonl.write(json.dumps({"step": int(step), **clean}) + "\n")
        for tracker in self.trackers:
            tracker.write_metrics(int(step), clean)

    def log_video(self, step: int, tag: str, path: str | Path) -> None:
        """A recorded evaluation video (the file stays in the run): an animation in TensorBoard, an artifact
        in MLflow and W&B."""
        for tracker in self.trackers:
            tracker.write_video(int(step), tag, Path(path))

    def close(self) -> None:
        self._jsonl.close()
        for tracker in self.trackers:
            tracker.close()
