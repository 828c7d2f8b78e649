"""Env steps per second of the dataset builder (policy in numpy, batched across envs).

    OMP_NUM_THREADS=1 python -m benchmarks.build_speed [--steps 40000] [--num-envs 1 8 16] [--workers 1 2] [--envs Hopper-v5]

Uses the behaviour policy from --policies-dir when present (default ../shared/policies), else a random
MLP of the same shape (256x256, relu, tanh), so it runs anywhere. Prints a table and writes
benchmarks/results/build_speed.json. Target: >= 3,000 Hopper steps/s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from rl_minrnn.envs.offline.build_dataset import collect
from rl_minrnn.envs.offline.policies import MLPPolicy

POLICY = {"Hopper-v5": "hopper-sac", "Walker2d-v5": "walker2d-tqc", "HalfCheetah-v5": "halfcheetah-tqc"}
DIMS = {"Hopper-v5": (11, 3), "Walker2d-v5": (17, 6), "HalfCheetah-v5": (17, 6)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40_000)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="processes (worker start-up is included)")
    p.add_argument("--num-envs", type=int, nargs="+", default=[1, 8, 16])
    p.add_argument("--envs", nargs="+", default=["Hopper-v5"], choices=list(POLICY))
    p.add_argument("--policies-dir", default=str(ROOT.parent / "shared" / "policies"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "build_speed.json"))
    args = p.parse_args(argv)
    rows = []
    print(f"{'env':16s} {'policy':18s} {'envs':>5s} {'workers':>7s} {'steps':>8s} {'seconds':>8s} {'steps/s':>9s}")
    for env_id in args.envs:
        path = Path(args.policies_dir) / f"{POLICY[env_id]}.npz"
        if path.is_file():
            policy, name = MLPPolicy.load(path), path.stem
        else:
            policy, name = MLPPolicy.random(*DIMS[env_id], hidden=(256, 256)), "random-256x256"
        for w in args.workers:
            for n in args.num_envs:
                if w > n:
                    continue
                t0 = time.perf_counter()
                collect(policy, env_id, args.steps, seed=0, num_envs=n, progress=False, workers=w)
                dt = time.perf_counter() - t0
                rows.append({"env": env_id, "policy": name, "num_envs": n, "workers": w, "steps": args.steps,
                             "seconds": round(dt, 3), "steps_per_s": round(args.steps / dt, 1)})
                print(f"{env_id:16s} {name:18s} {n:5d} {w:7d} {args.steps:8d} {dt:8.2f} {args.steps / dt:9.0f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"cpu_count": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "platform": platform.platform(), "python": platform.python_version()}
    out.write_text(json.dumps({"meta": meta, "results": rows}, indent=1))
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
