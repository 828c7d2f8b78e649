"""What a run trains with: the torch device, how many CPU threads it may use, and the dataset (with the
shipped sample as the offline fallback the default job allows)."""

from __future__ import annotations

import ctypes
import os
import sys

import torch

from rl_minrnn.configs.schema import ConfigError, ExperimentConfig
from rl_minrnn.envs.offline import SAMPLE_DATASET_ID, DatasetNotFoundError, load_dataset


def configure_threads(requested: int) -> int:
    """Half the cores (at least 1, at most 4) unless told otherwise: torch's threads wait for each other at
    every operation, so one that shares its core with the evaluation envs or another job stalls all of them
    (oversubscription), and these small models have too little work per operation to use many."""
    threads = requested or max(1, min(4, (os.cpu_count() or 1) // 2))
    torch.set_num_threads(threads)
    return threads


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory(mmap_threshold: int = 64 << 20, trim_threshold: int = 256 << 20) -> bool:
    """Let glibc keep freed blocks for reuse instead of returning them to the OS at once.

    torch's CPU allocator asks malloc for every tensor; glibc serves blocks above 128 KB (a (64, 20, 256)
    activation is 1.3 MB) with a fresh ``mmap`` and unmaps them on free, so every such tensor of every
    step page-faults its memory in again. Raising the thresholds (as PyTorch's CPU performance guide
    does with jemalloc or tcmalloc) made the cpu profile's training step 8% cheaper in CPU time here
    (``benchmarks/train_speed_versions.py``); the process keeps up to its peak plus ``trim_threshold``.
    Returns False where the C library is not glibc (nothing changed)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold))
    except (OSError, AttributeError):
        return False


def select_device(name: str, key: str = "train.device") -> torch.device:
    """``auto``: cuda when torch sees a GPU, else cpu. ``ConfigError`` (naming ``key``) for a name torch does
    not know, or for cuda where there is none."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"{key}: {name!r} is not a torch device; use cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        use = f"{key} cpu" if key.startswith("--") else f"{key}=cpu"
        raise ConfigError(f"{key}: cuda was asked for but torch sees no CUDA device; use {use}")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"{key}: {name!r} is not supported here; use cpu or cuda")
    return device


def load_training_dataset(config: ExperimentConfig, log=print):
    """The configured dataset, or the Hopper sample shipped with the project when allowed and needed."""
    try:
        return load_dataset(config.dataset.id)
    except DatasetNotFoundError as exc:
        if not config.dataset.fallback_to_sample:
            raise
        log(f"Dataset {config.dataset.id!r} is not available offline ({str(exc).splitlines()[0]}).\n"
            f"Using the Hopper sample dataset shipped with the project instead: {SAMPLE_DATASET_ID!r}.")
        return load_dataset(SAMPLE_DATASET_ID, download=False)
