"""The interface every decision agent offers: a training ``forward`` on normalised batches, and a
rollout protocol on raw environment values (``reset`` / ``act`` / ``observe``).

The agent owns the state normalisation statistics and the return scale as buffers, so a checkpoint is
self-contained: the same numbers normalise the training batches and the rollout inputs.
The ``window`` rollout mode (re-run the last K steps at every env step, as Decision Transformer does) is
written here once; the recurrent agent adds its O(1) ``recurrent`` mode.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rl_minrnn.blocks import BLOCK_OPTIONS, mlp_width
from rl_minrnn.ranges import Number

from .embeddings import EMBEDDING_OPTIONS, ActionHead, TrajectoryEmbedding
from .initialisation import INIT_OPTION, initialise

# Returns-to-go enter the model divided by this (the DT paper's scale for MuJoCo returns); the config's
# default (dataset.return_scale) and the agents' constructors read it from here.
DEFAULT_RETURN_SCALE = 1000.0
RETURN_SCALE_OPTION = Number(0, 1e9, low_open=True)  # ``dataset.return_scale``


class DecisionAgent(nn.Module):
    rollout_modes: tuple[str, ...] = ("window",)
    default_rollout_mode: str = "window"
    trains_on_sequences: bool = False  # whether it can train in the ``sequence`` regime (a carried state)
    # Allowed values of the constructor options this class adds (``option_rules`` merges a kind's classes);
    # the config checks them before anything is built.
    OPTION_RULES = {
        "width": Number(1, 16_384, integer=True, why="the embedding width"),
        "context": Number(1, 10_000, integer=True, why="timesteps per training window"),
        "depth": BLOCK_OPTIONS["depth"], "mlp_ratio": BLOCK_OPTIONS["mlp_ratio"], "dropout": BLOCK_OPTIONS["dropout"],
        **EMBEDDING_OPTIONS, "init": INIT_OPTION,
    }

    @classmethod
    def option_rules(cls) -> dict:
        """The rules of every option this kind takes (its own class's and those it builds on)."""
        rules = {}
        for klass in reversed(cls.__mro__):
            rules.update(vars(klass).get("OPTION_RULES", {}))
        return rules

    @classmethod
    def check_options(cls, options: dict) -> None:
        """Raise ``OptionError`` (``name: must be ...``) for the first option in ``options`` (constructor keyword
        -> value) that this kind does not allow, alone or with the others (``check_option_relations``)."""
        from rl_minrnn.ranges import OptionError

        rules = cls.option_rules()
        for name, value in options.items():
            if name in rules:
                try:
                    rules[name].check(value)
                except OptionError as exc:
                    raise OptionError(f"{name}: {exc}") from None
        cls.check_option_relations(options)

    @classmethod
    def check_option_relations(cls, options: dict) -> None:
        """Rules between options (each already in range); ``OptionError`` starting with the option to change."""
        from rl_minrnn.ranges import OptionError

        try:
            mlp_width(options["width"], options["mlp_ratio"])
        except ValueError as exc:
            raise OptionError(f"mlp_ratio: {exc}") from None

    def __init__(self, obs_dim: int, act_dim: int, *, context: int = 20, width: int = 128, depth: int = 3,
                 tokens: str = "interleaved", mlp_ratio: float = 4.0, dropout: float = 0.1, max_timestep: int = 1000,
                 init: str = "gpt", state_mean=None, state_std=None, return_scale: float = DEFAULT_RETURN_SCALE):
        """What every agent shares: the token embedding (built here) and the action head (built by
        ``finish_layers`` once the subclass has added its sequence model between them), the sequence model's
        size (``width``, ``depth``, ``mlp_ratio``, ``dropout``, kept for it), and the normalisation.
        ``state_mean``/``state_std``: the dataset's (None: identity, e.g. before loading a checkpoint)."""
        super().__init__()
        self.obs_dim, self.act_dim, self.context = int(obs_dim), int(act_dim), int(context)
        self.width, self.depth, self.mlp_ratio, self.dropout_p = int(width), int(depth), float(mlp_ratio), float(dropout)
        self._init_scheme = init
        mean = torch.zeros(obs_dim) if state_mean is None else torch.as_tensor(np.asarray(state_mean, dtype=np.float32))
        std = torch.ones(obs_dim) if state_std is None else torch.as_tensor(np.asarray(state_std, dtype=np.float32))
        if mean.shape != (obs_dim,) or std.shape != (obs_dim,):
            raise ValueError(f"state_mean and state_std must have shape ({obs_dim},), got {tuple(mean.shape)} and {tuple(std.shape)}")
        self.register_buffer("state_mean", mean)
        self.register_buffer("state_std", std)
        self.register_buffer("return_scale", torch.tensor(float(return_scale)))
        self._mode: str | None = None
        self.embed = TrajectoryEmbedding(obs_dim, act_dim, width, max_timestep, tokens)

    def finish_layers(self) -> None:
        """Add the action head and initialise every parameter with ``init`` (``agents.initialisation``);
        a subclass calls it at the end of its ``__init__``, once its sequence model exists."""
        self.head = ActionHead(self.width, self.act_dim)
        initialise(self, self._init_scheme, inputs_and_head=(*self.embed.input_projections, self.head.linear))

    # ------------------------------------------------------------------ training
    def forward(self, states, actions, returns_to_go, timesteps, state=None):
        """``(B, K, ·)`` normalised batches -> predicted actions ``(B, K, act_dim)`` and the carried
        state after the window (None for agents without one). Padding sits at the end of a window (causal
        models never read it before a real step), so no mask is needed here: the loss masks it out."""
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return self.state_mean.device

    # ------------------------------------------------------------------ carried training state
    def carried_state_to_payload(self, state):
        """The state ``forward`` returned, as nested lists of tensors a checkpoint can hold (None: none).
        Agents without a carried state have nothing to save."""
        if state is not None:
            raise NotImplementedError(f"{type(self).__name__} carries no state between training windows")
        return None

    def carried_state_from_payload(self, payload, device):
        """Inverse of ``carried_state_to_payload``."""
        if payload is not None:
            raise NotImplementedError(f"{type(self).__name__} carries no state between training windows")
        return None

    # ------------------------------------------------------------------ rollout
    @classmethod
    def resolve_rollout_mode(cls, mode: str | None) -> str:
        """``mode``, or this agent's default for None / ``"auto"``: the one place a rollout mode is chosen and
        checked (``reset``, the rollout loop, ``evaluate.py``, the exporter and the config ask it)."""
        if mode in (None, "auto"):
            return cls.default_rollout_mode
        if mode not in cls.rollout_modes:
            raise ValueError(f"{cls.__name__} has rollout modes {', '.join(cls.rollout_modes)}, not {mode!r}")
        return mode

    def reset(self, batch_size: int, mode: str | None = None) -> None:
        """Start ``batch_size`` new episodes."""
        mode = self.resolve_rollout_mode(mode)
        self._mode, self._batch = mode, int(batch_size)
        self._t = torch.zeros(batch_size, dtype=torch.long, device=self.device)
        if mode == "window":
            k, like = self.context, dict(device=self.device, dtype=self.state_mean.dtype)
            self._win_states = torch.zeros(batch_size, k, self.obs_dim, **like)
            self._win_actions = torch.zeros(batch_size, k, self.act_dim, **like)
            self._win_returns = torch.zeros(batch_size, k, **like)
            self._win_times = torch.zeros(batch_size, k, dtype=torch.long, device=self.device)
            self._win_len = 0
        else:
            self._reset_recurrent()

    @torch.inference_mode()
    def act(self, returns_to_go, states) -> np.ndarray:
        """Raw return-to-go ``(B,)`` and observations ``(B, obs_dim)`` -> actions ``(B, act_dim)``."""
        if self._mode is None:
            raise RuntimeError("call reset(batch_size) before act()")
        dtype = self.state_mean.dtype
        states = torch.as_tensor(np.asarray(states), dtype=dtype, device=self.device)
        returns = torch.as_tensor(np.asarray(returns_to_go), dtype=dtype, device=self.device)
        if states.shape != (self._batch, self.obs_dim) or returns.shape != (self._batch,):
            raise ValueError(
                f"act expects returns_to_go ({self._batch},) and states ({self._batch}, {self.obs_dim}), "
                f"got {tuple(returns.shape)} and {tuple(states.shape)}"
            )
        states = (states - self.state_mean) / self.state_std
        returns = returns / self.return_scale
        if self._mode == "window":
            action = self._act_window(returns, states)
        else:
            action = self._act_recurrent(returns, states)
        return action.cpu().numpy().astype(np.float32, copy=False)

    @torch.inference_mode()
    def observe(self, actions) -> None:
        """The actions applied (``(B, act_dim)``). Rewards need no call: the return-to-go the caller passes
        to the next ``act`` already has them subtracted."""
        actions = torch.as_tensor(np.asarray(actions), dtype=self.state_mean.dtype, device=self.device)
        if self._mode == "window":
            self._win_actions[:, self._win_len - 1] = actions
        else:
            self._observe_recurrent(actions)
        self._t += 1

    def _act_window(self, returns, states):
        if self._win_len == self.context:  # drop the oldest step
            for buf in (self._win_states, self._win_actions, self._win_returns, self._win_times):
                buf[:, :-1] = buf[:, 1:].clone()
        else:
            self._win_len += 1
        i = self._win_len - 1
        self._win_states[:, i], self._win_returns[:, i], self._win_times[:, i] = states, returns, self._t
        self._win_actions[:, i] = 0.0
        n = self._win_len
        preds, _ = self(
            self._win_states[:, :n], self._win_actions[:, :n], self._win_returns[:, :n], self._win_times[:, :n]
        )
        return preds[:, -1]

    def _reset_recurrent(self):
        raise NotImplementedError

    def _act_recurrent(self, returns, states):
        raise NotImplementedError

    def _observe_recurrent(self, actions):
        raise NotImplementedError
