"""Checkpoints: one file holding everything a run needs to continue exactly or to be evaluated.

Contents: format version, model weights (the state normalisation statistics and the return scale are
buffers of the model, so they live in the weights and nowhere else),
optimizer and scheduler, step, RNG states, sampler state, the carried training state (sequence regime),
the resolved config, env id, dataset id and reference scores. Written atomically (temp file in the same
folder, then rename), read with ``weights_only=True`` (no arbitrary pickles).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rl_minrnn.agents import build_agent
from rl_minrnn.files import write_atomically
from rl_minrnn.configs.loading import with_added_keys

from .run_folder import RunFolder

CHECKPOINT_FORMAT = 1


class CheckpointError(Exception):
    """A checkpoint is missing, unreadable or does not fit what it is loaded into."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (disk full, folder not writable); the previous file is intact."""


def pack(obj):
    """numpy values -> torch/python values, so the file loads with ``weights_only=True``."""
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": torch.from_numpy(np.ascontiguousarray(obj)), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: pack(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(pack(v) for v in obj)
    return obj


def unpack(obj):
    if isinstance(obj, dict):
        if "__ndarray__" in obj:
            return obj["__ndarray__"].numpy().astype(obj["dtype"], copy=False)
        return {k: unpack(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(unpack(v) for v in obj)
    return obj


def save_checkpoint(path: str | Path, payload: dict) -> Path:
    """Write ``payload`` to ``path`` with ``write_atomically``; a write that fails (disk full, file too
    large, folder not writable) raises ``CheckpointWriteError`` and leaves the previous file intact."""
    path = Path(path)
    try:
        return write_atomically(path, lambda tmp: torch.save(pack({"format": CHECKPOINT_FORMAT, **payload}), tmp))
    except (OSError, RuntimeError) as exc:  # torch.save reports a failed write as a RuntimeError
        previous = "the previous file is intact" if path.is_file() else "there was no previous file"
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0][:200]
        raise CheckpointWriteError(f"Could not write the checkpoint {path} ({reason}); {previous}.") from exc


REQUIRED_KEYS = ("format", "model", "config", "obs_dim", "act_dim", "env_id")


def read_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        candidate = RunFolder(path).last
        hint = f" (did you mean {candidate}?)" if candidate.is_file() else ""
        raise CheckpointError(f"{path} is a folder, not a checkpoint file{hint}")
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} does not exist; train one with train_agent.py (it writes RUN_DIR/checkpoints/last.pt and best.pt)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, not a torch file, foreign pickle...
        raise CheckpointError(f"Checkpoint {path} is not a readable rl_minrnn checkpoint ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(data, dict) or any(k not in data for k in REQUIRED_KEYS):
        raise CheckpointError(f"Checkpoint {path} is not an rl_minrnn checkpoint (missing keys: "
                              f"{[k for k in REQUIRED_KEYS if not isinstance(data, dict) or k not in data]})")
    if data["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"Checkpoint {path} has format {data['format']}, this version reads format {CHECKPOINT_FORMAT}")
    return unpack(data)


def load_weights(agent: torch.nn.Module, state_dict: dict, source: str) -> None:
    """Load weights, turning a shape or key mismatch into one readable error."""
    own = agent.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mismatched = [f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in own if k in state_dict and own[k].shape != state_dict[k].shape]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}")
        if mismatched:
            parts.append(f"shape mismatch {mismatched[:5]}")
        raise CheckpointError(f"Checkpoint {source} does not fit this model ({'; '.join(parts)}); "
                              "was it trained with another model config?")
    agent.load_state_dict(state_dict)


def load_agent(path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild the trained agent from a checkpoint -> ``(agent, info)`` (agent in eval mode).

    ``info``: ``env_id``, ``dataset_id``, ``ref_min_score``, ``ref_max_score``, ``config`` (dict), ``step``.
    """
    data = read_checkpoint(path)
    try:
        agent = build_agent(with_added_keys(data["config"])["model"], data["obs_dim"], data["act_dim"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"Checkpoint {path} holds a model config this version cannot build: {exc}") from None
    load_weights(agent, data["model"], str(path))
    agent.to(device).eval()
    info = {k: data.get(k) for k in ("env_id", "dataset_id", "ref_min_score", "ref_max_score", "ref_source", "config", "step", "best")}
    return agent, info
