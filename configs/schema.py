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
from rl_minrnn.agents.base import DEFAULT_RETURN_SCALE, RETURN_SCALE_OPTION
from rl_minrnn.agents.factory import agent_kwargs
from rl_minrnn.envs.evaluation.rollout import EVALUATION_OPTIONS
from rl_minrnn.envs.offline.batches import SAMPLER_OPTIONS
from rl_minrnn.ranges import ChoiceList, Number, OneOf, OptionError

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
    lr_schedule: str = "cosine"  # after the warm-up: constant (DT, CORL, d3rlpy's default) | cosine (a half cosine from lr down to lr * lr_final at train.steps; d3rlpy's CosineAnnealingLR) | linear (a straight line to the same)
    lr_final: float = 0.1  # cosine / linear schedules: the lr at train.steps as a fraction of lr
    ema: float = 0.999  # decay of an exponential moving average of the weights, updated after every step (0: none); the average is what is evaluated, saved as last.pt/best.pt and exported, the raw weights stay in the checkpoint for training; its decay ramps up as min(ema, (1 + n) / (10 + n)) so the first steps' weights do not linger
    log_every: int = 100  # steps between logged training scalars
    checkpoint_every: int = 1000  # steps between checkpoints/last.pt (also written at the end and on Ctrl-C)
    device: str = "auto"  # auto (cuda when present) | cpu | cuda
    threads: int = 0  # torch CPU threads (0: half the cores, 1 to 4)
    compile: bool = False  # torch.compile the model
    loggers: list[str] = field(default_factory=lambda: ["tensorboard"])  # experiment trackers beside metrics.jsonl, any of tensorboard | mlflow (extra [mlflow]; local store runs/mlflow.db) | wandb (extra [wandb]; offline unless WANDB_MODE); [] for metrics.jsonl only


@dataclass
class EvalConfig:
    every: int = 10_000  # steps between evaluations during training (0: no evaluation at all, the final one included)
    episodes: int = 10
    target_returns: list = field(default_factory=lambda: [3600.0, 1800.0])  # raw returns
    mode: str = "auto"  # rollout mode: auto (the agent's default) | recurrent | window
    seed: int = 10_000  # episode i resets with seed + i
    max_episode_steps: int = 1000
    final_episodes: int = 100  # after the last step, the last checkpoint (and best.pt where it is another step) is evaluated again with this many episodes per target (D4RL's 100; 0: none); written to run_dir/final_eval.json, the run's headline
    final_seed: int = 1_000_000  # episode i of the final evaluation resets with final_seed + i: episodes no in-run evaluation has seen
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


# Allowed values come from the modules that use them (a new cell, agent kind or token layout is one line
# in its registry; a range is one line beside the code it protects): the agents' constructor options
# (``DecisionAgent.option_rules``), the samplers' and the evaluation's. The training loop's and the
# optimiser's own options are stated here because ``training`` sits above this module; it reads them
# from here (``WEIGHT_DECAY_ON``, ``DEVICES``).
ROLLOUT_MODES = tuple(dict.fromkeys(mode for agent in AGENTS.values() for mode in agent.rollout_modes))
WEIGHT_DECAY_ON = ("matrices", "all")
LR_SCHEDULES = ("constant", "cosine", "linear")
DEVICES = ("auto", "cpu", "cuda")
TRACKERS = ("tensorboard", "mlflow", "wandb")  # implemented in training/run_logging.py
_MODEL_RULES = {"kind": OneOf(tuple(AGENTS))}
for _agent in AGENTS.values():
    _MODEL_RULES.update(_agent.option_rules())
_STEPS = Number(1, 10**12, integer=True)
RULES = {
    "seed": SAMPLER_OPTIONS["seed"],
    "dataset.return_scale": RETURN_SCALE_OPTION,
    **{f"model.{name}": rule for name, rule in _MODEL_RULES.items()},
    "train.steps": _STEPS,
    **{f"train.{name}": SAMPLER_OPTIONS[name] for name in ("batch_size", "regime", "window_sampling", "chunk_len")},
    "train.lr": Number(0, 1e6, low_open=True),
    "train.weight_decay": Number(0, 1e3),
    "train.weight_decay_on": OneOf(WEIGHT_DECAY_ON),
    "train.warmup_steps": Number(0, 10**12, integer=True),
    "train.grad_clip": Number(0, 1e9, why="0: no clipping"),
    "train.lr_schedule": OneOf(LR_SCHEDULES),
    "train.lr_final": Number(0, 1),
    "train.ema": Number(0, 1, high_open=True, why="0: no average; 0.999 averages over about the last 1000 steps"),
    "train.log_every": _STEPS,
    "train.checkpoint_every": _STEPS,
    "train.device": OneOf(DEVICES),
    "train.loggers": ChoiceList(TRACKERS),
    "train.threads": Number(0, 256, integer=True, why="0: half the cores, 1 to 4"),
    "eval.every": Number(0, 10**12, integer=True, why="0: no evaluation"),
    **{f"eval.{name}": rule for name, rule in EVALUATION_OPTIONS.items()},
    "eval.mode": OneOf(("auto", *ROLLOUT_MODES)),
    "eval.final_episodes": Number(0, 1000, integer=True, why="0: no final evaluation; one environment each, all at once"),
    "eval.final_seed": EVALUATION_OPTIONS["seed"],
}


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
    expected = "a list of numbers" if kind is list or get_origin(kind) is list else getattr(kind, "__name__", kind)
    raise ConfigError(f"{key}: expected {expected}, got {value!r}")


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


def _example(key: str) -> str:
    section, _, name = key.rpartition(".")
    value = getattr(getattr(ExperimentConfig(), section) if section else ExperimentConfig(), name)
    text = "[" + ", ".join(f"{v:g}" if isinstance(v, (int, float)) else str(v) for v in value) + "]" if isinstance(value, list) else str(value)
    return f"{key}={text}"


def validate(config: ExperimentConfig) -> ExperimentConfig:
    """Every key against its rule (``RULES``), then the rules between keys; the first failure is a
    ``ConfigError`` naming the key, the value, what is allowed and an example."""
    for key, rule in RULES.items():
        section, _, name = key.rpartition(".")
        value = getattr(getattr(config, section) if section else config, name)
        try:
            rule.check(value)
        except OptionError as exc:
            raise ConfigError(f"{key}: {exc} (e.g. {_example(key)})") from None
    agent = AGENTS[config.model.kind]
    try:
        agent.check_options(agent_kwargs(config.model))
    except OptionError as exc:
        raise ConfigError(f"model.{exc}") from None
    if config.train.regime == "sequence" and not agent.trains_on_sequences:
        raise ConfigError(f"train.regime: the {config.model.kind} trains on windows only, set train.regime=window")
    try:
        agent.resolve_rollout_mode(config.eval.mode)
    except ValueError as exc:
        raise ConfigError(f"eval.mode: {exc}; use auto (its default) or one of those") from None
    return config


def one_line(exc: Exception) -> str:
    """An error's text on one line (YAML's point at the column on a second and third)."""
    return " ".join(str(exc).split())


def parse_override(text: str) -> tuple[str, Any]:
    if not isinstance(text, str) or "=" not in text:
        raise ConfigError(f"--set expects key=value (e.g. train.steps=2000), got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"{key}: cannot parse value {raw!r} as YAML ({one_line(exc)})") from None
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
        raise ConfigError(f"Config file {str(path)!r} is not valid YAML: {one_line(exc)}") from None
    return data


# Keys added after runs were already saved, with the value that reproduces what such a run did: a
# checkpoint's config that lacks one resumes as it was trained, not with today's default.
ADDED_KEYS = {"model.init": "pytorch", "train.weight_decay_on": "all", "train.window_sampling": "start",
              "train.loggers": ["tensorboard"], "train.lr_schedule": "constant", "train.ema": 0.0,
              "eval.final_episodes": 0}


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
