"""The Python API: train, load a policy, act, evaluate, render, in the names d3rlpy and SB3 users guess.

    import rl_minrnn
    result = rl_minrnn.train("mujoco/hopper/medium-v0", overrides={"train.steps": 2000})   # a TrainResult
    policy = rl_minrnn.load_policy(result.checkpoint)        # a checkpoint, or a file from deploy.export
    print(rl_minrnn.evaluate(policy, episodes=10).score())   # D4RL-normalised score
    policy.reset(); action = policy.act(observation, reward) # one env step, its state carried inside

The command lines (``rl-minrnn-train`` / ``train_agent.py``, ``rl-minrnn-evaluate`` / ``evaluate.py``) call
these functions, so the two ways in train and evaluate alike. It sits above ``training`` and ``deploy`` (it
uses both) and below the command lines (``rl_minrnn.cli``); ``rl_minrnn`` re-exports its names lazily.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rl_minrnn.configs.schema import ConfigError, ExperimentConfig
from rl_minrnn.configs.loading import (CONFIG_DIR, config_for_dataset, profile_agent, profile_files_for, profile_path,
                                      read_config)
from rl_minrnn.training.options import load_config
from rl_minrnn.deploy.runtime import is_exported_file, load_exported_agent
from rl_minrnn.envs.evaluation.results import EvaluationResult
from rl_minrnn.envs.scores import ReferenceScores, resolve_reference_scores, task_name
from rl_minrnn.training import RunFolder, Trainer, load_agent

ConfigLike = ExperimentConfig | dict | str | Path | Sequence[str | Path] | None


# ---------------------------------------------------------------------------------------------- training

@dataclass
class TrainResult:
    """What ``train`` gives back: where the run is, how it scored, what it logged."""

    run_dir: Path
    step: int  # the step reached
    score: float | None  # normalised score (mean return without reference scores) of the last evaluation
    best_score: float | None
    best_step: int | None
    metrics: dict = field(repr=False)  # the last evaluation's scalars (eval/<target>_normalized_score_mean, ...), as logged
    config: ExperimentConfig = field(repr=False)
    interrupted: bool = False
    dataset_id: str = ""  # the dataset trained on (the shipped sample, when the configured one fell back to it)
    final: dict | None = field(default=None, repr=False)  # final_eval.json: the last (and best) checkpoint on eval.final_episodes fresh episodes

    @property
    def final_score(self) -> float | None:
        """The run's headline: the last checkpoint's normalised score over ``eval.final_episodes`` fresh
        episodes per target (None without a final evaluation)."""
        return self.final["last"]["score"] if self.final else None

    @property
    def last_checkpoint(self) -> Path:
        return RunFolder(self.run_dir).last

    @property
    def best_checkpoint(self) -> Path | None:
        """``best.pt``: the weights of the best in-run evaluation (None when the run never evaluated). Choosing
        it is an online selection: the evaluations that picked it are episodes in the environment, which
        offline RL does not have; ``final["best"]`` is its score on fresh episodes."""
        return RunFolder(self.run_dir).best if self.best_step is not None else None

    @property
    def checkpoint(self) -> Path:
        """The checkpoint to use: ``last.pt``, the policy training ended with (the weight average with
        ``train.ema``), which is what an offline user can choose without evaluating online."""
        return self.last_checkpoint

    @property
    def metrics_file(self) -> Path:
        return RunFolder(self.run_dir).metrics

    def history(self) -> list[dict]:
        """Every logged event of ``metrics.jsonl`` (``{"step": ..., "train/loss": ...}``), in order."""
        return [json.loads(line) for line in self.metrics_file.read_text().splitlines() if line.strip()]


def _override_strings(overrides) -> list[str]:
    """``{"train.steps": 600}`` or ``["train.steps=600"]`` -> ``["train.steps=600"]`` (values as YAML)."""
    if overrides is None:
        return []
    if isinstance(overrides, dict):
        return [f"{key}={json.dumps(value)}" for key, value in overrides.items()]  # JSON is YAML
    if isinstance(overrides, str):
        return [overrides]
    return list(overrides)


def _shown(path: Path) -> str:
    """A shipped config file as ``configs/...`` (where it lives in the repository), any other as given."""
    try:
        return f"configs/{Path(path).relative_to(CONFIG_DIR).as_posix()}"
    except ValueError:
        return str(path)


def resolve_config(config: ConfigLike = None, dataset: str | None = None, overrides=None,
                   profile: str | None = None, log=print) -> tuple[ExperimentConfig, str]:
    """A validated config and a name for its run folder from any of: an ``ExperimentConfig``, a dict (as in
    ``config.yaml``), a YAML path or several (merged in order), or None with ``dataset`` (its
    ``configs/<env>-<kind>.yaml``), then ``profile`` (``configs/profiles/<name>.yaml`` and its files for the
    dataset and agent: ``configs.loading.profile_files``) and ``overrides``."""
    base, files = None, []
    if isinstance(config, ExperimentConfig):
        base = config.to_dict()
    elif isinstance(config, dict):
        base = config
    elif isinstance(config, (str, Path)):
        files = [Path(config)]
    elif config is not None:
        files = [Path(f) for f in config]
    if base is None and not files:
        if dataset is None:
            raise ConfigError("train: give a config (an ExperimentConfig, a dict, YAML file(s)) or a dataset id")
        path, note = config_for_dataset(dataset)
        files = [path]
        log(f"Config for {dataset}: {note or 'configs/' + path.name}")
    strings = ([f"dataset.id={dataset}"] if dataset else []) + _override_strings(overrides)
    if profile:  # the profile's files for the dataset and agent the files and overrides name
        profiled = profile_files_for(profile, files, strings, base=base)
        if len(profiled) > 1:
            named = read_config([*files, profile_path(profile)], strings, base=base)
            log(f"Profile {profile} for {named.dataset.id} and {profile_agent(named)}: "
                + " + ".join(_shown(path) for path in profiled))
        files += profiled
    resolved = load_config(files, strings, base=base)
    name = files[0].stem if files and base is None else resolved.dataset.id.replace("/", "-")
    return resolved, name + (f"-{profile}" if profile else "")


def make_trainer(config: ConfigLike = None, *, dataset: str | None = None, overrides=None, profile: str | None = None,
                 run_dir: str | Path | None = None, resume: str | Path | None = None, progress: bool = True,
                 runs_root: str | Path = "runs", log=print, announce=None) -> Trainer:
    """The ``Trainer`` that ``train`` runs (a new run, or ``resume``'s continuation), its set-up printed
    through ``log``. ``announce(config)`` is called once the config is known, before the data loads (the
    command line says which job it runs there)."""
    from rl_minrnn.training import RunLock

    if resume is not None:
        if config is not None or dataset is not None or profile is not None:
            raise ConfigError("--resume takes the config from the checkpoint; drop --config/--profile/--dataset")
        trainer = Trainer.resume(resume, _override_strings(overrides), progress=progress, log=log)
        log(f"Resuming {resume} at step {trainer.step} of {trainer.config.train.steps}")
        return trainer
    resolved, name = resolve_config(config, dataset, overrides, profile, log)
    run_dir = Path(run_dir) if run_dir else Path(runs_root) / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    lock = RunLock.acquire(run_dir)  # first: a folder another process trains in is refused as such
    if RunFolder(run_dir).last.exists():
        lock.release()
        raise ConfigError(f"{run_dir} already holds a run; continue it with --resume {run_dir} or pick another --run-dir")
    if announce is not None:
        announce(resolved)
    trainer = Trainer(resolved, run_dir, progress=progress, lock=lock, log=log)
    m = resolved.model
    log(f"Dataset {trainer.dataset.dataset_id!r}: {trainer.dataset.num_episodes} episodes, "
        f"{trainer.dataset.num_steps} steps; env {trainer.dataset.env_id}")
    log(f"Model {m.kind} ({trainer.agent.sequence_model}, width {m.width}, depth {m.depth}, "
        f"{m.tokens} tokens, {sum(p.numel() for p in trainer.agent.parameters()):,} parameters) on {trainer.device}, "
        f"{trainer.threads} thread(s); {resolved.train.steps} steps, {resolved.train.regime} regime")
    return trainer


def run_trainer(trainer: Trainer, callbacks=()) -> TrainResult:
    """``trainer.run(callbacks)`` and its outcome as a ``TrainResult``."""
    summary = trainer.run(callbacks)
    last, best = summary["last_eval"], summary["best"]
    return TrainResult(run_dir=trainer.run_dir, step=summary["step"], score=last["score"] if last else None,
                       best_score=best["score"], best_step=best["step"], metrics=dict(last["metrics"]) if last else {},
                       config=trainer.config, interrupted=summary["interrupted"], dataset_id=trainer.dataset.dataset_id,
                       final=summary["final"])


def train(config: ConfigLike = None, *, dataset: str | None = None, overrides=None, profile: str | None = None,
          run_dir: str | Path | None = None, resume: str | Path | None = None, progress: bool = True,
          callbacks=(), log=print) -> TrainResult:
    """Train an agent and return a :class:`TrainResult` (run folder, checkpoints, scores, metrics).

    - ``config``: an ``ExperimentConfig``, a dict (keys as in ``config.yaml``), a YAML file or a list of
      them merged in order, or a dataset id (a string with no ``.yaml``/``.yml`` that is not a file), which
      is the same as ``dataset=``; None with ``dataset`` takes that dataset's ``configs/<env>-<kind>.yaml``.
    - ``dataset``: a dataset id to train on (``mujoco/hopper/medium-v0``, ``local/...``, ``d4rl/...``).
    - ``overrides``: ``{"train.steps": 2000}`` or ``["train.steps=2000"]``, as ``--set`` (applied last).
    - ``profile``: ``"cpu"`` merges ``configs/profiles/cpu.yaml`` (the 2-core protocol).
    - ``run_dir``: where the run goes (default ``runs/<config name>-<time>``); ``resume``: a run folder to
      continue exactly (only ``train.steps``, ``eval.*`` and the like may change through ``overrides``).
    - ``callbacks``: ``rl_minrnn.training.TrainerCallback`` hooks at each step, evaluation and checkpoint.

    Errors are the command line's: ``ConfigError``, ``DatasetError``, ``CheckpointError``, ``RunInUseError``
    (bad input, nothing trained) and ``TrainingStopped`` (a fault; the message says what was kept)."""
    if isinstance(config, str) and dataset is None and not config.endswith((".yaml", ".yml")) and not Path(config).exists():
        config, dataset = None, config
    trainer = make_trainer(config, dataset=dataset, overrides=overrides, profile=profile, run_dir=run_dir,
                           resume=resume, progress=progress, log=log)
    return run_trainer(trainer, callbacks)


# ---------------------------------------------------------------------------------------------- policies

def load(path: str | Path, device: str = "cpu", threads: int | None = 1):
    """``(agent, info)`` from a checkpoint (``load_agent``) or an exported file (``load_exported_agent``):
    the rollout protocol's object either way, and ``info`` with the same keys."""
    if is_exported_file(path):
        return load_exported_agent(path, threads=threads)
    return load_agent(path, device=device)


def reference_scores(info: dict, env_id: str | None = None) -> ReferenceScores | None:
    """The reference returns a score is normalised by: the training dataset's (as the checkpoint recorded
    them) when ``env_id`` is the task trained on, D4RL's for ``env_id``'s task otherwise; None when unknown."""
    trained_env = info.get("env_id") or ""
    env_id = env_id or trained_env
    try:
        if task_name(env_id) == task_name(trained_env):
            return resolve_reference_scores(info.get("dataset_id") or env_id, info.get("ref_min_score"),
                                            info.get("ref_max_score"),
                                            source=info.get("ref_source") or "dataset")  # before ref_source: dataset
        return resolve_reference_scores(env_id)
    except KeyError:
        return None


class Policy:
    """A trained agent as one env's controller: ``reset()``, then ``act(observation, reward)`` each step.

    The return-to-go is kept inside: it starts at ``target_return`` and each ``act`` subtracts the reward
    the env gave for the previous action (0 at an episode's first step), as d3rlpy's
    ``StatefulTransformerWrapper.predict(x, reward)`` does (``predict`` is an alias). The recurrent state
    (or the window of past steps) is carried inside too, O(1) per step in ``recurrent`` mode.

    ``agent``: the rollout protocol's object (a checkpoint's ``DecisionAgent`` or an ``ExportedAgent``),
    ``info``: its ``load_agent`` record; ``evaluate`` and ``render`` take a Policy or a path."""

    def __init__(self, agent, info: dict, path: str | Path | None = None, target_return: float | None = None,
                 mode: str | None = None):
        self.agent, self.info, self.path = agent, info, Path(path) if path is not None else None
        self.env_id: str | None = info.get("env_id")
        targets = ((info.get("config") or {}).get("eval") or {}).get("target_returns") or []
        self.target_returns = [float(t) for t in targets]
        if target_return is None:
            if not self.target_returns:
                raise ConfigError(f"{path}: it records no target return; give load_policy(..., target_return=...)")
            target_return = self.target_returns[0]
        self.mode = agent.resolve_rollout_mode(mode)
        self.target_return = float(target_return)
        self.reference_scores = reference_scores(info)
        self.reset()

    @property
    def obs_dim(self) -> int:
        return int(self.agent.obs_dim)

    @property
    def act_dim(self) -> int:
        return int(self.agent.act_dim)

    def reset(self, target_return: float | None = None) -> None:
        """Start an episode (with a new ``target_return``, which then stays for later episodes)."""
        if target_return is not None:
            self.target_return = float(target_return)
        self.agent.reset(1, mode=self.mode)
        self.return_to_go = self.target_return
        self.timestep = 0
        self._last_action = None

    def act(self, observation, reward: float = 0.0) -> np.ndarray:
        """The action for ``observation`` (raw, ``(obs_dim,)``); ``reward``: the env's reward for the previous
        action (ignored at an episode's first step) -> action ``(act_dim,)`` float32."""
        observation = np.asarray(observation, dtype=np.float32)
        if observation.shape != (self.obs_dim,):
            raise ValueError(f"observation has shape {observation.shape}, this policy takes ({self.obs_dim},)"
                             + (f" ({self.env_id})" if self.env_id else ""))
        if self._last_action is not None:
            self.agent.observe(self._last_action)
            self.return_to_go -= float(reward)
        action = np.asarray(self.agent.act(np.array([self.return_to_go], np.float32), observation[None]))
        self._last_action = action
        self.timestep += 1
        return action[0]

    predict = act

    def __repr__(self) -> str:
        return (f"Policy({str(self.path) if self.path else type(self.agent).__name__!r}, env {self.env_id}, "
                f"mode {self.mode}, target return {self.target_return:g})")


def load_policy(path: str | Path, target_return: float | None = None, mode: str | None = None,
                device: str = "cpu", threads: int | None = 1) -> Policy:
    """A :class:`Policy` from a checkpoint (``runs/x/checkpoints/best.pt``) or an exported ``.onnx`` /
    TorchScript file. ``target_return``: the return to ask for (default: the first of the run's
    ``eval.target_returns``); ``mode``: ``recurrent`` or ``window`` (default: the agent's own)."""
    agent, info = load(path, device=device, threads=threads)
    return Policy(agent, info, path=path, target_return=target_return, mode=mode)


def _as_policy(policy) -> Policy:
    return policy if isinstance(policy, Policy) else load_policy(policy)


def evaluate(policy: Policy | str | Path, episodes: int = 10, target_returns: float | Sequence[float] | None = None,
             seed: int = 0, env_id: str | None = None, progress: bool = False, max_episode_steps: int | None = None,
             render=None, **kwargs: Any) -> EvaluationResult:
    """Roll ``policy`` (a Policy, or a path ``load_policy`` takes) out for ``episodes`` episodes per target
    return, all at once, episode i reset with seed ``seed + i`` -> ``EvaluationResult`` (``.score()``,
    ``.targets``, ``.to_markdown()``, ``.to_dict()``). ``target_returns``: default the policy's.
    Other keywords go to ``envs.evaluation.rollout.evaluate_agent``."""
    from rl_minrnn.envs.evaluation.rollout import evaluate_agent

    policy = _as_policy(policy)
    env_id = env_id or policy.env_id
    if not env_id:
        raise ConfigError("evaluate: the policy names no environment; give env_id=")
    targets = [policy.target_return] if target_returns is None else target_returns
    refs = policy.reference_scores if env_id == policy.env_id else reference_scores(policy.info, env_id)
    try:
        return evaluate_agent(policy.agent, env_id, episodes, targets, seed=seed, mode=policy.mode, ref_scores=refs,
                              progress=progress, max_episode_steps=max_episode_steps, render=render,
                              trained_on=policy.env_id, **kwargs)
    finally:
        policy.reset()  # the rollout reset the agent for its batch: ready for act() again


def render(policy: Policy | str | Path, path: str | Path, episodes: int = 1, target_return: float | None = None,
           seed: int = 0, width: int = 320, height: int = 320, fps: float = 30.0, overlay: bool = True,
           max_episode_steps: int | None = None) -> EvaluationResult:
    """Record ``episodes`` episodes of ``policy`` to ``path`` (``.mp4`` or ``.gif``, headless) -> the
    ``EvaluationResult`` of those episodes (its ``video`` names the file)."""
    from rl_minrnn.envs.evaluation.render import VideoRecorder, setup_headless_gl

    setup_headless_gl()  # before any rendering context exists
    policy = _as_policy(policy)
    recorder = VideoRecorder(Path(path), episodes=tuple(range(episodes)), width=width, height=height, fps=fps,
                             overlay=overlay)
    target = policy.target_return if target_return is None else target_return
    return evaluate(policy, episodes=episodes, target_returns=[target], seed=seed, render=recorder,
                    max_episode_steps=max_episode_steps)


__all__ = ["Policy", "TrainResult", "evaluate", "load", "load_policy", "reference_scores", "render", "resolve_config",
           "train"]
