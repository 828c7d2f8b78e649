"""Where training metrics go: ``metrics.jsonl`` (one JSON object per logging event, readable without
TensorBoard) and TensorBoard scalars. One small adapter, several sinks (d3rlpy's pattern)."""

from __future__ import annotations

import json
import math
from pathlib import Path


class MetricsLogger:
    """``log(step, {"train/loss": ...})`` writes to every sink; ``close()`` flushes them."""

    def __init__(self, run_dir: str | Path, tensorboard: bool = True):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(self.run_dir / "metrics.jsonl", "a", buffering=1)
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.run_dir / "tensorboard"))
            except ImportError:  # tensorboard is a declared dependency; stay useful without it
                self._tb = None

    def log(self, step: int, metrics: dict) -> None:
        clean = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
        self._jsonl.write(json.dumps({"step": int(step), **clean}) + "\n")
        if self._tb is not None:
            for key, value in clean.items():
                self._tb.add_scalar(key, value, step)

    def log_video(self, step: int, tag: str, path: str | Path) -> None:
        """A recorded evaluation video, as an animated image in TensorBoard (the file stays in the run)."""
        if self._tb is not None:
            from rl_minrnn.envs.evaluation.render import log_video_tensorboard

            log_video_tensorboard(self._tb, tag, path, step)

    def close(self) -> None:
        self._jsonl.close()
        if self._tb is not None:
            self._tb.close()
