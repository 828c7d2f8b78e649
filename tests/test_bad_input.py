"""Bad input, at scale: every config key has a range owned by the module that uses it, a run too large for
the machine is refused before it is built, and a seeded fuzz of every command line finds no traceback
(``benchmarks/fuzz.py``; docs/faults.md, "Bad input")."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rl_minrnn.configs.schema import ConfigError, ExperimentConfig
from rl_minrnn.training.options import RULES, load_config

ROOT = Path(__file__).resolve().parents[1]
ISSUE_ROWS = ["model.dropout=inf", "model.expansion=inf", "model.max_timestep=99999999999", "model.mlp_ratio=1e30",
              "model.conv=99999999999", "model.width=99999999999", "model.depth=99999999999"]


@pytest.mark.parametrize("override", ISSUE_ROWS)
def test_the_values_torch_rejected_stop_at_the_config_naming_key_value_range_and_example(override):
    key, value = override.split("=")
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[override])
    message = str(info.value)
    assert message.startswith(f"{key}: must be ") and "\n" not in message
    assert f"got {float(value):g}" in message.replace("got 99999999999", "got 1e+11") or value in message
    default = getattr(ExperimentConfig().model, key.split(".")[1])
    assert f"(e.g. {key}={default})" in message


def test_the_issue_row_exits_2_within_seconds_with_one_line(tmp_path):
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "train_agent.py"), "--set", "model.width=99999999999",
                           "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: model.width: must be an integer >= 1 and <= 16_384")
    assert time.perf_counter() - start < 60
    assert not (tmp_path / "run").exists()


def test_every_key_has_its_rule_or_is_a_flag():
    """Numbers and choices all have a rule; only booleans and the dataset id (checked by the store) do not."""
    config = ExperimentConfig()
    keys = [f"{section}.{f.name}" for section in ("dataset", "model", "train", "eval")
            for f in dataclasses.fields(getattr(config, section))] + ["seed"]
    section_of = lambda k: getattr(config, k.split(".")[0]) if "." in k else config  # noqa: E731
    unruled = [k for k in keys if k not in RULES and not isinstance(getattr(section_of(k), k.split(".")[-1]), bool)]
    assert unruled == ["dataset.id"]


@pytest.mark.parametrize("override, fragment", [
    ("eval.target_returns=[1, .nan]", "eval.target_returns: must be a list of 1 to 32 values"),
    ("eval.target_returns=[]", "eval.target_returns: must be a list of 1 to 32 values"),
    ("train.lr=nan", "train.lr: must be a finite number > 0"),
    ("seed=-1", "seed: must be an integer >= 0"),
    ("model.conv=1", "model.conv: must be an integer >= 0 and <= 64 other than 1"),
    ("model.expansion=0.001", "model.expansion: int(width * expansion) must be >= 1"),
    ("model.kind=decision_transformer", None),
])
def test_rules_between_keys_and_in_lists(override, fragment):
    if fragment is None:
        with pytest.raises(ConfigError, match="model.heads: must divide model.width"):
            load_config(overrides=[override, "model.heads=3"])
        with pytest.raises(ConfigError, match="train.regime: the decision_transformer trains on windows only"):
            load_config(overrides=[override, "train.regime=sequence"])
        return
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[override])
    assert str(info.value).startswith(fragment)


def test_owners_hold_the_rules_the_schema_uses():
    """One source per rule: the schema's entry is the owner's object."""
    from rl_minrnn.agents import DecisionRNN, DecisionTransformer
    from rl_minrnn.blocks import BLOCK_OPTIONS
    from rl_minrnn.envs.evaluation.rollout import EVALUATION_OPTIONS
    from rl_minrnn.envs.offline.batches import SAMPLER_OPTIONS

    assert RULES["model.dropout"] is BLOCK_OPTIONS["dropout"]
    assert RULES["model.heads"] is DecisionTransformer.OPTION_RULES["heads"]
    assert RULES["model.expansion"] is DecisionRNN.option_rules()["expansion"]
    assert RULES["train.batch_size"] is SAMPLER_OPTIONS["batch_size"]
    assert RULES["eval.episodes"] is EVALUATION_OPTIONS["episodes"]
    with pytest.raises(ValueError, match="dropout must be"):  # the module checks its own rule when used directly
        from rl_minrnn import MinRNNBlock

        MinRNNBlock(8, dropout=float("inf"))


@pytest.mark.parametrize("kind", ["decision_rnn", "decision_transformer"])
def test_parameter_count_is_the_built_agents(kind):
    from rl_minrnn.agents import build_agent
    from rl_minrnn.training.memory_estimate import parameter_count

    model = load_config(overrides=[f"model.kind={kind}", "model.width=24", "model.depth=2", "model.conv=0"]).model
    assert parameter_count(model, 11, 3) == sum(p.numel() for p in build_agent(model, 11, 3).parameters())


def test_a_run_past_the_memory_limit_is_refused_with_the_keys_and_warned_past_half():
    from rl_minrnn.training.memory_estimate import check_run_memory, estimate_run_memory

    config = load_config(overrides=["model.width=2048", "model.depth=8"])
    need = estimate_run_memory(config, 11, 3, 10_000).total
    with pytest.raises(ConfigError) as info:
        check_run_memory(config, 11, 3, 10_000, available=need // 2)
    message = str(info.value)
    assert "parameters" in message and "model.width=2048" in message and "model.depth=8" in message
    warnings = []
    check_run_memory(config, 11, 3, 10_000, available=int(need * 1.5), log=warnings.append)
    assert len(warnings) == 1 and warnings[0].startswith("warning: this run needs about")
    quiet = []
    check_run_memory(config, 11, 3, 10_000, available=need * 3, log=quiet.append)
    assert not quiet


def test_the_memory_limit_variable_caps_what_a_run_may_use(monkeypatch):
    from rl_minrnn.training.memory_estimate import available_memory, parse_size

    assert parse_size("2G") == 2 * 2**30 and parse_size("1500M") == 1500 * 2**20
    monkeypatch.setenv("RL_MINRNN_MEMORY_LIMIT", "1K")
    assert available_memory() == (0, "$RL_MINRNN_MEMORY_LIMIT")
    monkeypatch.setenv("RL_MINRNN_MEMORY_LIMIT", "lots")
    with pytest.raises(ConfigError, match="RL_MINRNN_MEMORY_LIMIT"):
        available_memory()


def test_a_run_refused_before_it_starts_leaves_no_folder(tmp_path, monkeypatch, capsys):
    import train_agent

    monkeypatch.setenv("RL_MINRNN_MEMORY_LIMIT", "1M")
    run = tmp_path / "a" / "b" / "run"
    assert train_agent.main(["--dataset", "local/hopper/sample-v0", "--no-progress", "--run-dir", str(run)]) == 2
    assert "this run needs about" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("defect", ["strings", "scalar", "timeouts-2d"])
def test_d4rl_files_of_the_wrong_kind_are_format_errors(tmp_path, defect):
    from rl_minrnn.envs.offline import DatasetFormatError
    from rl_minrnn.envs.offline.import_d4rl import import_d4rl

    n = 20
    arrays = {"observations": np.zeros((n, 11), np.float32), "actions": np.zeros((n, 3), np.float32),
              "rewards": np.ones(n, np.float32), "terminals": np.zeros(n, bool), "timeouts": np.zeros(n, bool)}
    if defect == "strings":
        arrays["actions"] = np.array(["a"] * n)
    elif defect == "scalar":
        arrays["rewards"] = np.float32(1)
    else:
        arrays["timeouts"] = np.zeros((n, 2), bool)
    np.savez(tmp_path / "f.npz", **arrays)
    with pytest.raises(DatasetFormatError):
        import_d4rl(tmp_path / "f.npz", "Hopper-v5", "local/test/bad-v0", root=tmp_path / "store", verbose=False)


@pytest.mark.parametrize("sweep", [
    {"grid": {"train.lr": []}}, {"seeds": []}, {"datasets": None}, {"sample": {"n": "x", "space": {}}},
    {"sample": {"n": 2, "space": {"train.lr": {"uniform": [1]}}}}, {"set": [3]}, {"seeds": [-1]},
    {"grid": {"train.steps": [0]}},
])
def test_bad_sweep_files_are_one_line_errors(tmp_path, capsys, sweep):
    import yaml

    from benchmarks.sweep import main

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"datasets": ["local/hopper/sample-v0"], **sweep}))
    assert main([str(path), "--dry-run", "--quiet", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")


@pytest.mark.slow
def test_fuzz_of_every_command_finds_no_traceback():
    """The CI tier of ``python -m benchmarks.fuzz`` ($RL_MINRNN_FUZZ_DRAWS draws, 300 by default; the
    5000-draw figures are in docs/faults.md)."""
    from benchmarks.fuzz import COMMANDS, run_fuzz

    result = run_fuzz(int(os.environ.get("RL_MINRNN_FUZZ_DRAWS", "300")), seed=0)
    assert not result["failures"], result["failures"][:3]
    counts = result["counts"]
    assert set(counts) == set(COMMANDS) and all(c["error"] > 0 for c in counts.values())
    assert sum(c["ran"] for c in counts.values()) > 0
    assert result["peak_rss_bytes"] < 2 * 2**30
