"""evaluate.py end to end on a real (untrained) checkpoint: table, JSON, modes, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

import evaluate
import torch
from rl_minrnn.agents import build_agent
from rl_minrnn.training import load_agent, save_checkpoint
from rl_minrnn.training.options import load_config
from rl_minrnn.envs.evaluation.render import RenderError, setup_headless_gl
from rl_minrnn.envs.evaluation.rollout import evaluate_agent

from test_rollout import ENV_ID


@pytest.fixture
def checkpoint(tmp_path):
    """A real checkpoint of a small, untrained Decision-RNN for Hopper-v5."""
    torch.manual_seed(0)
    config = load_config(overrides=["model.width=16", "model.depth=1", "model.context=5", "model.dropout=0.0",
                                    "eval.target_returns=[3600]"])
    agent = build_agent(config.model, 11, 3)
    return save_checkpoint(tmp_path / "best.pt", {
        "model": agent.state_dict(), "config": config.to_dict(), "obs_dim": 11, "act_dim": 3, "env_id": ENV_ID,
        "dataset_id": "mujoco/hopper/medium-v0", "ref_min_score": -20.272305, "ref_max_score": 3234.3, "step": 1234,
    })


def run_cli(*args):
    return evaluate.main([str(a) for a in args] + ["--no-progress", "--max-episode-steps", "8"])


def test_table_and_json(checkpoint, tmp_path, capsys):
    out = tmp_path / "out.json"
    code = run_cli("--checkpoint", checkpoint, "--episodes", 3, "--target-return", 3600,
                   "--target-return", 1800, "--seed", 5, "--json", out)
    assert code == 0
    stdout = capsys.readouterr().out
    assert "| normalised score |" in stdout
    assert stdout.count(f"| {ENV_ID} | recurrent |") == 2
    report = json.loads(out.read_text())
    assert report["step"] == 1234 and report["env_id"] == ENV_ID
    (result,) = report["results"]
    assert result["ref_source"] == "dataset" and result["seed"] == 5
    assert [t["target_return"] for t in result["targets"]] == [3600.0, 1800.0]
    # the CLI gives what the library gives
    direct = evaluate_agent(
        load_agent(checkpoint)[0], ENV_ID, 3, [3600.0, 1800.0], seed=5, max_episode_steps=8, progress=False
    )
    for got, want in zip(result["targets"], direct.targets):
        np.testing.assert_array_equal(got["returns"], want.returns)
        np.testing.assert_allclose(got["normalized_scores"], want.normalized_scores)
        for key in ("agent_ms_p50", "agent_ms_p99", "env_ms_p50", "env_ms_p99", "length_mean", "return_std"):
            assert key in got


def test_default_targets_from_config_and_all_modes(checkpoint, capsys):
    assert run_cli("--checkpoint", checkpoint, "--episodes", 1, "--mode", "all") == 0
    stdout = capsys.readouterr().out
    assert f"| {ENV_ID} | recurrent | 3600 |" in stdout
    assert f"| {ENV_ID} | window | 3600 |" in stdout


def test_env_mismatch_is_a_clear_error(checkpoint, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # mujoco 4 writes MUJOCO_LOG.TXT (a Walker2d XML deprecation) to the cwd
    code = run_cli("--checkpoint", checkpoint, "--episodes", 1, "--target-return", 5000, "--env", "Walker2d-v5")
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Walker2d-v5 has observations of size 17 and actions of size 6")
    assert "trained on Hopper-v5" in err and "size 11" in err and "size 3" in err
    assert "Traceback" not in err


def test_unknown_env_is_a_clear_error(checkpoint, capsys):
    assert run_cli("--checkpoint", checkpoint, "--target-return", 1, "--env", "Hoppr-v5") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Hoppr-v5" in err and "Traceback" not in err


def test_missing_and_corrupt_checkpoints_are_clear_errors(tmp_path, capsys):
    assert run_cli("--checkpoint", tmp_path / "nope.pt", "--target-return", 1) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    assert run_cli("--checkpoint", bad, "--target-return", 1) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a readable" in err and str(bad) in err and "Traceback" not in err


def test_unknown_mode_is_a_clear_error(checkpoint, capsys):
    assert run_cli("--checkpoint", checkpoint, "--mode", "chunked") == 2
    assert "recurrent, window" in capsys.readouterr().err


@pytest.mark.slow
def test_render_through_the_cli(checkpoint, tmp_path, capsys):
    try:
        setup_headless_gl()
    except RenderError as error:
        pytest.skip(str(error))
    video = tmp_path / "ep.gif"
    code = run_cli("--checkpoint", checkpoint, "--episodes", 2, "--target-return", 3600, "--render", video,
                   "--width", 48, "--height", 48, "--fps", 125, "--no-overlay")
    assert code == 0
    assert video.stat().st_size > 0
    assert "video:" in capsys.readouterr().err


