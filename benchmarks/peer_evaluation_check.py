"""d3rlpy's DT evaluated the way the suite evaluates it (a target's episodes stepped together, one forward
pass of d3rlpy's model: ``benchmarks/peers/d3rlpy_worker.play_batch``) against d3rlpy's own
``StatefulTransformerWrapper`` playing one episode at a time: the largest action difference over every
batched step replayed through the wrapper, the returns both ways, and the seconds of each.

    python -m benchmarks.peer_evaluation_check --dataset local/hopper/medium-v0 --steps 500 --episodes 100 \
        --out benchmarks/results/d3rlpy-batched-evaluation/hopper-medium.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from benchmarks.peers import d3rlpy_dt
from benchmarks.suite import AGENTS, PROTOCOLS, config_files
from rl_minrnn.envs.offline import load_dataset
from rl_minrnn.training.options import load_config
def main(argv=None) -> int:
    """The suite's d3rlpy run for one dataset (cpu protocol, seed 0, ``--steps``), then
    its batched evaluation against d3rlpy's wrapper alone (``check_batched_evaluation``), as a table and a
    JSON file."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peer_evaluation_check", description=main.__doc__)
    parser.add_argument("--dataset", default="local/hopper/medium-v0")
    parser.add_argument("--steps", type=int, default=500, help="d3rlpy training steps before the check")
    parser.add_argument("--episodes", type=int, default=20, help="episodes per target return, played both ways")
    parser.add_argument("--out", type=Path, default=d3rlpy_dt.ROOT / "benchmarks" / "results" / "d3rlpy-batched-evaluation.json")
    args = parser.parse_args(argv)
    protocol = PROTOCOLS["cpu"]
    overrides = [f"dataset.id={args.dataset}", *AGENTS["d3rlpy_dt"], "seed=0", f"train.steps={args.steps}",
                 f"eval.every={args.steps}", f"eval.episodes={args.episodes}", f"train.threads={protocol['threads']}",
                 "train.device=cpu"]
    config = load_config(config_files(args.dataset, "cpu", overrides)[0], overrides)
    out = d3rlpy_dt.check_batched_evaluation(config, load_dataset(args.dataset, download=False))
    out["command"] = "python -m benchmarks.peer_evaluation_check " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print("| target | batched mean return | one at a time | batched s | one at a time s |\n| ---: | ---: | ---: | ---: | ---: |")
    for target, b, o in zip(out["target_returns"], out["batched_returns"], out["one_at_a_time_returns"]):
        print(f"| {target:g} | {np.mean(b):.1f} | {np.mean(o):.1f} | | |")
    print(f"| all | | | {out['batched_s']:.1f} | {out['one_at_a_time_s']:.1f} |")
    print(f"largest action difference over {out['steps_replayed']} replayed steps: {out['max_abs_action_difference']:.3g}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
