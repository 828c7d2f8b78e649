"""Evaluate a checkpoint: normalised returns per target return, agent vs env time, optional video.

    rl-minrnn-evaluate --checkpoint runs/x/checkpoints/best.pt      # or python evaluate.py, the same command
    python evaluate.py --checkpoint runs/x/checkpoints/last.pt --episodes 10 \\
        --target-return 3600 --target-return 1800 [--mode recurrent --mode window] \\
        [--seed 0] [--json out.json] [--render out.mp4 --width 320 --height 320 --fps 30]

All episodes of a target return run at once (``envs.evaluation.rollout.evaluate_agent``); episode i resets with
seed ``seed + i``. Prints a Markdown table and writes the same numbers (and every episode's return)
as JSON. Exit code 2 with a one-line message for a missing or unreadable checkpoint, an environment
that does not fit the agent, an agent that produces non-finite actions (a diverged checkpoint), or
rendering that cannot work here.

``--checkpoint`` also takes a policy exported by ``python -m rl_minrnn.deploy.export`` (``.onnx``, or TorchScript),
run through the same rollout, seeds and tables (``deploy.runtime.ExportedAgent``).
"""

from __future__ import annotations


# Before torch is imported: OpenMP threads sleep instead of spinning between the agent's calls, so
# they do not steal the core the env steps on.
from rl_minrnn.threads import passive_openmp  # noqa: E402  (before torch loads OpenMP)

passive_openmp()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402


class UsageError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--checkpoint", type=Path, required=True,
                   help="checkpoint file written by train_agent.py, or a policy exported by python -m rl_minrnn.deploy.export "
                   "(.onnx, or TorchScript .pt)")
    p.add_argument("--episodes", type=int, default=10, help="episodes per target return (all run at once)")
    p.add_argument(
        "--target-return", type=float, action="append", dest="target_returns",
        help="raw target return (repeat for several); default: the checkpoint config's evaluation targets",
    )
    p.add_argument("--seed", type=int, default=0, help="episode i resets with seed + i")
    p.add_argument(
        "--mode", action="append", dest="modes",
        help="rollout mode, e.g. recurrent or window (repeat to compare; 'all' = every mode of the agent); "
        "default: the agent's own default",
    )
    p.add_argument("--env", help="evaluate in this gymnasium env instead of the checkpoint's (sizes must match)")
    p.add_argument("--device", default="cpu", help="torch device for the agent")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (env stepping shares the cores)")
    p.add_argument("--max-episode-steps", type=int, help="cap episode length (the env's time limit still applies)")
    p.add_argument("--batch-size", type=int, help="episodes run together (default all; 1 = one by one)")
    p.add_argument("--json", type=Path, help="write the results as JSON here")
    p.add_argument("--render", type=Path, help="record episodes to this .mp4 or .gif (headless)")
    p.add_argument("--render-episodes", type=int, default=1, help="episodes in the video (of the first target)")
    p.add_argument("--width", type=int, default=320, help="video width in pixels")
    p.add_argument("--height", type=int, default=320, help="video height in pixels")
    p.add_argument("--fps", type=float, default=30.0, help="video frame rate; real time, so every n-th step is drawn")
    p.add_argument(
        "--overlay", action=argparse.BooleanOptionalAction, default=True, help="step / return text on frames"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _load(path: Path, device: str, threads: int | None = 1):
    from rl_minrnn.api import load
    from rl_minrnn.deploy.runtime import ExportedPolicyError
    from rl_minrnn.training import CheckpointError

    try:  # a checkpoint, or an exported policy run through the same rollout and tables
        return load(path, device=device, threads=threads)
    except (CheckpointError, ExportedPolicyError) as error:
        raise UsageError(str(error)) from None


def _reference_scores(info: dict, env_id: str):
    from rl_minrnn.api import reference_scores

    refs = reference_scores(info, env_id)
    if refs is None:
        print(f"note: no reference scores for {env_id}; normalised scores left out", file=sys.stderr)
    return refs


def _video_path(path: Path, mode: str | None, several: bool) -> Path:
    return path.with_name(f"{path.stem}_{mode}{path.suffix}") if several and mode else path


def check_flags(args: argparse.Namespace) -> None:
    """Every number against the rule of the option it sets (the rollout's, the config's), before anything loads."""
    from rl_minrnn.training.options import RULES
    from rl_minrnn.envs.evaluation.rollout import EVALUATION_OPTIONS
    from rl_minrnn.ranges import Number, OptionError

    checks = [("--episodes", args.episodes, EVALUATION_OPTIONS["episodes"]), ("--seed", args.seed, EVALUATION_OPTIONS["seed"]),
              ("--threads", args.threads, RULES["train.threads"]),
              ("--render-episodes", args.render_episodes, Number(0, 1000, integer=True)),
              ("--width", args.width, Number(16, 4096, integer=True)), ("--height", args.height, Number(16, 4096, integer=True)),
              ("--fps", args.fps, Number(0, 1000, low_open=True))]
    if args.max_episode_steps is not None:
        checks.append(("--max-episode-steps", args.max_episode_steps, EVALUATION_OPTIONS["max_episode_steps"]))
    if args.batch_size is not None:
        checks.append(("--batch-size", args.batch_size, EVALUATION_OPTIONS["episodes"]))
    if args.target_returns is not None:
        checks.append(("--target-return", args.target_returns, EVALUATION_OPTIONS["target_returns"]))
    for flag, value, rule in checks:
        try:
            rule.check(value)
        except OptionError as exc:
            raise UsageError(f"{flag}: {exc}") from None
    if args.json is not None:  # before any rollout: results that cannot be written are work lost
        try:
            if args.json.is_dir():
                raise IsADirectoryError(21, "is a folder")
            args.json.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"--json: cannot write {args.json} ({exc.strerror or exc}); give a file in a writable folder") from None
    from rl_minrnn.configs.schema import ConfigError
    from rl_minrnn.training.resources import select_device

    try:
        select_device(args.device, key="--device")
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def run(args: argparse.Namespace) -> dict:
    """Everything after argument parsing; returns the JSON-ready report."""
    check_flags(args)
    if args.render is not None:
        from rl_minrnn.envs.evaluation.render import setup_headless_gl

        backend = setup_headless_gl()  # before any rendering context exists
        print(f"rendering with MUJOCO_GL={backend}", file=sys.stderr)

    import torch

    from rl_minrnn.envs.evaluation.render import VideoRecorder
    from rl_minrnn.envs.evaluation.environments import check_env_matches_agent, make_env
    from rl_minrnn.envs.evaluation.results import results_markdown
    from rl_minrnn.envs.evaluation.rollout import evaluate_agent

    if args.threads:
        torch.set_num_threads(args.threads)
    agent, info = _load(args.checkpoint, args.device, args.threads)
    env_id = args.env or info.get("env_id")
    if not env_id:
        raise UsageError("The checkpoint names no environment; give --env")
    targets = args.target_returns or ((info.get("config") or {}).get("eval") or {}).get("target_returns")
    if not targets:
        raise UsageError("The checkpoint's config has no target returns; give --target-return")
    modes = list(agent.rollout_modes) if "all" in (args.modes or []) else (args.modes or [None])
    for mode in modes:  # every mode checked before any rollout
        try:
            agent.resolve_rollout_mode(mode)
        except ValueError:
            raise UsageError(f"--mode {mode}: this agent's rollout modes are {', '.join(agent.rollout_modes)}") from None
    if args.env is not None:  # fail before any rollout when the override does not fit the agent
        env = make_env(args.env)
        try:
            check_env_matches_agent(env, agent, args.env, trained_on=info.get("env_id"))
        finally:
            env.close()
    refs = _reference_scores(info, env_id)

    results = []
    for mode in modes:
        recorder = None
        if args.render is not None:
            recorder = VideoRecorder(
                _video_path(args.render, mode, len(modes) > 1),
                episodes=tuple(range(min(args.render_episodes, args.episodes))),
                width=args.width, height=args.height, fps=args.fps, overlay=args.overlay,
            )
        result = evaluate_agent(
            agent, env_id, args.episodes, targets, seed=args.seed, mode=mode, ref_scores=refs,
            render=recorder, progress=not args.no_progress, max_episode_steps=args.max_episode_steps,
            batch_size=args.batch_size, trained_on=info.get("env_id"),
        )
        results.append(result)
        if recorder is not None:
            target = result.targets[0]
            per_frame = target.render_s / max(target.frames_rendered, 1)
            print(
                f"video: {recorder.path} ({recorder.frames_written} frames, 1 every {recorder.stride} steps, "
                f"{per_frame:.3f} s per frame)",
                file=sys.stderr,
            )
    print(f"\n{args.checkpoint} (step {info.get('step')}, dataset {info.get('dataset_id')})\n")
    print(results_markdown(results))
    report = {
        "checkpoint": str(args.checkpoint),
        "step": info.get("step"),
        "dataset_id": info.get("dataset_id"),
        "trained_env_id": info.get("env_id"),
        "env_id": env_id,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "results": [r.to_dict() for r in results],
    }
    if args.json is not None:
        try:
            args.json.write_text(json.dumps(report, indent=2) + "\n")
        except OSError as exc:
            raise UsageError(f"--json: cannot write {args.json} ({exc.strerror or exc}); the table above has the results") from None
        print(f"\nwrote {args.json}", file=sys.stderr)
    return report


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from rl_minrnn.envs.evaluation.render import RenderError
    from rl_minrnn.envs.evaluation.environments import EnvironmentMismatchError
    from rl_minrnn.envs.evaluation.rollout import NonFiniteActionError

    from rl_minrnn.envs.offline import DatasetError

    known = (UsageError, EnvironmentMismatchError, NonFiniteActionError, RenderError, DatasetError)
    try:
        run(args)
    except known as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
