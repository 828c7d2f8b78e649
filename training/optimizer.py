"""AdamW with GPT's weight-decay groups, and the learning-rate schedule: a linear warm-up, then constant
(DT's gym code, CORL) or decaying to ``lr * lr_final`` at the last step (cosine, as d3rlpy's
``CosineAnnealingLRFactory`` and minGPT's decay; or linear).

Why a decay is offered: with a constant lr the policy keeps moving as much at the last step as in the
middle of training, so the checkpoint a run ends with is one draw among the policies it wanders through; a
decay to the end shrinks the last steps' moves. The default is the cosine decay together with the weight
average (``training/averaging.py``): of the variants measured it moved least late in training (BENCHMARKS.md,
"Steady final policies").

Weight decay pulls a parameter towards zero. That is a prior on the weight matrices of Linear (and conv)
layers, but not on what sets an offset or a scale: a bias, a LayerNorm gain (decayed towards 0 instead
of its identity 1) or an embedding row that a rare timestep only updates now and then (and decay shrinks
at every step). minGPT (and the Decision Transformer's Atari code, built on it) and d3rlpy's
``GPTAdamWFactory`` therefore decay only the weights of Linear/conv layers (``matrices``); CORL and the
Decision Transformer's gym code decay everything (``all``). Measured within noise of each other here.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rl_minrnn.ranges import Number, OneOf

DECAYED_MODULES = (nn.Linear, nn.Conv1d)
WEIGHT_DECAY_ON = ("matrices", "all")
LR_SCHEDULES = ("constant", "cosine", "linear")
FUSED_ADAMW_DEVICES = ("cpu", "cuda")  # where torch's fused AdamW runs (``build_optimizer``)
# the allowed values of the ``train`` keys this module reads (``training.options`` gathers them)
OPTIMIZER_OPTIONS = {
    "lr": Number(0, 1e6, low_open=True),
    "weight_decay": Number(0, 1e3),
    "weight_decay_on": OneOf(WEIGHT_DECAY_ON),
    "warmup_steps": Number(0, 10**12, integer=True),
    "grad_clip": Number(0, 1e9, why="0: no clipping"),
    "lr_schedule": OneOf(LR_SCHEDULES),
    "lr_final": Number(0, 1),
}


def parameter_groups(model: nn.Module, weight_decay: float, decay_on: str = "matrices") -> list[dict]:
    """AdamW parameter groups: ``matrices`` decays Linear/conv weights only, ``all`` every parameter."""
    if decay_on == "all":
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    if decay_on not in WEIGHT_DECAY_ON:
        raise ValueError(f"decay_on must be one of {', '.join(WEIGHT_DECAY_ON)}, got {decay_on!r}")
    decay, no_decay = [], []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if param.requires_grad:
                (decay if name == "weight" and isinstance(module, DECAYED_MODULES) else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, train) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over ``parameter_groups`` and a linear warm-up to ``train.lr`` over ``train.warmup_steps``.

    ``fused``: torch's fused AdamW kernel, one pass over each parameter for the whole update, where the
    parameters' device has one (CPU and CUDA); elsewhere ``foreach`` (each operation over all parameters
    in one call). At the cpu profile the fused update took about 0.25 ms against foreach's 0.8 (profiled; the
    step's gain is in BENCHMARKS.md, "One run on both cores"); it rounds some elements differently from the per-parameter
    loop, by an ulp (``tests/test_agents.py``), so runs differ from foreach's in the last bits, not in
    distribution (the ablation suite, rerun on it). A checkpoint keeps the kernel it was trained with: a
    run resumed from one saved with foreach continues with foreach, to the bit."""
    groups = parameter_groups(model, train.weight_decay, train.weight_decay_on)
    devices = {p.device.type for group in groups for p in group["params"]}
    fused = bool(devices) and devices <= set(FUSED_ADAMW_DEVICES)
    optimizer = torch.optim.AdamW(groups, lr=train.lr, fused=fused or None, foreach=None if fused else True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(train))
    return optimizer, scheduler


def lr_factor(train):
    """``step -> lr / train.lr`` after ``step`` updates: linear warm-up over ``warmup_steps``, then
    ``lr_schedule`` from 1 at the warm-up's end to ``lr_final`` at ``train.steps`` (held there after it)."""
    if train.lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {train.lr_schedule!r}")
    warmup, steps, schedule, final = max(1, train.warmup_steps), train.steps, train.lr_schedule, train.lr_final

    def factor(step: int) -> float:
        if step + 1 < warmup or schedule == "constant":
            return min(1.0, (step + 1) / warmup)
        progress = min(1.0, (step + 1 - warmup) / max(1, steps - warmup))
        shape = 0.5 * (1.0 + math.cos(math.pi * progress)) if schedule == "cosine" else 1.0 - progress
        return final + (1.0 - final) * shape

    return factor
