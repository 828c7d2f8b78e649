#!/usr/bin/env python
"""Train a Decision-RNN (minGRU / minLSTM) or the Decision Transformer baseline on an offline dataset.

    python train_agent.py                                   # the default job: Hopper, cpu profile, works offline
    python train_agent.py --config configs/hopper-medium.yaml --set train.steps=2000 --set seed=1 --run-dir runs/x
    python train_agent.py --config configs/hopper-medium.yaml --profile cpu
    python train_agent.py --dataset local/walker2d/medium-v0 --profile cpu   # configs/walker2d-medium.yaml, that data
    python train_agent.py --resume runs/x --set train.steps=4000

The logic lives in ``training``; this file parses arguments and wires things together.
Exit codes: 0 done; 2 bad input (config, dataset, checkpoint, a run folder in use or not writable),
nothing trained; 3 training stopped on a fault (diverged, evaluation failed, a write failed), with
what was kept said in the message (``docs/faults.md``); 130 interrupted with Ctrl-C, saved.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads must not spin beside the envs

ROOT = Path(__file__).resolve().parent
DEFAULT_CONFIG = ROOT / "configs" / "hopper-medium.yaml"


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
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from rl_minrnn.configs.schema import ConfigError, config_for_dataset, load_config, profile_path
    from rl_minrnn.envs.offline import DatasetError
    from rl_minrnn.training import CheckpointError, RunFolderError, RunInUseError, RunLock, Trainer, TrainingStopped

    overrides = list(args.overrides) + (["train.compile=true"] if args.compile else [])
    default_job = not (args.config or args.dataset or args.profile or args.resume or args.overrides)
    try:
        if args.resume:
            if args.config or args.profile or args.dataset:
                raise ConfigError("--resume takes the config from the checkpoint; drop --config/--profile/--dataset")
            trainer = Trainer.resume(args.resume, overrides, progress=not args.no_progress)
            print(f"Resuming {args.resume} at step {trainer.step} of {trainer.config.train.steps}")
        else:
            files = [Path(f) for f in args.config]
            if args.dataset:
                overrides.insert(0, f"dataset.id={args.dataset}")
                if not files:
                    path, note = config_for_dataset(args.dataset)
                    files.append(path)
                    print(f"Config for {args.dataset}: {note or 'configs/' + path.name}")
            files = files or [DEFAULT_CONFIG]
            profile = args.profile or ("cpu" if default_job else None)
            if profile:
                files.append(profile_path(profile))
            if default_job:
                overrides.append("dataset.fallback_to_sample=true")
            config = load_config(files, overrides)
            name = files[0].stem + (f"-{profile}" if profile else "")
            run_dir = Path(args.run_dir) if args.run_dir else ROOT / "runs" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
            lock = RunLock.acquire(run_dir)  # first: a folder another process trains in is refused as such
            if (run_dir / "checkpoints" / "last.pt").exists():
                lock.release()
                raise ConfigError(f"{run_dir} already holds a run; continue it with --resume {run_dir} or pick another --run-dir")
            if default_job:
                print("Default job: Hopper medium with the cpu profile (configs/hopper-medium.yaml + configs/profiles/cpu.yaml).")
            trainer = Trainer(config, run_dir, progress=not args.no_progress, lock=lock)
            print(f"Dataset {trainer.dataset.dataset_id!r}: {trainer.dataset.num_episodes} episodes, "
                  f"{trainer.dataset.num_steps} steps; env {trainer.dataset.env_id}")
            print(f"Model {config.model.kind} ({config.model.cell if config.model.kind == 'decision_rnn' else 'attention'}, "
                  f"width {config.model.width}, depth {config.model.depth}, {config.model.tokens} tokens, "
                  f"{sum(p.numel() for p in trainer.agent.parameters()):,} parameters) on {trainer.device}, "
                  f"{trainer.threads} thread(s); {config.train.steps} steps, {config.train.regime} regime")
        summary = trainer.run()
    except TrainingStopped as exc:  # started, then stopped on a fault; the message says what was kept
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except (ConfigError, CheckpointError, DatasetError, RunInUseError, RunFolderError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    run_dir = trainer.run_dir
    best, last = summary["best"], summary["last_eval"]
    print(f"Trained to step {summary['step']}.")
    if last is not None:
        print(f"Last evaluation (step {last['step']}): normalised score {last['score']:.1f}; "
              f"best {best['score']:.1f} at step {best['step']}.")
    print(f"Results in {run_dir}: config.yaml, metrics.jsonl, tensorboard/ (tensorboard --logdir {run_dir}), "
          f"checkpoints/last.pt" + (", checkpoints/best.pt" if best["step"] is not None else ""))
    print(f"Evaluate with: python evaluate.py --checkpoint {run_dir / 'checkpoints' / ('best.pt' if best['step'] is not None else 'last.pt')} --episodes 10")
    return 130 if summary["interrupted"] else 0


if __name__ == "__main__":
    sys.exit(main())
