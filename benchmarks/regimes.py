#!/usr/bin/env python
"""Training regime x rollout mode, side by side: which should the Decision-RNN default to?

A recurrent agent rolled out with a carried state over a 1000-step episode sees far longer contexts
than 20-step training windows that start from a zero state. This trains the same agent under each
training regime (same seeds, same number of training timesteps) and evaluates every trained model in
each rollout mode on the same episode seeds:

- regimes: ``window`` (K-step windows from a zero state, as Decision Transformer) and ``sequence``
  (consecutive chunks of whole episodes, the state carried across chunks: every chunk starts from a
  state burned in on the episode so far);
- rollout modes: ``recurrent`` (carried state, O(1) per step) and ``window`` (re-run the last K steps).

    python benchmarks/regimes.py                       # Hopper sample dataset, cpu profile, 2 seeds
    python benchmarks/regimes.py --dataset local/hopper/medium-v0 --seeds 0 1 2 --steps 4000

Writes ``benchmarks/results/regimes.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from agents.training import Trainer  # noqa: E402
from configs.schema import load_config  # noqa: E402
from envs.datasets import SAMPLE_DATASET_ID, load_dataset  # noqa: E402
from envs.rollout import evaluate_agent  # noqa: E402

REGIMES = {
    # equal training timesteps per step: 64 windows x 20 = 16 lanes x 80
    "window": ["train.regime=window"],
    "sequence": ["train.regime=sequence", "train.chunk_len=80"],
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=SAMPLE_DATASET_ID)
    parser.add_argument("--config", default=str(ROOT / "configs" / "hopper-medium.yaml"))
    parser.add_argument("--profile", default=str(ROOT / "configs" / "profiles" / "cpu.yaml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the profile's)")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--cells", nargs="+", default=["mingru"])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "regimes"))
    args = parser.parse_args(argv)

    dataset = load_dataset(args.dataset, download=False)
    rows = []
    for cell in args.cells:
        for regime, regime_overrides in REGIMES.items():
            for seed in args.seeds:
                overrides = [f"seed={seed}", f"dataset.id={args.dataset}", f"model.cell={cell}", "eval.every=0",
                             "eval.at_end=false", "train.checkpoint_every=1000000", *regime_overrides, *args.overrides]
                if args.steps:
                    overrides.append(f"train.steps={args.steps}")
                config = load_config([args.config, args.profile], overrides)
                run_dir = Path("/tmp") / "rl_minrnn_regimes" / f"{cell}-{regime}-{seed}-{int(time.time())}"
                trainer = Trainer(config, run_dir, progress=False, dataset=dataset, log=lambda *_: None)
                tick = time.perf_counter()
                trainer.run()
                train_s = time.perf_counter() - tick
                for mode in ("recurrent", "window"):
                    result = evaluate_agent(trainer.agent, dataset.env_id, args.episodes, config.eval.target_returns,
                                            seed=config.eval.seed, mode=mode, ref_scores=trainer.ref_scores,
                                            progress=False, num_threads=1)
                    best = max(result.targets, key=lambda t: t.summary()["normalized_score_mean"]).summary()
                    rows.append({"cell": cell, "regime": regime, "mode": mode, "seed": seed, "train_s": train_s,
                                 "score": best["normalized_score_mean"], "target": best["target_return"],
                                 "agent_ms_p50": best["agent_ms_p50"],
                                 "all_targets": [t.summary() for t in result.targets]})
                    print(f"{cell} {regime:8s} seed {seed} rollout {mode:9s}: score {best['normalized_score_mean']:6.1f} "
                          f"(target {best['target_return']:g}), train {train_s:.0f}s", flush=True)

    table = ["| cell | training regime | rollout mode | normalised score (mean ± std over seeds) | train s | agent ms/step |",
             "| --- | --- | --- | --- | --- | --- |"]
    for cell in args.cells:
        for regime in REGIMES:
            for mode in ("recurrent", "window"):
                sel = [r for r in rows if (r["cell"], r["regime"], r["mode"]) == (cell, regime, mode)]
                scores = np.array([r["score"] for r in sel])
                table.append(f"| {cell} | {regime} | {mode} | {scores.mean():.1f} ± {scores.std():.1f} | "
                             f"{np.mean([r['train_s'] for r in sel]):.0f} | {np.median([r['agent_ms_p50'] for r in sel]):.2f} |")
    markdown = "\n".join(table)
    print(markdown)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
            "dataset": args.dataset, "date": time.strftime("%Y-%m-%d"), "seeds": args.seeds, "episodes": args.episodes}
    out.with_suffix(".json").write_text(json.dumps({**meta, "runs": rows}, indent=1))
    out.with_suffix(".md").write_text(f"`python benchmarks/{meta['command']}` ({meta['date']})\n\n{markdown}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
