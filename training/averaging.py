"""An exponential moving average of the weights: the policy a run evaluates, saves and exports.

Why: offline RL has no online evaluation to choose a checkpoint with, so the policy a user ends with is
the last one, and with a constant learning rate the raw weights wander from one evaluation to the next
(BENCHMARKS.md, "Steady final policies"). The average over the last ~1/(1 - decay) steps moves far less.
The raw weights keep training; the average only reads them.

It is ``torch.optim.swa_utils.AveragedModel`` (a copy of the agent, buffers included, updated in place
with ``torch._foreach_lerp_``) with one change to its EMA: the decay ramps up as
``min(decay, (1 + n) / (ramp + n))`` after ``n`` updates (``train.ema_ramp``; 10 is timm's and TensorFlow's
``num_updates`` rule), so the randomly initialised weights of the first steps do not linger in a short run's
average (at a fixed 0.999 they would still weigh 30% after 1200 steps).

The ramp, not the decay, sets the window of a short run: until the decay caps it (at 0.999 after about
``1000 * (ramp - 1)`` updates) the weight of step ``k`` in the average after ``n`` steps falls as about
``(k / n) ** (ramp - 2)`` and the weights' mean age is ``n / ramp``: ramp 10 averages about the last tenth
of the run (300 steps of the cpu protocol's 3000, where 0.999 alone would mean 1000), ramp 4 its last
quarter, and ramp 2 weighs every step alike (the plain average of all the weights, SWA's).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from rl_minrnn.ranges import Number

# ``train.ema``
EMA_OPTION = Number(0, 1, high_open=True, why="0: no average; 0.999 averages over about the last 1000 steps")
# ``train.ema_ramp``: at or below 1 the first decays would be 1 or more and the average would never move
EMA_RAMP_OPTION = Number(1, 10**9, low_open=True, why="the decay after n updates is min(ema, (1 + n) / (ema_ramp + n))")


def ramped_ema(decay: float, ramp: float = 10.0):
    """AveragedModel's ``multi_avg_fn`` for an EMA whose decay ramps up to ``decay`` as
    ``(1 + n) / (ramp + n)``."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        n = float(num_averaged)
        weight = 1.0 - min(decay, (1.0 + n) / (ramp + n))
        if torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(averaged, current, weight)
        else:  # integer buffers (none today) follow the weights as they are
            for a, c in zip(averaged, current, strict=True):
                a.copy_(c)

    return update


class WeightAverage:
    """``update()`` after every optimiser step; ``module`` is the averaged agent (eval mode).

    ``update`` is ``AveragedModel.update_parameters`` with the tensor lists built once: that method walks
    both modules' parameters and buffers and regroups them by device and dtype at every call, about 1 ms
    of the cpu profile's ~22 ms step (a cProfile of 50 steps), against about 0.13 ms for the lerps themselves. The same
    operations on the same tensors, so the same average to the bit (``tests/test_training.py``). The lists
    hold the parameter and buffer objects, which the optimiser, ``load_state_dict`` and ``share_memory_``
    update in place; a module whose tensors are replaced by new objects (``agent.to(...)`` after this was
    built) needs a new ``WeightAverage``."""

    def __init__(self, agent: nn.Module, decay: float, ramp: float = 10.0):
        self.agent, self.decay, self.ramp = agent, float(decay), float(ramp)
        self.averaged = AveragedModel(agent, multi_avg_fn=ramped_ema(self.decay, self.ramp), use_buffers=True)
        self.module.eval()
        self.module.requires_grad_(False)
        self._groups: list[tuple[list[torch.Tensor], list[torch.Tensor]]] | None = None

    @property
    def module(self) -> nn.Module:
        return self.averaged.module

    def _tensor_groups(self) -> list[tuple[list[torch.Tensor], list[torch.Tensor]]]:
        """(averaged, current) tensor lists, one pair per (device, dtype), as ``AveragedModel`` groups them."""
        averaged = [*self.module.parameters(), *self.module.buffers()]
        current = [*self.agent.parameters(), *self.agent.buffers()]
        if len(averaged) != len(current):
            raise RuntimeError("the averaged agent and the agent no longer have the same parameters and buffers")
        groups: dict = {}
        for a, c in zip(averaged, current):
            pair = groups.setdefault((a.device, a.dtype), ([], []))
            pair[0].append(a)
            pair[1].append(c)
        return list(groups.values())

    @torch.no_grad()
    def update(self) -> None:
        if self._groups is None or int(self.averaged.n_averaged) == 0:
            self.averaged.update_parameters(self.agent)  # the first update copies the weights
            self._groups = self._tensor_groups()
            return
        for averaged, current in self._groups:
            self.averaged.multi_avg_fn(averaged, current, self.averaged.n_averaged)
        self.averaged.n_averaged += 1

    def state_dict(self) -> dict:
        return {"num_averaged": int(self.averaged.n_averaged), "decay": self.decay}

    def load_state_dict(self, state: dict, weights: dict) -> None:
        """The averaged agent's ``weights`` (a checkpoint's ``model``) and the count of updates behind it."""
        self.module.load_state_dict(weights)
        self.averaged.n_averaged.fill_(int(state["num_averaged"]))
