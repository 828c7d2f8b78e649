"""Train a Decision-RNN (minGRU / minLSTM) or the Decision Transformer baseline on an offline dataset.

    python train_agent.py                                   # the default job: Hopper, cpu profile, works offline
    python train_agent.py --config configs/hopper-medium.yaml --set train.steps=2000 --set seed=1 --run-dir runs/x
    python train_agent.py --config configs/hopper-medium.yaml --profile cpu
    python train_agent.py --dataset local/walker2d/medium-v0 --profile cpu   # configs/walker2d-medium.yaml, that data
    python train_agent.py --resume runs/x --set train.steps=4000

``rl-minrnn-train`` is the same command, installed. The logic lives in ``rl_minrnn.api.train`` (and
``training``); this file parses arguments and reports.
Exit codes: 0 done; 2 bad input (config, dataset, checkpoint, a run folder in use or not writable),
nothing trained; 3 training stopped on a fault (diverged, evaluation failed, a write failed), with
what was kept said in the message (``docs/faults.md``); 130 interrupted with Ctrl-C, saved.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rl_minrnn.threads import passive_openmp  # noqa: E402  (before torch loads OpenMP)

passive_openmp()


def parse_args(argv=None):
    from rl_minrnn.configs.schema import field_help

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Config keys (--set KEY=VALUE, values parsed as YAML):\n" + field_help(),
    )
    parser.add_argument("--config", action="append", default=[], help="YAML config; repeat to merge several in order")
    parser.add_argument("--dataset", metavar="ID",
                        help="train on this dataset id (mujoco/..., d4rl/..., local/...) with its config "
                             "configs/<env>-<kind>.yaml, unless --config is given")
    parser.add_argument("--profile", help="a profile from configs/profiles merged after --config (e.g. cpu)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key, e.g. --set train.steps=2000")
    parser.add_argument("--run-dir", help="output folder (default: runs/<config name>-<time>)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue RUN_DIR/checkpoints/last.pt exactly")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (same as --set train.compile=true)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress at all (a bar on a terminal, a line every few percent in a file)")
    return parser.parse_args(argv)


def main(argv=None, runs_root: str | Path = "runs") -> int:
    """``runs_root``: where run folders go without --run-dir (``train_agent.py`` passes the repository's runs/)."""
    args = parse_args(argv)
    from rl_minrnn.api import make_trainer, run_trainer
    from rl_minrnn.configs.schema import ConfigError
    from rl_minrnn.configs.loading import CONFIG_DIR
    from rl_minrnn.envs.offline import DatasetError
    from rl_minrnn.training import CheckpointError, RunFolder, RunFolderError, RunInUseError, TrainingStopped

    overrides = list(args.overrides) + (["train.compile=true"] if args.compile else [])
    default_job = not (args.config or args.dataset or args.profile or args.resume or args.overrides)
    config = [Path(f) for f in args.config] or (None if args.dataset or args.resume else [CONFIG_DIR / "hopper-medium.yaml"])
    if default_job:
        overrides.append("dataset.fallback_to_sample=true")

    def announce(_config):
        if default_job:
            print("Default job: Hopper medium with the cpu profile (configs/hopper-medium.yaml + configs/profiles/cpu.yaml).")

    try:
        trainer = make_trainer(config, dataset=args.dataset, overrides=overrides,
                               profile=args.profile or ("cpu" if default_job else None), run_dir=args.run_dir,
                               resume=args.resume, progress=not args.no_progress, runs_root=runs_root,
                               announce=announce)
        result = run_trainer(trainer)
    except TrainingStopped as exc:  # started, then stopped on a fault; the message says what was kept
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except (ConfigError, CheckpointError, DatasetError, RunInUseError, RunFolderError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    run_dir = result.run_dir
    print(f"Trained to step {result.step}.")
    if result.final is not None:
        final, best = result.final, result.final["best"]
        print(f"Final evaluation, {final['episodes']} episodes per target: the last checkpoint (step {result.step}) "
              f"scores {_score_text(final['last'])}"
              + ("" if best is None or best.get("same_as_last") else
                 f"; the best in-run evaluation's checkpoint (step {best['step']}, an online selection) {_score_text(best)}")
              + ".")
    if result.score is not None:
        last_step = trainer.last_eval["step"]
        print(f"In-run evaluations ({trainer.config.eval.episodes} episodes per target): last (step {last_step}) "
              f"{result.score:.1f}, best {result.best_score:.1f} at step {result.best_step}.")
    trackers = [name for name in result.config.train.loggers if name != "tensorboard"]
    folder = RunFolder(run_dir)

    def name(path: Path) -> str:
        return path.relative_to(folder.root).as_posix()

    print(f"Results in {run_dir}: {name(folder.config)}, {name(folder.metrics)}, {name(folder.tensorboard)}/ "
          f"(tensorboard --logdir {run_dir}), {name(folder.last)}"
          + (f", {name(folder.best)}" if result.best_step is not None else "")
          + (f", {name(folder.final_eval)}" if result.final is not None else "")
          + "".join(f"; {name}: {where}" for name, where in _tracker_notes(trackers, run_dir)))
    print(f"Evaluate with: python evaluate.py --checkpoint {result.checkpoint} --episodes 100  (D4RL's protocol)")
    return 130 if result.interrupted else 0


def _score_text(entry: dict) -> str:
    """``61.2 ± 1.9 (standard error)``: the best target's mean normalised score (mean return without
    reference scores) and its standard error over the episodes."""
    key = "normalized_score" if entry["targets"][0]["normalized_score_mean"] is not None else "return"
    best = max(entry["targets"], key=lambda t: t[f"{key}_mean"])
    std, n = best[f"{key}_std"], int(entry["episodes"])
    return f"{entry['score']:.1f}" + (f" ± {std / n ** 0.5:.1f} (standard error)" if std is not None and n > 1 else "")


def _tracker_notes(names, run_dir: Path):
    from rl_minrnn.training import RunFolder
    from rl_minrnn.training.run_logging import MLflowTracker

    for name in names:
        if name == "mlflow":
            yield name, f"mlflow ui --backend-store-uri {MLflowTracker.tracking_uri(run_dir)}"
        elif name == "wandb":
            yield name, f"{RunFolder(run_dir).wandb} (wandb sync to upload an offline run)"


if __name__ == "__main__":
    sys.exit(main())
