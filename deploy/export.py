"""Export a trained agent's rollout step as a standalone graph: ONNX (run with onnxruntime) or TorchScript.

    python -m rl_minrnn.deploy.export --checkpoint runs/x/checkpoints/best.pt --out hopper.onnx        # ONNX
    python -m rl_minrnn.deploy.export --checkpoint runs/x/checkpoints/best.pt --out hopper.ts.pt       # TorchScript
        [--format onnx|torchscript] [--mode recurrent|window] [--no-check]

The graph is one env step with explicit inputs and outputs (``deploy.graphs``): raw observation,
return-to-go, previous action, timestep and the carried state in; action and the next state out; the
state normalisation, return scale, timestep clamp and action clipping inside. The metadata record
(``deploy.metadata``) goes inside the file. The Decision-RNN exports its O(1) ``recurrent`` step by
default; the Decision Transformer (and ``--mode window``) exports the K-step window step, the window
being the carried state. After writing, the file is loaded back and checked against the PyTorch step on
random inputs (``--no-check`` skips that).

Needs the ``[export]`` extra (onnx, onnxscript, onnxruntime). Exit code 2 with a one-line message for a
missing or unreadable checkpoint, an unknown format or mode, or a graph that does not match PyTorch.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from rl_minrnn.agents.base import DecisionAgent
from rl_minrnn.files import write_atomically

from .graphs import FIRST_INPUTS, step_module
from .metadata import (FORMAT, FORMAT_VERSION, METADATA_KEY, TORCHSCRIPT_EXTRA_FILE, ExportedPolicyError,
                       project_version)

SUFFIX_FORMATS = {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript", ".torchscript": "torchscript"}
EXAMPLE_BATCH = 2  # traced batch size; the batch axis stays dynamic (torch.export specialises sizes 0 and 1)
CHECK_ATOL = 1e-4  # the post-export check's tolerance; the tests hold the graphs to 1e-5 over whole episodes


class ExportError(Exception):
    """The agent cannot be exported as asked, or the written graph does not match PyTorch."""


def format_for(path: str | Path, fmt: str | None = None) -> str:
    """``fmt`` if given, else from the suffix (``.onnx``; ``.pt``, ``.ts``, ``.torchscript``)."""
    if fmt is not None:
        if fmt not in ("onnx", "torchscript"):
            raise ExportError(f"--format must be onnx or torchscript, got {fmt!r}")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIX_FORMATS:
        raise ExportError(f"cannot tell the format from {Path(path).name!r}: name it .onnx or .pt, or give --format")
    return SUFFIX_FORMATS[suffix]


def env_action_bounds(env_id: str, act_dim: int) -> tuple[list[float], list[float], str]:
    """The env's action-space bounds, the range the exported action is clipped to. When the env cannot
    be made here, the tanh head's range [-1, 1] (what every D4RL locomotion task uses)."""
    try:
        from rl_minrnn.envs.evaluation.environments import make_env as make_eval_env

        env = make_eval_env(env_id)
        try:
            low, high = np.asarray(env.action_space.low, np.float64), np.asarray(env.action_space.high, np.float64)
        finally:
            env.close()
        if low.shape == (act_dim,):
            return low.tolist(), high.tolist(), f"{env_id} action space"
        reason = f"its action space has shape {low.shape}"
    except Exception as exc:  # any failure to make the env: fall back, and say so in the metadata
        reason = f"{type(exc).__name__}: {str(exc)[:120]}"
    return [-1.0] * act_dim, [1.0] * act_dim, f"tanh range ({env_id} not used: {reason})"


def build_metadata(step, agent: DecisionAgent, mode: str, fmt: str, info: dict, action_low, action_high,
                   bounds_from: str) -> dict:
    config = info.get("config") or {}
    obs, act = agent.obs_dim, agent.act_dim
    specs = step.state_specs()
    inputs = [
        {"name": "observation", "shape": [None, obs], "dtype": "float32", "doc": "raw observation from the env"},
        {"name": "return_to_go", "shape": [None], "dtype": "float32",
         "doc": "raw return-to-go: the target return minus the rewards received so far"},
        {"name": "prev_action", "shape": [None, act], "dtype": "float32",
         "doc": "the action applied at the previous step (zeros at an episode's first step)"},
        {"name": "timestep", "shape": [None], "dtype": "int64", "doc": "steps taken in the episode (0 at the first)"},
    ]
    assert [i["name"] for i in inputs] == list(FIRST_INPUTS)
    inputs += [{k: s[k] for k in ("name", "shape", "dtype", "doc")} for s in specs]
    outputs = [{"name": "action", "shape": [None, act], "dtype": "float32",
                "doc": "the action, clipped to [action_low, action_high]"}]
    outputs += [{"name": f"next_{s['name']}", "shape": s["shape"], "dtype": s["dtype"],
                 "doc": f"{s['name']} for the next step"} for s in specs]
    state = [{**s, "next": f"next_{s['name']}"} for s in specs]
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "project_version": project_version(),
        "exported_with": {"format": fmt, "torch": torch.__version__},
        "mode": mode,
        "agent": agent.summary(),
        "model_config": config.get("model"),
        "env_id": info.get("env_id"),
        "dataset_id": info.get("dataset_id"),
        "obs_dim": obs,
        "act_dim": act,
        "ref_min_score": info.get("ref_min_score"),
        "ref_max_score": info.get("ref_max_score"),
        "target_returns": (config.get("eval") or {}).get("target_returns"),
        "action_low": [float(x) for x in action_low],
        "action_high": [float(x) for x in action_high],
        "action_bounds_from": bounds_from,
        "normalisation": {"state_mean": agent.state_mean.double().tolist(),
                          "state_std": agent.state_std.double().tolist(),
                          "return_scale": float(agent.return_scale), "applied": "inside the graph"},
        "inputs": inputs,
        "outputs": outputs,
        "state": state,
        "first_step": {"prev_action": 0.0, "timestep": 0, "state": "each state entry at its 'initial' value"},
        "checkpoint": {"file": info.get("checkpoint_file"), "step": info.get("step"), "best": info.get("best")},
    }


def _export_onnx(step, example, names, output_names, meta, out: Path) -> None:
    from torch.export import Dim

    try:
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it)
    except ImportError:
        raise ExportError("ONNX export needs onnx and onnxscript: pip install -e '.[export]'") from None
    batch = Dim("batch", min=1)
    dynamic = tuple({0: batch} for _ in FIRST_INPUTS) + (tuple({0: batch} for _ in example[len(FIRST_INPUTS):]),)
    quiet = logging.getLogger("torch.onnx")  # notes that torchvision's operators are not registered
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes about axis names and deprecations
        try:
            program = torch.onnx.export(step, example, None, input_names=names, output_names=output_names,
                                        dynamo=True, dynamic_shapes=dynamic, external_data=False, verbose=False)
        finally:
            quiet.setLevel(level)
    meta["exported_with"]["onnx_opset"] = int(program.model.opset_imports.get("", 0))
    program.model.metadata_props[METADATA_KEY] = json.dumps(meta)
    write_atomically(out, lambda tmp: program.save(tmp, external_data=False))


def _export_torchscript(step, example, meta, out: Path) -> None:
    with warnings.catch_warnings():
        # torch.jit.trace is deprecated in favour of torch.export, but TorchScript is what libtorch (C++)
        # loads without Python, which is what this format is for.
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(step, example, check_trace=False)
        write_atomically(out, lambda tmp: torch.jit.save(traced, tmp, _extra_files={TORCHSCRIPT_EXTRA_FILE: json.dumps(meta)}))


def check_export(step, path: Path, atol: float = CHECK_ATOL, steps: int = 5, seed: int = 0) -> float:
    """Run the written file (``deploy.runtime``) and the PyTorch step side by side on random inputs,
    carrying each one's own state, at batch sizes 1 and 3 -> the largest action difference; ``ExportError``
    above ``atol`` (a conversion that lost an operator or baked in a batch size)."""
    from .runtime import ExportedPolicy

    policy = ExportedPolicy(path)
    rng = np.random.default_rng(seed)
    worst = 0.0
    for batch in (1, 3):
        state = policy.initial_state(batch)
        torch_state = step.example_state(batch)
        prev = np.zeros((batch, policy.act_dim), np.float32)
        for t in range(steps):
            obs = rng.normal(size=(batch, policy.obs_dim)).astype(np.float32)
            rtg = rng.uniform(0, 3600, batch).astype(np.float32)
            times = np.full(batch, t, np.int64)
            try:
                action, state = policy.step(obs, rtg, prev, times, state)
            except Exception as exc:  # e.g. a batch size the conversion fixed
                raise ExportError(f"{path}: the exported step fails at batch {batch} ({type(exc).__name__}: "
                                  f"{' '.join(str(exc).split())[:300]})") from None
            with torch.inference_mode():
                want, *torch_state = step(torch.from_numpy(obs), torch.from_numpy(rtg), torch.from_numpy(prev),
                                          torch.from_numpy(times), *torch_state)
            worst = max(worst, float(np.abs(action - want.numpy()).max()))
            prev = rng.uniform(-1, 1, (batch, policy.act_dim)).astype(np.float32)
    if not worst <= atol:
        raise ExportError(f"{path}: the exported step differs from PyTorch's by {worst:.2e} (> {atol:g}); "
                          "please report it with the checkpoint's model config")
    return worst


def export_agent(agent: DecisionAgent, out: str | Path, fmt: str | None = None, *, mode: str | None = None,
                 info: dict | None = None, action_low=None, action_high=None, check: bool = True) -> dict:
    """Write ``agent``'s rollout step for ``mode`` (default: the agent's default) to ``out`` -> the metadata.

    ``info``: what ``agents.load_agent`` returns beside the agent (``env_id``, ``dataset_id``, reference
    scores, ``config``, ``step``, ``best``), recorded in the metadata. ``action_low``/``action_high``: the
    clipping bounds (default: the env's action space, see :func:`env_action_bounds`).
    """
    out = Path(out)
    fmt = format_for(out, fmt)
    info = dict(info or {})
    try:
        mode = agent.resolve_rollout_mode(mode)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    if action_low is None or action_high is None:
        action_low, action_high, bounds_from = env_action_bounds(info.get("env_id") or "", agent.act_dim)
    else:
        bounds_from = "given"
    step = step_module(agent, mode, action_low, action_high)
    meta = build_metadata(step, agent, mode, fmt, info, action_low, action_high, bounds_from)
    rng = np.random.default_rng(0)
    example = (
        torch.from_numpy(rng.normal(size=(EXAMPLE_BATCH, agent.obs_dim)).astype(np.float32)),
        torch.full((EXAMPLE_BATCH,), 1000.0),
        torch.zeros(EXAMPLE_BATCH, agent.act_dim),
        torch.zeros(EXAMPLE_BATCH, dtype=torch.int64),
        *step.example_state(EXAMPLE_BATCH),
    )
    if fmt == "onnx":
        _export_onnx(step, example, [i["name"] for i in meta["inputs"]], [o["name"] for o in meta["outputs"]],
                     meta, out)
    else:
        _export_torchscript(step, example, meta, out)
    if check:
        meta["check_max_abs_diff"] = check_export(step, out)
    return meta


def export_checkpoint(checkpoint: str | Path, out: str | Path, fmt: str | None = None, *, mode: str | None = None,
                      check: bool = True) -> dict:
    """Load a training checkpoint (``agents.load_agent``) and export it -> the metadata."""
    from rl_minrnn.training import load_agent

    fmt = format_for(out, fmt)  # before loading: a bad name fails fast
    agent, info = load_agent(checkpoint)
    info["checkpoint_file"] = str(checkpoint)
    return export_agent(agent, out, fmt, mode=mode, info=info, check=check)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rl_minrnn.deploy.export", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint written by train_agent.py")
    p.add_argument("--out", type=Path, required=True, help="file to write (.onnx: ONNX; .pt: TorchScript)")
    p.add_argument("--format", choices=["onnx", "torchscript"], help="default: from the --out suffix")
    p.add_argument("--mode", choices=["recurrent", "window"],
                   help="rollout step to export (default: the agent's own: recurrent for the Decision-RNN, "
                   "window for the Decision Transformer)")
    p.add_argument("--no-check", action="store_true", help="skip running the written file against PyTorch")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from rl_minrnn.training import CheckpointError

    torch.set_num_threads(1)
    try:
        meta = export_checkpoint(args.checkpoint, args.out, args.format, mode=args.mode, check=not args.no_check)
    except (CheckpointError, ExportError, ExportedPolicyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # the output folder cannot be made or written
        print(f"error: cannot write {args.out} ({error.strerror or error}); pick a writable --out", file=sys.stderr)
        return 2
    states = ", ".join(f"{s['name']} {tuple('B' if n is None else n for n in s['shape'])}" for s in meta["state"])
    print(f"wrote {args.out} ({meta['exported_with']['format']}, {meta['mode']} step of a {meta['agent']['kind']}, "
          f"env {meta['env_id']}, observation {meta['obs_dim']}, action {meta['act_dim']})")
    print(f"state: {states}; initial values 0")
    if "check_max_abs_diff" in meta:
        print(f"checked against PyTorch: largest action difference {meta['check_max_abs_diff']:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
