"""Which value each configuration key allows, and ``load_config``: read (``configs.loading``), then check.

Every rule is owned by the module that uses the value (a new cell, agent kind or token layout is one line
in its registry; a range is one line beside the code it protects): the agents' constructor options
(``DecisionAgent.option_rules``), the samplers', the evaluation's, the optimiser's. This module gathers them
under their config keys, and states the training loop's own (steps, logging, checkpoints, evaluation
cadence), which ``trainer.py`` reads.
"""

from __future__ import annotations

from pathlib import Path

from rl_minrnn.agents import AGENTS
from rl_minrnn.agents.base import RETURN_SCALE_OPTION
from rl_minrnn.agents.factory import agent_kwargs
from rl_minrnn.configs.loading import read_config
from rl_minrnn.configs.schema import ConfigError, ExperimentConfig
from rl_minrnn.envs.evaluation.rollout import EVALUATION_OPTIONS
from rl_minrnn.envs.offline.batches import SAMPLER_OPTIONS
from rl_minrnn.envs.offline.holdout import HOLDOUT_OPTION
from rl_minrnn.ranges import ChoiceList, Number, OneOf, OptionError

from .averaging import EMA_OPTION, EMA_RAMP_OPTION
from .data_parallel import PROCESSES_OPTION
from .optimizer import OPTIMIZER_OPTIONS
from .resources import DEVICES
from .run_logging import TRACKERS

ROLLOUT_MODES = tuple(dict.fromkeys(mode for agent in AGENTS.values() for mode in agent.rollout_modes))
_MODEL_RULES = {"kind": OneOf(tuple(AGENTS))}
for _agent in AGENTS.values():
    _MODEL_RULES.update(_agent.option_rules())
_STEPS = Number(1, 10**12, integer=True)
RULES = {
    "seed": SAMPLER_OPTIONS["seed"],
    "dataset.return_scale": RETURN_SCALE_OPTION,
    "dataset.holdout": HOLDOUT_OPTION,
    **{f"model.{name}": rule for name, rule in _MODEL_RULES.items()},
    "train.steps": _STEPS,
    **{f"train.{name}": SAMPLER_OPTIONS[name] for name in ("batch_size", "regime", "window_sampling", "chunk_len")},
    **{f"train.{name}": rule for name, rule in OPTIMIZER_OPTIONS.items()},
    "train.ema": EMA_OPTION,
    "train.ema_ramp": EMA_RAMP_OPTION,
    "train.log_every": _STEPS,
    "train.checkpoint_every": _STEPS,
    "train.device": OneOf(DEVICES),
    "train.loggers": ChoiceList(tuple(TRACKERS)),
    "train.threads": Number(0, 256, integer=True, why="0: half the cores, 1 to 4"),
    "train.processes": PROCESSES_OPTION,
    "eval.every": Number(0, 10**12, integer=True, why="0: no evaluation"),
    **{f"eval.{name}": rule for name, rule in EVALUATION_OPTIONS.items()},
    "eval.mode": OneOf(("auto", *ROLLOUT_MODES)),
    "eval.final_episodes": Number(0, 1000, integer=True, why="0: no final evaluation; one environment each, all at once"),
    "eval.final_seed": EVALUATION_OPTIONS["seed"],
}


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
    if config.train.processes > 1:
        if config.train.regime != "window":
            raise ConfigError("train.processes: more than one process splits windows, not carried-state sequences; "
                              "set train.regime=window or train.processes=1")
        if config.train.compile:
            raise ConfigError("train.processes: the helper processes run the model uncompiled; set train.compile=false "
                              "or train.processes=1")
        if config.train.batch_size < config.train.processes:
            raise ConfigError(f"train.processes: {config.train.processes} processes need at least as many windows per "
                              f"batch, train.batch_size is {config.train.batch_size}")
    try:
        agent.resolve_rollout_mode(config.eval.mode)
    except ValueError as exc:
        raise ConfigError(f"eval.mode: {exc}; use auto (its default) or one of those") from None
    return config


def load_config(files: list[str | Path] = (), overrides: list[str] = (), base: dict | None = None) -> ExperimentConfig:
    """Defaults <- ``base`` (a saved run's config) <- YAML files in order <- ``key=value`` overrides
    (``configs.loading.read_config``), then every value checked (:func:`validate`)."""
    return validate(read_config(files, overrides, base))
