#!/usr/bin/env python
"""Training speed: timesteps per second and achieved GFLOP/s of one training step, per agent, token layout
and context length K, against the machine's measured float32 matrix-multiply rate.

One training step = the step training runs (``rl_minrnn.training.step.TrainingStep``: forward, masked action
loss, backward, gradient clipping, AdamW with its weight-decay groups and warm-up), on random data of
Hopper shapes (11-d states, 3-d actions), windows of K steps, batch ``min(--batch, --max-timesteps // K)``
(64 at K = 20, fewer at long K), model width/depth as given (default 128 x 3, the paper's). The Decision-RNN
is timed on the same (B, K) windows as DT (its ``sequence`` training regime runs chunks of the same shape).

FLOPs per step: ``torch.utils.flop_counter.FlopCounterMode`` over one forward+backward (it counts matrix
multiplies: mm/addmm/bmm, forward and backward); DT's attention (``scaled_dot_product_attention``, not
counted by FlopCounterMode on CPU) is added analytically: 4·B·L²·d per layer forward (QKᵀ and AV, full
square, as FlopCounterMode counts it on GPU), 2x that backward. Elementwise work (the minRNN scan, gates,
norms, activations, AdamW) is not counted, so achieved GFLOP/s is "useful matmul work per second"; the
recurrent models' elementwise scan makes their figure lower for the same wall time.

The matmul rate: median time of an N x N float32 ``torch.mm`` (N = --matmul-size) with the same thread count.

Variants of one K are timed round-robin (``benchmarks.common.time_interleaved``), medians reported; a variant
whose warm-up alone exceeds ``--max-seconds`` is measured once and marked; one whose estimated activation
memory exceeds ``--max-gb`` is skipped and recorded.

    python -m benchmarks.train_speed                      # full: 3 agents x 2 layouts x K in 20 200 1000
    python -m benchmarks.train_speed --contexts 20 --repeats 3

Writes ``benchmarks/results/train_speed.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from rl_minrnn.threads import passive_openmp  # noqa: E402  (before torch loads OpenMP)

passive_openmp()
ROOT = Path(__file__).resolve().parents[1]

import torch
from torch.utils.flop_counter import FlopCounterMode

from rl_minrnn.agents.embeddings import TOKENS_PER_STEP
from rl_minrnn.agents.factory import AGENTS as AGENT_KINDS, build_agent
from rl_minrnn.cells import CELL_SCANS
from rl_minrnn.configs.schema import ModelConfig, TrainConfig
from rl_minrnn.training.step import TrainingStep
from benchmarks.common import write_results, fmt, machine_info, markdown_table, resolve_device, time_interleaved

OBS_DIM, ACT_DIM = 11, 3
AGENTS = {
    "mingru": {"kind": "decision_rnn", "cell": "mingru"},
    "minlstm": {"kind": "decision_rnn", "cell": "minlstm"},
    "dt": {"kind": "decision_transformer", "cell": "mingru"},
}
NAMES = {"mingru": "Decision-minGRU", "minlstm": "Decision-minLSTM", "dt": "Decision Transformer"}


def model_config(agent: str, tokens: str, context: int, width: int, depth: int) -> dict:
    """The model defaults (``ModelConfig``) with this variant's agent, size and tokens, as a dict."""
    return dataclasses.asdict(ModelConfig(**AGENTS[agent], width=width, depth=depth, context=context, tokens=tokens))


def random_batch(batch: int, context: int, device, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "states": torch.randn(batch, context, OBS_DIM, generator=g).to(device),
        "actions": torch.rand(batch, context, ACT_DIM, generator=g).mul(2).sub(1).to(device),
        "returns_to_go": torch.rand(batch, context, generator=g).mul(3.6).to(device),
        "timesteps": torch.randint(0, 1000, (batch, context), generator=g).to(device),
        "mask": torch.ones(batch, context).to(device),
    }


def make_step(agent, batch: dict):
    """The training step a run takes, with the config's optimiser settings (``TrainConfig`` defaults)."""
    step = TrainingStep(agent, TrainConfig())
    return lambda: step(batch)


def count_flops(agent, batch: dict, cfg: dict) -> dict:
    """Matmul FLOPs of one forward+backward (FlopCounterMode) plus DT's attention, analytically."""
    with FlopCounterMode(display=False) as counter:
        preds, _ = agent(batch["states"], batch["actions"], batch["returns_to_go"], batch["timesteps"])
        preds.square().mean().backward()
    agent.zero_grad(set_to_none=True)
    counted = int(counter.get_total_flops())
    attention = 0
    if AGENT_KINDS[cfg["kind"]].self_attention:
        b, k = batch["states"].shape[:2]
        length = k * TOKENS_PER_STEP[cfg["tokens"]]
        attention = 3 * 4 * b * length * length * cfg["width"] * cfg["depth"]
    return {"matmul_flops_counted": counted, "attention_flops_analytic": attention, "flops_per_step": counted + attention}


def estimate_gb(cfg: dict, batch: int, context: int) -> float:
    """Rough activation memory of a training step (GB): tokens x width x 40 floats per layer, plus DT's
    L x L attention (the CPU kernels may materialise it) x 3 copies."""
    length = context * TOKENS_PER_STEP[cfg["tokens"]]
    act = batch * length * cfg["width"] * 40 * cfg["depth"] * 4
    if AGENT_KINDS[cfg["kind"]].self_attention:
        act += 3 * batch * cfg["heads"] * length * length * cfg["depth"] * 4
    return act / 1e9


def matmul_rate(size: int, device, repeats: int = 5) -> dict:
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    res = time_interleaved({"mm": lambda: torch.mm(a, b)}, device, repeats=repeats, warmup=1)["mm"]
    return {"size": size, "median_s": res["median_s"], "gflops": 2 * size ** 3 / res["median_s"] / 1e9,
            "times_s": res["times_s"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", nargs="+", choices=sorted(AGENTS), default=["mingru", "minlstm", "dt"])
    parser.add_argument("--tokens", nargs="+", choices=sorted(TOKENS_PER_STEP), default=["interleaved", "fused"])
    parser.add_argument("--contexts", type=int, nargs="+", default=[20, 200, 1000])
    parser.add_argument("--scans", nargs="+", choices=CELL_SCANS, default=["fused"],
                        help="the recurrent agents' cell scans to time (rl_minrnn.cells.CELL_SCANS; default: the cells' "
                             "default, the fused kernel); e.g. --scans fused chunked times both in the same rounds")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--max-timesteps", type=int, default=2560, help="batch = min(--batch, this // K)")
    parser.add_argument("--width", type=int, default=ModelConfig.width, help="default: the config's")
    parser.add_argument("--depth", type=int, default=ModelConfig.depth, help="default: the config's")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--max-seconds", type=float, default=60.0, help="time budget per variant (warm-up included)")
    parser.add_argument("--max-gb", type=float, default=8.0, help="skip variants estimated to need more memory")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--matmul-size", type=int, default=1024)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "train_speed"))
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    log = lambda s: print(s, flush=True)  # noqa: E731
    mm = matmul_rate(args.matmul_size, device)
    log(f"matmul {args.matmul_size}x{args.matmul_size} float32, {args.threads} thread(s): {mm['gflops']:.1f} GFLOP/s")

    rows, records = [], []
    for k in args.contexts:
        batch_size = max(1, min(args.batch, args.max_timesteps // k))
        batch = random_batch(batch_size, k, device)
        fns, info = {}, {}
        for tokens in args.tokens:
            for name, scan in [(n, sc) for n in args.agents for sc in (args.scans if n != "dt" else [None])]:
                key = f"{name}/{tokens}" + (f"/{scan}" if scan and len(args.scans) > 1 else "")
                cfg = model_config(name, tokens, k, args.width, args.depth)
                rec = {"agent": name, "scan": scan, "tokens": tokens, "context": k, "batch": batch_size,
                       "tokens_per_sequence": k * TOKENS_PER_STEP[tokens], "estimated_gb": estimate_gb(cfg, batch_size, k)}
                if device.type == "cpu" and rec["estimated_gb"] > args.max_gb:
                    rec["skipped"] = f"estimated {rec['estimated_gb']:.1f} GB > --max-gb {args.max_gb}"
                    records.append(rec)
                    log(f"K={k} {key}: skipped ({rec['skipped']})")
                    continue
                torch.manual_seed(0)
                agent = build_agent(cfg, OBS_DIM, ACT_DIM).to(device)
                if scan is not None:
                    agent.stack.set_scan(scan)
                rec["parameters"] = sum(p.numel() for p in agent.parameters())
                rec.update(count_flops(agent, batch, cfg))
                fns[key] = make_step(agent, batch)
                info[key] = rec
        log(f"K={k}, batch {batch_size}: timing {', '.join(fns)}")
        timed = time_interleaved(fns, device, repeats=args.repeats, warmup=args.warmup,
                                 max_seconds=args.max_seconds, log=log)
        for key, rec in info.items():
            t = timed[key]
            rec.update(median_s=t["median_s"], min_s=t["min_s"], times_s=t["times_s"], n=t["n"],
                       budget_limited=t["budget_limited"], warmup_only=t["warmup_only"],
                       timesteps_per_s=batch_size * k / t["median_s"],
                       gflops_per_s=rec["flops_per_step"] / t["median_s"] / 1e9)
            rec["fraction_of_matmul"] = rec["gflops_per_s"] / mm["gflops"]
            records.append(rec)
    def label(rec: dict) -> str:
        return NAMES[rec["agent"]] + (f" ({rec['scan']} scan)" if rec.get("scan") and len(args.scans) > 1 else "")

    for rec in records:
        dt = next((r for r in records if r["agent"] == "dt" and r["tokens"] == rec["tokens"]
                   and r["context"] == rec["context"] and "median_s" in r), None)
        if "median_s" in rec and dt is not None:
            rec["speedup_vs_dt"] = dt["median_s"] / rec["median_s"]
        if "skipped" in rec:
            rows.append([label(rec), rec["tokens"], rec["context"], rec["batch"], "skipped: " + rec["skipped"],
                         "", "", "", "", ""])
            continue
        note = " (1 run)" if rec["warmup_only"] else (f" (n={rec['n']})" if rec["budget_limited"] else "")
        rows.append([label(rec), rec["tokens"], rec["context"], rec["batch"],
                     fmt(rec["median_s"] * 1e3, 1) + note, fmt(rec["timesteps_per_s"], 0),
                     fmt(rec["flops_per_step"] / 1e9, 2), fmt(rec["gflops_per_s"], 1),
                     fmt(100 * rec["fraction_of_matmul"], 0, "%"), fmt(rec.get("speedup_vs_dt"), 2, "x")])
    rows.sort(key=lambda r: (r[2], r[1], r[0]))
    machine = machine_info(device)
    table = markdown_table(["agent", "tokens", "K", "batch", "ms/step (median)", "timesteps/s", "GFLOP/step",
                            "GFLOP/s", "of matmul", "speed vs DT"], rows)
    markdown = (f"Training step (forward + backward + AdamW), width {args.width}, depth {args.depth}, "
                f"{args.threads} thread(s), device {device}; median of up to {args.repeats} interleaved runs.\n"
                f"Matmul rate ({args.matmul_size}² float32 mm, same threads): {mm['gflops']:.1f} GFLOP/s. FLOPs: "
                "FlopCounterMode matmuls + DT attention analytically; elementwise work not counted.\n\n"
                f"Machine: {machine['cpu_model']}, {machine['usable_cores']} cores, torch {machine['torch']}; "
                f"date {machine['date']}.\n\nCommand: `{machine['command']}`\n\n{table}\n")
    write_results(args.out, markdown, {"machine": machine, "args": vars(args), "matmul": mm, "results": records})
    return 0


if __name__ == "__main__":
    sys.exit(main())
