"""Exported policies (deploy/): the exported step equals the PyTorch rollout, evaluate.py runs the files like
checkpoints, the runtime and the README example need no torch, and bad inputs are one-line errors."""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import evaluate
from rl_minrnn.agents import DecisionRNN, DecisionTransformer, build_agent
from rl_minrnn.training import save_checkpoint
from rl_minrnn.training.options import load_config
from rl_minrnn.deploy import export as exporter
from rl_minrnn.deploy.metadata import ExportedPolicyError, project_version
from rl_minrnn.deploy.runtime import ExportedAgent, ExportedPolicy, file_format, load_exported_agent

ROOT = Path(__file__).resolve().parents[1]
OBS, ACT, K = 11, 3, 6  # Hopper's sizes, so the same agents also run in Hopper-v5
EPISODE = 1000
BOUNDS = dict(action_low=[-1.0] * ACT, action_high=[1.0] * ACT)
BLOCK_TORCH = textwrap.dedent("""
    import sys
    class _NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is blocked in this test")
    sys.meta_path.insert(0, _NoTorch())
    try:
        import torch
    except ImportError:
        pass
    else:
        raise SystemExit("torch could still be imported")
""")


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One thread: these small steps gain nothing from a second, which beside other work slows them down."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_agent(kind="rnn", seed=0, **kwargs):
    """An untrained float32 agent with PyTorch's default initialisation (outputs far from 0, so a wrong
    step changes them), non-trivial normalisation statistics, and a timestep table shorter than the
    episode (the clamp is exercised)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    stats = dict(state_mean=rng.normal(size=OBS), state_std=rng.uniform(0.5, 2.0, size=OBS), return_scale=100.0)
    cls = DecisionRNN if kind == "rnn" else DecisionTransformer
    kwargs = {"init": "pytorch", "width": 16, "depth": 2, "dropout": 0.0, "max_timestep": 300, **kwargs}
    return cls(OBS, ACT, context=K, **stats, **kwargs).eval()


def episode_inputs(steps=EPISODE, batch=2, seed=1):
    rng = np.random.default_rng(seed)
    return (rng.uniform(0, 300, size=(steps, batch)).astype(np.float32),
            (rng.normal(size=(steps, batch, OBS)) * 3).astype(np.float32),
            rng.uniform(-1, 1, size=(steps, batch, ACT)).astype(np.float32))


def roll(agent, mode=None, steps=EPISODE, batch=2, seed=1):
    """Teacher-forced rollout through the agent protocol: the actions act() returns, (T, B, act)."""
    returns, states, actions = episode_inputs(steps, batch, seed)
    agent.reset(batch, mode)
    out = []
    for t in range(steps):
        out.append(np.asarray(agent.act(returns[t], states[t])))
        agent.observe(actions[t])
    return np.stack(out)


@functools.lru_cache(maxsize=None)
def reference(kind, mode, **kwargs):
    """The PyTorch agent's own rollout (computed once per agent, shared by both formats)."""
    with torch.inference_mode():
        return roll(make_agent(kind, **dict(kwargs)), mode)


def exported_rollout(agent, tmp_path, fmt, mode=None):
    path = tmp_path / ("policy.onnx" if fmt == "onnx" else "policy.pt")
    exporter.export_agent(agent, path, fmt, mode=mode, info={"env_id": "Hopper-v5"}, **BOUNDS)
    policy = ExportedPolicy(path)
    assert policy.format == fmt
    return roll(ExportedAgent(policy))


def assert_informative(actions):
    """The compared actions vary over the episode and are not saturated, so a wrong step would show."""
    assert np.abs(np.diff(actions, axis=0)).mean() > 1e-2
    assert np.mean(np.abs(actions) > 0.999) < 0.2


# ------------------------------------------------------------------------------ the step equals PyTorch's

@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("cell, tokens, conv, expansion", [
    ("mingru", "interleaved", 0, 1.0), ("mingru", "fused", 0, 1.0), ("minlstm", "interleaved", 0, 1.0),
    ("minlstm", "fused", 0, 1.5),  # a hidden width other than the model's: the cell's output projection
    ("mingru", "interleaved", 3, 1.0),  # the convolution's token-by-token path
])
@pytest.mark.slow
def test_recurrent_step_equals_pytorch_over_an_episode(cell, tokens, conv, expansion, fmt, tmp_path):
    config = dict(cell=cell, tokens=tokens, conv=conv, expansion=expansion)
    want = reference("rnn", "recurrent", **config)
    got = exported_rollout(make_agent("rnn", **config), tmp_path, fmt)
    assert got.shape == (EPISODE, 2, ACT)
    assert_informative(want)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind, tokens, fmt", [
    ("dt", "interleaved", "onnx"), ("dt", "fused", "onnx"), ("dt", "interleaved", "torchscript"),
    ("rnn", "fused", "torchscript"),  # the Decision-RNN's window mode exports the same way
])
@pytest.mark.slow
def test_window_step_equals_pytorch_over_an_episode(kind, tokens, fmt, tmp_path):
    want = reference(kind, "window", tokens=tokens)
    got = exported_rollout(make_agent(kind, tokens=tokens), tmp_path, fmt, mode="window")
    assert_informative(want)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_clipping_to_the_action_bounds(tmp_path):
    """Bounds narrower than tanh's range clip the action inside the graph."""
    agent = make_agent("rnn", tokens="fused")
    path = tmp_path / "narrow.onnx"
    exporter.export_agent(agent, path, info={"env_id": "Hopper-v5"}, action_low=[-0.1] * ACT, action_high=[0.2] * ACT,
                          check=False)
    acted = roll(ExportedAgent(ExportedPolicy(path)), steps=50)
    with torch.inference_mode():
        want = np.clip(roll(agent, steps=50), -0.1, 0.2)
    np.testing.assert_allclose(acted, want, atol=1e-5)
    assert (acted == 0.2).any() and (acted == -0.1).any()


# ------------------------------------------------------------------------------ checkpoints, CLI, evaluate.py

def write_checkpoint(path, *overrides):
    """A real checkpoint of a small untrained agent for Hopper-v5 (``overrides``: config keys)."""
    torch.manual_seed(0)
    config = load_config(overrides=["model.width=16", "model.depth=2", "model.tokens=interleaved", "model.dropout=0.0",
                                     "model.init=pytorch", "eval.target_returns=[3600, 1800]", *overrides])
    agent = build_agent(config.model, OBS, ACT, state_mean=np.zeros(OBS), state_std=np.ones(OBS))
    return save_checkpoint(path, {
        "model": agent.state_dict(), "config": config.to_dict(), "obs_dim": OBS, "act_dim": ACT, "env_id": "Hopper-v5",
        "dataset_id": "mujoco/hopper/medium-v0", "ref_min_score": -20.272305, "ref_max_score": 3234.3, "step": 1234,
        "best": {"score": 12.5, "step": 1000},
    })


@pytest.fixture(scope="module")
def hopper_checkpoint(tmp_path_factory):
    """A Decision-RNN checkpoint for Hopper-v5, and its ONNX and TorchScript exports (by the CLI)."""
    folder = tmp_path_factory.mktemp("hopper")
    checkpoint = write_checkpoint(folder / "best.pt")
    files = {}
    for fmt, name in (("onnx", "hopper.onnx"), ("torchscript", "hopper.pt")):
        assert exporter.main(["--checkpoint", str(checkpoint), "--out", str(folder / name)]) == 0
        files[fmt] = folder / name
    return checkpoint, files


def evaluate_json(path, tmp_path, *extra):
    out = tmp_path / f"{Path(path).name}.json"
    code = evaluate.main(["--checkpoint", str(path), "--episodes", "3", "--seed", "7", "--no-progress",
                          "--max-episode-steps", "300", "--json", str(out), *map(str, extra)])
    assert code == 0
    return json.loads(out.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("kind, fmt", [("rnn", "onnx"), ("rnn", "torchscript"), ("dt", "torchscript")])
def test_evaluate_gives_the_checkpoints_returns(hopper_checkpoint, kind, fmt, tmp_path, capsys):
    if kind == "rnn":
        checkpoint, files = hopper_checkpoint
        path, mode = files[fmt], "recurrent"
    else:  # the Decision Transformer exports its window step
        checkpoint = write_checkpoint(tmp_path / "dt.pt", "model.kind=decision_transformer", "model.context=5")
        path, mode = tmp_path / "dt.ts", "window"
        assert exporter.main(["--checkpoint", str(checkpoint), "--out", str(path)]) == 0
    want = evaluate_json(checkpoint, tmp_path)
    got = evaluate_json(path, tmp_path)
    stdout = capsys.readouterr().out
    assert stdout.count(f"| Hopper-v5 | {mode} | 3600 |") == 2 and stdout.count(f"| Hopper-v5 | {mode} | 1800 |") == 2
    assert got["step"] == 1234 and got["dataset_id"] == want["dataset_id"] and got["env_id"] == "Hopper-v5"
    (g,), (w,) = got["results"], want["results"]
    assert g["seed"] == w["seed"] == 7 and g["ref_min_score"] == w["ref_min_score"]
    for g_target, w_target in zip(g["targets"], w["targets"], strict=True):  # default targets from the metadata
        assert g_target["target_return"] == w_target["target_return"]
        assert g_target["lengths"] == w_target["lengths"]
        assert max(w_target["lengths"]) > 10  # episodes long enough to tell policies apart
        np.testing.assert_allclose(g_target["returns"], w_target["returns"], rtol=1e-4)
        np.testing.assert_allclose(g_target["normalized_scores"], w_target["normalized_scores"], rtol=1e-4, atol=1e-4)


def test_metadata_record(hopper_checkpoint):
    checkpoint, files = hopper_checkpoint
    for fmt, path in files.items():
        assert file_format(path) == fmt
        agent, info = load_exported_agent(path)
        meta = agent.policy.metadata
        assert meta["env_id"] == info["env_id"] == "Hopper-v5" and meta["dataset_id"] == "mujoco/hopper/medium-v0"
        assert (meta["obs_dim"], meta["act_dim"]) == (OBS, ACT) and meta["mode"] == "recurrent"
        assert meta["target_returns"] == [3600.0, 1800.0] == info["config"]["eval"]["target_returns"]
        assert meta["project_version"] == project_version() != "unknown"
        assert meta["exported_with"]["format"] == fmt
        assert meta["action_low"] == [-1.0] * ACT and meta["action_high"] == [1.0] * ACT
        assert meta["action_bounds_from"] == "Hopper-v5 action space"
        assert meta["checkpoint"]["step"] == 1234 and meta["checkpoint"]["best"] == {"score": 12.5, "step": 1000}
        assert meta["agent"]["kind"] == "decision_rnn" and meta["agent"]["width"] == 16
        assert [(s["name"], s["shape"], s["initial"], s["next"]) for s in meta["state"]] == [
            ("h0", [None, 16], 0.0, "next_h0"), ("h1", [None, 16], 0.0, "next_h1"), ("started", [None], 0.0, "next_started")]
        assert [i["name"] for i in meta["inputs"]] == ["observation", "return_to_go", "prev_action", "timestep",
                                                         "h0", "h1", "started"]
        state = agent.policy.initial_state(4)
        assert state["h0"].shape == (4, 16) and not state["h0"].any() and state["started"].dtype == np.float32


def test_export_cli_prints_what_it_wrote(hopper_checkpoint, tmp_path, capsys):
    checkpoint, _ = hopper_checkpoint
    assert exporter.main(["--checkpoint", str(checkpoint), "--out", str(tmp_path / "p.pt"), "--mode", "window"]) == 0
    out = capsys.readouterr().out
    assert "torchscript, window step of a decision_rnn, env Hopper-v5" in out and "window_states ('B', 20, 11)" in out
    assert "checked against PyTorch" in out
    assert ExportedPolicy(tmp_path / "p.pt").mode == "window"


# ------------------------------------------------------------------------------ clear errors

def test_wrong_inputs_are_one_line_errors(hopper_checkpoint, tmp_path):
    _, files = hopper_checkpoint
    policy = ExportedPolicy(files["onnx"])
    state = policy.initial_state(1)
    ok = dict(observation=np.zeros((1, OBS)), return_to_go=[3600.0], prev_action=np.zeros((1, ACT)), timestep=[0])
    policy.step(**ok, state=state)
    cases = [
        (dict(ok, observation=np.zeros((1, 17))), "observation has shape (1, 17), this policy (Hopper-v5) takes (batch, 11)"),
        (dict(ok, observation=np.zeros(OBS)), "takes (batch, 11)"),
        (dict(ok, prev_action=np.zeros((1, 6))), "prev_action has shape (1, 6), expected (1, 3)"),
        (dict(ok, timestep=[0, 1]), "timestep has shape (2,), expected (1,)"),
    ]
    for inputs, message in cases:
        with pytest.raises(ExportedPolicyError) as error:
            policy.step(**inputs, state=state)
        assert message in str(error.value) and "\n" not in str(error.value)
    # a state from another model: another width, another depth
    other = tmp_path / "wide.onnx"
    exporter.export_agent(make_agent("rnn", width=32, depth=2, tokens="interleaved"), other,
                          info={"env_id": "Hopper-v5"}, check=False, **BOUNDS)
    wide = ExportedPolicy(other).initial_state(1)
    with pytest.raises(ExportedPolicyError, match=r"state 'h0' has shape \(1, 32\), this policy's is \(batch, 16\) "
                                                  r"\(batch 1\): a state from another model\?"):
        policy.step(**ok, state=wide)
    with pytest.raises(ExportedPolicyError, match=r"state has entries \['h0', 'started'\], this policy's are "
                                                  r"\['h0', 'h1', 'started'\]: a state from another model\?"):
        policy.step(**ok, state={"h0": state["h0"], "started": state["started"]})
    with pytest.raises(ExportedPolicyError, match="state 'h0' has shape .* \\(batch 2\\)"):
        policy.step(np.zeros((2, OBS)), [1.0, 1.0], np.zeros((2, ACT)), [0, 0], state)  # batch-1 state, batch 2


def run_evaluate_error(*args):
    return evaluate.main([str(a) for a in args] + ["--no-progress", "--max-episode-steps", "5"])


def test_evaluate_errors_for_exported_files(hopper_checkpoint, tmp_path, capsys, monkeypatch):
    _, files = hopper_checkpoint
    assert run_evaluate_error("--checkpoint", tmp_path / "missing.onnx") == 2
    assert "missing.onnx does not exist; write it with python -m rl_minrnn.deploy.export" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not a model")
    assert run_evaluate_error("--checkpoint", corrupt) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "is not a readable ONNX model" in err and err.count("\n") == 1
    assert run_evaluate_error("--checkpoint", files["onnx"], "--mode", "window") == 2
    assert "rollout modes are recurrent" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)  # mujoco writes MUJOCO_LOG.TXT for Walker2d's XML
    assert run_evaluate_error("--checkpoint", files["torchscript"], "--env", "Walker2d-v5") == 2
    err = capsys.readouterr().err
    assert "Walker2d-v5 has observations of size 17" in err and "Traceback" not in err


def test_export_cli_errors(hopper_checkpoint, tmp_path, capsys):
    checkpoint, files = hopper_checkpoint

    def fails(*args, message):
        assert exporter.main([str(a) for a in args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err

    fails("--checkpoint", tmp_path / "nope.pt", "--out", tmp_path / "x.onnx", message="does not exist")
    fails("--checkpoint", files["onnx"], "--out", tmp_path / "x.onnx", message="not a readable rl_minrnn checkpoint")
    fails("--checkpoint", checkpoint, "--out", tmp_path / "x.bin", message="name it .onnx or .pt, or give --format")
    data = torch.load(checkpoint, weights_only=True)
    data["config"]["model"]["kind"] = "decision_mamba"
    unknown = tmp_path / "unknown.pt"
    torch.save(data, unknown)
    fails("--checkpoint", unknown, "--out", tmp_path / "x.onnx", message="holds a model config this version cannot build")
    dt = write_checkpoint(tmp_path / "dt.pt", "model.kind=decision_transformer")
    fails("--checkpoint", dt, "--out", tmp_path / "x.onnx", "--mode", "recurrent",
          message="DecisionTransformer has rollout modes window, not 'recurrent'")
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".x.*"))  # nothing half-written


# ------------------------------------------------------------------------------ no torch needed

def run_without_torch(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_runtime_needs_no_torch(hopper_checkpoint, tmp_path):
    """rl_minrnn.deploy.runtime runs an ONNX policy in a process where importing torch fails, and acts as PyTorch does."""
    _, files = hopper_checkpoint
    returns, states, actions = episode_inputs(steps=200, batch=2, seed=3)
    np.savez(tmp_path / "inputs.npz", returns=returns, states=states, actions=actions)
    code = textwrap.dedent(f"""
        import numpy as np
        from rl_minrnn.deploy.runtime import load_exported_agent
        agent, info = load_exported_agent({str(files['onnx'])!r})
        data = np.load("inputs.npz")
        agent.reset(2)
        out = []
        for r, s, a in zip(data["returns"], data["states"], data["actions"]):
            out.append(agent.act(r, s))
            agent.observe(a)
        np.save("acted.npy", np.stack(out))
        assert "torch" not in sys.modules
        print("ok", info["env_id"])
    """)
    proc = run_without_torch(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok Hopper-v5"
    with torch.inference_mode():
        agent, _ = __import__("rl_minrnn.training", fromlist=["_"]).load_agent(hopper_checkpoint[0])
        agent.reset(2)
        want = []
        for r, s, a in zip(returns, states, actions):
            want.append(agent.act(r, s))
            agent.observe(a)
    np.testing.assert_allclose(np.load(tmp_path / "acted.npy"), np.stack(want), atol=1e-5)


def readme_example() -> str:
    """The Python block after the README's ``<!-- deploy-example -->`` marker."""
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- deploy-example -->.*?```python\n(.*?)```", text, re.S)
    assert match, "README.md lost its deploy example (the block after <!-- deploy-example -->)"
    return match.group(1)


def test_readme_example_runs_without_torch(hopper_checkpoint, tmp_path):
    """The README's deployment example, as written, on an exported Hopper policy, with torch blocked."""
    _, files = hopper_checkpoint
    (tmp_path / "hopper.onnx").write_bytes(files["onnx"].read_bytes())
    proc = run_without_torch(readme_example(), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(r"Hopper-v5: return -?\d+\.\d in \d+ steps, normalised score -?\d+\.\d\n", proc.stdout), proc.stdout


def test_export_speed_benchmark_tiny(tmp_path):
    """benchmarks/export_speed.py end to end on a tiny setting: its table, JSON and goal verdict."""
    from benchmarks import export_speed

    out = tmp_path / "export_speed"
    assert export_speed.main(["--configs", "main-job", "--batches", "2", "1", "--rounds", "1", "--warmup", "1",
                              "--steps", "3", "--out", str(out)]) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    assert [(r["config"], r["batch"]) for r in data["records"]] == [("main-job", 2), ("main-job", 1)]
    assert set(data["records"][0]["ms_median"]) == set(export_speed.VARIANTS)
    assert data["records"][0]["model"] == {"kind": "decision_rnn", "cell": "mingru", "width": 64, "depth": 3,
                                           "tokens": "fused", "context": 20}
    (goal,) = data["goals"]
    assert goal["config"] == "main-job" and goal["goal_env_steps"] == 1.0
    md = out.with_suffix(".md").read_text()
    assert "| main-job | 1 |" in md and "- main-job: exported onnxruntime step at batch 1 = " in md
