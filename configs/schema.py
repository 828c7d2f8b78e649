"""The experiment configuration: dataclasses whose field comments are the documentation.

A run's configuration is the defaults below, overridden in order by YAML files (``--config``, the
``cpu`` profile among them) and then by ``--set key=value`` (values parsed as YAML). Unknown keys and bad
values stop with a :class:`ConfigError` that names the key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from rl_minrnn.agents import AGENTS
from rl_minrnn.agents.base import DEFAULT_RETURN_SCALE
from rl_minrnn.agents.embeddings import TOKEN_LAYOUTS
from rl_minrnn.agents.initialisation import INIT_SCHEMES
from rl_minrnn.envs.offline.batches import WINDOW_SAMPLING
from rl_minrnn import CELLS

CONFIG_DIR = Path(__file__).resolve().parent


class ConfigError(ValueError):
    """A configuration key is unknown or has a bad value; the message names the key."""


@dataclass
class DatasetConfig:
    id: str = "mujoco/hopper/medium-v0"  # Minari dataset id (local store first, then download)
    fallback_to_sample: bool = False  # if `id` is unavailable offline, use the Hopper sample shipped with the project
    return_scale: float = DEFAULT_RETURN_SCALE  # returns-to-go are divided by this (1000)


@dataclass
class ModelConfig:
    kind: str = "decision_rnn"  # decision_rnn | decision_transformer
    cell: str = "mingru"  # mingru | minlstm (decision_rnn)
    width: int = 128  # embedding width
    depth: int = 3  # layers
    context: int = 20  # K: timesteps per training window (and the window of `window` rollouts)
    tokens: str = "interleaved"  # interleaved (R, s, a as three tokens) | fused (one token per timestep)
    expansion: float = 1.0  # minRNN hidden width = int(width * expansion)
    mlp_ratio: float = 4.0
    dropout: float = 0.1
    conv: int = 0  # causal depthwise conv width before each cell (0: none)
    max_timestep: int = 1000  # size of the timestep embedding; later timesteps use the last entry
    heads: int = 1  # attention heads (decision_transformer)
    position_embedding: bool = True  # learned token-position embedding (decision_transformer)
    init: str = "gpt"  # gpt: every Linear/Embedding weight N(0, 0.02), zero biases (GPT, CORL) | d3rlpy: that, but PyTorch's defaults for the R/s/a projections and the head | pytorch: PyTorch's defaults everywhere (before issue 9)


@dataclass
class TrainConfig:
    steps: int = 100_000
    batch_size: int = 64
    regime: str = "window"  # window: K-step windows from a zero state (DT's; BENCHMARKS.md, learning quality) | sequence: episodes in consecutive chunks, state carried (TBPTT; decision_rnn only)
    window_sampling: str = "start"  # window regime, where windows lie in their episode: start: a uniform start timestep (CORL, DT; the first K-1 steps are in fewer windows) | end: a uniform end timestep (d3rlpy; windows near the start are shorter) | cover: starts uniform over -(K-1)..T-1, clipped (every timestep in K windows)
    chunk_len: int = 80  # timesteps per chunk in the sequence regime; each step still trains on batch_size * context timesteps, in batch_size * context // chunk_len lanes
    lr: float = 1e-4
    weight_decay: float = 1e-4
    weight_decay_on: str = "matrices"  # matrices: Linear/conv weights only, biases, LayerNorms and embeddings exempt (GPT, d3rlpy) | all: every parameter (CORL)
    warmup_steps: int = 10_000
    grad_clip: float = 0.25
    log_every: int = 100  # steps between logged training scalars
    checkpoint_every: int = 1000  # steps between checkpoints/last.pt (also written at the end and on Ctrl-C)
    device: str = "auto"  # auto (cuda when present) | cpu | cuda
    threads: int = 0  # torch CPU threads (0: half the cores, 1 to 4)
    compile: bool = False  # torch.compile the model
    loggers: list[str] = field(default_factory=lambda: ["tensorboard"])  # experiment trackers beside metrics.jsonl, any of tensorboard | mlflow (extra [mlflow]; local store runs/mlflow.db) | wandb (extra [wandb]; offline unless WANDB_MODE); [] for metrics.jsonl only


@dataclass
class EvalConfig:
    every: int = 10_000  # steps between evaluations during training (0: no evaluation at all)
    episodes: int = 10
    target_returns: list = field(default_factory=lambda: [3600.0, 1800.0])  # raw returns
    mode: str = "auto"  # rollout mode: auto (the agent's default) | recurrent | window
    seed: int = 10_000  # episode i resets with seed + i
    max_episode_steps: int = 1000
    at_end: bool = True  # also evaluate after the last step when `every` (> 0) does not divide `train.steps`
    video: bool = False  # record episode 0 of each evaluation to run_dir/videos (and TensorBoard); software rendering adds time, docs/evaluation.md


@dataclass
class ExperimentConfig:
    seed: int = 0  # fixes data sampling and initialisation
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Options come from the registries that implement them (a new cell, agent kind or token layout is one
# line there); the options listed here are implemented in ``training`` and read from here.
ROLLOUT_MODES = tuple(dict.fromkeys(mode for agent in AGENTS.values() for mode in agent.rollout_modes))
CHOICES = {
    "model.kind": tuple(AGENTS),
    "model.cell": tuple(CELLS),
    "model.tokens": TOKEN_LAYOUTS,
    "model.init": INIT_SCHEMES,
    "train.weight_decay_on": ("matrices", "all"),
    "train.window_sampling": WINDOW_SAMPLING,
    "train.regime": ("window", "sequence"),
    "train.device": ("auto", "cpu", "cuda"),
    "eval.mode": ("auto", *ROLLOUT_MODES),
}
# list keys whose every entry is one of these (the trackers are implemented in training/run_logging.py)
LIST_CHOICES = {"train.loggers": ("tensorboard", "mlflow", "wandb")}
POSITIVE = {
    "model.width", "model.depth", "model.context", "model.max_timestep", "model.heads", "train.steps",
    "train.batch_size", "train.chunk_len", "train.lr", "train.log_every", "train.checkpoint_every",
    "eval.episodes", "eval.max_episode_steps", "dataset.return_scale", "model.expansion", "model.mlp_ratio",
}
NON_NEGATIVE = {"train.warmup_steps", "train.weight_decay", "train.grad_clip", "train.threads", "eval.every", "model.conv"}


def _coerce(key: str, value: Any, kind: Any) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 3e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif kind is str:
        if isinstance(value, str):
            return value
    elif get_origin(kind) is list and get_args(kind) == (str,):
        if isinstance(value, str):  # --set train.loggers=tensorboard,mlflow
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(dict.fromkeys(value))
    elif kind is list or get_origin(kind) is list:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return [float(v) for v in value]
    raise ConfigError(f"{key}: expected {getattr(kind, '__name__', kind)}, got {value!r}")


def _apply(obj: Any, data: dict, prefix: str = "") -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping of keys, got {data!r}")
    hints = get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"Unknown config key {full!r}; valid keys here: {', '.join(sorted(names))}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _apply(current, value, f"{full}.")
        else:
            setattr(obj, key, _coerce(full, value, hints[key]))


def validate(config: ExperimentConfig) -> ExperimentConfig:
    for section in ("dataset", "model", "train", "eval"):
        part = getattr(config, section)
        for f in dataclasses.fields(part):
            key, value = f"{section}.{f.name}", getattr(part, f.name)
            if key in CHOICES and value not in CHOICES[key]:
                raise ConfigError(f"{key}: must be one of {', '.join(CHOICES[key])}, got {value!r}")
            if key in LIST_CHOICES and any(v not in LIST_CHOICES[key] for v in value):
                raise ConfigError(f"{key}: each entry must be one of {', '.join(LIST_CHOICES[key])}, got {value!r}")
            if key in POSITIVE and not value > 0:
                raise ConfigError(f"{key}: must be > 0, got {value!r}")
            if key in NON_NEGATIVE and value < 0:
                raise ConfigError(f"{key}: must be >= 0, got {value!r}")
    if config.model.conv == 1:
        raise ConfigError("model.conv: a convolution needs width >= 2 (0 turns it off), got 1")
    if config.model.kind == "decision_transformer":
        if config.train.regime == "sequence":
            raise ConfigError("train.regime: the decision_transformer trains on windows only, set train.regime=window")
        if config.model.width % config.model.heads:
            raise ConfigError(f"model.heads: must divide model.width ({config.model.width}), got {config.model.heads}")
    try:
        AGENTS[config.model.kind].resolve_rollout_mode(config.eval.mode)
    except ValueError as exc:
        raise ConfigError(f"eval.mode: {exc}; use auto (its default) or one of those") from None
    if not config.eval.target_returns:
        raise ConfigError("eval.target_returns: give at least one target return")
    return config


def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"--set expects key=value (e.g. train.steps=2000), got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"{key}: cannot parse value {raw!r}: {exc}") from None
    return key.strip(), value


def nest(key: str, value: Any) -> dict:
    out: Any = value
    for part in reversed(key.split(".")):
        out = {part: out}
    return out


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file {str(path)!r} does not exist (configs live in {CONFIG_DIR})")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"Config file {str(path)!r} is not valid YAML: {exc}") from None
    return data


# Keys added after runs were already saved, with the value that reproduces what such a run did: a
# checkpoint's config that lacks one resumes as it was trained, not with today's default.
ADDED_KEYS = {"model.init": "pytorch", "train.weight_decay_on": "all", "train.window_sampling": "start",
              "train.loggers": ["tensorboard"]}


def with_added_keys(saved: dict) -> dict:
    """``saved`` (a run's config as written) with every key in ``ADDED_KEYS`` it lacks set to that value."""
    out = {section: dict(values) if isinstance(values, dict) else values for section, values in saved.items()}
    for key, value in ADDED_KEYS.items():
        section, name = key.split(".")
        if isinstance(out.get(section), dict):
            out[section].setdefault(name, value)
    return out


def load_config(
    files: list[str | Path] = (), overrides: list[str] = (), base: dict | None = None
) -> ExperimentConfig:
    """Defaults <- ``base`` (a saved run's config, completed by ``with_added_keys``) <- YAML files in order
    <- ``key=value`` overrides."""
    config = ExperimentConfig()
    if base:
        _apply(config, with_added_keys(base))
    for path in files:
        _apply(config, read_yaml(path))
    for text in overrides:
        key, value = parse_override(text)
        _apply(config, nest(key, value))
    return validate(config)


def config_for_dataset(dataset_id: str) -> tuple[Path, str | None]:
    """The shipped config for a dataset id ``<namespace>/<task>/<kind>-v<N>``: ``configs/<task>-<kind>.yaml``,
    whichever store the data comes from (Minari's ``mujoco/``, an imported ``d4rl/``, a built ``local/``), so
    the locally built suite needs no configs of its own. An id with no config (the sample dataset, test
    datasets) gets its task's medium config, or Hopper's, with a note that says so."""
    parts = dataset_id.split("/")
    task = parts[-2] if len(parts) >= 2 else ""
    kind = parts[-1].rsplit("-v", 1)[0]
    path = CONFIG_DIR / f"{task}-{kind}.yaml"
    if path.is_file():
        return path, None
    fallback = CONFIG_DIR / f"{task}-medium.yaml"
    if not fallback.is_file():
        fallback = CONFIG_DIR / "hopper-medium.yaml"
    return fallback, f"no configs/{path.name} for {dataset_id!r}; using configs/{fallback.name}"


def profile_path(name: str) -> Path:
    path = CONFIG_DIR / "profiles" / f"{name}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in (CONFIG_DIR / "profiles").glob("*.yaml"))
        raise ConfigError(f"Unknown profile {name!r}; available: {', '.join(names)}")
    return path


def field_help() -> str:
    """Every key with its default and the comment beside its field, for ``--help``."""
    import ast

    source = Path(__file__).read_text()
    lines = source.splitlines()
    comments = {}  # (class name, field) -> the comment on the field's line
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    line = lines[item.lineno - 1]
                    comments[(node.name, item.target.id)] = line.split("#", 1)[1].strip() if "#" in line else ""
    out = []
    config = ExperimentConfig()
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            for sub in dataclasses.fields(value):
                comment = comments.get((type(value).__name__, sub.name), "")
                out.append(f"  {f.name}.{sub.name} = {getattr(value, sub.name)!r}" + (f"  ({comment})" if comment else ""))
        else:
            comment = comments.get(("ExperimentConfig", f.name), "")
            out.append(f"  {f.name} = {value!r}" + (f"  ({comment})" if comment else ""))
    return "\n".join(out)
