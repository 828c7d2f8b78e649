"""The experiment configuration as data: four sections of dataclass fields, each with its default and its
help text (field metadata, which ``--help`` prints).

This is the bottom layer: it imports nothing of the project, and the models, data and training read their
defaults from it. Reading YAML files and ``--set`` overrides is ``configs.loading``; which values each key
allows is owned by the module that uses the value and gathered by ``training.options``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import MISSING, dataclass, field
from typing import Any

# Returns-to-go enter the model divided by this (the DT paper's scale for MuJoCo returns).
DEFAULT_RETURN_SCALE = 1000.0


class ConfigError(ValueError):
    """A configuration key is unknown or has a bad value; the message names the key."""


def option(default: Any = MISSING, help: str = "", *, factory=None):  # noqa: A002 (the word --help uses)
    """A config field: its default (or ``factory`` for a list) and its help text."""
    if factory is not None:
        return field(default_factory=factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class DatasetConfig:
    id: str = option("mujoco/hopper/medium-v0", 'Minari dataset id (local store first, then download)')
    fallback_to_sample: bool = option(False, 'if `id` is unavailable offline, use the Hopper sample shipped with the project')
    return_scale: float = option(DEFAULT_RETURN_SCALE, 'returns-to-go are divided by this (1000)')
    holdout: float = option(0.0, 'fraction of the episodes (a draw fixed by the seed) kept out of training; the action loss on them and on the training windows, without dropout, is logged at every evaluation (val/action_loss, val/train_action_loss): overfitting or not. 0: train on every episode')


@dataclass
class ModelConfig:
    kind: str = option("decision_rnn", 'decision_rnn | decision_transformer')
    cell: str = option("mingru", 'mingru | minlstm (decision_rnn)')
    width: int = option(128, 'embedding width')
    depth: int = option(3, 'layers')
    context: int = option(20, 'K: timesteps per training window (and the window of `window` rollouts)')
    tokens: str = option("interleaved", 'interleaved (R, s, a as three tokens) | fused (one token per timestep)')
    expansion: float = option(1.0, 'minRNN hidden width = int(width * expansion)')
    mlp_ratio: float = option(4.0, 'hidden width of each block\'s MLP as a multiple of width')
    dropout: float = option(0.1, 'dropout probability in the embeddings and blocks')
    conv: int = option(0, 'causal depthwise conv width before each cell (0: none)')
    max_timestep: int = option(1000, 'size of the timestep embedding; later timesteps use the last entry')
    heads: int = option(1, 'attention heads (decision_transformer)')
    position_embedding: bool = option(True, 'learned token-position embedding (decision_transformer)')
    init: str = option("gpt", "gpt: every Linear/Embedding weight N(0, 0.02), zero biases (GPT, CORL) | d3rlpy: that, but PyTorch's defaults for the R/s/a projections and the head | pytorch: PyTorch's defaults everywhere")


@dataclass
class TrainConfig:
    steps: int = option(100_000, 'gradient steps')
    batch_size: int = option(64, 'windows per step (the sequence regime: the same number of timesteps)')
    regime: str = option("window", "window: K-step windows from a zero state (DT's; BENCHMARKS.md, learning quality) | sequence: episodes in consecutive chunks, state carried (TBPTT; decision_rnn only)")
    window_sampling: str = option("start", 'window regime, where windows lie in their episode: start: a uniform start timestep (CORL, DT; the first K-1 steps are in fewer windows) | end: a uniform end timestep (d3rlpy; windows near the start are shorter) | cover: starts uniform over -(K-1)..T-1, clipped (every timestep in K windows)')
    chunk_len: int = option(80, 'timesteps per chunk in the sequence regime; each step still trains on batch_size * context timesteps, in batch_size * context // chunk_len lanes')
    lr: float = option(1e-4, 'AdamW learning rate after the warm-up')
    weight_decay: float = option(1e-4, 'AdamW weight decay (on the parameters weight_decay_on names)')
    weight_decay_on: str = option("matrices", 'matrices: Linear/conv weights only, biases, LayerNorms and embeddings exempt (GPT, d3rlpy) | all: every parameter (CORL)')
    warmup_steps: int = option(10_000, 'linear learning-rate warm-up from 0')
    grad_clip: float = option(0.25, 'gradient norm clip (0: none)')
    lr_schedule: str = option("cosine", "after the warm-up: constant (DT, CORL, d3rlpy's default) | cosine (a half cosine from lr down to lr * lr_final at train.steps; d3rlpy's CosineAnnealingLR) | linear (a straight line to the same)")
    lr_final: float = option(0.1, 'cosine / linear schedules: the lr at train.steps as a fraction of lr')
    ema: float = option(0.999, "decay of an exponential moving average of the weights, updated after every step (0: none); the average is what is evaluated, saved as last.pt/best.pt and exported, the raw weights stay in the checkpoint for training; its decay ramps up as min(ema, (1 + n) / (ema_ramp + n)) so the first steps' weights do not linger")
    ema_ramp: float = option(10.0, "the weight average's ramp (above 1): until the decay reaches train.ema, step k's weight in the average after n steps falls as about (k / n) ** (ema_ramp - 2), a mean age of n / ema_ramp: 10 (TensorFlow's, timm's) averages about the last tenth of a short run, 4 its last quarter, 2 all of it alike")
    log_every: int = option(100, 'steps between logged training scalars')
    checkpoint_every: int = option(1000, 'steps between checkpoints/last.pt (also written at the end and on Ctrl-C)')
    device: str = option("auto", 'auto (cuda when present) | cpu | cuda')
    threads: int = option(0, 'torch CPU threads (0: half the cores, 1 to 4)')
    processes: int = option(1, "processes that share each batch's rows on the CPU (data parallel; window regime): 2 runs one run on both cores of an otherwise idle 2-core machine; 1 where runs share the machine (the suite on Ray); 0: auto, 2 where it applies (a CPU run in the window regime, uncompiled, on 2 or more cores), else 1; train.threads is per process")
    compile: bool = option(False, 'torch.compile the model')
    loggers: list[str] = option(factory=lambda: ["tensorboard"], help='experiment trackers beside metrics.jsonl, any of tensorboard | mlflow (extra [mlflow]; local store runs/mlflow.db) | wandb (extra [wandb]; offline unless WANDB_MODE); [] for metrics.jsonl only')


@dataclass
class EvalConfig:
    every: int = option(10_000, 'steps between evaluations during training (0: no evaluation at all, the final one included)')
    episodes: int = option(10, 'episodes per target return at each in-run evaluation')
    target_returns: list = option(factory=lambda: [3600.0, 1800.0], help='raw returns')
    mode: str = option("auto", "rollout mode: auto (the agent's default) | recurrent | window")
    seed: int = option(10_000, 'episode i resets with seed + i')
    max_episode_steps: int = option(1000, 'episodes are truncated after this many steps')
    final_episodes: int = option(100, "after the last step, the last checkpoint (and best.pt where it is another step) is evaluated again with this many episodes per target (D4RL's 100; 0: none); written to run_dir/final_eval.json, the run's headline")
    final_seed: int = option(1_000_000, 'episode i of the final evaluation resets with final_seed + i: episodes no in-run evaluation has seen')
    at_end: bool = option(True, 'also evaluate after the last step when `every` (> 0) does not divide `train.steps`')
    video: bool = option(False, 'record episode 0 of each evaluation to run_dir/videos (and TensorBoard); software rendering adds time, docs/evaluation.md')


@dataclass
class ExperimentConfig:
    seed: int = option(0, 'fixes data sampling and initialisation')
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def field_help() -> str:
    """Every key with its default and help text, for ``--help``."""
    out = []
    config = ExperimentConfig()
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        fields = [(f"{f.name}.{sub.name}", getattr(value, sub.name), sub) for sub in dataclasses.fields(value)] \
            if dataclasses.is_dataclass(value) else [(f.name, value, f)]
        for key, default, spec in fields:
            text = spec.metadata.get("help", "")
            out.append(f"  {key} = {default!r}" + (f"  ({text})" if text else ""))
    return "\n".join(out)
