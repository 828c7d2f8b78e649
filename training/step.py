"""One optimisation step, the one training runs and the speed benchmarks time: forward, masked action
loss, backward, gradient clipping, the non-finite check, the update, and the weight average's update (``train.ema``).

It knows nothing of run folders, samplers or checkpoints (``Trainer`` does), so ``benchmarks/train_speed.py``
builds it from an agent and the ``train`` config and times exactly what a run does.
"""

from __future__ import annotations

import torch

from .averaging import WeightAverage
from .loss import loss_denominator, masked_action_loss
from .data_parallel import BatchSplitter
from .optimizer import build_optimizer


class NonFiniteStep(ArithmeticError):
    """The loss or the gradient norm is not finite; the weights were left as they were."""

    def __init__(self, loss: float, grad_norm: float):
        super().__init__(f"loss {loss:g}, gradient norm {grad_norm:g}")
        self.loss, self.grad_norm = loss, grad_norm


class TrainingStep:
    """``step(batch, state) -> (stats, new_state)`` on a batch of tensors (the samplers' keys)."""

    def __init__(self, agent, train, model=None, model_config=None, processes: int | None = None):
        """``model``: what the forward calls (``torch.compile(agent)`` or the agent itself); ``train``: the
        ``train`` config (lr, its schedule, weight decay and its groups, ``grad_clip``, ``ema`` and ``ema_ramp``, ``processes``).
        ``average``: the ``WeightAverage`` of the agent when ``train.ema`` > 0, else None. ``model_config``: the
        ``model`` config the agent was built from, which helper processes (``train.processes`` > 1) build theirs
        from; ``close()`` stops them. ``processes``: how many share each batch, resolved by the caller
        (``resources.data_parallel_processes``); default ``train.processes``, its auto (0) taken as 1."""
        self.agent, self.model = agent, model if model is not None else agent
        processes = processes if processes is not None else max(1, train.processes)
        if processes > 1 and model_config is None:
            raise ValueError("train.processes > 1 needs the model config the agent was built from (model_config=)")
        self.splitter = BatchSplitter(agent, model_config, processes) if processes > 1 else None
        self.optimizer, self.scheduler = build_optimizer(agent, train)
        self.average = WeightAverage(agent, train.ema, train.ema_ramp) if train.ema > 0 else None
        self.grad_clip = train.grad_clip or float("inf")
        self.parameters = [p for p in agent.parameters() if p.requires_grad]

    def __call__(self, batch: dict, state=None):
        device = batch["states"].device
        self.agent.train()
        timesteps = batch["mask"].sum().detach()
        denominator = loss_denominator(batch["actions"], batch["mask"])
        if self.splitter is not None:  # the helpers start on their rows; these are the leader's
            batch = self.splitter.start(batch, denominator)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            preds, new_state = self.model(batch["states"], batch["actions"], batch["returns_to_go"], batch["timesteps"],
                                          state)
        loss = masked_action_loss(preds, batch["actions"], batch["mask"], denominator)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.splitter is not None:  # their gradients added to these, their loss terms to this one
            loss = loss.detach() + self.splitter.finish()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.parameters, self.grad_clip)
        if not bool(torch.isfinite(loss.detach()) & torch.isfinite(grad_norm)):  # before the update touches the weights
            raise NonFiniteStep(float(loss.detach()), float(grad_norm))
        self.optimizer.step()
        self.scheduler.step()
        if self.average is not None:
            self.average.update()
        return {"loss": loss.detach(), "grad_norm": grad_norm.detach(), "timesteps": timesteps}, new_state

    def close(self) -> None:
        """Stop the helper processes, if any (they also stop with this process)."""
        if self.splitter is not None:
            self.splitter.close()
