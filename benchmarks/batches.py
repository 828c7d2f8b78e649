"""Training batches per second of WindowSampler and SequenceSampler.

    OMP_NUM_THREADS=1 python -m benchmarks.batches [--dataset local/hopper/sample-v0] [--seconds 2]

Default dataset: the Hopper sample shipped in envs/data. Prints a table and writes
benchmarks/results/batches.json.
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

from rl_minrnn.configs.schema import DEFAULT_RETURN_SCALE
from rl_minrnn.envs.offline.batches import SequenceSampler, WindowSampler
from rl_minrnn.envs.offline import SAMPLE_DATASET_ID, load_dataset


def rate(sampler, seconds: float) -> tuple[float, int]:
    sampler.sample()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        sampler.sample()
        n += 1
    return n / (time.perf_counter() - t0), n


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default=SAMPLE_DATASET_ID)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "batches.json"))
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    ds = load_dataset(args.dataset, download=False)
    load_s = time.perf_counter() - t0
    print(f"{ds.summary()}\nloaded in {load_s:.2f} s")
    cases = [
        ("WindowSampler K=20 B=64", lambda: WindowSampler(ds, context=20, batch_size=64, return_scale=DEFAULT_RETURN_SCALE, seed=0), 64 * 20),
        ("SequenceSampler L=20 B=64", lambda: SequenceSampler(ds, chunk_len=20, batch_size=64, return_scale=DEFAULT_RETURN_SCALE, seed=0), 64 * 20),
        ("SequenceSampler L=256 B=64", lambda: SequenceSampler(ds, chunk_len=256, batch_size=64, return_scale=DEFAULT_RETURN_SCALE, seed=0), 64 * 256),
        ("SequenceSampler whole B=16", lambda: SequenceSampler(ds, chunk_len=None, batch_size=16, return_scale=DEFAULT_RETURN_SCALE, seed=0), None),
    ]
    rows = []
    print(f"{'sampler':30s} {'setup s':>8s} {'batches/s':>10s} {'steps/s':>12s}")
    for name, make, steps in cases:
        t0 = time.perf_counter()
        sampler = make()
        setup = time.perf_counter() - t0
        r, n = rate(sampler, args.seconds)
        if steps is None:
            steps = int(sampler.sample()["mask"].size)
        rows.append({"sampler": name, "setup_s": round(setup, 3), "batches_per_s": round(r, 1),
                     "padded_steps_per_s": round(r * steps, 1), "batches": n})
        print(f"{name:30s} {setup:8.3f} {r:10.1f} {r * steps:12.0f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"dataset": args.dataset, "dataset_steps": ds.num_steps, "load_s": round(load_s, 3),
            "cpu_count": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "platform": platform.platform()}
    out.write_text(json.dumps({"meta": meta, "results": rows}, indent=1))
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
