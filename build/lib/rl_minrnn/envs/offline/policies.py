"""Numpy MLP behaviour policies in the npz format of ``../shared/policies/README.md``.

Arrays (float32): ``obs_mean``, ``obs_var``, ``obs_clip``; ``hidden.{i}.weight`` / ``hidden.{i}.bias``;
``mu.weight`` / ``mu.bias``; optionally ``log_std.weight`` / ``log_std.bias`` (state-dependent, SAC/TQC)
or ``log_std`` (a vector, PPO/TRPO). The policy sees ``clip((obs - mean) / sqrt(var + 1e-8), -clip, clip)``;
hidden layers ``h = act(W @ h + b)``; the action is ``squash(mu + exp(log_std) * noise)`` (stochastic) or
``squash(mu)`` (deterministic), ``squash`` = ``tanh`` or ``clip`` to [-1, 1].

``activation`` and ``squash`` are not arrays of the README format: they come from the npz when it holds
them as strings, else from the ``policies.json`` beside it (keyed by file stem), else from the caller.
Everything runs batched: one matmul per layer for all parallel environments.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

ACTIVATIONS = ("relu", "tanh")
SQUASHES = ("tanh", "clip")


class PolicyError(ValueError):
    """A policy file is missing, unreadable, or not in the documented npz MLP format."""


class MLPPolicy:
    """A behaviour policy; ``act(obs (E, obs_dim), noise (E, act_dim) | None) -> actions (E, act_dim) float32``."""

    def __init__(self, params: dict, activation: str, squash: str, name: str = "policy"):
        if activation not in ACTIVATIONS:
            raise PolicyError(f"{name}: activation must be one of {ACTIVATIONS}, got {activation!r}.")
        if squash not in SQUASHES:
            raise PolicyError(f"{name}: squash must be one of {SQUASHES}, got {squash!r}.")
        self.name = name
        self.activation = activation
        self.squash = squash
        missing = [k for k in ("obs_mean", "obs_var", "mu.weight", "mu.bias") if k not in params]
        if missing:
            raise PolicyError(
                f"{name}: missing arrays {missing}; expected the npz MLP format of shared/policies/README.md "
                "(obs_mean, obs_var, obs_clip, hidden.{i}.weight/bias, mu.weight/bias, log_std...)."
            )
        f32 = lambda k: np.asarray(params[k], dtype=np.float32)  # noqa: E731
        self.obs_mean = f32("obs_mean").reshape(-1)
        self.obs_scale = (1.0 / np.sqrt(f32("obs_var").reshape(-1) + np.float32(1e-8))).astype(np.float32)
        self.obs_clip = float(params["obs_clip"]) if "obs_clip" in params else float("inf")
        self.layers = []
        i = 0
        while f"hidden.{i}.weight" in params:
            self.layers.append((f32(f"hidden.{i}.weight").T.copy(), f32(f"hidden.{i}.bias")))
            i += 1
        self.mu = (f32("mu.weight").T.copy(), f32("mu.bias"))
        self.log_std_layer = None
        self.log_std_vector = None
        if "log_std.weight" in params:
            self.log_std_layer = (f32("log_std.weight").T.copy(), f32("log_std.bias"))
        elif "log_std" in params:
            self.log_std_vector = f32("log_std").reshape(-1)
        self.obs_dim = int(self.obs_mean.shape[0])
        self.act_dim = int(self.mu[1].shape[0])
        # shape checks: every layer must chain
        width = self.obs_dim
        for j, (w, b) in enumerate(self.layers + [self.mu]):
            if w.shape[0] != width or w.shape[1] != b.shape[0]:
                raise PolicyError(f"{name}: layer {j} has weight {w.T.shape} and bias {b.shape}, input width {width}.")
            width = w.shape[1] if j < len(self.layers) else width
        if self.obs_scale.shape[0] != self.obs_dim:
            raise PolicyError(f"{name}: obs_mean and obs_var differ in length.")

    @property
    def stochastic(self) -> bool:
        return self.log_std_layer is not None or self.log_std_vector is not None

    @classmethod
    def load(cls, path: str | os.PathLike, activation: str | None = None, squash: str | None = None) -> "MLPPolicy":
        path = Path(path)
        if not path.is_file():
            raise PolicyError(f"Policy file {path} does not exist.")
        try:
            with np.load(path, allow_pickle=False) as data:
                params = {k: data[k] for k in data.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise PolicyError(f"Cannot read the policy {path}: {exc}. Expected an npz of float32 arrays.") from exc
        info = _policy_info(path)
        activation = activation or _str(params.pop("activation", None)) or info.get("activation")
        squash = squash or _str(params.pop("squash", None)) or info.get("squash")
        if activation is None or squash is None:
            raise PolicyError(
                f"{path}: the activation and squash of this policy are unknown: put them in a policies.json "
                f"beside it ({{\"{path.stem}\": {{\"activation\": \"relu\", \"squash\": \"tanh\"}}}}), as string "
                "arrays 'activation'/'squash' in the npz, or pass --activation/--squash."
            )
        return cls(params, activation, squash, name=path.stem)

    def save(self, path: str | os.PathLike) -> None:
        """Write the npz format (with 'activation'/'squash' string arrays so the file is self-describing)."""
        arrays = {
            "obs_mean": self.obs_mean,
            "obs_var": (1.0 / self.obs_scale.astype(np.float64) ** 2 - 1e-8).astype(np.float32),
            "obs_clip": np.float32(self.obs_clip),
            "activation": np.array(self.activation),
            "squash": np.array(self.squash),
        }
        for i, (w, b) in enumerate(self.layers):
            arrays[f"hidden.{i}.weight"], arrays[f"hidden.{i}.bias"] = w.T, b
        arrays["mu.weight"], arrays["mu.bias"] = self.mu[0].T, self.mu[1]
        if self.log_std_layer is not None:
            arrays["log_std.weight"], arrays["log_std.bias"] = self.log_std_layer[0].T, self.log_std_layer[1]
        elif self.log_std_vector is not None:
            arrays["log_std"] = self.log_std_vector
        np.savez(path, **arrays)

    def _features(self, obs: np.ndarray) -> np.ndarray:
        h = (np.asarray(obs, dtype=np.float32) - self.obs_mean) * self.obs_scale
        if np.isfinite(self.obs_clip):
            np.clip(h, -self.obs_clip, self.obs_clip, out=h)
        for w, b in self.layers:
            h = h @ w
            h += b
            if self.activation == "relu":
                np.maximum(h, 0.0, out=h)
            else:
                np.tanh(h, out=h)
        return h

    def act(self, obs: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
        """Actions for a batch of observations; ``noise`` standard normal (E, act_dim) samples, None = mean."""
        obs = np.atleast_2d(obs)
        h = self._features(obs)
        u = h @ self.mu[0] + self.mu[1]
        if noise is not None and self.stochastic:
            if self.log_std_layer is not None:
                log_std = np.clip(h @ self.log_std_layer[0] + self.log_std_layer[1], -20.0, 2.0)
            else:
                log_std = self.log_std_vector
            u = u + np.exp(log_std) * np.asarray(noise, dtype=np.float32)
        if self.squash == "tanh":
            u = np.tanh(u)
        else:
            u = np.clip(u, -1.0, 1.0)
        return u.astype(np.float32, copy=False)

    __call__ = act

    @classmethod
    def random(
        cls,
        obs_dim: int,
        act_dim: int,
        hidden=(32, 32),
        activation: str = "relu",
        squash: str = "tanh",
        state_dependent_std: bool = True,
        seed: int = 0,
    ) -> "MLPPolicy":
        """A random policy in the same format (for tests and smoke runs)."""
        rng = np.random.default_rng(seed)
        params = {
            "obs_mean": np.zeros(obs_dim, np.float32),
            "obs_var": np.ones(obs_dim, np.float32),
            "obs_clip": np.float32(10.0),
        }
        width = obs_dim
        for i, n in enumerate(hidden):
            params[f"hidden.{i}.weight"] = (rng.standard_normal((n, width)) / np.sqrt(width)).astype(np.float32)
            params[f"hidden.{i}.bias"] = np.zeros(n, np.float32)
            width = n
        params["mu.weight"] = (rng.standard_normal((act_dim, width)) / np.sqrt(width)).astype(np.float32)
        params["mu.bias"] = np.zeros(act_dim, np.float32)
        if state_dependent_std:
            params["log_std.weight"] = (0.1 * rng.standard_normal((act_dim, width))).astype(np.float32)
            params["log_std.bias"] = np.full(act_dim, -1.0, np.float32)
        else:
            params["log_std"] = np.full(act_dim, -1.0, np.float32)
        return cls(params, activation, squash, name="random")


def _str(value) -> str | None:
    if value is None:
        return None
    return str(np.asarray(value).item())


def _policy_info(path: Path) -> dict:
    """The entry for ``path`` in a ``policies.json`` beside it, or {}."""
    index = path.parent / "policies.json"
    if not index.is_file():
        return {}
    try:
        with open(index) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise PolicyError(f"Cannot read {index}: {exc}.") from exc
    entry = data.get(path.stem) if isinstance(data, dict) else None
    return entry if isinstance(entry, dict) else {}
