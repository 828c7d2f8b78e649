"""Faults, driven through the real command lines in subprocesses (``docs/faults.md`` lists each probe).

A run killed with SIGKILL resumes bit-exactly; a second trainer on a run folder in use is refused at
once; a diverging config stops at the first non-finite loss and never writes non-finite weights; an
environment that fails during evaluation leaves ``last.pt`` of the step reached; a checkpoint write that
fails part-way leaves the previous file intact; a dataset holding NaN is refused at load; a diverged
checkpoint is not stepped into MuJoCo. Every failure is one ``error:`` line and a documented exit code
(2: bad input, nothing done; 3: training stopped on a fault, what was kept said in the message).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rl_minrnn.training import read_checkpoint, save_checkpoint
from rl_minrnn.training import RunInUseError, RunLock

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["model.width=16", "model.depth=1", "model.context=5", "model.dropout=0.1", "train.batch_size=8",
         "train.warmup_steps=10", "train.log_every=10", "eval.every=0", "eval.at_end=false", "train.threads=1"]

# Runs a CLI script as ``__main__`` after a fault-injection prelude (``FAULT``), in a fresh interpreter.
RUNNER = "import runpy, sys; exec(sys.argv.pop(1)); sys.argv.pop(0); runpy.run_path(sys.argv[0], run_name='__main__')"


def cli(script: str, *args: str, fault: str = "", wait: bool = True, preexec_fn=None, timeout: float = 240):
    """``python script args`` (with ``fault`` executed first); returns the CompletedProcess or Popen."""
    cmd = [sys.executable, "-c", RUNNER, fault, str(ROOT / script), *args]
    kwargs = dict(cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn)
    if not wait:
        return subprocess.Popen(cmd, **kwargs)
    return subprocess.run(cmd, timeout=timeout, **kwargs)


def train_args(run: Path, dataset_id: str, *sets: str) -> list[str]:
    args = ["--no-progress", "--run-dir", str(run), "--set", f"dataset.id={dataset_id}"]
    for s in SMALL + list(sets):
        args += ["--set", s]
    return args


def assert_one_line_error(proc, code: int, *phrases: str) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout[-2000:], proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    for phrase in phrases:
        assert phrase in errors[0], (phrase, errors[0])
    return errors[0]


def wait_for(predicate, proc, what: str, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"the trainer ended before {what}: {proc.stdout.read()[-2000:]} {proc.stderr.read()[-3000:]}")
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def checkpoint_step(path: Path) -> int | None:
    try:
        return int(read_checkpoint(path)["step"])
    except Exception:
        return None


def all_finite(path: Path) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in read_checkpoint(path)["model"].values() if v.is_floating_point())


# ----------------------------------------------------------------------------------------- SIGKILL


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_exact_and_leaves_no_stale_lock(tiny_dataset, tmp_path):
    steps = ["train.steps=600", "train.checkpoint_every=10"]
    straight = cli("train_agent.py", *train_args(tmp_path / "straight", tiny_dataset.dataset_id, *steps))
    assert straight.returncode == 0, straight.stderr

    run = tmp_path / "killed"
    proc = cli("train_agent.py", *train_args(run, tiny_dataset.dataset_id, *steps), wait=False)
    wait_for(lambda: (checkpoint_step(run / "checkpoints" / "last.pt") or 0) >= 20, proc, "a checkpoint at step 20")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    killed_at = checkpoint_step(run / "checkpoints" / "last.pt")
    assert killed_at is not None and killed_at < 600, "the run ended before it was killed; nothing was tested"
    assert (run / ".lock").exists()  # the killed process's lock file is still there...

    resumed = cli("train_agent.py", "--no-progress", "--resume", str(run))  # ...and does not block
    assert resumed.returncode == 0, resumed.stderr
    assert f"Resuming {run} at step {killed_at}" in resumed.stdout
    a = read_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")["model"]
    b = read_checkpoint(run / "checkpoints" / "last.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------------------- one trainer per folder


@pytest.mark.slow
def test_a_second_trainer_on_a_run_folder_in_use_is_refused_at_once(tiny_dataset, tmp_path):
    run = tmp_path / "run"
    first = cli("train_agent.py", *train_args(run, tiny_dataset.dataset_id, "train.steps=1000000",
                                              "train.checkpoint_every=1000000"), wait=False)
    try:
        wait_for(lambda: (run / "metrics.jsonl").exists() and (run / "metrics.jsonl").stat().st_size > 0,
                 first, "the first trainer's first log line")
        second = cli("train_agent.py", *train_args(run, tiny_dataset.dataset_id, "train.steps=30"), timeout=120)
        assert_one_line_error(second, 2, "in use by another training process", f"pid {first.pid}")
        assert first.poll() is None  # refused while the first one still runs
        assert not (run / "checkpoints").exists()  # the second wrote nothing

        first.send_signal(signal.SIGINT)  # the first saves and exits; its folder resumes normally afterwards
        _, err = first.communicate(timeout=60)
        assert first.returncode == 130, err
    finally:
        if first.poll() is None:
            first.kill()
    resumed = cli("train_agent.py", "--no-progress", "--resume", str(run), "--set", "train.steps=5")
    assert resumed.returncode == 0, resumed.stderr


def test_run_lock_is_exclusive_and_released(tmp_path):
    first = RunLock.acquire(tmp_path / "run")
    with pytest.raises(RunInUseError, match=f"pid {os.getpid()}"):
        RunLock.acquire(tmp_path / "run")
    first.release()
    RunLock.acquire(tmp_path / "run").release()


# ----------------------------------------------------------------------------------------- divergence


EVAL_EVERY_STEP = ["eval.every=1", "eval.episodes=1", "eval.max_episode_steps=5", "eval.target_returns=[100]",
                   "eval.final_episodes=1"]


@pytest.mark.slow
@pytest.mark.parametrize("evaluating", [False, True], ids=["loss", "evaluation"])
def test_a_diverging_config_stops_at_the_first_non_finite_value_and_keeps_finite_checkpoints(evaluating, tiny_dataset,
                                                                                            tmp_path):
    """Without evaluation the loss turns NaN first; with an evaluation after every step, the actions of
    still-finite but exploded weights turn NaN first: both stop, and no checkpoint holds those weights."""
    run = tmp_path / "run"
    proc = cli("train_agent.py", *train_args(run, tiny_dataset.dataset_id, "train.steps=200", "train.lr=1e6",
                                             "train.grad_clip=0", "train.checkpoint_every=1",
                                             *(EVAL_EVERY_STEP if evaluating else [])))
    error = assert_one_line_error(proc, 3, "Training diverged at step", "actions are non-finite" if evaluating else "loss nan",
                                  "train.lr (now 1e+06)", "train.grad_clip (now off")
    diverged_at = int(error.split("Training diverged at step ")[1].split(":")[0])
    assert diverged_at < 200
    last = run / "checkpoints" / "last.pt"
    assert checkpoint_step(last) == diverged_at - 1 and f"holds step {diverged_at - 1}" in error
    for path in (run / "checkpoints").glob("*.pt"):
        assert all_finite(path), path


# ----------------------------------------------------------------------------------------- a failing environment


ENV_FAULT = """
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
_step, _calls = HopperEnv.step, [0]
def _failing_step(self, action):
    _calls[0] += 1
    if _calls[0] == 4:
        raise RuntimeError("injected fault: the simulator failed")
    return _step(self, action)
HopperEnv.step = _failing_step
"""


@pytest.mark.slow
def test_an_evaluation_that_fails_keeps_the_step_reached(tiny_dataset, tmp_path):
    run = tmp_path / "run"
    args = train_args(run, tiny_dataset.dataset_id, "train.steps=100", "train.checkpoint_every=1000",
                      "eval.every=20", "eval.episodes=2", "eval.target_returns=[100]",
                      "eval.final_episodes=1")
    proc = cli("train_agent.py", *args, fault=ENV_FAULT)
    assert_one_line_error(proc, 3, "The evaluation at step 20 failed", "injected fault", "saved at step 20",
                          f"--resume {run}", "eval.every=0")
    assert checkpoint_step(run / "checkpoints" / "last.pt") == 20
    assert "injected fault" in (run / "error.log").read_text()
    resumed = cli("train_agent.py", "--no-progress", "--resume", str(run), "--set", "eval.every=0")
    assert resumed.returncode == 0, resumed.stderr
    assert checkpoint_step(run / "checkpoints" / "last.pt") == 100


# ----------------------------------------------------------------------------------------- a failing write


@pytest.mark.slow
def test_a_checkpoint_write_that_fails_part_way_leaves_the_previous_file_intact(tiny_dataset, tmp_path):
    """The write fails for real: the resumed trainer may not write files larger than half a checkpoint
    (RLIMIT_FSIZE: the kernel refuses the write part-way with EFBIG), as on a disk that fills up."""
    run = tmp_path / "run"
    first = cli("train_agent.py", *train_args(run, tiny_dataset.dataset_id, "train.steps=20"))
    assert first.returncode == 0, first.stderr
    last = run / "checkpoints" / "last.pt"
    before = last.read_bytes()
    limit = len(before) // 2

    def small_files_only():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = cli("train_agent.py", "--no-progress", "--resume", str(run), "--set", "train.steps=40",
               preexec_fn=small_files_only)
    assert_one_line_error(proc, 3, f"Could not write the checkpoint {last}", "the previous file is intact",
                          "holds step 20", f"--resume {run}")
    assert last.read_bytes() == before
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["last.pt"]  # no temporary file left behind


# ----------------------------------------------------------------------------------------- non-finite data


def copy_with_nan(minari_store: Path, source_id: str, new_id: str, field: str, episode: int, step: int) -> None:
    import h5py

    src, dst = minari_store / source_id, minari_store / new_id
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    meta = json.loads((dst / "data" / "metadata.json").read_text())
    meta["dataset_id"] = new_id
    (dst / "data" / "metadata.json").write_text(json.dumps(meta))
    with h5py.File(dst / "data" / "main_data.hdf5", "r+") as f:
        values = f[f"episode_{episode}"][field]
        row = values[step]
        values[step] = np.full_like(row, np.nan) if np.ndim(row) else np.nan


@pytest.mark.parametrize("field", ["observations", "actions", "rewards"])
def test_a_dataset_holding_nan_is_refused_at_load(field, tiny_dataset, minari_store):
    from rl_minrnn.envs.offline import DatasetFormatError, load_dataset

    new_id = f"test/hopper/nan-{field}-v0"
    copy_with_nan(minari_store, tiny_dataset.dataset_id, new_id, field, episode=2, step=3)
    with pytest.raises(DatasetFormatError, match=f"episode 2: {field} hold .* non-finite value.*step 3"):
        load_dataset(new_id)


def test_training_on_a_nan_dataset_is_refused(tiny_dataset, minari_store, tmp_path):
    new_id = "test/hopper/nan-cli-v0"
    copy_with_nan(minari_store, tiny_dataset.dataset_id, new_id, "rewards", episode=1, step=0)
    proc = cli("train_agent.py", *train_args(tmp_path / "run", new_id, "train.steps=10"))
    assert_one_line_error(proc, 2, "episode 1: rewards hold 1 non-finite value", "step 0")
    assert not (tmp_path / "run" / "checkpoints").exists()


# ----------------------------------------------------------------------------------------- a diverged checkpoint


def test_a_diverged_checkpoint_is_not_stepped_into_mujoco(tiny_dataset, tmp_path):
    from rl_minrnn.training import Trainer
    from rl_minrnn.training.options import load_config

    Trainer(load_config(overrides=SMALL + ["train.steps=5"]), tmp_path / "run", progress=False, dataset=tiny_dataset).run()
    data = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    data["model"]["head.linear.weight"] = torch.full_like(data["model"]["head.linear.weight"], float("nan"))
    save_checkpoint(tmp_path / "nan.pt", {k: v for k, v in data.items() if k != "format"})
    proc = cli("evaluate.py", "--checkpoint", str(tmp_path / "nan.pt"), "--episodes", "2", "--no-progress",
               "--target-return", "100")
    assert_one_line_error(proc, 2, "non-finite action", "step 0 of episode 0", "head.linear.weight")


def test_non_finite_actions_never_reach_the_environment(monkeypatch):
    """An agent whose actions turn NaN at its third step: the rollout stops before that step."""
    from gymnasium.envs.mujoco.hopper_v5 import HopperEnv

    from rl_minrnn.envs.evaluation.rollout import NonFiniteActionError, evaluate_agent

    class TurnsNaN:
        obs_dim, act_dim = 11, 3

        def reset(self, batch_size, mode=None):
            self.t = 0

        def act(self, returns_to_go, states):
            return np.full((len(states), 3), np.nan if self.t >= 2 else 0.1, dtype=np.float32)

        def observe(self, actions):
            self.t += 1

    stepped = []
    real_step = HopperEnv.step
    monkeypatch.setattr(HopperEnv, "step", lambda self, a: (stepped.append(np.array(a)), real_step(self, a))[1])
    with pytest.raises(NonFiniteActionError, match="at step 2 of episode 0"):
        evaluate_agent(TurnsNaN(), "Hopper-v5", 2, [100.0], ref_scores=None)
    assert len(stepped) == 4 and all(np.isfinite(a).all() for a in stepped)


# ----------------------------------------------------------------------------------------- bad input stays one line


@pytest.mark.parametrize("case", ["truncated checkpoint to evaluate", "truncated checkpoint to resume",
                                  "missing checkpoint", "truncated dataset file"])
def test_bad_files_are_one_line_errors(case, tiny_dataset, minari_store, tmp_path):
    from rl_minrnn.training import Trainer
    from rl_minrnn.training.options import load_config

    run = tmp_path / "run"
    Trainer(load_config(overrides=SMALL + ["train.steps=5"]), run, progress=False, dataset=tiny_dataset).run()
    last = run / "checkpoints" / "last.pt"
    if case == "truncated checkpoint to evaluate":
        last.write_bytes(last.read_bytes()[:5000])
        proc = cli("evaluate.py", "--checkpoint", str(last), "--no-progress")
        assert_one_line_error(proc, 2, "not a readable rl_minrnn checkpoint")
    elif case == "truncated checkpoint to resume":
        last.write_bytes(last.read_bytes()[:5000])
        proc = cli("train_agent.py", "--no-progress", "--resume", str(run))
        assert_one_line_error(proc, 2, "not a readable rl_minrnn checkpoint")
    elif case == "missing checkpoint":
        proc = cli("evaluate.py", "--checkpoint", str(tmp_path / "nothing.pt"), "--no-progress")
        assert_one_line_error(proc, 2, "does not exist")
    else:
        new_id = "test/hopper/truncated-v0"
        shutil.rmtree(minari_store / new_id, ignore_errors=True)
        shutil.copytree(minari_store / tiny_dataset.dataset_id, minari_store / new_id)
        data = minari_store / new_id / "data" / "main_data.hdf5"
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
        proc = cli("train_agent.py", *train_args(tmp_path / "run2", new_id, "train.steps=5"))
        assert_one_line_error(proc, 2, "Cannot read the Minari dataset", "rebuild")


def test_checkpoints_get_the_usual_file_permissions(tiny_dataset, tmp_path):
    """``mkstemp`` makes its file private (0600); a checkpoint others on the machine may evaluate keeps
    the umask's permissions after the atomic rename."""
    from rl_minrnn.training import Trainer
    from rl_minrnn.training.options import load_config

    umask = os.umask(0o022)
    try:
        Trainer(load_config(overrides=SMALL + ["train.steps=2"]), tmp_path, progress=False, dataset=tiny_dataset).run()
    finally:
        os.umask(umask)
    assert (tmp_path / "checkpoints" / "last.pt").stat().st_mode & 0o777 == 0o644


FINAL_FAULT = """
from rl_minrnn.training.trainer import Trainer
def _fail(self, policy):
    raise RuntimeError("injected fault: the final evaluation's simulator failed")
Trainer._evaluate_final = _fail
"""


@pytest.mark.slow
def test_a_final_evaluation_that_fails_keeps_the_trained_checkpoints(tiny_dataset, tmp_path):
    run = tmp_path / "run"
    args = train_args(run, tiny_dataset.dataset_id, "train.steps=20", "eval.every=10", "eval.episodes=1",
                      "eval.max_episode_steps=5", "eval.target_returns=[100]", "eval.final_episodes=2")
    proc = cli("train_agent.py", *args, fault=FINAL_FAULT)
    assert_one_line_error(proc, 3, "The final evaluation of the last checkpoint (step 20) failed", "injected fault",
                          "checkpoints are saved", "eval.final_episodes=0")
    assert read_checkpoint(run / "checkpoints" / "last.pt")["step"] == 20
