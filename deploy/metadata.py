"""The metadata record of an exported policy: what a caller needs besides the graph.

Stored inside the file: in an ONNX model's ``metadata_props`` under the key ``rl_minrnn``, in a
TorchScript archive as the extra file ``rl_minrnn.json`` (``torch.jit.load(..., _extra_files=...)``, or any
zip reader: ``<archive>/extra/rl_minrnn.json``). One JSON object:

- ``format`` (``rl_minrnn.exported_policy``), ``format_version``, ``project_version``, ``exported_with``;
- ``mode``: ``recurrent`` (carried state, O(1) per step) or ``window`` (the last K steps re-run);
- ``agent``: the model config (kind, cell, tokens, width, depth, context, ...);
- ``env_id``, ``dataset_id``, ``obs_dim``, ``act_dim``, ``ref_min_score``, ``ref_max_score``;
- ``target_returns``: the raw target returns the agent was evaluated with during training;
- ``action_low``, ``action_high`` (and ``action_bounds_from``): what the action is clipped to in the graph;
- ``normalisation``: ``state_mean``, ``state_std``, ``return_scale`` (already applied inside the graph;
  recorded for reference);
- ``inputs``, ``outputs``: name, shape (``null`` = batch), dtype and meaning of each graph input/output;
- ``state``: the carried tensors in graph order, each with ``name``, ``next`` (the output that replaces it),
  ``shape``, ``dtype`` and ``initial`` (the value every entry has at an episode's start);
- ``first_step``: the ``prev_action`` and ``timestep`` to feed at an episode's first step;
- ``checkpoint``: the file it was exported from, its training step and best evaluation.

Standard library only: readable where neither torch nor onnxruntime is installed.
"""

from __future__ import annotations

FORMAT = "rl_minrnn.exported_policy"
FORMAT_VERSION = 1
METADATA_KEY = "rl_minrnn"  # ONNX metadata_props key
TORCHSCRIPT_EXTRA_FILE = "rl_minrnn.json"  # TorchScript _extra_files name
REQUIRED = ("format", "format_version", "mode", "obs_dim", "act_dim", "inputs", "outputs", "state", "env_id")


class ExportedPolicyError(ValueError):
    """An exported policy is missing, unreadable, or fed inputs that do not fit it (one-line message)."""


def project_version() -> str:
    """The installed ``rl_minrnn`` distribution's version ("unknown" when it is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rl_minrnn")
    except PackageNotFoundError:
        return "unknown"


def validate_metadata(meta, source: str) -> dict:
    """The record if it is one this version reads; ``ExportedPolicyError`` naming ``source`` otherwise."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ExportedPolicyError(f"{source} has no rl_minrnn policy metadata; export one with "
                                  "python -m rl_minrnn.deploy.export --checkpoint RUN/checkpoints/best.pt --out FILE")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ExportedPolicyError(f"{source} is exported policy format {meta.get('format_version')}, this version "
                                  f"reads format {FORMAT_VERSION}; export it again from its checkpoint")
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise ExportedPolicyError(f"{source}: exported policy metadata lacks {missing}; export it again")
    return meta


def shape_text(shape, batch="batch") -> str:
    """``[None, 64]`` -> ``(batch, 64)``."""
    return "(" + ", ".join(batch if n is None else str(n) for n in shape) + ")"
