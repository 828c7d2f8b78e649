"""The Python API (``rl_minrnn.api``), progress in files, experiment trackers and the console commands."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import types
from importlib import import_module
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml

import rl_minrnn
from rl_minrnn import api
from rl_minrnn.configs.schema import ConfigError
from rl_minrnn.training.options import load_config
from rl_minrnn.progress import LineProgress, line_interval, progress_bar

ROOT = Path(__file__).resolve().parents[1]
TINY = {"model.width": 16, "model.depth": 1, "model.context": 5, "train.batch_size": 8, "train.warmup_steps": 10,
        "train.log_every": 10, "train.threads": 1, "eval.episodes": 2, "eval.max_episode_steps": 30,
        "eval.final_episodes": 2}


def tiny_train(dataset_id, run_dir, **overrides):
    return api.train(dataset=dataset_id, overrides={**TINY, **overrides}, run_dir=run_dir, progress=False,
                     log=lambda *a: None)


@pytest.fixture(scope="module")
def trained(tiny_dataset, tmp_path_factory):
    """A tiny run with two evaluations, through the API."""
    return tiny_train(tiny_dataset.dataset_id, tmp_path_factory.mktemp("api") / "run", **{"train.steps": 40,
                      "eval.every": 20})


# ------------------------------------------------------------------------------------------ the README

def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- python-api-example -->.*?```python\n(.*?)```", text, re.S)
    assert match, "README.md lost its Python API example (the block after <!-- python-api-example -->)"
    return match.group(1)


@pytest.mark.slow
def test_readme_python_api_example_runs(tmp_path, monkeypatch, capsys):
    """The README's example as written (train on the shipped sample, load, evaluate, one episode), with a
    tiny budget added to its ``train`` call as ``--set`` would; at most ten lines of code."""
    code = readme_example()
    assert len([line for line in code.splitlines() if line.strip()]) <= 10
    calls = []
    real_train = api.train

    def tiny(*args, **kwargs):
        kwargs["overrides"] = {**TINY, "train.steps": 20, "eval.every": 10, **(kwargs.get("overrides") or {})}
        kwargs.setdefault("run_dir", tmp_path / "run")
        calls.append(real_train(*args, **kwargs))
        return calls[-1]

    monkeypatch.setattr(api, "train", tiny)
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__main__"}
    exec(compile(code, "README.md", "exec"), namespace)
    (result,) = calls
    assert result.step == 20 and result.dataset_id == "local/hopper/sample-v0"
    assert result.checkpoint == tmp_path / "run" / "checkpoints" / "last.pt" and result.checkpoint.is_file()
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert float(printed) == pytest.approx(float(printed))  # the score, a number
    policy = namespace["policy"]
    assert policy.timestep > 0 and policy.return_to_go < 3600  # the episode ran, rewards were counted


# ------------------------------------------------------------------------------------------ train

def test_train_takes_a_config_in_any_form(tiny_dataset, tmp_path):
    """A dataclass, a dict, a YAML file and a dataset id give the same config."""
    sets = [f"{k}={json.dumps(v)}" for k, v in TINY.items()] + [f"dataset.id={tiny_dataset.dataset_id}"]
    want = load_config([ROOT / "configs" / "hopper-medium.yaml"], sets)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(want.to_dict()))
    log = lambda *a: None  # noqa: E731
    forms = [api.resolve_config(want, log=log), api.resolve_config(want.to_dict(), log=log),
             api.resolve_config(path, log=log), api.resolve_config([path], log=log),
             api.resolve_config(dataset=tiny_dataset.dataset_id, overrides=TINY, log=log)]
    for config, _ in forms:
        assert config == want
    assert forms[2][1] == "c"
    with pytest.raises(ConfigError, match="model.width"):
        api.resolve_config(want, overrides={"model.width": -1}, log=log)
    with pytest.raises(ConfigError, match="give a config"):
        api.resolve_config(log=log)


def test_train_returns_scores_paths_and_metrics(trained):
    assert trained.step == 40 and trained.best_step in (20, 40)
    assert trained.checkpoint == trained.run_dir / "checkpoints" / "last.pt" and trained.best_checkpoint.is_file()
    assert trained.final["last"]["step"] == 40 and trained.final_score == trained.final["last"]["score"]
    history = trained.history()
    evals = [e for e in history if any(k.startswith("eval/") for k in e)]
    assert [e["step"] for e in evals] == [20, 40]
    assert trained.metrics == {k: v for k, v in evals[-1].items() if k != "step"}
    assert trained.score == pytest.approx(max(trained.metrics["eval/3600_normalized_score_mean"],
                                              trained.metrics["eval/1800_normalized_score_mean"]))


# ------------------------------------------------------------------------------------------ policies

def run_episode(policy, seed, max_steps):
    env = gym.make(policy.env_id)
    observation, _ = env.reset(seed=seed)
    policy.reset()
    reward, total, steps = 0.0, 0.0, 0
    while steps < max_steps:
        observation, reward, terminated, truncated, _ = env.step(policy.act(observation, reward))
        total, steps = total + reward, steps + 1
        if terminated or truncated:
            break
    env.close()
    return total, steps, reward


@pytest.mark.parametrize("exported", [False, True])
@pytest.mark.slow
def test_policy_act_gives_the_rollouts_returns(trained, tmp_path, exported):
    """Acting step by step with the policy (its return-to-go and state inside) gives the batched rollout's
    return for the same seed, for a checkpoint and for its ONNX export; reset starts afresh."""
    path = trained.checkpoint
    if exported:
        from rl_minrnn.deploy import export as exporter

        path = tmp_path / "p.onnx"
        assert exporter.main(["--checkpoint", str(trained.checkpoint), "--out", str(path)]) == 0
    policy = rl_minrnn.load_policy(path, target_return=1800)
    assert policy.target_return == 1800 and policy.env_id == "Hopper-v5"
    result = rl_minrnn.evaluate(policy, episodes=1, seed=7, max_episode_steps=30)
    (target,) = result.targets
    want_return, want_length = float(target.returns[0]), int(target.lengths[0])
    total, steps, last_reward = run_episode(policy, 7, 30)
    assert steps == want_length
    assert total == pytest.approx(want_return, rel=1e-5, abs=1e-4)
    # each act subtracted the previous step's reward: all but the last are in the return-to-go
    assert policy.return_to_go == pytest.approx(1800 - (total - last_reward), abs=1e-6)
    assert run_episode(policy, 7, 30) == pytest.approx((total, steps, last_reward))  # reset: the same episode again


def test_policy_checks_its_input(trained):
    policy = rl_minrnn.load_policy(trained.checkpoint)
    assert policy.target_return == 3600  # the run's first evaluation target
    with pytest.raises(ValueError, match=r"takes \(11,\)"):
        policy.act(np.zeros(5))
    with pytest.raises(ValueError, match="rollout modes"):
        rl_minrnn.load_policy(trained.checkpoint, mode="nope")


@pytest.mark.slow
def test_render_writes_a_video(trained, tmp_path):
    result = rl_minrnn.render(trained.checkpoint, tmp_path / "v.gif", max_episode_steps=10, width=64, height=64)
    assert result.video == str(tmp_path / "v.gif") and (tmp_path / "v.gif").stat().st_size > 0


# ------------------------------------------------------------------------------------------ progress

@pytest.mark.slow
def test_progress_in_a_file_is_a_few_lines_with_a_rate(tiny_dataset, tmp_path, minari_store):
    """A 600-step run through train_agent.py with its output in a file: under 6 KB, no bar redraws, progress
    lines with step, rate, loss and ETA, and the evaluation lines as on a terminal."""
    log = tmp_path / "train.log"
    cmd = [sys.executable, str(ROOT / "train_agent.py"), "--run-dir", str(tmp_path / "run"),
           "--set", f"dataset.id={tiny_dataset.dataset_id}", "--set", "train.steps=600", "--set", "eval.every=300",
           "--set", "eval.final_episodes=2"]
    for key, value in TINY.items():
        cmd += ["--set", f"{key}={json.dumps(value)}"]
    env = dict(os.environ, MINARI_DATASETS_PATH=str(minari_store))
    with open(log, "w") as out:
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=300)
    text = log.read_text()
    assert proc.returncode == 0, text
    assert log.stat().st_size < 6000, text
    assert "\r" not in text
    lines = [line for line in text.splitlines() if re.match(r"step \d+/600 \(\d+%\)  [\d.]+ step/s", line)]
    assert 10 <= len(lines) <= 25, text
    assert all("loss=" in line for line in lines) and "ETA" in lines[0] and lines[-1].startswith("step 600/600")
    assert len(re.findall(r"^step (300|600): target 3600: return", text, re.M)) == 2


class _Stream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


def test_progress_bar_is_tqdm_on_a_terminal_and_lines_elsewhere():
    from tqdm.auto import tqdm

    bar = progress_bar(100, stream=_Stream(True))
    assert isinstance(bar, tqdm)
    bar.close()
    stream = _Stream(False)
    bar = progress_bar(100, stream=stream, every=10, desc="job")
    assert isinstance(bar, LineProgress)
    for _ in range(100):
        bar.update(1)
        bar.set_postfix(loss="0.5")
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10 and lines[0].startswith("job: step 10/100 (10%)") and "loss=0.5" in lines[0]
    assert isinstance(progress_bar(100, stream=_Stream(False), enabled=False), tqdm)  # disabled: tqdm's no-op
    assert line_interval(600, 100) == 100 and line_interval(600, 10) == 30 and line_interval(100_000) == 5000
    assert line_interval(None, 7) == 7 and line_interval(None) == 0
    stream = _Stream(False)
    bar = progress_bar(None, stream=stream)  # no total: by time, not a line per update
    for _ in range(1000):
        bar.update(1)
    assert stream.getvalue() == ""
    bar.close()
    assert stream.getvalue().startswith("step 1000  ") and len(stream.getvalue().splitlines()) == 1


# ------------------------------------------------------------------------------------------ trackers

@pytest.mark.slow
def test_mlflow_store_gets_the_metrics_and_the_config(tiny_dataset, tmp_path, monkeypatch):
    """train.loggers=[mlflow]: the local store beside the run folder holds every metric of metrics.jsonl at its
    step, and the config as parameters; a resumed run continues the same MLflow run."""
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run_dir = tmp_path / "runs" / "r"
    tiny_train(tiny_dataset.dataset_id, run_dir, **{"train.steps": 20, "eval.every": 10,
                                                   "train.loggers": ["tensorboard", "mlflow"]})
    client = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    run_id = (run_dir / "mlflow_run_id").read_text().strip()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "r"
    assert run.data.params["train.lr"] == "0.0001" and run.data.params["model.width"] == "16"
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for key in ("train/loss", "eval/3600_normalized_score_mean"):
        want = [(e["step"], e[key]) for e in events if key in e]
        got = [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
        assert [s for s, _ in got] == [s for s, _ in want] == [10, 20], key
        assert [v for _, v in got] == pytest.approx([v for _, v in want]), key
    assert (run_dir / "tensorboard").is_dir()
    api.train(resume=run_dir, overrides=["train.steps=30"], progress=False, log=lambda *a: None)
    assert (run_dir / "mlflow_run_id").read_text().strip() == run_id
    assert [m.step for m in client.get_metric_history(run_id, "train/loss")] == [10, 20, 30]


def test_wandb_gets_the_same_metric_names(tiny_dataset, tmp_path, monkeypatch):
    """The W&B adapter, against a stand-in ``wandb`` module (the real one is an optional extra): offline by
    default, the config as its config, the metrics of metrics.jsonl at their steps."""
    calls = {"init": [], "log": [], "config": {}, "finished": 0}

    class Run:
        config = types.SimpleNamespace(update=lambda params, allow_val_change: calls["config"].update(params))

        def log(self, metrics, step):
            calls["log"].append((step, dict(metrics)))

        def finish(self):
            calls["finished"] += 1

    fake = types.ModuleType("wandb")
    fake.init = lambda **kwargs: calls["init"].append(kwargs) or Run()
    fake.util = types.SimpleNamespace(generate_id=lambda: "abc123")
    monkeypatch.setitem(sys.modules, "wandb", fake)
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: object() if name == "wandb" else real_find_spec(name, *a))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    run_dir = tmp_path / "run"
    tiny_train(tiny_dataset.dataset_id, run_dir, **{"train.steps": 20, "eval.every": 0, "train.loggers": ["wandb"]})
    (init,) = calls["init"]
    assert init["mode"] == "offline" and init["id"] == "abc123" and init["name"] == "run"
    assert calls["config"]["train.steps"] == 20 and calls["finished"] == 1
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert calls["log"] == [(e.pop("step"), e) for e in events]
    assert not (run_dir / "tensorboard").exists()  # only the trackers asked for


def test_a_missing_tracker_is_one_line_naming_the_pip_command(monkeypatch, capsys):
    from rl_minrnn.cli import train as cli

    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "wandb" else real_find_spec(name, *a))
    assert cli.main(["--set", "train.loggers=[tensorboard,wandb]", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: train.loggers: wandb is not installed; pip install 'rl_minrnn[wandb]' (or pip install wandb)"]
    with pytest.raises(ConfigError, match="must be a list of distinct entries from tensorboard, mlflow, wandb"):
        load_config(overrides=["train.loggers=[tensorboard,neptune]"])
    assert load_config(overrides=["train.loggers=mlflow,wandb"]).train.loggers == ["mlflow", "wandb"]
    assert load_config(overrides=["train.loggers=[]"]).train.loggers == []


# ------------------------------------------------------------------------------------------ console commands

def test_console_commands_point_at_installed_mains():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {"rl-minrnn-train", "rl-minrnn-evaluate", "rl-minrnn-export", "rl-minrnn-dataset"}
    for target in scripts.values():
        module, name = target.split(":")
        assert module.startswith("rl_minrnn.") and callable(getattr(import_module(module), name))


@pytest.mark.parametrize("command", ["build", "import-d4rl", "suite", "combine"])
def test_dataset_command_runs_each_modules_own_command_line(command, capsys):
    from rl_minrnn.cli.dataset import COMMANDS, main

    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert COMMANDS[command][0].rsplit(".", 1)[1] in capsys.readouterr().out  # that module's own parser


def test_dataset_command_refuses_an_unknown_subcommand(capsys):
    from rl_minrnn.cli.dataset import main

    assert main(["bogus"]) == 2
    assert "unknown command 'bogus'" in capsys.readouterr().err
    assert main([]) == 2


@pytest.mark.slow
def test_installed_command_runs(tmp_path):
    """The console command itself, where pip put it (beside this interpreter)."""
    exe = Path(sys.executable).parent / "rl-minrnn-evaluate"
    if not exe.exists():
        pytest.skip("rl_minrnn is not pip-installed in this environment")
    proc = subprocess.run([str(exe), "--checkpoint", str(tmp_path / "none.pt")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: ") and "none.pt" in proc.stderr
