"""How close the run memory estimate (``training.memory_estimate``) is to the memory training really takes.

    OMP_NUM_THREADS=1 python -m benchmarks.memory_estimate [--steps 3]

For a few sizes of each agent kind (on the shipped Hopper sample, no evaluation), one fresh process per
size builds the ``Trainer`` and trains ``--steps`` steps; the peak resident memory growth over that
(``benchmarks.common.rss_peak_during``: VmHWM after ``clear_refs``, minus the RSS before, the dataset
already loaded) is set beside the estimate of everything but the dataset's own arrays. Prints a table,
writes benchmarks/results/memory_estimate.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = [
    ("decision_rnn", ["model.width=128", "model.depth=3", "train.batch_size=64"]),
    ("decision_rnn", ["model.width=512", "model.depth=4", "train.batch_size=64"]),
    ("decision_rnn", ["model.width=1024", "model.depth=6", "train.batch_size=32", "model.context=40"]),
    ("decision_transformer", ["model.width=128", "model.depth=3", "train.batch_size=64"]),
    ("decision_transformer", ["model.width=512", "model.depth=4", "train.batch_size=64", "model.heads=4"]),
    ("decision_transformer", ["model.width=768", "model.depth=6", "train.batch_size=32", "model.context=40", "model.heads=8"]),
]


def measure(kind: str, overrides: list[str], steps: int) -> dict:
    import torch

    from benchmarks.common import rss_peak_during
    from rl_minrnn.training.options import load_config
    from rl_minrnn.envs.offline import SAMPLE_DATASET_ID, load_dataset
    from rl_minrnn.training import Trainer

    torch.set_num_threads(1)
    config = load_config(overrides=[f"model.kind={kind}", *overrides, "eval.every=0", f"train.steps={steps}",
                                    "train.checkpoint_every=1000000", "train.threads=1"])
    dataset = load_dataset(SAMPLE_DATASET_ID, download=False)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        def train():
            trainer = Trainer(config, Path(tmp) / "run", log=lambda *_: None, progress=False, dataset=dataset)
            out["estimate"] = trainer.memory_estimate
            trainer.run()
        peak = rss_peak_during(train)
    estimate = out["estimate"]
    return {"kind": kind, "overrides": overrides, "parameters": estimate.parameters, "estimate_bytes": estimate.total,
            "estimate_parts": estimate.parts, "measured_peak_bytes": peak["peak_bytes"], "method": peak["method"],
            "ratio": round(estimate.total / max(1, peak["peak_bytes"]), 2)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one size (JSON [kind, overrides])
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "memory_estimate"))
    args = p.parse_args(argv)
    if args.one:
        kind, overrides = json.loads(args.one)
        print(json.dumps(measure(kind, overrides, args.steps)))
        return 0
    from benchmarks.common import fmt, machine_info, markdown_table, run_json_subprocess, write_results

    rows = [run_json_subprocess(["-m", "benchmarks.memory_estimate", "--steps", str(args.steps), "--one",
                                 json.dumps([kind, overrides])], env={"OMP_NUM_THREADS": "1"})
            for kind, overrides in SIZES]
    mb = 2**20
    table = markdown_table(
        ["agent", "size", "parameters", "estimate (MB)", "measured peak (MB)", "estimate / measured"],
        [[r["kind"], " ".join(o.split(".", 1)[1] for o in r["overrides"]), f"{r['parameters']:,}",
          fmt(r["estimate_bytes"] / mb), fmt(r["measured_peak_bytes"] / mb), f"{r['ratio']:.2f}"] for r in rows])
    write_results(args.out, f"Run memory estimate vs measured peak RSS growth ({args.steps} training steps, "
                            f"Hopper sample, no evaluation)\n\n{table}\n", {"machine": machine_info(), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
