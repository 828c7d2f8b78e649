"""Building, importing and combining datasets; the command lines and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from rl_minrnn.envs.offline.build_dataset import collect
from rl_minrnn.envs.offline.build_dataset import main as build_main
from rl_minrnn.envs.offline.build_suite import main as suite_main
from rl_minrnn.envs.offline.combine import combine_datasets
from rl_minrnn.envs.offline import DatasetFormatError, load_dataset
from rl_minrnn.envs.offline.import_d4rl import main as import_main
from rl_minrnn.envs.offline.import_d4rl import read_d4rl_arrays
from rl_minrnn.envs.offline.policies import MLPPolicy, PolicyError
from rl_minrnn.envs.evaluation.environments import make_env


def assert_same_episodes(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.seed == y.seed
        for k in ("observations", "actions", "rewards", "terminations", "truncations"):
            np.testing.assert_array_equal(getattr(x, k), getattr(y, k))


def test_same_seed_same_dataset(tiny_policy_path, tiny_dataset):
    assert build_main(["--policy", str(tiny_policy_path), "--env", "Hopper-v5", "--steps", "400",
                       "--id", "test/hopper/again-v0", "--seed", "0", "--num-envs", "2", "--no-progress"]) == 0
    assert_same_episodes(load_dataset("test/hopper/again-v0").episodes, tiny_dataset.episodes)
    other = collect(MLPPolicy.load(tiny_policy_path), "Hopper-v5", 400, seed=1, num_envs=2, progress=False)
    assert other[0].seed != tiny_dataset.episodes[0].seed
    assert not np.array_equal(other[0].actions[:5], tiny_dataset.episodes[0].actions[:5])


def test_replay_from_recorded_seed_reproduces_observations(tiny_dataset):
    for ep in tiny_dataset.episodes:
        env = make_env(tiny_dataset)
        obs, _ = env.reset(seed=ep.seed)
        replayed, rewards, terms = [obs], [], []
        for a in ep.actions:
            obs, r, terminated, truncated, _ = env.step(a)
            replayed.append(obs)
            rewards.append(r)
            terms.append(terminated)
        env.close()
        np.testing.assert_array_equal(np.asarray(replayed, np.float32), ep.observations)
        np.testing.assert_array_equal(np.asarray(rewards, np.float32), ep.rewards)
        np.testing.assert_array_equal(terms, ep.terminations)


def test_collect_counts_steps_and_cuts_last_episodes(tiny_policy_path):
    policy = MLPPolicy.load(tiny_policy_path)
    eps = collect(policy, "Hopper-v5", 101, seed=5, num_envs=3, progress=False, max_episode_steps=30)
    assert sum(len(e) for e in eps) == 101
    assert all(len(e) <= 30 for e in eps)
    for e in eps:
        assert e.terminations[-1] or e.truncations[-1]
    det = collect(policy, "Hopper-v5", 60, seed=5, num_envs=1, deterministic=True, progress=False)
    mean = policy.act(det[0].observations[:-1])
    np.testing.assert_allclose(det[0].actions, mean, atol=1e-6)  # the mean action (BLAS rounding differs by batch shape)


def test_workers_split_env_slots_reproducibly(tiny_policy_path):
    policy = MLPPolicy.load(tiny_policy_path)
    one = collect(policy, "Hopper-v5", 150, seed=2, num_envs=4, progress=False)
    two = collect(policy, "Hopper-v5", 150, seed=2, num_envs=4, progress=False, workers=2)
    assert sum(len(e) for e in two) == 150
    assert [e.seed for e in one] == [e.seed for e in two]  # same slots, same episodes, same order
    for a, b in zip(one, two):
        np.testing.assert_allclose(a.observations[:5], b.observations[:5], atol=1e-5)


def test_policy_format(tmp_path, tiny_policy_path):
    policy = MLPPolicy.load(tiny_policy_path)
    acts = policy.act(np.random.default_rng(0).normal(size=(5, 11)), np.ones((5, 3)))
    assert acts.shape == (5, 3) and acts.dtype == np.float32 and np.abs(acts).max() <= 1
    # activation/squash from a policies.json beside the file when the npz lacks them
    data = dict(np.load(tiny_policy_path))
    data.pop("activation"), data.pop("squash")
    np.savez(tmp_path / "hopper-x.npz", **data)
    with pytest.raises(PolicyError, match="activation and squash"):
        MLPPolicy.load(tmp_path / "hopper-x.npz")
    (tmp_path / "policies.json").write_text(json.dumps({"hopper-x": {"activation": "tanh", "squash": "clip"}}))
    loaded = MLPPolicy.load(tmp_path / "hopper-x.npz")
    assert (loaded.activation, loaded.squash) == ("tanh", "clip")


def write_d4rl(path, n=250, next_obs=True, fmt="hdf5", seed=0, bad_length=False):
    rng = np.random.default_rng(seed)
    arrays = {
        "observations": rng.normal(size=(n, 11)).astype(np.float32),
        "actions": rng.uniform(-1, 1, (n, 3)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "terminals": np.zeros(n, bool),
        "timeouts": np.zeros(n, bool),
    }
    arrays["terminals"][[30, 99]] = True
    arrays["timeouts"][[180]] = True  # then 69 trailing steps: an episode cut off
    if next_obs:
        arrays["next_observations"] = rng.normal(size=(n, 11)).astype(np.float32)
    if bad_length:
        arrays["rewards"] = arrays["rewards"][:-1]
    if fmt == "hdf5":
        with h5py.File(path, "w") as f:
            for k, v in arrays.items():
                f.create_dataset(k, data=v)
    else:
        np.savez(path, **arrays)
    return arrays


def test_import_round_trip_hdf5(tmp_path):
    arrays = write_d4rl(tmp_path / "hopper-medium-v2.hdf5")
    assert import_main([str(tmp_path / "hopper-medium-v2.hdf5"), "--env", "Hopper-v5", "--id", "test/hopper/d4rl-v0"]) == 0
    ds = load_dataset("test/hopper/d4rl-v0")
    assert [len(e) for e in ds.episodes] == [31, 69, 81, 69]
    assert ds.env_id == "Hopper-v5" and (ds.ref_min_score, ds.ref_max_score) == (-20.272305, 3234.3)
    assert ds.metadata["ref_max_score"] == 3234.3
    np.testing.assert_array_equal(np.concatenate([e.observations[:-1] for e in ds.episodes]), arrays["observations"])
    np.testing.assert_array_equal(np.concatenate([e.actions for e in ds.episodes]), arrays["actions"])
    np.testing.assert_array_equal(np.concatenate([e.rewards for e in ds.episodes]), arrays["rewards"])
    np.testing.assert_array_equal(np.concatenate([e.terminations for e in ds.episodes]), arrays["terminals"])
    ends = np.cumsum([len(e) for e in ds.episodes]) - 1
    for e, end in zip(ds.episodes, ends):
        np.testing.assert_array_equal(e.observations[-1], arrays["next_observations"][end])
    assert [bool(e.truncations[-1]) for e in ds.episodes] == [False, False, True, True]


def test_import_npz_without_next_observations(tmp_path):
    write_d4rl(tmp_path / "buffer.npz", next_obs=False, fmt="npz")
    assert import_main([str(tmp_path / "buffer.npz"), "--env", "Hopper-v5", "--id", "test/hopper/npz-v0"]) == 0
    ds = load_dataset("test/hopper/npz-v0")
    assert ds.num_steps == 250 and ds.metadata["final_observation"] == "repeated"


@pytest.mark.parametrize("kind", ["unequal", "corrupt", "missing"])
def test_import_errors_are_clear(tmp_path, capsys, kind):
    path = tmp_path / "bad.hdf5"
    if kind == "unequal":
        write_d4rl(path, bad_length=True)
        expected = "unequal length"
    elif kind == "corrupt":
        path.write_bytes(b"\x89HDF garbage")
        expected = "Cannot read"
    else:
        with h5py.File(path, "w") as f:
            f.create_dataset("observations", data=np.zeros((3, 2)))
        expected = "lacks the arrays"
    with pytest.raises(DatasetFormatError, match=expected):
        read_d4rl_arrays(path)
    assert import_main([str(path), "--env", "Hopper-v5", "--id", "test/hopper/bad-v0"]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err


def test_cli_errors_exit_2_without_traceback(capsys, tiny_policy_path, tiny_dataset):
    assert build_main(["--policy", "/nonexistent/p.npz", "--env", "Hopper-v5", "--steps", "10", "--id", "test/hopper/x-v0"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert build_main(["--policy", str(tiny_policy_path), "--env", "Hopper-v5", "--steps", "10",
                       "--id", tiny_dataset.dataset_id]) == 2
    assert "already exists" in capsys.readouterr().err
    assert build_main(["--policy", str(tiny_policy_path), "--env", "Walker2d-v5", "--steps", "10",
                       "--id", "test/walker2d/x-v0", "--no-progress"]) == 2
    assert "another environment" in capsys.readouterr().err


def test_combine_keeps_order(make_offline_dataset, tiny_dataset):
    other = make_offline_dataset([3, 4], obs_dim=11, act_dim=3)
    combine_datasets([tiny_dataset, other], "test/hopper/combined-v0", verbose=False)
    ds = load_dataset("test/hopper/combined-v0")
    assert_same_episodes(ds.episodes, tiny_dataset.episodes + other.episodes)
    assert ds.metadata["combined_datasets"] == [tiny_dataset.dataset_id, "test/synthetic-v0"]


def test_build_suite_is_idempotent(tmp_path, capsys):
    pol = tmp_path / "policies"
    pol.mkdir()
    for i, name in enumerate(("hopper-sac", "hopper-tqc")):
        MLPPolicy.random(11, 3, hidden=(8,), seed=i).save(pol / f"{name}.npz")
    (tmp_path / "replay").mkdir()
    write_d4rl(tmp_path / "replay" / "hopper-medium-replay.npz", fmt="npz")
    root = tmp_path / "store"
    args = ["--steps", "120", "--tasks", "hopper", "--policies-dir", str(pol), "--replay-dir", str(tmp_path / "replay"),
            "--root", str(root), "--num-envs", "2", "--no-progress"]
    assert suite_main(args) == 0
    out = capsys.readouterr().out
    for name in ("medium", "expert", "medium-expert", "medium-replay"):
        assert (root / f"local/hopper/{name}-v0/data/metadata.json").is_file()
    assert "built" in out
    assert suite_main([*args, "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "built" not in out and out.count("exists") == 4
    table = [line for line in out.splitlines() if line.startswith("| `local/hopper/")]
    assert len(table) == 4 and "| `local/hopper/medium-expert-v0` | " in out and " 240 | " in out
    me = load_dataset(str(root / "local/hopper/medium-expert-v0"))
    assert me.num_steps == 240
    # a task without its buffer: skipped, with the command that makes it
    import shutil

    shutil.rmtree(root / "local/hopper/medium-replay-v0")
    (tmp_path / "empty").mkdir()
    assert suite_main([*args[:6], "--replay-dir", str(tmp_path / "empty"), *args[8:]]) == 0
    out = capsys.readouterr().out
    assert "skipped: no replay buffer" in out and "build_replay --env Hopper-v5 --id local/hopper/medium-replay-v0" in out
    assert suite_main(["--policies-dir", str(tmp_path / "none"), "--root", str(tmp_path / "s2"), "--tasks", "hopper"]) == 2
    assert "not found" in capsys.readouterr().err


def test_command_line_module_prints_one_error_line(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "rl_minrnn.envs.offline.import_d4rl", str(tmp_path / "missing.hdf5"), "--env", "Hopper-v5",
         "--id", "test/hopper/missing-v0"],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr and "Traceback" not in proc.stderr


def test_task_table_gives_distinct_build_seeds_and_the_default_policies_folder():
    """Every locally built dataset has its own reset seeds, and build_suite's default policies folder is the
    team's shared/ beside the checkout (it pointed inside envs/ after a move)."""
    from rl_minrnn.envs.offline.build_suite import DEFAULT_POLICIES_DIR
    from rl_minrnn.envs.tasks import TASKS

    seeds = [s for t in TASKS.values() for s in (t.build_seed, t.build_seed + 1)]
    assert len(set(seeds)) == len(seeds)
    assert DEFAULT_POLICIES_DIR == Path(__file__).resolve().parents[1].parent / "shared" / "policies"


def test_the_committed_replay_buffers_are_where_build_suite_looks():
    """build_suite's default replay folder is the repository's replay/ (never ../shared), and every buffer
    committed there reads as its task's episodes."""
    from rl_minrnn.envs.offline.build_suite import DEFAULT_REPLAY_DIR, replay_file
    from rl_minrnn.envs.offline.import_d4rl import read_d4rl_arrays
    from rl_minrnn.envs.tasks import TASKS

    assert DEFAULT_REPLAY_DIR == Path(__file__).resolve().parents[1] / "replay"
    present = [t for t in TASKS if replay_file(DEFAULT_REPLAY_DIR, t).is_file()]
    assert set(present) == set(TASKS)  # all nine datasets build on a fresh machine
    for task in present:
        arrays = read_d4rl_arrays(replay_file(DEFAULT_REPLAY_DIR, task))
        obs_dim = {"hopper": 11, "walker2d": 17, "halfcheetah": 17}[task]
        assert arrays["observations"].shape[1] == obs_dim and "metadata_json" in arrays
