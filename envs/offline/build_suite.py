"""Build the local D4RL-style suite, skipping what already exists (safe to re-run).

    python -m rl_minrnn.envs.offline.build_suite [--steps N] [--policies-dir DIR] [--replay-dir DIR] [--root DIR]

Writes ``local/{hopper,walker2d,halfcheetah}/{medium,expert,medium-expert}-v0`` from the behaviour
policies (``--steps`` each, 1,000,000 by default as in D4RL; stochastic; medium-expert = medium followed
by expert) and ``local/<task>/medium-replay-v0`` from ``<task>-medium-replay.npz`` in the replay folder
(by default the repository's ``replay/``, where the SAC buffers made by ``build_replay`` are committed,
since one takes hours to build); a buffer that is absent is skipped with the command that makes it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from rl_minrnn.envs.offline.commands import run_command
from rl_minrnn.envs.offline.build_dataset import build_dataset
from rl_minrnn.envs.offline.combine import combine_datasets
from rl_minrnn.envs.offline import datasets_root
from rl_minrnn.envs.offline.import_d4rl import import_d4rl
from rl_minrnn.envs.offline.policies import PolicyError
from rl_minrnn.envs.tasks import TASKS

REPO_ROOT = Path(__file__).resolve().parents[2]  # in a checkout; the team's shared/ sits beside it
DEFAULT_POLICIES_DIR = REPO_ROOT.parent / "shared" / "policies"
DEFAULT_REPLAY_DIR = REPO_ROOT / "replay"  # committed buffers; outside the package, so the wheel stays small


def replay_file(replay_dir, task: str) -> Path:
    return Path(replay_dir) / f"{task}-medium-replay.npz"


def replay_command(task: str, replay_dir) -> str:
    """The command that builds a task's medium-replay buffer into the replay folder."""
    spec = TASKS[task]
    return (f"python -m rl_minrnn.envs.offline.build_replay --env {spec.env_id} --id local/{task}/medium-replay-v0 "
            f"--seed 0 --npz {replay_file(replay_dir, task)}")


def build_suite(
    steps: int = 1_000_000,
    policies_dir=DEFAULT_POLICIES_DIR,
    replay_dir=DEFAULT_REPLAY_DIR,
    root=None,
    tasks=tuple(TASKS),
    num_envs: int = 16,
    seed_offset: int = 0,
    progress: bool = True,
    workers: int = 1,
) -> dict:
    """Build what is missing; returns {dataset_id: 'built' | 'exists' | 'skipped: why'}."""
    root = Path(root) if root is not None else datasets_root()
    policies_dir = Path(policies_dir)
    status = {}
    exists = lambda i: (root / i / "data" / "metadata.json").is_file()  # noqa: E731
    needed = [
        policy for t in tasks for kind, policy in (("medium", TASKS[t].medium_policy), ("expert", TASKS[t].expert_policy))
        if not exists(f"local/{t}/{kind}-v0")
    ]
    missing = [n for n in needed if not (policies_dir / f"{n}.npz").is_file()]
    if missing:
        raise PolicyError(
            f"Behaviour policies {missing} not found in {policies_dir}. Point --policies-dir at the folder holding "
            "<env>-<algo>.npz and policies.json (format: shared/policies/README.md)."
        )
    for task in tasks:
        spec = TASKS[task]
        for kind, name, seed in (("medium", spec.medium_policy, spec.build_seed),
                                 ("expert", spec.expert_policy, spec.build_seed + 1)):
            dataset_id = f"local/{task}/{kind}-v0"
            if exists(dataset_id):
                status[dataset_id] = "exists"
                continue
            t0 = time.perf_counter()
            build_dataset(
                policies_dir / f"{name}.npz", spec.env_id, steps, dataset_id, seed=seed + seed_offset,
                num_envs=num_envs, root=root, progress=progress, workers=workers,
            )
            status[dataset_id] = f"built in {time.perf_counter() - t0:.0f} s"
        dataset_id = f"local/{task}/medium-expert-v0"
        if exists(dataset_id):
            status[dataset_id] = "exists"
        else:
            t0 = time.perf_counter()
            combine_datasets([f"local/{task}/medium-v0", f"local/{task}/expert-v0"], dataset_id, root=root)
            status[dataset_id] = f"built in {time.perf_counter() - t0:.0f} s"
    for task in tasks:
        dataset_id = f"local/{task}/medium-replay-v0"
        buffer = replay_file(replay_dir, task) if replay_dir is not None else None
        if exists(dataset_id):
            status[dataset_id] = "exists"
        elif buffer is not None and buffer.is_file():
            t0 = time.perf_counter()
            import_d4rl(buffer, TASKS[task].env_id, dataset_id, root=root)
            status[dataset_id] = f"built in {time.perf_counter() - t0:.0f} s"
        else:
            status[dataset_id] = (f"skipped: no replay buffer {buffer}; make it (hours) with "
                                  f"`{replay_command(task, replay_dir or DEFAULT_REPLAY_DIR)}` or pass --replay-dir")
    return status


def suite_table(status: dict, root: Path) -> str:
    """A Markdown table of the suite's datasets as they are in ``root``: episodes, steps, behaviour return
    (mean, std) and its D4RL-normalised mean, size on disk (docs/datasets.md keeps it)."""
    from rl_minrnn.envs.offline import load_dataset

    rows = ["| dataset | episodes | steps | return mean ± std | normalised mean | size |",
            "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for dataset_id, what in status.items():
        if what.startswith("skipped"):
            rows.append(f"| `{dataset_id}` | not built | | | | |")
            continue
        data = load_dataset(str(root / dataset_id))
        returns = np.asarray(data.returns, dtype=float)
        size = sum(f.stat().st_size for f in (root / dataset_id).rglob("*") if f.is_file())
        rows.append(f"| `{dataset_id}` | {len(returns):,} | {int(np.sum(data.lengths)):,} | {returns.mean():.0f} ± "
                    f"{returns.std():.0f} | {float(np.mean(data.normalized_score(returns))):.1f} | {size / 1e6:.1f} MB |")
    return "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m rl_minrnn.envs.offline.build_suite", description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1_000_000, help="env steps per medium/expert dataset (D4RL: 1M)")
    p.add_argument("--policies-dir", default=str(DEFAULT_POLICIES_DIR), help="folder of the behaviour policy npz files")
    p.add_argument("--replay-dir", default=str(DEFAULT_REPLAY_DIR),
                   help="folder of <task>-medium-replay.npz buffers (build_replay --npz); a missing one is skipped")
    p.add_argument("--root", default=None, help="store folder (default: $MINARI_DATASETS_PATH or ~/.minari/datasets)")
    p.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    p.add_argument("--num-envs", type=int, default=16)
    p.add_argument("--workers", type=int, default=1, help="processes per build (2 uses both cores)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--markdown", action="store_true",
                   help="then print a Markdown table of every dataset (episodes, steps, behaviour score, size)")
    args = p.parse_args(argv)
    if min(args.steps, args.num_envs, args.workers) <= 0:
        p.error("--steps and --num-envs must be positive")

    def build_and_report() -> None:
        t0 = time.perf_counter()
        status = build_suite(
            args.steps, args.policies_dir, args.replay_dir, args.root, tuple(args.tasks), args.num_envs,
            progress=not args.no_progress, workers=args.workers,
        )
        root = Path(args.root) if args.root else datasets_root()
        print(f"\nsuite in {root} ({time.perf_counter() - t0:.0f} s):")
        for dataset_id, what in status.items():
            size = sum(f.stat().st_size for f in (root / dataset_id).rglob("*") if f.is_file()) if (root / dataset_id).is_dir() else 0
            if what.startswith("skipped"):
                print(f"  {dataset_id:36s} {what}")
            else:
                print(f"  {dataset_id:36s} {what:28s} {size / 1e6:8.1f} MB")
        if args.markdown:
            print("\n" + suite_table(status, root))

    return run_command(build_and_report)


if __name__ == "__main__":
    sys.exit(main())
