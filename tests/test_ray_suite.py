"""The suite on Ray (``benchmarks/ray_suite.py``): a local Ray with 2 CPUs runs 2 tiny trials; one trial's
worker is killed with SIGKILL after its first checkpoints, Ray Tune retries it from its last checkpoint,
and its final weights and every evaluation's score are those of the same run in the local, one-at-a-time
suite. The sweep's YAML expands to the runs it says."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow  # a local Ray and real trials: minutes

pytest.importorskip("ray")

from rl_minrnn.training import read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--protocol", "cpu", "--agents", "mingru", "dt", "--seeds", "0", "--steps", "400", "--eval-every", "10",
        "--episodes", "1", "--final-episodes", "2", "--set", "model.width=16", "--set", "model.depth=1", "--set", "eval.max_episode_steps=5",
        "--set", "eval.target_returns=[100]", "--quiet"]


def checkpoint_step(path: Path) -> int | None:
    try:
        return int(read_checkpoint(path)["step"])
    except Exception:
        return None


def start_ray_suite(args: list[str], run: Path, step: int = 20) -> subprocess.Popen:
    """``python -m benchmarks.suite ARGS --ray --ray-cpus 2`` in the background, returned once ``run`` has a
    checkpoint at ``step`` or later."""
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.suite", *args, "--ray", "--ray-cpus", "2"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 180
    while (checkpoint_step(run / "checkpoints" / "last.pt") or 0) < step:
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise AssertionError(f"no checkpoint at step {step} in {run} in time: {proc.communicate()[0][-3000:]}")
        time.sleep(0.05)
    return proc


def test_a_killed_trial_resumes_from_its_checkpoint_and_ends_as_an_uninterrupted_run(tiny_dataset, tmp_path):
    from benchmarks import suite

    args = ["--datasets", tiny_dataset.dataset_id, *TINY]
    assert suite.main(args + ["--out", str(tmp_path / "local"), "--run-root", str(tmp_path / "local-runs")]) == 0

    run_root = tmp_path / "ray-runs"
    victim = run_root / "cpu" / suite.run_name(tiny_dataset.dataset_id, "mingru", 0)
    proc = start_ray_suite(args + ["--out", str(tmp_path / "ray"), "--run-root", str(run_root)], victim)
    try:
        worker = json.loads((victim / ".lock.owner").read_text())["pid"]  # the trial's process holds the run
        assert worker != proc.pid
        os.kill(worker, signal.SIGKILL)
        killed_at = checkpoint_step(victim / "checkpoints" / "last.pt")
        out, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-3000:]
    assert killed_at < 400, "the trial ended before it was killed; nothing was tested"

    for agent in ("mingru", "dt"):
        name = suite.run_name(tiny_dataset.dataset_id, agent, 0)
        local = json.loads((tmp_path / "local" / "runs" / f"{name}.json").read_text())
        on_ray = json.loads((tmp_path / "ray" / "runs" / f"{name}.json").read_text())
        assert [(e["step"], e["score"]) for e in on_ray["evals"]] == [(e["step"], e["score"]) for e in local["evals"]]
        assert on_ray["config"] == local["config"] and on_ray["last"] == local["last"]
        resumed = on_ray["ray"]["attempt_resumed_from_step"]
        if agent == "mingru":  # from the last checkpoint Tune had persisted before the kill, not from step 0
            assert resumed is not None and 10 <= resumed <= killed_at, (resumed, killed_at)
        else:
            assert resumed is None
        a = read_checkpoint(tmp_path / "local-runs" / "cpu" / name / "checkpoints" / "last.pt")["model"]
        b = read_checkpoint(run_root / "cpu" / name / "checkpoints" / "last.pt")["model"]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), agent
    summary = json.loads((tmp_path / "ray" / "suite.json").read_text())
    assert len(summary["runs"]) == 2 and not summary["notes"]


def test_a_sweep_file_expands_to_its_runs_and_runs_them(tiny_dataset, tmp_path):
    from benchmarks import sweep

    spec = tmp_path / "s.yaml"
    spec.write_text(f"""
protocol: cpu
datasets: [{tiny_dataset.dataset_id}]
agents: [mingru]
seeds: [0]
steps: 4
eval_every: 2
episodes: 1
final_episodes: 2
set: [model.depth=1, eval.max_episode_steps=5, "eval.target_returns=[100]"]
grid:
  model.width: [8, 16]
  model.cell: [mingru, minlstm]
sample: {{n: 1, seed: 0, space: {{train.lr: {{loguniform: [1.0e-4, 1.0e-2]}}}}}}
""")
    out = tmp_path / "out"
    assert sweep.main([str(spec), "--out", str(out), "--run-root", str(tmp_path / "runs"), "--quiet"]) == 0
    records = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    assert sorted((r["config"]["model"]["width"], r["config"]["model"]["cell"]) for r in records) == [
        (8, "mingru"), (8, "minlstm"), (16, "mingru"), (16, "minlstm")]
    lrs = {r["config"]["train"]["lr"] for r in records}
    assert len(lrs) == 1 and 1e-4 <= lrs.pop() <= 1e-2  # one seeded draw, crossed with the grid
    assert all(r["variant"][:2] == [f"model.width={r['config']['model']['width']}", f"model.cell={r['config']['model']['cell']}"]
               for r in records)
    md = (out / "sweep.md").read_text()
    assert "width8_cellminlstm_lr" in md and md.count("(n=1)") == 4

    spec.write_text(spec.read_text().replace("model.width:", "model.widht:"))
    proc = subprocess.run([sys.executable, "-m", "benchmarks.sweep", str(spec), "--dry-run"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "widht" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_an_interrupted_ray_suite_continues_where_it_stopped(tiny_dataset, tmp_path):
    """Ctrl-C on the driver stops the whole suite; ``--resume-ok`` then skips the finished runs and continues
    the unfinished one from its run folder's checkpoint, ending with the weights of an uninterrupted run."""
    from benchmarks import suite

    args = ["--datasets", tiny_dataset.dataset_id, *TINY[:TINY.index("--agents") + 1], "mingru",
            *TINY[TINY.index("--seeds"):], "--out", str(tmp_path / "ray"), "--run-root", str(tmp_path / "ray-runs")]
    run = tmp_path / "ray-runs" / "cpu" / suite.run_name(tiny_dataset.dataset_id, "mingru", 0)
    proc = start_ray_suite(args, run)
    try:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    stopped_at = checkpoint_step(run / "checkpoints" / "last.pt")
    assert stopped_at < 400 and not (tmp_path / "ray" / "runs" / f"{run.name}.json").exists(), out[-2000:]

    again = subprocess.run([sys.executable, "-m", "benchmarks.suite", *args, "--ray", "--ray-cpus", "2", "--resume-ok"],
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=240)
    assert again.returncode == 0, again.stdout[-3000:]
    record = json.loads((tmp_path / "ray" / "runs" / f"{run.name}.json").read_text())
    assert 10 <= record["ray"]["attempt_resumed_from_step"] <= stopped_at
    assert [e["step"] for e in record["evals"]] == list(range(10, 401, 10))

    assert suite.main(args[:-4] + ["--out", str(tmp_path / "local"), "--run-root", str(tmp_path / "local-runs")]) == 0
    a = read_checkpoint(tmp_path / "local-runs" / "cpu" / run.name / "checkpoints" / "last.pt")["model"]
    b = read_checkpoint(run / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    local = json.loads((tmp_path / "local" / "runs" / f"{run.name}.json").read_text())
    assert [e["score"] for e in record["evals"]] == [e["score"] for e in local["evals"]]
