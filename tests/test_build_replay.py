"""build_replay: D4RL's medium-replay recipe (SAC's whole buffer, in time order) on a tiny budget."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sbx", reason='build_replay needs the [replay] extra: pip install -e ".[replay]"')

from rl_minrnn.envs.offline import build_replay as br
from rl_minrnn.envs.offline.import_d4rl import import_d4rl
from rl_minrnn.envs.offline.reading import read_minari_dataset

ROOT = Path(__file__).resolve().parents[1]
ENV = "Hopper-v5"


def _minari_episodes(root: Path, dataset_id: str):
    import minari

    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        ds = minari.load_dataset(dataset_id)
        return ds, list(ds.iterate_episodes())
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH")
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def _arrays(root: Path, dataset_id: str) -> list[tuple]:
    return [(e.observations, e.actions, e.rewards, e.terminations, e.truncations, e.seed)
            for e in read_minari_dataset(root / dataset_id).episodes]


@pytest.mark.slow
def test_stops_at_the_target_and_writes_the_whole_buffer_as_minari(tmp_path):
    import gymnasium as gym

    # a target every evaluation reaches: training stops at the first one (step 250), mid-episode
    settings = br.ReplaySettings(ENV, -1e9, eval_every=250, eval_episodes=1, max_steps=2000)
    out = br.build_replay(settings, "local/hopper/replay-test-v0", checkpoint_dir=tmp_path / "ck",
                          root=tmp_path / "store", npz=tmp_path / "buffer.npz", progress=False)
    ds, episodes = _minari_episodes(tmp_path / "store", "local/hopper/replay-test-v0")
    meta = ds.storage.metadata
    assert meta["replay_steps"] == 250 and meta["replay_target_reached"] is True
    assert [c["step"] for c in meta["replay_eval_curve"]] == [250]
    assert meta["replay_settings"]["env_id"] == ENV and "sbx" in meta["replay_library_versions"]
    assert sum(len(e.actions) for e in episodes) == 250 == ds.total_steps
    env = gym.make(ENV)
    low, high = env.action_space.low, env.action_space.high
    seeds = [m["seed"] for m in ds.storage.get_episode_metadata(range(len(episodes)))]
    assert len(set(seeds)) == len(seeds)
    for i, ep in enumerate(episodes):
        T = len(ep.actions)
        assert ep.observations.shape == (T + 1, 11) and len(ep.rewards) == T
        assert np.all(ep.actions >= low) and np.all(ep.actions <= high)
        assert not ep.terminations[:-1].any() and not ep.truncations[:-1].any()
        if i < len(episodes) - 1:  # ended by the env: replaying its actions from its reset seed ends it there
            assert ep.terminations[-1] or ep.truncations[-1]
        else:  # cut off when training stopped
            assert ep.truncations[-1] and not ep.terminations[-1]
        obs, _ = env.reset(seed=int(seeds[i]))
        np.testing.assert_array_equal(obs.astype(np.float32), ep.observations[0])
        for t in range(T):
            obs, r, term, trunc, _ = env.step(ep.actions[t])
            np.testing.assert_array_equal(obs.astype(np.float32), ep.observations[t + 1])
            assert term == ep.terminations[t]
        if i < len(episodes) - 1:
            assert term or trunc
    # the compressed npz reads back through import_d4rl to the same episodes, seeds and provenance
    import_d4rl(tmp_path / "buffer.npz", ENV, "local/hopper/replay-import-v0", root=tmp_path / "store", verbose=False)
    a, b = _arrays(tmp_path / "store", "local/hopper/replay-test-v0"), _arrays(tmp_path / "store", "local/hopper/replay-import-v0")
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            np.testing.assert_array_equal(u, v)
    imported = read_minari_dataset(tmp_path / "store" / "local/hopper/replay-import-v0")
    assert out.is_dir() and imported.env_id == ENV
    assert imported.metadata["replay_eval_curve"] == meta["replay_eval_curve"]
    text = br.describe_replay(tmp_path / "buffer.npz")
    assert "250 transitions" in text and "target reached: True at 250 steps" in text and "sbx 0." in text


def _args(ck: Path, store: Path) -> list[str]:
    return ["--env", ENV, "--target-return", "1e9", "--id", "local/hopper/replay-kill-v0", "--max-steps", "300",
            "--eval-every", "150", "--eval-episodes", "1", "--checkpoint-every", "100", "--checkpoint-dir", str(ck),
            "--root", str(store), "--no-progress"]


@pytest.mark.slow
def test_a_killed_build_resumes_to_the_same_dataset(tmp_path):
    # uninterrupted
    assert br.main(_args(tmp_path / "ck-a", tmp_path / "a")) == 0
    # SIGKILLed right after its first checkpoint, then the same command again
    env = dict(os.environ, PYTHONPATH=str(ROOT), XLA_FLAGS=os.environ.get("XLA_FLAGS", br.ONE_THREAD_XLA))
    proc = subprocess.Popen([sys.executable, "-m", "rl_minrnn.envs.offline.build_replay",
                             *_args(tmp_path / "ck-b", tmp_path / "b")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "ck-b" / "state.pkl"
    deadline = time.monotonic() + 300
    while not state.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    still_running = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert still_running and state.is_file(), "the build ended before its first checkpoint could be interrupted"
    assert not (tmp_path / "b" / "local/hopper/replay-kill-v0").exists()
    import pickle

    with open(state, "rb") as f:
        assert 100 <= pickle.load(f)["step"] < 300
    assert br.main(_args(tmp_path / "ck-b", tmp_path / "b")) == 0
    a = _arrays(tmp_path / "a", "local/hopper/replay-kill-v0")
    b = _arrays(tmp_path / "b", "local/hopper/replay-kill-v0")
    assert len(a) == len(b) and sum(len(x[1]) for x in a) == 300
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            np.testing.assert_array_equal(u, v)  # bit for bit: observations, actions, rewards, flags, seeds
    meta = lambda d: read_minari_dataset(tmp_path / d / "local/hopper/replay-kill-v0").metadata  # noqa: E731
    assert [c["eval_return"] for c in meta("a")["replay_eval_curve"]] == \
        [c["eval_return"] for c in meta("b")["replay_eval_curve"]]
    assert meta("b")["replay_target_reached"] is False  # 1e9 is out of reach: the build ran to --max-steps


def test_the_recorded_command_gives_the_same_settings(monkeypatch):
    """A build records its command from its settings (ReplaySettings.command_args); that command line, run again,
    builds with exactly those settings."""
    settings = br.ReplaySettings(ENV, 1234.5, seed=3, eval_every=700, eval_episodes=2, max_steps=9000,
                                 library="sb3", learning_starts=10_000, batch_size=128)
    seen = []
    monkeypatch.setattr(br, "build_replay", lambda s, dataset_id, **kw: seen.append((s, dataset_id)))
    assert br.main(["--id", "local/hopper/replay-x-v0", *settings.command_args()]) == 0
    assert seen == [(settings, "local/hopper/replay-x-v0")]


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    base = ["--target-return", "100", "--id", "local/hopper/replay-bad-v0", "--checkpoint-dir", str(tmp_path / "ck"),
            "--root", str(tmp_path / "store"), "--no-progress"]
    assert br.main(["--env", "NoSuchEnv-v9", *base]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Cannot make the environment 'NoSuchEnv-v9'") and err.count("\n") == 1
    with pytest.raises(SystemExit) as exc:
        br.main(["--env", ENV, *base, "--max-steps", "0"])
    assert exc.value.code == 2 and "--max-steps must be positive" in capsys.readouterr().err
    assert br.main(["--env", ENV, *base[:3], "bad id", *base[4:]]) == 2
    assert "error:" in capsys.readouterr().err
    # a checkpoint of other settings is not silently resumed
    ck = tmp_path / "ck"
    br._save(ck / "state.pkl", {"settings": {**br.asdict(br.ReplaySettings(ENV, 5.0)), "seed": 7}})
    assert br.main(["--env", ENV, *base]) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "'seed': (7, 0)" in err and "--fresh" in err
    # one build per checkpoint folder
    from filelock import FileLock

    with FileLock(ck / "build.lock"):
        assert br.main(["--env", ENV, *base, "--fresh"]) == 2
    assert "Another build is running" in capsys.readouterr().err
    # the extra not installed
    monkeypatch.setitem(sys.modules, "stable_baselines3", None)
    assert br.main(["--env", ENV, *base, "--library", "sb3", "--fresh"]) == 2
    assert 'pip install -e ".[replay]"' in capsys.readouterr().err


@pytest.mark.slow
def test_stable_baselines3_builds_resume_exactly_too(tmp_path, monkeypatch):
    """--library sb3 (PyTorch): a build stopped right after its first checkpoint (the process 'dies' there)
    and run again equals an uninterrupted one."""
    settings = br.ReplaySettings(ENV, 1e9, eval_every=150, eval_episodes=1, max_steps=300, library="sb3")
    kw = dict(checkpoint_every=100, progress=False, verbose=False)
    br.build_replay(settings, "local/hopper/replay-sb3-v0", checkpoint_dir=tmp_path / "ck-a", root=tmp_path / "a", **kw)
    save = br._save

    def save_then_die(path, payload):
        save(path, payload)
        raise KeyboardInterrupt  # nothing after the checkpoint survives

    monkeypatch.setattr(br, "_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        br.build_replay(settings, "local/hopper/replay-sb3-v0", checkpoint_dir=tmp_path / "ck-b", root=tmp_path / "b", **kw)
    monkeypatch.setattr(br, "_save", save)
    import pickle

    with open(tmp_path / "ck-b" / "state.pkl", "rb") as f:
        assert 100 <= pickle.load(f)["step"] < 300
    br.build_replay(settings, "local/hopper/replay-sb3-v0", checkpoint_dir=tmp_path / "ck-b", root=tmp_path / "b", **kw)
    a = _arrays(tmp_path / "a", "local/hopper/replay-sb3-v0")
    b = _arrays(tmp_path / "b", "local/hopper/replay-sb3-v0")
    assert len(a) == len(b) and sum(len(x[1]) for x in a) == 300
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            np.testing.assert_array_equal(u, v)
