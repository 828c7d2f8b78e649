"""Reading a configuration: the defaults (``configs.schema``), then a saved run's config, YAML files in order
and ``--set key=value`` overrides (values parsed as YAML), each checked for unknown keys and for its type;
and where the shipped files are (the per-dataset configs, the profiles).

Whether a value is allowed (a range, a choice) is not decided here: ``training.options.load_config`` reads
with :func:`read_config` and then checks every key against the rules of the modules that use it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from .schema import ConfigError, ExperimentConfig

CONFIG_DIR = Path(__file__).resolve().parent


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
              "train.loggers": ["tensorboard"], "train.lr_schedule": "constant", "train.ema": 0.0, "train.ema_ramp": 10.0,
              "eval.final_episodes": 0}


def with_added_keys(saved: dict) -> dict:
    """``saved`` (a run's config as written) with every key in ``ADDED_KEYS`` it lacks set to that value."""
    out = {section: dict(values) if isinstance(values, dict) else values for section, values in saved.items()}
    for key, value in ADDED_KEYS.items():
        section, name = key.split(".")
        if isinstance(out.get(section), dict):
            out[section].setdefault(name, value)
    return out


def read_config(files: list[str | Path] = (), overrides: list[str] = (), base: dict | None = None) -> ExperimentConfig:
    """Defaults <- ``base`` (a saved run's config, completed by ``with_added_keys``) <- YAML files in order
    <- ``key=value`` overrides; keys and types checked, values not (``training.options.load_config`` does)."""
    config = ExperimentConfig()
    if base:
        _apply(config, with_added_keys(base))
    for path in files:
        _apply(config, read_yaml(path))
    for text in overrides:
        key, value = parse_override(text)
        _apply(config, nest(key, value))
    return config


def _task_and_kind(dataset_id: str) -> tuple[str, str]:
    parts = dataset_id.split("/")
    return (parts[-2] if len(parts) >= 2 else ""), parts[-1].rsplit("-v", 1)[0]


def config_for_dataset(dataset_id: str) -> tuple[Path, str | None]:
    """The shipped config for a dataset id ``<namespace>/<task>/<kind>-v<N>``: ``configs/<task>-<kind>.yaml``,
    whichever store the data comes from (Minari's ``mujoco/``, an imported ``d4rl/``, a built ``local/``), so
    the locally built suite needs no configs of its own. An id with no config (the sample dataset, test
    datasets) gets its task's medium config, or Hopper's, with a note that says so."""
    task, kind = _task_and_kind(dataset_id)
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


def profile_agent(config: ExperimentConfig) -> str:
    """A config's agent as a profile's per-agent folders name it: the cell of a Decision-RNN (``mingru``,
    ``minlstm``), else the model kind (``decision_transformer``; d3rlpy's DT, trained with that config, too)."""
    return config.model.cell if config.model.kind == "decision_rnn" else config.model.kind


def profile_files(name: str, dataset_id: str, agent: str | None = None) -> list[Path]:
    """A profile's files for a dataset id ``<namespace>/<task>/<kind>-v<N>`` and an agent (``profile_agent``):
    ``profiles/<name>.yaml``, then those of ``profiles/<name>/<kind>.yaml``, ``<task>.yaml`` and
    ``<task>-<kind>.yaml`` that exist, then the same names in ``profiles/<name>/<agent>/``, most specific last.
    An id of a known task without a config of its own (the shipped Hopper sample, medium data) is read as its
    task's medium dataset, here as in ``config_for_dataset``; an unknown task's id only matches its own names (it
    never gets another task's files).
    A profile overrides the per-dataset configs (the cpu profile's width, lr, steps replace the paper's), so what
    the profile must set differently for a kind of data (the cpu profile's lr on the medium-replay buffers) lives
    beside it, not in the per-dataset config it would override; and what one agent needs differently on that data
    (a dataset's token layout that costs the DT time and buys it nothing) in its agent's folder."""
    task, kind = _task_and_kind(dataset_id)
    config_task, config_kind = config_for_dataset(dataset_id)[0].stem.split("-", 1)
    if task and config_task == task:
        kind = config_kind
    folder = profile_path(name).with_suffix("")
    stems = [kind, task, f"{task}-{kind}"] if task else [kind]
    folders = [folder, folder / agent] if agent else [folder]
    extra = [where / f"{stem}.yaml" for where in folders for stem in stems]
    return [profile_path(name), *(path for path in extra if path.is_file())]


def profile_files_for(name: str, files=(), overrides=(), base: dict | None = None) -> list[Path]:
    """``profile_files`` for the dataset and agent that ``files``, the profile and ``overrides`` name (read
    before the profile's own files, which therefore cannot change either)."""
    named = read_config([*files, profile_path(name)], overrides, base=base)
    return profile_files(name, named.dataset.id, profile_agent(named))
