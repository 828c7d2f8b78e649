"""What a run trains with: the torch device, how many CPU threads it may use, and the dataset (with the
shipped sample as the offline fallback the default job allows)."""

from __future__ import annotations

import torch

from rl_minrnn.configs.schema import ConfigError, ExperimentConfig
from rl_minrnn.envs.offline import SAMPLE_DATASET_ID, DatasetNotFoundError, load_dataset
from rl_minrnn.threads import default_threads, usable_cores

DEVICES = ("auto", "cpu", "cuda")  # ``train.device``: what select_device accepts


def configure_threads(requested: int) -> int:
    """``requested`` torch threads, or ``rl_minrnn.threads.default_threads`` (half the usable cores) for 0."""
    threads = requested or default_threads()
    torch.set_num_threads(threads)
    return threads


def data_parallel_processes(train, device: torch.device) -> int:
    """``train.processes`` with 0 (auto) resolved: 2 where splitting each batch between two processes applies
    (a CPU run in the window regime, uncompiled, of at least 2 windows a batch, on a machine with 2 cores or more:
    one run on both cores trains about 1.45x as fast there, BENCHMARKS.md), 1 elsewhere. Auto suits a run that has
    the machine to itself; runs that share it (the suite's, side by side) set 1."""
    if train.processes:
        return train.processes
    applies = (device.type == "cpu" and train.regime == "window" and not train.compile and train.batch_size >= 2
               and usable_cores() >= 2)
    return 2 if applies else 1


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
