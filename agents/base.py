"""The interface every decision agent offers: a training ``forward`` on normalised batches, one functional
rollout step on raw environment values (``initial_state``, ``step``), and the stateful rollout protocol
over it (``reset`` / ``act`` / ``observe``).

The step is the only rollout code: the stateful protocol carries its state between calls, and the exporter
(``deploy.graphs``) traces it into a graph, so what runs eagerly and what runs exported are one function.
The agent owns the state normalisation statistics and the return scale as buffers, so a checkpoint is
self-contained: the same numbers normalise the training batches and the rollout inputs.
The ``window`` rollout mode (re-run the last K steps at every env step, as Decision Transformer does) is
written here once; the recurrent agent adds its O(1) ``recurrent`` mode.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from rl_minrnn.blocks import BLOCK_OPTIONS, mlp_width
from rl_minrnn.configs.schema import DEFAULT_RETURN_SCALE, ModelConfig
from rl_minrnn.ranges import Number

from .embeddings import EMBEDDING_OPTIONS, ActionHead, TrajectoryEmbedding
from .initialisation import INIT_OPTION, initialise

# The constructors' defaults are the config's (one home for each): an agent built directly is the one
# ``build_agent`` makes from a default ``ModelConfig``.
MODEL = ModelConfig()
RETURN_SCALE_OPTION = Number(0, 1e9, low_open=True)  # ``dataset.return_scale``


class DecisionAgent(nn.Module):
    # What differs between agent kinds, declared here and asked of the class by everyone else (config,
    # exporter, command lines, benchmarks): no code outside ``agents`` tests which kind it has.
    kind: str = ""  # the ``model.kind`` that builds it (``AGENTS`` is keyed by it)
    self_attention: bool = False  # whether the sequence model attends over the window (cost quadratic in its tokens)
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

    def __init__(self, obs_dim: int, act_dim: int, *, context: int = MODEL.context, width: int = MODEL.width,
                 depth: int = MODEL.depth, tokens: str = MODEL.tokens, mlp_ratio: float = MODEL.mlp_ratio,
                 dropout: float = MODEL.dropout, max_timestep: int = MODEL.max_timestep, init: str = MODEL.init,
                 state_mean=None, state_std=None, return_scale: float = DEFAULT_RETURN_SCALE):
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
        self.rollout: Rollout | None = None  # the stateful protocol's episode (``reset``)
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
    def sequence_model(self) -> str:
        """What sits between the embedding and the head, in a word (the training log's model line)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ memory (training/memory_estimate.py)
    @classmethod
    def layer_activation_floats(cls, model, tokens: int) -> float:
        """Floats one layer keeps per token position for the backward pass, for ``model`` (a ``ModelConfig``)
        with ``tokens`` per window."""
        raise NotImplementedError

    @classmethod
    def widest_activation(cls, model) -> int:
        """The widest tensor per token position (embedding, MLP hidden, sequence-model projections)."""
        return max(model.width, int(model.width * model.mlp_ratio))

    @classmethod
    def memory_keys(cls, model) -> tuple[list[str], list[str]]:
        """The config keys of this kind, beyond the shared ones, that the parameters and the activations
        grow with (named in the out-of-memory message)."""
        return [], []

    def summary(self) -> dict:
        """The architecture, read from the agent itself (the exported file's metadata records it)."""
        return {"kind": self.kind, "tokens": self.embed.layout, "width": self.width, "context": self.context,
                "max_timestep": self.embed.max_timestep, "parameters": sum(p.numel() for p in self.parameters())}

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

    def rollout_state_specs(self, mode: str | None = None) -> list[dict]:
        """The rollout state of ``mode`` entry by entry, in the order ``pack_state`` gives them:
        ``[{"name", "shape" (None: the batch), "dtype", "initial", "doc"}]``. The exporter names a graph's
        state inputs and outputs from it; ``initial_state`` fills it."""
        mode = self.resolve_rollout_mode(mode)
        if mode != "window":
            raise NotImplementedError(f"{type(self).__name__} declares no {mode!r} rollout state")
        k = self.context
        return [
            {"name": "window_states", "shape": [None, k, self.obs_dim], "dtype": "float32", "initial": 0.0,
             "doc": "the last K normalised observations, oldest first"},
            {"name": "window_actions", "shape": [None, k, self.act_dim], "dtype": "float32", "initial": 0.0,
             "doc": "the actions taken at those steps (the current one 0)"},
            {"name": "window_returns", "shape": [None, k], "dtype": "float32", "initial": 0.0,
             "doc": "the scaled returns-to-go at those steps"},
            {"name": "window_timesteps", "shape": [None, k], "dtype": "int64", "initial": 0,
             "doc": "the timesteps of those steps"},
            {"name": "window_length", "shape": [None], "dtype": "int64", "initial": 0,
             "doc": "steps in the window (0 to K)"},
        ]

    def pack_state(self, state) -> tuple[torch.Tensor, ...]:
        """A rollout state as its tensors, in ``rollout_state_specs`` order (what an exported graph carries)."""
        if isinstance(state, WindowState):
            return tuple(state)
        raise TypeError(f"{type(self).__name__} has no rollout state of type {type(state).__name__}")

    def unpack_state(self, mode: str | None, tensors) -> object:
        """Inverse of ``pack_state`` for a state of rollout ``mode``."""
        if self.resolve_rollout_mode(mode) == "window":
            return WindowState(*tensors)
        raise NotImplementedError(f"{type(self).__name__} declares no {mode!r} rollout state")

    def initial_state(self, batch: int, mode: str | None = None):
        """The rollout state every episode of ``mode`` (default: the agent's) starts from, for ``batch`` rows:
        each entry of ``rollout_state_specs`` at its initial value, floats in the agent's dtype."""
        tensors = []
        for spec in self.rollout_state_specs(mode):
            shape = [batch if n is None else n for n in spec["shape"]]
            dtype = torch.int64 if spec["dtype"] == "int64" else self.state_mean.dtype
            tensors.append(torch.full(shape, spec["initial"], dtype=dtype, device=self.device))
        return self.unpack_state(mode, tensors)

    def normalise(self, observation: torch.Tensor, return_to_go: torch.Tensor):
        """Raw env values -> the model's inputs: ``(s - mean) / std`` and ``R / return_scale``."""
        return (observation - self.state_mean) / self.state_std, return_to_go / self.return_scale

    def step(self, observation, return_to_go, prev_action, timestep, state):
        """One env step of a batch of episodes as a function: the agent keeps nothing between calls.

        Raw ``observation (B, obs_dim)``, ``return_to_go (B,)``, ``prev_action (B, act_dim)`` (zeros at an
        episode's first step), ``timestep (B,)`` int64 and the rollout ``state`` (``initial_state`` at the
        first step) -> the action ``(B, act_dim)`` (the tanh head's, unclipped) and the next state. The
        state's type says the mode. The stateful ``reset``/``act``/``observe`` and the exported graphs
        (``deploy.graphs``) both run this."""
        states, returns = self.normalise(observation, return_to_go)
        if isinstance(state, WindowState):
            return self._window_step(states, returns, prev_action, timestep, state)
        return self._recurrent_step(states, returns, prev_action, timestep, state)

    def _window_step(self, states, returns, prev_action, timestep, window: WindowState):
        """The ``window`` mode (Decision Transformer's): the step joins the last K steps and the model re-runs
        them. Written with fixed shapes (``where`` on slot masks, no data-dependent indexing) so that a traced
        graph can hold it; eagerly only the filled steps run, which gives the same action since every model
        here is causal and the filled steps come first."""
        k = self.context
        positions = torch.arange(k, device=states.device).unsqueeze(0)  # (1, K)
        # the previous step's action, now known, goes to that step's slot
        previous = (positions == (window.length - 1).unsqueeze(1)).unsqueeze(-1)
        actions = torch.where(previous, prev_action.unsqueeze(1), window.actions)
        # a full window drops its oldest step
        full = (window.length >= k).unsqueeze(1)
        window_states = torch.where(full.unsqueeze(-1), _shift(window.states), window.states)
        actions = torch.where(full.unsqueeze(-1), _shift(actions), actions)
        window_returns = torch.where(full, _shift(window.returns), window.returns)
        window_timesteps = torch.where(full, _shift(window.timesteps), window.timesteps)
        # this step goes to the first free slot, its action unknown (0)
        index = torch.clamp(window.length, max=k - 1)
        slot = positions == index.unsqueeze(1)  # (B, K)
        window_states = torch.where(slot.unsqueeze(-1), states.unsqueeze(1), window_states)
        actions = torch.where(slot.unsqueeze(-1), torch.zeros_like(actions), actions)
        window_returns = torch.where(slot, returns.unsqueeze(1), window_returns)
        window_timesteps = torch.where(slot, timestep.unsqueeze(1), window_timesteps)
        n = k if _tracing() else int(index.max()) + 1
        if n < k:
            preds, _ = self(window_states[:, :n], actions[:, :n], window_returns[:, :n], window_timesteps[:, :n])
        else:
            preds, _ = self(window_states, actions, window_returns, window_timesteps)
        action = torch.gather(preds, 1, index.view(-1, 1, 1).expand(-1, 1, preds.shape[-1])).squeeze(1)
        return action, WindowState(window_states, actions, window_returns, window_timesteps, index + 1)

    def _recurrent_step(self, states, returns, prev_action, timestep, state):
        raise NotImplementedError(f"{type(self).__name__} has no recurrent rollout")

    def prepare_for_tracing(self) -> None:
        """Make the step traceable as a graph (the exporter calls it on its own copy): nothing by default."""

    # ------------------------------------------------------------------ the stateful rollout protocol
    def reset(self, batch_size: int, mode: str | None = None) -> None:
        """Start ``batch_size`` new episodes (``act``/``observe`` then carry their state, over ``step``)."""
        mode = self.resolve_rollout_mode(mode)
        self.rollout = Rollout(mode, int(batch_size), None, None,
                               torch.zeros(batch_size, dtype=torch.long, device=self.device))

    @torch.inference_mode()
    def act(self, returns_to_go, states) -> np.ndarray:
        """Raw return-to-go ``(B,)`` and observations ``(B, obs_dim)`` -> actions ``(B, act_dim)``."""
        run = self.rollout
        if run is None:
            raise RuntimeError("call reset(batch_size) before act()")
        dtype = self.state_mean.dtype
        states = torch.as_tensor(np.asarray(states), dtype=dtype, device=self.device)
        returns = torch.as_tensor(np.asarray(returns_to_go), dtype=dtype, device=self.device)
        if states.shape != (run.batch, self.obs_dim) or returns.shape != (run.batch,):
            raise ValueError(
                f"act expects returns_to_go ({run.batch},) and states ({run.batch}, {self.obs_dim}), "
                f"got {tuple(returns.shape)} and {tuple(states.shape)}"
            )
        if run.state is None:  # built at the first step, in the dtype the agent has then
            run = run._replace(state=self.initial_state(run.batch, run.mode),
                               prev_action=torch.zeros(run.batch, self.act_dim, dtype=dtype, device=self.device))
        action, state = self.step(states, returns, run.prev_action, run.t, run.state)
        self.rollout = run._replace(state=state)
        return action.cpu().numpy().astype(np.float32, copy=False)

    @torch.inference_mode()
    def observe(self, actions) -> None:
        """The actions applied (``(B, act_dim)``). Rewards need no call: the return-to-go the caller passes
        to the next ``act`` already has them subtracted."""
        run = self.rollout
        actions = torch.as_tensor(np.asarray(actions), dtype=self.state_mean.dtype, device=self.device)
        self.rollout = run._replace(prev_action=actions, t=run.t + 1)


class WindowState(NamedTuple):
    """The ``window`` mode's rollout state: the last K steps (normalised, as the model reads them), oldest
    first, and how many of them are filled (``length (B,)``, 0 to K)."""

    states: torch.Tensor  # (B, K, obs_dim)
    actions: torch.Tensor  # (B, K, act_dim); the current step's 0 until the next step brings it
    returns: torch.Tensor  # (B, K)
    timesteps: torch.Tensor  # (B, K) int64
    length: torch.Tensor  # (B,) int64


class Rollout(NamedTuple):
    """What the stateful protocol carries between ``act`` calls: the mode, the batch, the ``step`` state
    (None until the first ``act``), the last applied action and the episode step."""

    mode: str
    batch: int
    state: object
    prev_action: torch.Tensor | None
    t: torch.Tensor


def _shift(buffer: torch.Tensor) -> torch.Tensor:
    """Drop the oldest step (index 0); the last slot keeps a copy and is overwritten next."""
    return torch.cat([buffer[:, 1:], buffer[:, -1:]], dim=1)


def _tracing() -> bool:
    """Whether the step is being traced into a graph (TorchScript, torch.export / ONNX), where shapes are fixed."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting()
