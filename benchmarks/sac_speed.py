"""Env steps per second of SAC training on one core: stable-baselines3 (PyTorch) against sbx-rl (JAX).

    nice -n 10 python -m benchmarks.sac_speed [--env Hopper-v5] [--warmup 500] [--steps 2000] [--libs sb3 sbx]

Which library ``envs.offline.build_replay`` trains its SAC with is decided by this table. Each library
runs in its own process with one thread (``torch.set_num_threads(1)``; XLA's CPU client on one thread),
default hyperparameters (learning_starts 100, one gradient step of batch 256 per env step), and its own
``learn`` loop. The clock starts after ``learning_starts + --warmup`` steps, so JAX's compilation and the
random warm-up are not in the rate. The libraries alternate ``--repeats`` times (the machine is shared,
so a neighbour's load shows as a slow round; the best round is the library's speed). Prints a table and writes benchmarks/results/sac_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ONE_THREAD_XLA = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def _measure(lib: str, env_id: str, warmup: int, steps: int) -> dict:
    """Run in the child process: train ``learning_starts + warmup`` steps untimed, then ``steps`` timed."""
    import gymnasium as gym

    if lib == "sb3":
        import torch
        from stable_baselines3 import SAC

        torch.set_num_threads(1)
        import stable_baselines3 as pkg
    else:
        from sbx import SAC
        import sbx as pkg
    model = SAC("MlpPolicy", gym.make(env_id), seed=0, verbose=0, device="cpu") if lib == "sb3" else \
        SAC("MlpPolicy", gym.make(env_id), seed=0, verbose=0)
    model.learn(model.learning_starts + warmup)
    t0 = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    dt = time.perf_counter() - t0
    return {"lib": lib, "version": pkg.__version__, "env": env_id, "steps": steps, "seconds": round(dt, 2),
            "steps_per_s": round(steps / dt, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="Hopper-v5")
    p.add_argument("--warmup", type=int, default=500, help="learning steps before the clock starts")
    p.add_argument("--steps", type=int, default=2000, help="timed env steps (one gradient step each)")
    p.add_argument("--libs", nargs="+", choices=["sb3", "sbx"], default=["sb3", "sbx"])
    p.add_argument("--repeats", type=int, default=2, help="rounds over the libraries (the machine is shared: take the best)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sac_speed.json"))
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(_measure(args.child, args.env, args.warmup, args.steps)))
        return 0
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", XLA_FLAGS=ONE_THREAD_XLA, JAX_PLATFORMS="cpu")
    rows = []
    print(f"{'library':22s} {'env':12s} {'steps':>6s} {'seconds':>8s} {'steps/s':>8s}")
    for lib in [lib for _ in range(args.repeats) for lib in args.libs]:
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.sac_speed", "--child", lib, "--env", args.env,
             "--warmup", str(args.warmup), "--steps", str(args.steps)],
            cwd=ROOT, env=env, capture_output=True, text=True, check=True,
        )
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        name = f"{'stable-baselines3' if lib == 'sb3' else 'sbx-rl'} {row['version']}"
        print(f"{name:22s} {row['env']:12s} {row['steps']:6d} {row['seconds']:8.1f} {row['steps_per_s']:8.1f}")
    best = {lib: max(r["steps_per_s"] for r in rows if r["lib"] == lib) for lib in args.libs}
    print("best of each: " + ", ".join(f"{lib} {v:.1f} steps/s" for lib, v in best.items()))
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"cpu_count": os.cpu_count(), "threads": 1, "warmup": args.warmup, "xla_flags": ONE_THREAD_XLA,
            "platform": platform.platform(), "python": platform.python_version(),
            "note": "shared 2-core machine, nice 10; other sessions were running"}
    path.write_text(json.dumps({"meta": meta, "results": rows, "best_steps_per_s": best}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
