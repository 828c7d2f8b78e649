"""The outside yardstick: d3rlpy's DecisionTransformer on the same data, budget, settings and evaluation
episodes as the suite's agents.

d3rlpy 2.8.1 pins gymnasium 1.0.0, so it cannot share this project's environment: this module creates a
virtual environment of its own (``benchmarks/peers/.venv-d3rlpy`` by default, once, about 15 s with the
wheels cached: ``d3rlpy==2.8.1``, ``gymnasium[mujoco]==1.0.0`` and the torch release this project runs
on), writes the dataset as flat D4RL-style arrays, and runs ``d3rlpy_worker.py`` there. The suite calls
:func:`train_and_evaluate` for its ``d3rlpy_dt`` agent; to run it alone:

    python -m benchmarks.suite --protocol cpu --agents d3rlpy_dt --datasets local/halfcheetah/medium-v0 --seeds 0

Settings, from the run's resolved config (the suite's Decision Transformer config for that dataset):
``DecisionTransformerConfig(batch_size, learning_rate=lr, context_size=K, num_heads, num_layers=depth,
max_timestep, attn/resid/embed_dropout=dropout, position_encoding_type=GLOBAL,
encoder_factory=VectorEncoderFactory([width], exclude_last_activation=True),
observation_scaler=StandardObservationScaler(), reward_scaler=MultiplyRewardScaler(1 / return_scale),
optim_factory=GPTAdamWFactory(weight_decay, clip_grad_norm=grad_clip,
lr_scheduler_factory=WarmupSchedulerFactory(warmup_steps)))``; everything else is d3rlpy's default
(ReLU MLPs; interleaved R, s, a tokens, its only layout). Evaluation: ``as_stateful_wrapper(target)`` per
episode, a target's episodes stepped together through one forward pass of d3rlpy's model
(``d3rlpy_worker.play_batch``, checked against the wrapper alone by ``--check-batched``), episode ``i``
reset with ``eval.seed + i``, the scores normalised with the dataset's
reference returns exactly as for the project's agents (``envs.evaluation.rollout.EvaluationResult``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from rl_minrnn.threads import OPENMP_ENV, default_threads

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).resolve().parent / "d3rlpy_worker.py"
DEFAULT_VENV = Path(__file__).resolve().parent / ".venv-d3rlpy"
D3RLPY = "d3rlpy==2.8.1"
GYMNASIUM = "gymnasium[mujoco]==1.0.0"


class PeerUnavailable(RuntimeError):
    """The peer's virtual environment cannot be created or used here (the message says why and what to do)."""


def peer_requirements() -> list[str]:
    """What the peer venv installs: torch first (the release this project runs on, so that pip takes the
    same build instead of pulling a CUDA one for d3rlpy's ``torch`` requirement), then d3rlpy."""
    return [f"torch=={torch.__version__.split('+')[0]}", D3RLPY, GYMNASIUM]


def ensure_venv(venv: Path = DEFAULT_VENV, log=print) -> Path:
    """The peer venv's python, creating the venv first if it is missing or incomplete."""
    venv = Path(venv)
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import d3rlpy, gymnasium, mujoco; print(d3rlpy.__version__, gymnasium.__version__)"]
    if python.is_file() and subprocess.run(check, capture_output=True, text=True).returncode == 0:
        return python
    log(f"Creating the d3rlpy peer environment in {venv} ({', '.join(peer_requirements())}) ...")
    steps = [[sys.executable, "-m", "venv", str(venv)],
             [str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"]]
    steps += [[str(python), "-m", "pip", "install", "-q", requirement] for requirement in peer_requirements()]
    for args in steps:
        done = subprocess.run(args, capture_output=True, text=True)
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
            raise PeerUnavailable(f"could not set up the d3rlpy peer environment ({' '.join(args[-3:])} failed):\n"
                                  f"{tail}\nIt needs the package index (pip); remove {venv} and retry when it is reachable.")
    done = subprocess.run(check, capture_output=True, text=True)
    if done.returncode != 0:
        raise PeerUnavailable(f"the d3rlpy peer environment in {venv} does not import d3rlpy: {done.stderr.strip()[-500:]}")
    return python


def export_dataset(dataset, path: Path) -> Path:
    """The episodes as flat arrays in D4RL's layout (one row per step, an episode ends at ``terminals`` or
    ``timeouts``), the input d3rlpy's ``MDPDataset`` takes. Written once per dataset."""
    path = Path(path)
    if path.is_file():
        return path
    episodes = dataset.episodes
    ends = [np.zeros(len(ep), dtype=bool) for ep in episodes]
    terminals = [e.copy() for e in ends]
    timeouts = [e.copy() for e in ends]
    for ep, term, timeout in zip(episodes, terminals, timeouts):
        if bool(np.asarray(ep.terminations)[-1]):
            term[-1] = True
        else:  # truncated, or cut by the end of the data: either way the episode ends here
            timeout[-1] = True
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")  # concurrent runs (Ray trials) each write their own
    np.savez(tmp,
             observations=np.concatenate([ep.observations[:-1] for ep in episodes]).astype(np.float32),
             actions=np.concatenate([ep.actions for ep in episodes]).astype(np.float32),
             rewards=np.concatenate([ep.rewards for ep in episodes]).astype(np.float32),
             terminals=np.concatenate(terminals).astype(np.float32),
             timeouts=np.concatenate(timeouts).astype(np.float32))
    os.replace(tmp, path)
    return path


def worker_spec(config, dataset, data_path: Path) -> dict:
    """The d3rlpy run's settings, from the suite's resolved config for this dataset and seed."""
    m, t, e = config.model, config.train, config.eval
    device = "cpu"
    if t.device == "cuda" or (t.device == "auto" and torch.cuda.is_available()):
        device = "cuda:0"
    return {
        "data": str(data_path), "env_id": dataset.env_id, "seed": config.seed,
        "threads": t.threads or default_threads(), "device": device,
        "width": m.width, "depth": m.depth, "heads": m.heads, "context": m.context, "dropout": m.dropout,
        "max_timestep": m.max_timestep, "batch_size": t.batch_size, "lr": t.lr, "weight_decay": t.weight_decay,
        "grad_clip": t.grad_clip, "warmup_steps": t.warmup_steps, "return_scale": config.dataset.return_scale,
        "steps": t.steps, "eval_every": e.every, "episodes": e.episodes, "target_returns": list(e.target_returns),
        "eval_seed": e.seed, "max_episode_steps": e.max_episode_steps, "lr_schedule": t.lr_schedule,
        "lr_final": t.lr_final, "final_episodes": e.final_episodes if e.every else 0, "final_seed": e.final_seed,
        "eval_batch": 0,  # a target's episodes stepped together, as evaluate_agent steps the project's agents
    }


def to_final(raw: dict | None, dataset, spec: dict, best_in_run: float | None) -> dict | None:
    """The worker's final evaluation in ``Trainer.final_evaluation``'s layout (scores normalised here)."""
    if not raw:
        return None
    out = {"step": raw["last"]["step"], "episodes": raw["episodes"], "seed": raw["seed"],
           "target_returns": list(spec["target_returns"]), "ema": 0.0, "seconds": raw["seconds"]}
    for name in ("last", "best"):
        if name in raw:
            result = to_evaluation(raw[name]["targets"], dataset, {**spec, "episodes": raw["episodes"],
                                                                   "eval_seed": raw["seed"]})
            out[name] = {"step": raw[name]["step"], "score": result.score(), "episodes": raw["episodes"],
                         "in_run_score": best_in_run if name == "best" else None,
                         "targets": [t.summary() for t in result.targets]}
    out.setdefault("best", {**out["last"], "same_as_last": True})
    return out


def to_evaluation(targets: list[dict], dataset, spec: dict):
    """A worker evaluation as this project's ``EvaluationResult`` (the same summaries and score)."""
    from rl_minrnn.envs.evaluation.results import EvaluationResult, TargetResult
    from rl_minrnn.envs.scores import ReferenceScores

    refs = None
    if dataset.ref_min_score is not None and dataset.ref_max_score is not None:
        refs = ReferenceScores(dataset.ref_min_score, dataset.ref_max_score, "dataset")
    batch = spec.get("eval_batch", 1) or spec["episodes"]
    result = EvaluationResult(dataset.env_id, "d3rlpy-stateful-wrapper", spec["episodes"], spec["eval_seed"],
                              min(batch, spec["episodes"]), spec["max_episode_steps"], refs)
    for t in targets:
        returns = np.asarray(t["returns"], dtype=np.float64)
        result.targets.append(TargetResult(
            target_return=t["target_return"], returns=returns, lengths=np.asarray(t["lengths"], dtype=np.int64),
            normalized_scores=refs.normalize(returns) if refs else None, agent_ms=np.asarray(t["agent_ms"]),
            env_ms=np.asarray(t["env_ms"]), active=np.asarray(t.get("active", np.ones(len(t["agent_ms"])))),
            wall_s=t["wall_s"]))
    return result


def prepare(config, dataset, log, venv: Path, data_dir: Path | None) -> tuple[Path, dict]:
    """The peer venv's python (created if missing) and the worker spec, the dataset exported for it."""
    python = ensure_venv(venv, log)
    data_dir = Path(data_dir or Path(tempfile.gettempdir()) / "rl_minrnn_peer_data")
    data_path = export_dataset(dataset, data_dir / f"{dataset.dataset_id.replace('/', '_')}.npz")
    return python, worker_spec(config, dataset, data_path)


def run_worker(python: Path, spec: dict, log=print, extra_args: tuple[str, ...] = ()) -> dict:
    """``d3rlpy_worker.py`` on ``spec`` in the peer venv -> its OUT json; its evaluation lines are logged."""
    with tempfile.TemporaryDirectory(prefix="d3rlpy_run_") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec))
        env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]), **OPENMP_ENV}
        process = subprocess.Popen([str(python), str(WORKER), str(spec_path), str(out_path), *extra_args], cwd=tmp,
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        for line in process.stdout:
            lines.append(line.rstrip())
            if line.startswith("step "):
                log(f"  d3rlpy {line.rstrip()}")
        if process.wait() != 0 or not out_path.is_file():
            raise RuntimeError("the d3rlpy worker failed:\n" + "\n".join(lines[-15:]))
        return json.loads(out_path.read_text())


def check_batched_evaluation(config, dataset, log=print, venv: Path = DEFAULT_VENV, data_dir: Path | None = None) -> dict:
    """Train as ``train_and_evaluate`` does, then compare the worker's batched evaluation with d3rlpy's
    one-episode-at-a-time wrapper (``d3rlpy_worker.check``): the largest action difference over every
    batched step replayed through a fresh wrapper, and the returns and seconds of both ways."""
    python, spec = prepare(config, dataset, log, venv, data_dir)
    spec["final_episodes"] = 0
    out = run_worker(python, spec, log, ("--check-batched",))
    return {**out, "dataset": dataset.dataset_id, "steps": spec["steps"], "episodes": spec["episodes"],
            "target_returns": spec["target_returns"], "spec": {k: v for k, v in spec.items() if k != "data"}}


def train_and_evaluate(config, dataset, log=print, venv: Path = DEFAULT_VENV, data_dir: Path | None = None) -> dict:
    """Run d3rlpy's DT for ``config`` on ``dataset`` -> the outcome the suite records for one run: ``evals``
    (step, train_s, eval_s, score, targets summaries), ``steps``, ``parameters``, seconds, ``peer`` versions."""
    python, spec = prepare(config, dataset, log, venv, data_dir)
    raw = run_worker(python, spec, log)
    evals = []
    for e in raw["evals"]:
        result = to_evaluation(e["targets"], dataset, spec)
        summaries = [t.summary() for t in result.targets]
        evals.append({"step": e["step"], "train_s": e["train_s"], "eval_s": e["eval_s"], "score": result.score(),
                      "targets": summaries})
    final = to_final(raw.get("final"), dataset, spec, max((e["score"] for e in evals), default=None))
    return {"evals": evals, "final": final, "steps": raw["steps"], "parameters": raw["parameters"], "setup_s": raw["setup_s"],
            "train_s": raw["train_s"], "eval_s": raw["eval_s"], "wall_s": raw["wall_s"],
            "peer": {"library": "d3rlpy", "version": raw["d3rlpy"], "gymnasium": raw["gymnasium"],
                     "torch": raw["torch"], "spec": {k: v for k, v in spec.items() if k != "data"}}}

