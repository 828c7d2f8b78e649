"""A run's memory, estimated before anything is built, against the memory the process may use.

A size the config allows one key at a time can still be more than the machine holds together (a width
of 8192 with 64 layers; a batch of 100 000 windows), and building it would grow the process until the
kernel kills it, or something else on a shared machine. ``check_run_memory`` stops such a run with a
``ConfigError`` that gives the estimate and the keys that drive it, and warns past half of what is free.

The estimate (``estimate_run_memory``), in bytes, float32:

- **parameters** ``P``: counted exactly by building the agent on PyTorch's ``meta`` device (no memory);
  **gradients** ``P``, **AdamW state** ``2P`` (first and second moments) and ``P`` for the update's
  temporaries (the ``foreach`` implementation works on whole groups at once);
- **activations** kept for the backward pass: ``N = batch_size * context * tokens_per_step`` token positions
  (the sequence regime trains on as many), times the floats each layer keeps per position (``_layer_floats``:
  LayerNorm outputs, the gate projections and the scan's terms, the MLP's two hidden tensors, dropout
  masks; for attention, the ``heads * T * T`` weights of each window), plus the embedding's tokens and the
  gradient tensors alive at once in the backward pass;
- **data**: the sampler's flat copy of the dataset (normalised states, actions, returns-to-go, timesteps,
  and float64 temporaries while it is made), the dataset itself being loaded already;
- **evaluation**: one MuJoCo environment per episode (``ENV_BYTES`` each);
- **fixed**: ``FIXED_BYTES`` that the first training step adds whatever the size (autograd, allocator).

It was checked against the peak RSS of real training steps (``python -m benchmarks.memory_estimate``,
``benchmarks/results/memory_estimate.json``); the figures are in ``docs/faults.md``.

What the process may use (``available_memory``): the smallest of ``MemAvailable``, the cgroup's limit
minus its usage (v1 and v2), and ``$RL_MINRNN_MEMORY_LIMIT`` (bytes, or with a K/M/G suffix) less what
the process already holds: a cap for shared machines, and what the fuzz test runs under. With
``train.device=cuda`` the model's part is compared with the GPU's free memory as well.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from rl_minrnn.agents import AGENTS, build_agent
from rl_minrnn.agents.embeddings import TOKENS_PER_STEP
from rl_minrnn.configs.schema import ConfigError, ExperimentConfig

FLOAT = 4
FIXED_BYTES = 96 * 2**20  # what the first training step costs whatever the size: autograd's and the allocator's own
ENV_BYTES = 8 * 2**20  # one MuJoCo environment of these tasks, with its model and data, about 8 MB
WARN_SHARE = 0.5  # a run estimated at more than this share of the free memory gets a warning
LIMIT_ENV = "RL_MINRNN_MEMORY_LIMIT"


@dataclass
class MemoryEstimate:
    parameters: int  # count
    parts: dict  # name -> bytes
    drivers: dict  # part name -> the keys that size it

    @property
    def total(self) -> int:
        return int(sum(self.parts.values()))

    def model_bytes(self) -> int:
        return int(sum(v for k, v in self.parts.items() if k not in ("data", "evaluation", "fixed")))

    def describe(self) -> str:
        return ", ".join(f"{name} {format_bytes(size)}" for name, size in self.parts.items())

    def main_keys(self) -> list[str]:
        """The keys of the largest parts, largest first."""
        keys = []
        for name, _ in sorted(self.parts.items(), key=lambda kv: -kv[1]):
            if self.parts[name] >= 0.2 * self.total:
                keys += [k for k in self.drivers.get(name, ()) if k not in keys]
        return keys


def format_bytes(n: float) -> str:
    for unit, size in (("TB", 2**40), ("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def parameter_count(model, obs_dim: int, act_dim: int) -> int:
    """The agent's exact parameter count, from its constructor run on the ``meta`` device (no storage)."""
    with torch.device("meta"):
        agent = build_agent(model, obs_dim, act_dim)
    return sum(p.numel() for p in agent.parameters())


def estimate_run_memory(config: ExperimentConfig, obs_dim: int, act_dim: int, num_steps: int = 0) -> MemoryEstimate:
    """What training ``config`` adds to the process, in bytes, by part (see the module's docstring).
    ``num_steps``: timesteps of the (loaded) dataset, for the sampler's copy."""
    m, t = config.model, config.train
    params = parameter_count(m, obs_dim, act_dim)
    per_step = TOKENS_PER_STEP[m.tokens]
    window_tokens = m.context * per_step
    positions = t.batch_size * window_tokens  # the sequence regime trains on as many timesteps per step
    agent = AGENTS[m.kind]
    layer = agent.layer_activation_floats(m, window_tokens)
    widest = agent.widest_activation(m)
    kind_size_keys, kind_activation_keys = agent.memory_keys(m)
    activations = positions * (m.depth * layer + 8 * m.width + 4 * widest) * FLOAT
    data = num_steps * ((2 * obs_dim + act_dim + 2) * FLOAT + 5 * 8)
    evaluation = (config.eval.episodes * ENV_BYTES) if config.eval.every else 0
    size_keys = ["model.width", "model.depth"] + (["model.mlp_ratio"] if m.mlp_ratio > 4 else []) + kind_size_keys
    drivers = {
        "parameters": size_keys + (["model.max_timestep"] if m.max_timestep * m.width > params / 2 else []),
        "gradients and AdamW state": size_keys,
        "activations": ["train.batch_size", "model.context", *size_keys, *kind_activation_keys],
        "data": ["dataset.id"],
        "evaluation": ["eval.episodes"],
    }
    parts = {"fixed": FIXED_BYTES, "parameters": params * FLOAT, "gradients and AdamW state": 4 * params * FLOAT, "activations": activations,
             "data": data, "evaluation": evaluation}
    return MemoryEstimate(params, parts, drivers)


# ----------------------------------------------------------------------------------------- what is free
def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cgroup_free() -> int | None:
    """The cgroup's limit minus its usage (v2, then v1); None without a limit."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        lines = []
    candidates = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            candidates.append(("/sys/fs/cgroup" + path, "memory.max", "memory.current"))
        if "memory" in controllers.split(","):
            candidates.append(("/sys/fs/cgroup/memory" + path, "memory.limit_in_bytes", "memory.usage_in_bytes"))
    candidates += [("/sys/fs/cgroup", "memory.max", "memory.current"),
                   ("/sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.usage_in_bytes")]
    for folder, limit_name, usage_name in candidates:
        limit, usage = _read_int(f"{folder}/{limit_name}"), _read_int(f"{folder}/{usage_name}")
        if limit is not None and usage is not None and limit < 2**60:
            return max(0, limit - usage)
    return None


def proc_bytes(path: str, field: str) -> int | None:
    """A ``field: N kB`` line of a /proc file (``/proc/meminfo``, ``/proc/self/status``) in bytes; None where
    the file or the field is missing."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _mem_available() -> int | None:
    return proc_bytes("/proc/meminfo", "MemAvailable")


def process_rss() -> int:
    """This process's resident memory now, in bytes (0 where /proc is missing)."""
    return proc_bytes("/proc/self/status", "VmRSS") or 0


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", str(text).lower())
    if not match:
        raise ConfigError(f"${LIMIT_ENV}: expected a size such as 2G or 1500M, got {text!r}")
    return int(float(match.group(1)) * 1024 ** "_kmgt".index(match.group(2) or "_"))


def available_memory() -> tuple[int | None, str]:
    """Bytes this process may still allocate, and where that figure comes from (None: unknown)."""
    found = []
    if (free := _mem_available()) is not None:
        found.append((free, "MemAvailable"))
    if (free := _cgroup_free()) is not None:
        found.append((free, "the cgroup's limit"))
    if os.environ.get(LIMIT_ENV):
        found.append((max(0, parse_size(os.environ[LIMIT_ENV]) - process_rss()), f"${LIMIT_ENV}"))
    return min(found) if found else (None, "unknown")


def _gpu_free() -> int | None:
    try:
        return int(torch.cuda.mem_get_info()[0]) if torch.cuda.is_available() else None
    except RuntimeError:
        return None


def check_run_memory(config: ExperimentConfig, obs_dim: int, act_dim: int, num_steps: int = 0, device=None,
                     log=print, available: int | None = None) -> MemoryEstimate:
    """Raise ``ConfigError`` when the run cannot fit in the memory the process may use (the GPU's too on
    cuda), giving the estimate and the keys that drive it; ``log`` a warning past ``WARN_SHARE`` of it."""
    estimate = estimate_run_memory(config, obs_dim, act_dim, num_steps)
    source = "given"
    if available is None:
        available, source = available_memory()
    on_gpu = device is not None and torch.device(device).type == "cuda"
    gpu = _gpu_free() if on_gpu else None
    host_need = estimate.total - (estimate.model_bytes() if gpu is not None else 0)
    checks = [] if available is None else [(host_need, available, f"memory ({source})")]
    if gpu is not None:
        checks.append((estimate.model_bytes(), gpu, "GPU memory"))
    for need, free, what in checks:
        keys = ", ".join(f"{k}={_value(config, k)}" for k in estimate.main_keys())
        if need > free:
            raise ConfigError(
                f"this run needs about {format_bytes(need)} ({estimate.describe()}; {estimate.parameters:,} parameters) "
                f"but only {format_bytes(free)} of {what} is free; lower {keys}")
        if need > WARN_SHARE * free:
            log(f"warning: this run needs about {format_bytes(need)} of the {format_bytes(free)} of {what} free "
                f"({estimate.describe()}); other processes may run out (sized by {keys})")
    return estimate


def _value(config: ExperimentConfig, key: str):
    section, name = key.split(".")
    value = getattr(getattr(config, section), name)
    return value if not dataclasses.is_dataclass(value) else "..."

