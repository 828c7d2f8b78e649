"""The training loop: data, model, optimisation, evaluation, checkpoints, logs, in the order data flows.

``Trainer(config, run_dir).run()`` trains from scratch; ``Trainer.resume(run_dir, overrides).run()``
continues from ``run_dir/checkpoints/last.pt`` exactly: same data order, same RNG streams, same lr schedule,
so a run of N steps stopped at N/2 and resumed gives the weights of one never stopped (raising ``train.steps``
on resume extends a run: with a decaying lr the decay then ends at the new N).

The policy a run evaluates, saves (``last.pt``/``best.pt``'s ``model``) and exports is ``Trainer.policy``:
the exponential moving average of the weights when ``train.ema`` > 0 (``training/averaging.py``; the raw
weights are the checkpoint's ``training_model``), the raw weights otherwise. After the last step the last
checkpoint, and ``best.pt`` where the in-run evaluations picked another step, are evaluated again with
``eval.final_episodes`` fresh episodes per target: ``final_eval.json``, the run's headline (``last``; the
best checkpoint is an online selection, reported beside it).

Faults stop a run without losing it (``docs/faults.md``): one trainer per run folder (``RunLock``); a
non-finite loss or gradient stops training before the optimiser applies it, and no checkpoint is ever
written with non-finite weights; an evaluation that raises leaves ``last.pt`` of the step reached; a
checkpoint write that fails leaves the previous file intact. Each raises a ``TrainingStopped`` whose
message says what happened, what was kept and what to try.
"""

from __future__ import annotations

import copy
import json
import random
import signal
import threading
import time
import traceback
from pathlib import Path

import torch
import yaml

from rl_minrnn.configs.schema import ConfigError, ExperimentConfig
from rl_minrnn.training.options import load_config
from rl_minrnn.envs.offline.batches import SequenceSampler, WindowSampler
from rl_minrnn.envs.offline import load_dataset
from rl_minrnn.envs.offline.holdout import split_episodes
from rl_minrnn.envs.offline.normalization import StateNormalizer
from rl_minrnn.envs.evaluation.rollout import NonFiniteActionError, evaluate_agent
from rl_minrnn.agents import build_agent
from rl_minrnn import detach_state, mask_state
from rl_minrnn.files import write_atomically
from rl_minrnn.progress import progress_bar

from .callbacks import TrainerCallback
from .checkpoint import CheckpointError, CheckpointWriteError, load_weights, read_checkpoint, save_checkpoint
from .faults import (
    EvaluationFailedError, RunWriteError, TrainingDivergedError, TrainingStopped, divergence_advice, kept_checkpoint,
    resume_command,
)
from .memory_estimate import check_run_memory
from .run_folder import RunFolder
from .run_lock import RunLock
from .resources import configure_threads, data_parallel_processes, load_training_dataset, select_device
from .run_logging import MetricsLogger, check_trackers
from .data_parallel import HelperFailed
from .step import NonFiniteStep, TrainingStep
from .validation import ValidationLoss

# Faults after which the step reached is saved, and what to add to the resume command to step around them.
RESUME_HINTS = {EvaluationFailedError: "add --set eval.every=0 to train without evaluating",
                HelperFailed: "add --set train.processes=1 to train in one process"}

# Keys that may change when a run is resumed; everything else must match the checkpoint.
RESUMABLE_KEYS = ("train.steps", "train.log_every", "train.checkpoint_every", "train.device", "train.threads",
                  "train.processes",
                  "train.compile", "train.loggers", "eval.")


class Trainer:
    def __init__(self, config: ExperimentConfig, run_dir: str | Path, log=print, progress: bool = True, dataset=None,
                 lock: RunLock | None = None):
        """``dataset``: an ``OfflineDataset`` to use instead of loading ``config.dataset.id`` (tests, benchmarks).
        ``lock``: the run folder's lock when the caller already holds it (``resume``); taken here otherwise,
        before anything slow, so a second trainer on the same folder is refused at once."""
        self.config, self.run_dir, self.log, self.progress = config, Path(run_dir), log, progress
        self.folder = RunFolder(self.run_dir)
        self.lock = lock or RunLock.acquire(self.run_dir)
        try:
            self._build(dataset)
        except BaseException:
            self.lock.release(remove_if_unused=True)  # a run that never started leaves no folder behind
            raise

    def _build(self, dataset) -> None:
        config = self.config
        check_trackers(config.train.loggers)  # a missing extra is refused before anything slow
        self.device = select_device(config.train.device)
        self.threads = configure_threads(config.train.threads)
        self.dataset = dataset if dataset is not None else load_training_dataset(config, self.log)
        # the episodes it trains on, and those ``dataset.holdout`` keeps out (the validation loss's)
        self.dataset, self.held_out = split_episodes(self.dataset, config.dataset.holdout, config.seed)
        # before anything is built: a run the machine cannot hold stops here, with the keys that size it
        self.memory_estimate = check_run_memory(config, self.dataset.obs_dim, self.dataset.act_dim,
                                                self.dataset.num_steps, self.device, log=self.log)
        self.ref_scores = self.dataset.reference_scores  # its own, or D4RL's for its task, labelled as such
        self.normalizer = StateNormalizer.from_dataset(self.dataset)
        self._seed_everything(config.seed)
        self.agent = build_agent(config.model, self.dataset.obs_dim, self.dataset.act_dim,
                                 self.normalizer.mean, self.normalizer.std, config.dataset.return_scale).to(self.device)
        self.model = torch.compile(self.agent) if config.train.compile else self.agent
        self.sampler = self._make_sampler()
        self.validation = (ValidationLoss(self.dataset, self.held_out, config, self.normalizer, self.device)
                           if self.held_out is not None else None)
        if config.train.processes > 1 and self.device.type != "cpu":
            raise ConfigError(f"train.processes: more than one process is for the CPU, this run trains on {self.device}; "
                              "set train.processes=1 (or 0: auto)")
        self.processes = data_parallel_processes(config.train, self.device)
        if config.train.processes == 0 and self.processes > 1:
            self.log(f"train.processes auto: each batch split between {self.processes} processes (set "
                     "train.processes=1 where other jobs share the cores)")
        self.training_step = TrainingStep(self.agent, config.train, self.model, model_config=config.model,
                                          processes=self.processes)
        self.optimizer, self.scheduler = self.training_step.optimizer, self.training_step.scheduler
        self.average = self.training_step.average
        self.step = 0
        self.carried = None  # the recurrent state carried between chunks (sequence regime)
        self.best = {"score": None, "step": None}
        self.last_eval = None
        self.callbacks: list[TrainerCallback] = []

    @property
    def policy(self) -> torch.nn.Module:
        """What is evaluated, saved as the checkpoint's ``model`` and exported: the weight average, or the agent."""
        return self.average.module if self.average is not None else self.agent

    # ------------------------------------------------------------------ set-up
    @staticmethod
    def _seed_everything(seed: int) -> None:
        random.seed(seed)
        torch.manual_seed(seed)

    def _make_sampler(self):
        c = self.config
        common = dict(batch_size=c.train.batch_size, return_scale=c.dataset.return_scale,
                      normalizer=self.normalizer, seed=c.seed, max_timestep=c.model.max_timestep)
        if c.train.regime == "sequence":  # as many timesteps per step as the window regime
            common["batch_size"] = max(1, c.train.batch_size * c.model.context // c.train.chunk_len)
            return SequenceSampler(self.dataset, c.train.chunk_len, **common)
        return WindowSampler(self.dataset, c.model.context, sampling=c.train.window_sampling, **common)

    @classmethod
    def resume(cls, run_dir: str | Path, overrides: list[str] = (), log=print, progress: bool = True,
               dataset=None) -> "Trainer":
        run_dir = Path(run_dir)
        path = RunFolder(run_dir).last
        if not path.is_file():  # before taking the lock: resuming a folder that is not a run creates nothing
            read_checkpoint(path)
        lock = RunLock.acquire(run_dir)  # before reading: the file may be rewritten by a trainer still running
        try:
            data = read_checkpoint(path)
            for text in overrides:
                key = text.split("=", 1)[0].strip()
                if not any(key == k or (k.endswith(".") and key.startswith(k)) for k in RESUMABLE_KEYS):
                    raise ConfigError(f"{key}: cannot be changed when resuming (only {', '.join(RESUMABLE_KEYS)} "
                                      "can); start a new run instead")
            config = load_config(overrides=list(overrides), base=data["config"])
            saved_steps = data["config"]["train"]["steps"]
            if config.train.lr_schedule != "constant" and config.train.steps != saved_steps:
                log(f"Note: train.steps {saved_steps} -> {config.train.steps} moves the end of the {config.train.lr_schedule} "
                    f"lr decay to step {config.train.steps}; from step {data['step']} on the lr follows the new schedule, "
                    "so the run differs from one trained with that many steps from the start.")
            if dataset is None:  # the dataset the run actually used (the sample, if it fell back to it)
                dataset = load_dataset(data["dataset_id"], download=False)
            trainer = cls(config, run_dir, log=log, progress=progress, dataset=dataset, lock=lock)
            trainer._restore(data, str(path))
        except BaseException:
            lock.release()
            raise
        return trainer

    def _restore(self, data: dict, source: str) -> None:
        if (data["obs_dim"], data["act_dim"]) != (self.dataset.obs_dim, self.dataset.act_dim):
            raise CheckpointError(f"Checkpoint {source} was trained on observations/actions of size "
                                  f"{data['obs_dim']}/{data['act_dim']} but dataset {self.dataset.dataset_id!r} has "
                                  f"{self.dataset.obs_dim}/{self.dataset.act_dim}")
        if self.average is not None:
            if "training_model" not in data:
                raise CheckpointError(f"Checkpoint {source} has no raw training weights to go on with (it was "
                                      "saved without train.ema); start a new run instead")
            load_weights(self.agent, data["training_model"], source)
            load_weights(self.average.module, data["model"], source)
        else:
            load_weights(self.agent, data["model"], source)
        try:
            if self.average is not None:
                self.average.load_state_dict(data["average"], data["model"])
            self.optimizer.load_state_dict(data["optimizer"])
            self.scheduler.load_state_dict(data["scheduler"])
            self.sampler.load_state_dict(data["sampler"])
        except (KeyError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"Checkpoint {source} cannot be resumed: {exc}") from None
        self.step = int(data["step"])
        self.carried = self.agent.carried_state_from_payload(data.get("carried"), self.device)
        self.best = data.get("best") or self.best
        rng = data["rng"]
        torch.set_rng_state(rng["torch"])
        if torch.cuda.is_available() and rng.get("cuda") is not None:
            torch.cuda.set_rng_state_all(rng["cuda"])
        random.setstate((rng["python"][0], tuple(rng["python"][1]), rng["python"][2]))

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_payload(self) -> dict:
        averaged = {} if self.average is None else {"training_model": self.agent.state_dict(),
                                                    "average": self.average.state_dict()}
        return {
            "model": self.policy.state_dict(),
            **averaged,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "sampler": self.sampler.state_dict(),
            "step": self.step,
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "python": random.getstate(),
            },
            "carried": self.agent.carried_state_to_payload(self.carried),
            "config": self.config.to_dict(),
            "env_id": self.dataset.env_id,
            "dataset_id": self.dataset.dataset_id,
            "ref_min_score": self.dataset.ref_min_score,
            "ref_max_score": self.dataset.ref_max_score,
            "ref_source": self.ref_scores.source if self.ref_scores is not None else None,
            "obs_dim": self.dataset.obs_dim,
            "act_dim": self.dataset.act_dim,
            "best": self.best,
            "last_eval": self.last_eval,
        }

    def save(self, name: str = "last") -> Path:
        """Write ``checkpoints/<name>.pt`` atomically; refuse non-finite weights (they would overwrite the
        last good file with a model that can only produce NaN)."""
        path = self.folder.checkpoint(name)
        weights = {**self.agent.state_dict(), **{f"average.{k}": v for k, v in self.policy.state_dict().items()}}
        bad = [k for k, v in weights.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if bad:
            raise TrainingDivergedError(
                f"The weights are non-finite at step {self.step} ({', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}); "
                f"{path.name} was not overwritten. {kept_checkpoint(self.run_dir)} {divergence_advice(self.config.train)}")
        try:
            save_checkpoint(path, self.checkpoint_payload())
        except CheckpointWriteError as exc:
            raise RunWriteError(f"{exc} Training stopped at step {self.step}. {kept_checkpoint(self.run_dir)} Free space or fix "
                                f"the folder's permissions, then continue with: {resume_command(self.run_dir)}") from None
        for callback in self.callbacks:
            callback.on_save(self, path)
        return path

    # ------------------------------------------------------------------ optimisation
    def _to_tensors(self, batch: dict) -> dict:
        return {k: torch.as_tensor(v, device=self.device) for k, v in batch.items()}

    def train_step(self, batch: dict) -> dict:
        b = self._to_tensors(batch)
        state = None
        if self.config.train.regime == "sequence" and self.carried is not None:
            state = mask_state(self.carried, ~b["reset"])
        try:
            stats, new_state = self.training_step(b, state)
        except NonFiniteStep as exc:
            raise TrainingDivergedError(
                f"Training diverged at step {self.step + 1}: {exc}. "
                f"The weights were not updated with it and no checkpoint was overwritten. {kept_checkpoint(self.run_dir)} "
                f"{divergence_advice(self.config.train)}") from None
        if self.config.train.regime == "sequence":
            self.carried = detach_state(new_state)
        return stats

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, progress: bool = False, video_path: Path | None = None):
        c = self.config.eval
        recorder = None
        if video_path is not None:
            from rl_minrnn.envs.evaluation.render import VideoRecorder, setup_headless_gl

            setup_headless_gl()
            recorder = VideoRecorder(video_path, width=240, height=240)
        result = evaluate_agent(
            self.policy, self.dataset.env_id, c.episodes, c.target_returns, seed=c.seed,
            mode=c.mode, ref_scores=self.ref_scores, progress=progress,
            max_episode_steps=c.max_episode_steps, num_threads=1, trained_on=self.dataset.dataset_id,
            render=recorder,
        )
        metrics = result.metrics("eval")
        score = result.score()
        validation = self.validation(self.policy) if self.validation is not None else None
        metrics.update(validation or {})
        self.last_eval = {"step": self.step, "score": score, "metrics": metrics, "validation": validation}
        improved = self.best["score"] is None or score > self.best["score"]
        if improved:
            self.best = {"score": score, "step": self.step}
        return result, metrics, improved

    # ------------------------------------------------------------------ the loop
    def run(self, callbacks: list[TrainerCallback] = ()) -> dict:
        """Train to ``train.steps``, evaluating and checkpointing on the way, calling ``callbacks`` at each
        step, evaluation and checkpoint; the run folder's lock is released on return, whatever happened."""
        c = self.config
        self.callbacks = list(callbacks)
        interrupted = {"flag": False}
        final = None

        def on_interrupt(signum, frame):  # finish the current step, then save and stop
            if interrupted["flag"]:
                raise KeyboardInterrupt
            interrupted["flag"] = True

        try:
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                self.folder.config.write_text(yaml.safe_dump(c.to_dict(), sort_keys=False))
                logger = MetricsLogger(self.run_dir, c.train.loggers, params=c.to_dict())
            except OSError as exc:
                raise RunWriteError(f"Cannot write in the run folder {self.run_dir} ({exc.strerror or exc}); "
                                    "pick a writable --run-dir or free space") from None
            # Ctrl-C finishes the step; only the main thread may install a handler (a scheduler such as
            # Ray Tune runs the loop in a thread of its worker, and stops it its own way)
            in_main = threading.current_thread() is threading.main_thread()
            previous_handler = signal.signal(signal.SIGINT, on_interrupt) if in_main else None
            # a bar on a terminal, a line every few percent (a multiple of log_every) in a file
            bar = progress_bar(c.train.steps, initial=self.step, enabled=self.progress, unit="step", every=c.train.log_every)
            try:
                self._loop(logger, bar, interrupted)
            except (TrainingDivergedError, RunWriteError):
                raise  # nothing to save: the weights are bad, or the disk refused the last attempt
            except BaseException as exc:  # an evaluation, a log write, a bug, Ctrl-C twice: keep the step reached
                self._save_after_failure(exc)
                if isinstance(exc, OSError):
                    raise RunWriteError(f"Writing the run's logs in {self.run_dir} failed at step {self.step} "
                                        f"({exc.strerror or exc}). {kept_checkpoint(self.run_dir)} Free space or fix the folder's "
                                        f"permissions, then continue with: {resume_command(self.run_dir)}") from exc
                raise
            else:
                self.save("last")
                if c.eval.every and c.eval.final_episodes and not interrupted["flag"]:
                    final = self.final_evaluation(logger, bar)
            finally:
                bar.close()
                logger.close()
                if in_main:
                    signal.signal(signal.SIGINT, previous_handler)
        finally:
            self.training_step.close()
            self.lock.release()
        if interrupted["flag"]:
            self.log(f"Interrupted at step {self.step}: saved {self.folder.last}; "
                     f"continue with: {resume_command(self.run_dir)}")
        return {"step": self.step, "best": self.best, "last_eval": self.last_eval, "interrupted": interrupted["flag"],
                "final": final}

    def _loop(self, logger: MetricsLogger, bar, interrupted: dict) -> None:
        c = self.config
        window_loss, window_timesteps, tick = [], [], time.perf_counter()
        evaluated_at = None
        while self.step < c.train.steps and not interrupted["flag"]:
            stats = self.train_step(self.sampler.sample())
            self.step += 1
            for callback in self.callbacks:
                callback.on_step(self, stats)
            window_loss.append(stats["loss"])
            window_timesteps.append(stats["timesteps"])  # tensors: no host sync beyond train_step's finiteness check
            if self.step % c.train.log_every == 0 or self.step == c.train.steps:
                now = time.perf_counter()
                window_time, tick = now - tick, now
                loss = float(torch.stack(window_loss).mean())
                logger.log(self.step, {"train/loss": loss, "train/lr": self.scheduler.get_last_lr()[0],
                                       "train/grad_norm": float(stats["grad_norm"]),
                                       "train/timesteps_per_s": float(torch.stack(window_timesteps).sum()) / max(window_time, 1e-9)})
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                window_loss, window_timesteps = [], []
            bar.update(1)  # after the postfix: a line printed at this step carries its loss
            if c.eval.every and self.step % c.eval.every == 0:
                self._evaluate_and_log(logger, bar)
                evaluated_at = self.step
            if self.step % c.train.checkpoint_every == 0:
                self.save("last")
        if not interrupted["flag"] and c.eval.every and c.eval.at_end and evaluated_at != self.step:
            self._evaluate_and_log(logger, bar)

    def _evaluate_final(self, policy: torch.nn.Module):
        c = self.config.eval
        return evaluate_agent(
            policy, self.dataset.env_id, c.final_episodes, c.target_returns, seed=c.final_seed, mode=c.mode,
            ref_scores=self.ref_scores, progress=False, max_episode_steps=c.max_episode_steps, num_threads=1,
            trained_on=self.dataset.dataset_id)

    def final_evaluation(self, logger: MetricsLogger | None = None, bar=None) -> dict:
        """The last checkpoint's policy, and ``best.pt``'s where it is another step, each with
        ``eval.final_episodes`` episodes per target on reset seeds ``eval.final_seed + i`` that no in-run
        evaluation used (so the best one's score is not the maximum over noisy evaluations). Written to
        ``final_eval.json``; returned as ``{"last": ..., "best": ... or None, ...}``."""
        c = self.config.eval
        out = {"step": self.step, "episodes": c.final_episodes, "seed": c.final_seed,
               "target_returns": list(c.target_returns), "ema": self.config.train.ema, "last": None, "best": None}
        candidates = [("last", self.step, self.policy)]
        best_path = self.folder.best
        if self.best["step"] is not None and self.best["step"] != self.step and best_path.is_file():
            best_policy = copy.deepcopy(self.policy)
            load_weights(best_policy, read_checkpoint(best_path)["model"], str(best_path))
            candidates.append(("best", self.best["step"], best_policy))
        tick_all = time.perf_counter()
        for name, step, policy in candidates:
            tick = time.perf_counter()
            try:
                result = self._evaluate_final(policy)
            except Exception as exc:  # the checkpoints are saved already: say so, and how to evaluate them
                first = str(exc).splitlines()[0] if str(exc) else ""
                raise EvaluationFailedError(
                    f"The final evaluation of the {name} checkpoint (step {step}) failed: {type(exc).__name__}: {first}. "
                    f"Training finished and its checkpoints are saved in {self.folder.checkpoints}; evaluate them with "
                    f"evaluate.py, or train with --set eval.final_episodes=0 to skip this evaluation.") from exc
            out[name] = {"step": step, "score": result.score(), "episodes": c.final_episodes,
                         "seconds": time.perf_counter() - tick,
                         "in_run_score": self.best["score"] if name == "best" else
                         (self.last_eval or {}).get("score") if (self.last_eval or {}).get("step") == step else None,
                         "targets": [t.summary() for t in result.targets]}
            if logger is not None:
                logger.log(self.step, {f"final/{name}_score": out[name]["score"], **result.metrics(f"final/{name}")})
        if out["best"] is None and self.best["step"] == self.step:
            out["best"] = {**out["last"], "same_as_last": True}
        out["seconds"] = time.perf_counter() - tick_all
        write_atomically(self.folder.final_eval, lambda tmp: Path(tmp).write_text(json.dumps(out, indent=2)))
        line = (f"final evaluation ({c.final_episodes} episodes per target, {out['seconds']:.0f} s): "
                f"last (step {self.step}) {out['last']['score']:.1f}")
        if out["best"] is not None and not out["best"].get("same_as_last"):
            line += f", best (step {out['best']['step']}, online selection) {out['best']['score']:.1f}"
        (bar.write if bar is not None else self.log)(line)
        return out

    def _save_after_failure(self, exc: BaseException) -> None:
        """Keep the step reached when something other than the weights or the disk failed; a failure of
        this save is reported beside the original error, not instead of it."""
        try:
            path = self.save("last")
        except TrainingStopped as save_error:
            self.log(f"Could not save the step reached after {type(exc).__name__}: {save_error}")
            return
        hint = next((h for kind, h in RESUME_HINTS.items() if isinstance(exc, kind)), None)
        if hint is not None:
            exc.args = (f"{exc} Training state saved at step {self.step} in {path}; continue with: "
                        f"{resume_command(self.run_dir)} ({hint}).",)

    def _evaluate_and_log(self, logger: MetricsLogger, bar) -> None:
        tick = time.perf_counter()
        video = self.folder.video(self.step) if self.config.eval.video else None
        try:
            result, metrics, improved = self.evaluate(video_path=video)
        except NonFiniteActionError as exc:  # finite weights, non-finite outputs: diverged all the same
            raise TrainingDivergedError(
                f"Training diverged at step {self.step}: the evaluation's actions are non-finite ({exc}). "
                f"No checkpoint was written with these weights. {kept_checkpoint(self.run_dir)} {divergence_advice(self.config.train)}") from None
        except Exception as exc:
            log_path = self.folder.error_log
            try:
                log_path.write_text(traceback.format_exc())
                where = f"; full traceback in {log_path}"
            except OSError:
                where = ""
            raise EvaluationFailedError(f"The evaluation at step {self.step} failed: {type(exc).__name__}: "
                                        f"{str(exc).splitlines()[0] if str(exc) else ''}{where}.") from exc
        metrics["eval/seconds"] = time.perf_counter() - tick
        for callback in self.callbacks:
            callback.on_evaluation(self, result, metrics["eval/seconds"])
        logger.log(self.step, metrics)
        if video is not None:
            logger.log_video(self.step, "eval/video", video)
        if improved:
            self.save("best")
        parts = []
        for t in result.targets:
            summary = t.summary()
            score = summary["normalized_score_mean"]
            parts.append(f"target {t.target_return:g}: return {summary['return_mean']:.1f}"
                         + (f", score {score:.1f}" if score is not None else ""))
        validation = self.last_eval["validation"]
        if validation is not None:
            parts.append(f"action loss held out {validation['val/action_loss']:.4f} "
                         f"(training windows {validation['val/train_action_loss']:.4f})")
        bar.write(f"step {self.step}: " + ", ".join(parts))
