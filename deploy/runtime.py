"""Run an exported policy: numpy in, numpy out, the carried state held by the caller or by an agent wrapper.

This module imports neither torch nor the rest of the project: an ONNX file needs only numpy and
onnxruntime (``pip install numpy onnxruntime``). A TorchScript file needs torch, imported when one is
opened.

- :class:`ExportedPolicy`: one call per env step, ``action, state = policy.step(observation,
  return_to_go, prev_action, timestep, state)``, starting from ``policy.initial_state(batch)``; inputs
  are checked against the metadata first, so a wrong observation size or a state from another model is a
  one-line :class:`~deploy.metadata.ExportedPolicyError`, not a backend traceback.
- :class:`ExportedAgent`: the agents' rollout protocol (``reset`` / ``act`` / ``observe``) on top, so
  ``envs.evaluation.rollout.evaluate_agent`` and ``evaluate.py`` run an exported file as they run a checkpoint.
- :func:`load_exported_agent`: ``(agent, info)`` as ``agents.load_agent`` gives for a checkpoint.
"""

from __future__ import annotations

import importlib
import json
import warnings
import zipfile
from pathlib import Path

import numpy as np

from .metadata import (METADATA_KEY, TORCHSCRIPT_EXTRA_FILE, ExportedPolicyError, shape_text,
                       validate_metadata)

FORMATS = ("onnx", "torchscript")
_DTYPES = {"float32": np.float32, "int64": np.int64}


def _torchscript_metadata_name(archive: zipfile.ZipFile) -> str | None:
    suffix = f"extra/{TORCHSCRIPT_EXTRA_FILE}"
    return next((n for n in archive.namelist() if n == suffix or n.endswith("/" + suffix)), None)


def file_format(path: str | Path) -> str | None:
    """``"onnx"`` for a ``.onnx`` file, ``"torchscript"`` for a TorchScript archive holding rl_minrnn
    metadata (checkpoints are zip archives too, but without it), None otherwise. Missing files: by suffix."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return "onnx"
    if path.is_file() and zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                if _torchscript_metadata_name(archive):
                    return "torchscript"
        except (OSError, zipfile.BadZipFile):
            return None
    return None


def _backend_library(name: str, missing: str):
    """The backend's library, imported when a file of its format is opened, or the error ``missing`` (how to get it)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ExportedPolicyError(missing) from None


def _unreadable(path: Path, what: str, exc: Exception) -> ExportedPolicyError:
    """The one-line error for a file a backend could not open: the backend's exception type and first line."""
    first = (str(exc).splitlines() or [""])[0][:200]
    return ExportedPolicyError(f"{path} is not a readable {what} ({type(exc).__name__}: {first})")


def _parsed_metadata(text: str | None) -> dict | None:
    """A backend's metadata text parsed; None when it is absent or not JSON (``ExportedPolicy`` says which file)."""
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError:
        return None


def is_exported_file(path: str | Path) -> bool:
    """Whether ``path`` names an exported policy rather than a training checkpoint."""
    return file_format(path) is not None


class _OnnxBackend:
    def __init__(self, path: Path, threads: int | None):
        ort = _backend_library("onnxruntime", f"{path} is an ONNX policy and onnxruntime is not installed: "
                                              "pip install onnxruntime (or the project's [export] extra)")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
            raise _unreadable(path, "ONNX model", exc) from None
        self.metadata = _parsed_metadata(self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY))

    def bind(self, input_names: list[str], output_names: list[str]) -> None:
        graph_inputs = [i.name for i in self.session.get_inputs()]
        graph_outputs = [o.name for o in self.session.get_outputs()]
        if sorted(graph_inputs) != sorted(input_names) or sorted(graph_outputs) != sorted(output_names):
            raise ExportedPolicyError(f"the graph's inputs {graph_inputs} / outputs {graph_outputs} differ from its "
                                      f"metadata's {input_names} / {output_names}; export it again")
        self.input_names, self.output_names = input_names, output_names

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        return self.session.run(self.output_names, dict(zip(self.input_names, arrays)))


class _TorchScriptBackend:
    def __init__(self, path: Path, threads: int | None):
        self.torch = torch = _backend_library("torch", f"{path} is a TorchScript policy and torch is not installed; "
                                                       "export the checkpoint to ONNX to run without torch")
        extra = {TORCHSCRIPT_EXTRA_FILE: ""}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated, still loadable
                self.module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        except Exception as exc:  # torch raises RuntimeError and others for broken archives
            raise _unreadable(path, "TorchScript policy", exc) from None
        self.module.eval()
        self.metadata = _parsed_metadata(extra[TORCHSCRIPT_EXTRA_FILE])
        # threads: torch's are process-wide, so they are left to the caller (torch.set_num_threads).

    def bind(self, input_names: list[str], output_names: list[str]) -> None:
        self.input_names, self.output_names = input_names, output_names

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        torch = self.torch
        with torch.inference_mode():
            outputs = self.module(*(torch.from_numpy(a) for a in arrays))
        return [o.numpy() for o in outputs]


class ExportedPolicy:
    """An exported rollout step with its metadata (see :mod:`deploy.metadata`).

    ``threads``: onnxruntime's intra-op threads (1 by default: at these sizes one thread is fastest and
    leaves the other cores to the simulator); TorchScript uses torch's process-wide setting.
    """

    def __init__(self, path: str | Path, threads: int | None = 1):
        path = Path(path)
        if path.is_dir():
            raise ExportedPolicyError(f"{path} is a folder, not an exported policy file")
        if not path.is_file():
            raise ExportedPolicyError(f"Exported policy {path} does not exist; write it with python -m rl_minrnn.deploy.export "
                                      f"--checkpoint RUN/checkpoints/best.pt --out {path}")
        kind = file_format(path)
        if kind is None:
            raise ExportedPolicyError(f"{path} is neither an ONNX file (.onnx) nor a TorchScript policy with "
                                      "rl_minrnn metadata")
        self.path, self.format = path, kind
        self._backend = _OnnxBackend(path, threads) if kind == "onnx" else _TorchScriptBackend(path, threads)
        meta = validate_metadata(self._backend.metadata, str(path))
        self.metadata = meta
        self.mode: str = meta["mode"]
        self.obs_dim, self.act_dim = int(meta["obs_dim"]), int(meta["act_dim"])
        self.env_id: str = meta["env_id"]
        self.state_specs: list[dict] = meta["state"]
        self.input_names = [i["name"] for i in meta["inputs"]]
        self.output_names = [o["name"] for o in meta["outputs"]]
        self._state_names = [s["name"] for s in self.state_specs]
        self._next_names = [s["next"] for s in self.state_specs]
        self._backend.bind(self.input_names, self.output_names)

    def __repr__(self) -> str:
        return f"ExportedPolicy({str(self.path)!r}, {self.format}, {self.mode}, env {self.env_id})"

    def initial_state(self, batch_size: int = 1) -> dict[str, np.ndarray]:
        """The state every episode starts from: each tensor filled with its ``initial`` value."""
        return {s["name"]: np.full([batch_size if n is None else n for n in s["shape"]], s["initial"],
                                   dtype=_DTYPES[s["dtype"]])
                for s in self.state_specs}

    def step(self, observation, return_to_go, prev_action, timestep, state: dict) -> tuple[np.ndarray, dict]:
        """One env step for a batch: raw ``observation (B, obs_dim)``, ``return_to_go (B,)``, the action
        applied at the previous step ``prev_action (B, act_dim)`` (zeros at an episode's first step),
        ``timestep (B,)`` (0 at the first step) and the state from the last call or ``initial_state(B)``
        -> ``action (B, act_dim)`` float32 and the next state."""
        observation = np.asarray(observation, dtype=np.float32)
        if observation.ndim != 2 or observation.shape[1] != self.obs_dim:
            raise ExportedPolicyError(
                f"observation has shape {observation.shape}, this policy ({self.env_id}) takes (batch, {self.obs_dim})")
        batch = observation.shape[0]
        return_to_go = np.asarray(return_to_go, dtype=np.float32)
        prev_action = np.asarray(prev_action, dtype=np.float32)
        timestep = np.asarray(timestep, dtype=np.int64)
        for name, value, want in (("return_to_go", return_to_go, (batch,)), ("timestep", timestep, (batch,)),
                                  ("prev_action", prev_action, (batch, self.act_dim))):
            if value.shape != want:
                raise ExportedPolicyError(f"{name} has shape {value.shape}, expected {want} for a batch of {batch}")
        arrays = [observation, return_to_go, prev_action, timestep, *self._check_state(state, batch)]
        outputs = dict(zip(self.output_names, self._backend.run(arrays)))
        return outputs["action"], {name: outputs[nxt] for name, nxt in zip(self._state_names, self._next_names)}

    def _check_state(self, state, batch: int) -> list[np.ndarray]:
        if not isinstance(state, dict) or set(state) != set(self._state_names):
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ExportedPolicyError(f"state has entries {got}, this policy's are {self._state_names}: a state from "
                                      "another model? Start episodes from policy.initial_state(batch)")
        out = []
        for spec in self.state_specs:
            value = np.asarray(state[spec["name"]], dtype=_DTYPES[spec["dtype"]])
            want = tuple(batch if n is None else n for n in spec["shape"])
            if value.shape != want:
                raise ExportedPolicyError(
                    f"state {spec['name']!r} has shape {value.shape}, this policy's is {shape_text(spec['shape'])} "
                    f"(batch {batch}): a state from another model? Start episodes from policy.initial_state(batch)")
            out.append(value)
        return out


class ExportedAgent:
    """An :class:`ExportedPolicy` with the agents' rollout protocol, numpy in and out (``docs/design.md``):
    ``reset(B)``, then per env step ``act(returns_to_go, states)`` and ``observe(actions)``.

    As ``agents.DecisionAgent``: the state advances in ``act``, ``observe`` records the action taken (the
    next step's ``prev_action``) and counts the timestep.
    """

    def __init__(self, policy: ExportedPolicy):
        self.policy = policy
        self.obs_dim, self.act_dim = policy.obs_dim, policy.act_dim
        self.context = policy.metadata.get("agent", {}).get("context")
        self.rollout_modes = (policy.mode,)
        self.default_rollout_mode = policy.mode
        self._batch = None

    def resolve_rollout_mode(self, mode: str | None) -> str:
        """As ``DecisionAgent.resolve_rollout_mode``: an exported file holds one mode's step."""
        if mode not in (None, "auto", self.policy.mode):
            raise ValueError(f"this exported policy has rollout mode {self.policy.mode} only, not {mode!r}")
        return self.policy.mode

    def reset(self, batch_size: int, mode: str | None = None) -> None:
        self.resolve_rollout_mode(mode)
        self._batch = int(batch_size)
        self._state = self.policy.initial_state(self._batch)
        self._prev_action = np.zeros((self._batch, self.act_dim), dtype=np.float32)
        self._t = np.zeros(self._batch, dtype=np.int64)

    def act(self, returns_to_go, states) -> np.ndarray:
        if self._batch is None:
            raise RuntimeError("call reset(batch_size) before act()")
        action, self._state = self.policy.step(states, returns_to_go, self._prev_action, self._t, self._state)
        return action

    def observe(self, actions) -> None:
        actions = np.asarray(actions, dtype=np.float32)
        if actions.shape != (self._batch, self.act_dim):
            raise ExportedPolicyError(f"observe expects actions ({self._batch}, {self.act_dim}), got {actions.shape}")
        self._prev_action = actions.copy()
        self._t = self._t + 1


def load_exported_agent(path: str | Path, threads: int | None = 1) -> tuple[ExportedAgent, dict]:
    """``(agent, info)`` for an exported file, ``info`` with the keys ``agents.load_agent`` gives: ``env_id``,
    ``dataset_id``, ``ref_min_score``, ``ref_max_score``, ``config`` (its ``eval.target_returns`` and
    ``model``), ``step``, ``best``."""
    policy = ExportedPolicy(path, threads=threads)
    meta = policy.metadata
    checkpoint = meta.get("checkpoint") or {}
    info = {
        "env_id": meta.get("env_id"),
        "dataset_id": meta.get("dataset_id"),
        "ref_min_score": meta.get("ref_min_score"),
        "ref_max_score": meta.get("ref_max_score"),
        "config": {"model": meta.get("agent"), "eval": {"target_returns": meta.get("target_returns")}},
        "step": checkpoint.get("step"),
        "best": checkpoint.get("best"),
    }
    return ExportedAgent(policy), info
