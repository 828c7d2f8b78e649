"""Training-step time and peak memory of minGRU/minLSTM stacks against their step loop, nn.GRU/nn.LSTM and a
causal 1-head Transformer.

One step = forward + backward + AdamW step on a 3-layer stack, width 128, batch 64, random inputs, loss
``mean(y ** 2)``. Variants (``--variants``, default all):

- ``{mingru,minlstm}-chunk1``: ``MinRNNStack(scan="chunked")`` with the default chunk size (1 on CPU: a plain
  loop with the analytic backward; about sqrt(T) on GPUs).
- ``{mingru,minlstm}-chunksqrt``: ``scan="chunked", chunk_size=ceil(sqrt(T))`` (the GPU default).
- ``{mingru,minlstm}-log``: ``scan="log"`` (Heinsen log-space scan).
- ``{mingru,minlstm}-loop``: the same stack run by ``stack.step(x_t, state)`` over the T steps, with autograd
  (what a naive training loop does).
- ``gru``, ``lstm``: ``nn.GRU`` / ``nn.LSTM(128, 128, num_layers=3, batch_first=True)`` (no MLP, no norms).
- ``transformer``: 3 pre-norm blocks of causal 1-head self-attention
  (``F.scaled_dot_product_attention(is_causal=True)``) + GELU MLP 4x, final LayerNorm -- the MinRNN blocks'
  layout with attention in place of the cell.

Before timing, every parallel variant's forward output is checked against the step loop of the same weights on
a short input, so a broken variant is never timed. Timing is round-robin over variants at each length, median
reported. Per-(variant, length) budget ``--max-seconds``: repeats stop once the time spent would exceed it
(entries measured fewer than ``--repeats`` times are marked), and a variant whose median at one length already
exceeded it is skipped at the longer lengths ("skipped (over budget)").

Peak memory (``--memory``), measured on each model's first step at each length (its warm-up): CPU -- growth of
the resident set's high-water mark during the step (``malloc_trim``, ``clear_refs`` reset, ``VmHWM`` minus RSS
before; see ``benchmarks/common.py``), so it counts activations, gradients, AdamW state and temporaries;
``--memory subprocess`` repeats it in a fresh process per (variant, length) after a short warm-up step;
CUDA -- ``torch.cuda.max_memory_allocated`` growth during the step.

    python -m benchmarks.scan_speed                      # CPU, all variants, T = 60 300 1500 6000
    python -m benchmarks.scan_speed --device cuda
    python -m benchmarks.scan_speed --lengths 60 300 --variants mingru-chunk1 mingru-loop transformer
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]

from benchmarks.common import (
    MB, available_memory_bytes, cuda_peak_memory, fmt, machine_info, markdown_table, resolve_device, rss_peak_during,
    run_json_subprocess, time_interleaved, write_json,
)
from rl_minrnn import MinRNNStack

CELLS = ("mingru", "minlstm")
MINRNN_KINDS = ("chunk1", "chunksqrt", "log", "loop")
VARIANTS = tuple(f"{c}-{k}" for c in CELLS for k in MINRNN_KINDS) + ("gru", "lstm", "transformer")
PARALLEL_KINDS = ("chunk1", "chunksqrt", "log")


# ------------------------------------------------------------------------------------------------ models

class CausalAttentionBlock(nn.Module):
    """Pre-norm residual causal 1-head self-attention, then pre-norm residual GELU MLP."""

    def __init__(self, dim: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm_attn = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm_mlp = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(self.norm_attn(x)).unsqueeze(1).chunk(3, dim=-1)  # (B, 1 head, T, dim) each
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).squeeze(1)
        x = x + self.proj(y)
        return x + self.mlp(self.norm_mlp(x))


class CausalTransformer(nn.Module):
    def __init__(self, dim: int, depth: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.blocks = nn.ModuleList(CausalAttentionBlock(dim, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


def step_loop(stack: MinRNNStack, x: torch.Tensor) -> torch.Tensor:
    """The stack run one token at a time through ``stack.step`` (autograd through the loop)."""
    state, ys = None, []
    for x_t in x.unbind(1):
        y_t, state = stack.step(x_t, state)
        ys.append(y_t)
    return torch.stack(ys, dim=1)


def build(variant: str, length: int, dim: int, depth: int, device: torch.device) -> tuple[nn.Module, Callable]:
    """A module for ``variant`` (seeded) and a function ``x (B, T, dim) -> y (B, T, dim)`` running it."""
    torch.manual_seed(0)
    if variant in ("gru", "lstm"):
        rnn = (nn.GRU if variant == "gru" else nn.LSTM)(dim, dim, num_layers=depth, batch_first=True).to(device)
        return rnn, lambda x: rnn(x)[0]
    if variant == "transformer":
        model = CausalTransformer(dim, depth).to(device)
        return model, model
    cell, kind = variant.split("-")
    if kind == "log":
        stack = MinRNNStack(dim, depth=depth, cell=cell, scan="log")
    elif kind == "chunksqrt":
        stack = MinRNNStack(dim, depth=depth, cell=cell, scan="chunked", chunk_size=math.ceil(math.sqrt(length)))
    else:  # chunk1 (the default chunk size) and loop
        stack = MinRNNStack(dim, depth=depth, cell=cell, scan="chunked")
    stack = stack.to(device)
    if kind == "loop":
        return stack, lambda x: step_loop(stack, x)
    return stack, lambda x: stack(x)[0]


def make_train_step(variant: str, length: int, batch: int, dim: int, depth: int, device: torch.device):
    """A closure running one forward + backward + AdamW step on a fixed random batch."""
    module, fn = build(variant, length, dim, depth, device)
    opt = torch.optim.AdamW(module.parameters(), lr=1e-4, weight_decay=1e-4)
    gen = torch.Generator(device="cpu").manual_seed(1)
    x = torch.randn(batch, length, dim, generator=gen).to(device)

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss = fn(x).pow(2).mean()
        loss.backward()
        opt.step()

    return train_step


# ---------------------------------------------------------------------------------------------- checking

def check_parallel_matches_loop(variants, dim: int, depth: int, device: torch.device, length: int = 37, batch: int = 4):
    """Assert every parallel minRNN variant's forward equals the step loop of the same weights (float32, short
    input; at length 37 the sqrt chunk size is 7, so the chunked path runs 5 chunks and a remainder of 2)."""
    checked = []
    for variant in variants:
        cell, _, kind = variant.partition("-")
        if kind not in PARALLEL_KINDS:
            continue
        module, fn = build(variant, length, dim, depth, device)
        x = torch.randn(batch, length, dim, generator=torch.Generator().manual_seed(2)).to(device)
        with torch.no_grad():
            y_par, y_loop = fn(x), step_loop(module, x)
        torch.testing.assert_close(y_par, y_loop, rtol=1e-4, atol=1e-4,
                                   msg=lambda m: f"{variant} disagrees with its step loop: {m}")
        checked.append(variant)
    return checked


# ----------------------------------------------------------------------------------------------- memory

def memory_child(args) -> None:
    """Entry point of the fresh process measuring one (variant, length) on CPU; prints one JSON line."""
    import json
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    warm = make_train_step(args.variants[0], min(8, args.lengths[0]), args.batch, args.dim, args.depth, device)
    warm()  # lazy initialisation (kernels, thread pools) outside the measurement
    del warm
    step = make_train_step(args.variants[0], args.lengths[0], args.batch, args.dim, args.depth, device)
    res = rss_peak_during(step)
    print(json.dumps(res))


def measure_memory_inprocess(step, device: torch.device) -> dict:
    """Peak memory growth of one call of ``step`` in this process (CPU: resident set; CUDA: allocator)."""
    if device.type == "cuda":
        return cuda_peak_memory(step, device)
    return rss_peak_during(step)


def measure_memory_subprocess(variant: str, length: int, args) -> dict:
    """CPU, stricter and slower: a fresh process builds the model, runs a short warm-up step, then measures one step."""
    child = [str(Path(__file__).resolve()), "--_memory-child", "--variants", variant, "--lengths", str(length),
             "--batch", str(args.batch), "--dim", str(args.dim), "--depth", str(args.depth), "--threads", str(args.threads)]
    res = run_json_subprocess(child, env={"OMP_NUM_THREADS": str(args.threads)})
    res["method"] = "fresh process: " + res["method"]
    return res


# ------------------------------------------------------------------------------------------------- table

def reference_for(variant: str) -> str | None:
    """The step loop a variant's 'vs step loop' ratio is taken against (same cell; nn.GRU -> minGRU's, nn.LSTM -> minLSTM's)."""
    if variant.startswith(("mingru", "minlstm")):
        return variant.split("-")[0] + "-loop"
    return {"gru": "mingru-loop", "lstm": "minlstm-loop"}.get(variant)


def build_table(results: list[dict], device: torch.device, args) -> str:
    threads, memory = args.threads, args.memory
    by_key = {(r["variant"], r["length"]): r for r in results}

    def median(variant, length):
        r = by_key.get((variant, length))
        return r.get("median_ms") if r else None

    mem_what = ("peak MB: max_memory_allocated growth during the first step" if device.type == "cuda"
                else "peak MB: RSS high-water growth during one step" + (", fresh process" if memory == "subprocess" else " (first step)"))
    headers = ["variant", "T", "ms / step (median)", "n", mem_what, "vs Transformer", "vs step loop"]
    rows = []
    for r in results:
        v, t = r["variant"], r["length"]
        if r.get("status") != "ok":
            rows.append([v, t, r.get("status"), "", "", "", ""])
            continue
        ms = r["median_ms"]
        tr, loop = median("transformer", t), median(reference_for(v) or "", t)
        n = "1 (warm-up)" if r.get("warmup_only") else f"{r['n']}" + ("*" if r.get("budget_limited") else "")
        rows.append([
            v, t, fmt(ms, 1), n, fmt(r.get("peak_mb"), 1),
            "-" if tr is None or v == "transformer" else f"{ms / tr:.2f}x",
            "-" if loop is None or v == reference_for(v) or reference_for(v) is None else f"{ms / loop:.2f}x",
        ])
    note = (f"One training step (forward + backward + AdamW), {args.depth} layers, width {args.dim}, batch {args.batch}, {device.type}, "
            f"{threads} torch thread(s). Ratios are time / reference time at the same T (< 1 = faster). "
            "'vs step loop': against the same cell's `stack.step` loop (nn.GRU -> minGRU loop, nn.LSTM -> minLSTM loop). "
            "n = timed repeats (* = cut by --max-seconds; '1 (warm-up)' = the first step was over budget and is the only "
            "measurement). nn.GRU/nn.LSTM rows have no MLP or norms; the others have "
            "a GELU MLP 4x per layer.")
    return note + "\n\n" + markdown_table(headers, rows)


# -------------------------------------------------------------------------------------------------- main

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu, cuda, or auto (default cpu)")
    p.add_argument("--lengths", type=int, nargs="+", default=[60, 300, 1500, 6000])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS, metavar="VARIANT",
                   help=f"any of {' '.join(VARIANTS)} (default all)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per (variant, T) after one warm-up")
    p.add_argument("--max-seconds", type=float, default=25.0,
                   help="time budget per (variant, T); also skip longer T once a median exceeded it (default 25)")
    p.add_argument("--max-memory-gb", type=float, default=None,
                   help="skip a (variant, T) whose predicted peak memory exceeds this (default: half the memory "
                        "available at start)")
    p.add_argument("--memory", choices=("inprocess", "subprocess", "none"), default="inprocess",
                   help="peak memory: measured on each model's first (warm-up) step in this process (default), "
                        "or on CPU in a fresh process per (variant, T) (stricter, one more step each), or not at all")
    p.add_argument("--out", default=None, help="output stem (default benchmarks/results/scan-<device>)")
    p.add_argument("--_memory-child", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def write_outputs(args, device, variants, lengths, checked, results, started, max_mb, final):
    """Write the JSON and Markdown (after every length too, so an interrupted run keeps what it measured)."""
    results = sorted(results, key=lambda r: (variants.index(r["variant"]), r["length"]))
    table = build_table(results, device, args)
    if final:
        print(table)
    stem = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"scan-{device.type}"
    info = machine_info(device)
    info["torch_threads"] = torch.get_num_threads()
    write_json(stem.with_suffix(".json"), {
        "benchmark": "scan", "complete": final, "machine": info,
        "config": {"lengths": lengths, "variants": variants, "batch": args.batch, "dim": args.dim, "depth": args.depth,
                   "threads": args.threads, "repeats": args.repeats, "max_seconds": args.max_seconds,
                   "max_memory_mb": max_mb, "memory": args.memory,
                   "step": "forward + backward + AdamW(lr 1e-4, wd 1e-4), loss mean(y^2)",
                   "checked_against_step_loop": checked},
        "wall_seconds": time.perf_counter() - started,
        "results": results,
    })
    md = stem.with_suffix(".md")
    md.write_text(f"# benchmarks/scan_speed.py on {device.type}\n\n`{info['command']}`\n\n{info['cpu_model']}, "
                  f"{info['usable_cores']} cores, torch {info['torch']}, {info['date']}"
                  + (f", {info['gpu']}" if "gpu" in info else "") + ("" if final else " (incomplete run)")
                  + "\n\n" + table + "\n")
    return stem


def main(argv=None):
    args = parse_args(argv)
    if args._memory_child:
        return memory_child(args)
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    lengths = sorted(set(args.lengths))
    variants = [v for v in VARIANTS if v in args.variants]
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731

    checked = check_parallel_matches_loop(variants, args.dim, args.depth, device)
    log(f"forward of {checked} matches the step loop")

    avail = available_memory_bytes(device)
    max_mb = args.max_memory_gb * 1024 if args.max_memory_gb else (0.5 * avail / MB if avail else math.inf)
    log(f"memory guard: skip a (variant, T) whose predicted peak (linear in T from the previous T) exceeds {max_mb:.0f} MB")
    results, over_budget, last_peak = [], set(), {}
    started = time.perf_counter()
    for li, length in enumerate(lengths):
        active = []
        for v in variants:
            predicted = last_peak[v] * length / lengths[li - 1] if v in last_peak else 0.0
            if v in over_budget:
                results.append({"variant": v, "length": length, "status": "skipped (over budget)"})
            elif predicted > max_mb:
                results.append({"variant": v, "length": length, "status": f"skipped (memory: ~{predicted / 1024:.1f} GB predicted)",
                                "predicted_peak_mb": predicted})
                over_budget.add(v)
            else:
                active.append(v)
        log(f"T={length}: timing {active}")
        steps = {v: make_train_step(v, length, args.batch, args.dim, args.depth, device) for v in active}
        memory, prior = {}, {}
        if args.memory == "inprocess" or (args.memory != "none" and device.type == "cuda"):
            for v in active:  # the first step of each model is the warm-up, measured for memory
                memory[v] = measure_memory_inprocess(steps[v], device)
                prior[v] = [memory[v]["seconds"]]
                log(f"  warm-up {v}: {prior[v][0] * 1e3:.1f} ms, {memory[v]['peak_bytes'] / MB:.1f} MB")
        timed = time_interleaved(steps, device, repeats=args.repeats, warmup=0 if prior else 1,
                                 max_seconds=args.max_seconds, log=log, prior_warmup_s=prior)
        del steps
        for v in active:
            t = timed[v]
            entry = {"variant": v, "length": length, "status": "ok",
                     "median_ms": t["median_s"] * 1e3, "min_ms": t["min_s"] * 1e3, "n": t["n"],
                     "times_ms": [s * 1e3 for s in t["times_s"]], "warmup_ms": [s * 1e3 for s in t["warmup_s"]],
                     "warmup_only": t["warmup_only"], "budget_limited": t["budget_limited"] or t["n"] < args.repeats}
            if args.memory == "subprocess" and device.type == "cpu":
                memory[v] = measure_memory_subprocess(v, length, args)
            if v in memory:
                entry["peak_mb"], entry["memory_method"] = memory[v]["peak_bytes"] / MB, memory[v]["method"]
                last_peak[v] = entry["peak_mb"]
            if t["median_s"] > args.max_seconds:
                over_budget.add(v)
            results.append(entry)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        write_outputs(args, device, variants, lengths, checked, results, started, max_mb, final=False)
    stem = write_outputs(args, device, variants, lengths, checked, results, started, max_mb, final=True)
    log(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.md')}")


if __name__ == "__main__":
    main()
