"""Fuzz every command line with the values a user mistypes: each draw must run or exit 2 with an error.

    OMP_NUM_THREADS=1 python -m benchmarks.fuzz --draws 5000 [--seed 0]

A seeded generator draws, for each command in turn, a command line or an input file:

- ``train``: ``train_agent.py`` with one to three ``--set`` overrides of random schema keys (every key of
  ``configs.schema``, plus unknown ones) to values from ``VALUES`` (-1, 0, 1e30, nan, inf, 99999999999,
  strings, lists, null, ...) and the key's own default scaled;
- ``evaluate``: ``evaluate.py`` flags (episodes, seeds, modes, envs, devices, threads, target returns, batch
  sizes) on a checkpoint or exported file that is good, truncated, empty, random bytes, from another
  project, of another env, with missing or misshapen weights, or a folder;
- ``export``: ``python -m rl_minrnn.deploy.export`` on those files, to good and bad output paths/formats;
- ``build_dataset``: policy files good and bad, envs, step and env counts, ids (each field good with
  probability 0.8, so some draws are valid);
- ``import_d4rl``: hdf5 / npz files with missing keys, wrong shapes, dtypes and lengths, NaN, nothing;
- ``build_suite``: policy folders, replay files, counts;
- ``suite``: ``benchmarks.suite`` flags and ``--set`` overrides; ``sweep``: sweep YAMLs with bad grids,
  sample spaces, protocols, agents, seeds.

Each draw calls the command's ``main(argv)`` in this process (stdout/stderr captured) and is counted as
``ran`` (exit 0), ``error`` (exit 2 with an ``error:`` line; argparse's usage errors count too) or
``traceback`` (anything else: an exception, another exit code). A draw that exits 2 must not leave a run
folder behind (``leftover``). Valid draws run with a tiny budget (2 training steps, 1-2 short episodes,
a few dozen env steps), and under ``$RL_MINRNN_MEMORY_LIMIT`` (2G here) so that a size the estimate
refuses never gets built. Prints the counts and the tracebacks, and writes
benchmarks/results/fuzz.{json,md} (``--out``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import random
import resource
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MEMORY_LIMIT = "2G"
SAMPLE = "local/hopper/sample-v0"
TINY = ["model.width=16", "model.depth=1", "model.context=4", "model.dropout=0.0", "train.batch_size=4",
        "train.steps=2", "eval.every=0", "train.log_every=1", "train.warmup_steps=1", "train.threads=1",
        "eval.episodes=1", "eval.max_episode_steps=5", "eval.target_returns=[100]"]
# the values a run is cut to when a draw is valid (the draw's own value is what was checked)
BUDGET = {"train.steps": 2, "eval.episodes": 2, "eval.max_episode_steps": 5, "train.checkpoint_every": 1,
          "eval.every": 1, "train.log_every": 1}
FORCED = ["train.compile=false", "eval.video=false", "train.device=cpu"]
VALUES = [-1, 0, 1, 2, 3, 0.5, -0.5, 1e-30, 1e30, -1e30, "nan", "inf", "-inf", ".nan", ".inf", 99999999999, 2**63,
          -(2**63), 1.5, 64, 65, 1_000_001, 16_384, "abc", "", "[]", "[1, 2]", "[nan]", "[1e30]", "{a: 1}", "null", "true",
          "false", "1e3", "3e-3", "0x10", "'", "[", "mingru", "window", "sequence", "decision_transformer", "cuda", "all"]


# ----------------------------------------------------------------------------------------- fixtures
class Fixtures:
    """Files the draws pick from, made once: a checkpoint, its exports, broken copies, policies, D4RL files."""

    def __init__(self, tmp: Path):
        import numpy as np
        import torch

        from rl_minrnn.training import RunFolder

        self.tmp = tmp
        os.environ["MINARI_DATASETS_PATH"] = str(tmp / "store")
        run = tmp / "good-run"
        rc, out, _ = call(_train_main, ["--dataset", SAMPLE, "--run-dir", str(run), "--no-progress",
                                     *sum((["--set", s] for s in TINY + FORCED), [])])
        assert rc == 0, out
        good = RunFolder(run).last
        data = good.read_bytes()
        payload = torch.load(good, weights_only=False)
        files = {"good": good, "missing": tmp / "missing.pt", "folder": run}
        for name, blob in {"empty": b"", "truncated": data[: len(data) // 2], "random": os.urandom(4096),
                           "text": b"hello\n"}.items():
            files[name] = tmp / f"{name}.pt"
            files[name].write_bytes(blob)

        def variant(name, change):
            p = dict(payload, config={k: dict(v) if isinstance(v, dict) else v for k, v in payload["config"].items()})
            change(p)
            files[name] = tmp / f"{name}.pt"
            torch.save(p, files[name])

        torch.save({"state_dict": {"w": torch.zeros(3)}, "epoch": 3}, tmp / "other-project.pt")
        files["other-project"] = tmp / "other-project.pt"
        variant("other-env", lambda p: p.update(env_id="HalfCheetah-v5"))
        variant("no-weights", lambda p: p.pop("model"))
        variant("no-config", lambda p: p.pop("config"))
        variant("wrong-width", lambda p: p["config"]["model"].update(width=32))
        variant("bad-kind", lambda p: p["config"]["model"].update(kind="lstm"))
        variant("nan-weights", lambda p: p["model"].update({k: v * float("nan") for k, v in p["model"].items()
                                                             if v.is_floating_point()}))
        variant("bad-obs-dim", lambda p: p.update(obs_dim="eleven"))
        exported = tmp / "policy.ts.pt"
        rc, out, _ = call(_export_main, ["--checkpoint", str(good), "--out", str(exported), "--no-check"])
        if rc == 0:
            files["exported"] = exported
            blob = exported.read_bytes()
            files["exported-truncated"] = tmp / "exported-truncated.pt"
            files["exported-truncated"].write_bytes(blob[: len(blob) // 2])
        files["fake-onnx"] = tmp / "fake.onnx"
        files["fake-onnx"].write_bytes(os.urandom(512))
        self.checkpoints = files
        # behaviour policies
        from rl_minrnn.envs.offline.policies import MLPPolicy

        self.policies = {"good": tmp / "policy.npz", "missing": tmp / "nope.npz", "truncated": tmp / "policy-trunc.npz",
                         "wrong-keys": tmp / "policy-keys.npz", "wrong-dims": tmp / "policy-dims.npz"}
        MLPPolicy.random(11, 3, hidden=(8,), seed=0).save(self.policies["good"])
        self.policies["truncated"].write_bytes(self.policies["good"].read_bytes()[:100])
        np.savez(self.policies["wrong-keys"], a=np.zeros(3))
        MLPPolicy.random(5, 2, hidden=(8,), seed=0).save(self.policies["wrong-dims"])
        self.policy_dirs = {"missing": tmp / "no-policies", "empty": tmp / "empty-policies", "hopper": tmp / "policies"}
        self.policy_dirs["empty"].mkdir()
        self.policy_dirs["hopper"].mkdir()
        for name in ("hopper-sac", "hopper-tqc"):  # the local suite's Hopper behaviour policies, random here
            MLPPolicy.random(11, 3, hidden=(8,), seed=0).save(self.policy_dirs["hopper"] / f"{name}.npz")


def _train_main(argv):
    import train_agent

    return train_agent.main(argv)


def _evaluate_main(argv):
    import evaluate

    return evaluate.main(argv)


def _export_main(argv):
    from rl_minrnn.deploy.export import main

    return main(argv)


def call(fn, argv) -> tuple[object, str, str]:
    """``fn(argv)`` with stdout and stderr captured: (exit code or the exception, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = fn(argv)
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except BaseException as exc:  # noqa: BLE001 - a traceback is what the fuzz is looking for
        if isinstance(exc, KeyboardInterrupt):
            raise
        return exc, out.getvalue(), err.getvalue() + traceback.format_exc()
    return rc, out.getvalue(), err.getvalue()


def error_lines(stderr: str) -> int:
    """Lines of the error message: from the ``error:`` line to the end of stderr (argparse's usage excluded)."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    first = next((i for i, ln in enumerate(lines) if "error:" in ln), len(lines))
    return len(lines) - first


# ----------------------------------------------------------------------------------------- draws
def _value(rng: random.Random, default=None) -> str:
    if default is not None and rng.random() < 0.25:
        if isinstance(default, bool):
            return rng.choice(["true", "false", "1", "yes"])
        if isinstance(default, (int, float)):
            scaled = default * rng.choice([0, 0.5, 2, 10, -1, 1000])
            return str(int(scaled) if isinstance(default, int) else scaled)
        if isinstance(default, list):
            return rng.choice(["[3600]", "[1, 2, 3]", "[" + ", ".join(["1"] * 40) + "]", "[-1e10]"])
        return rng.choice([str(default), str(default) + "x", str(default).upper()])
    return str(rng.choice(VALUES))


def _schema_keys() -> dict:
    import dataclasses

    from rl_minrnn.configs.schema import ExperimentConfig

    out = {}
    config = ExperimentConfig()
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            for sub in dataclasses.fields(value):
                out[f"{f.name}.{sub.name}"] = getattr(value, sub.name)
        else:
            out[f.name] = value
    return out


KEYS: dict = {}


def draw_overrides(rng: random.Random) -> list[str]:
    keys = list(KEYS) + ["model.nope", "train", "eval.targets", "seed.x", ""]
    sets = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        key = rng.choice(keys)
        sets.append(f"{key}={_value(rng, KEYS.get(key))}")
    if rng.random() < 0.03:
        sets.append(rng.choice(["novalue", "=3", "model.width"]))
    return sets


def budgeted(sets: list[str]) -> list[str]:
    """``sets`` with the budget keys cut when the whole config is valid (a valid draw runs briefly)."""
    from rl_minrnn.configs.schema import ConfigError
    from rl_minrnn.configs.loading import parse_override
    from rl_minrnn.training.options import load_config

    try:
        load_config(overrides=TINY + sets)
    except (ConfigError, ValueError, TypeError):
        return sets
    out = []
    for text in sets:
        key, value = parse_override(text)
        if key in BUDGET and isinstance(value, (int, float)) and value > BUDGET[key]:
            text = f"{key}={BUDGET[key]}"
        out.append(text)
    return out + FORCED


def draw_train(rng, fx: Fixtures, i: int):
    run = fx.tmp / "runs" / f"train-{i}"
    sets = budgeted(draw_overrides(rng))
    argv = ["--no-progress", "--run-dir", str(run)]
    if rng.random() < 0.9:
        argv += ["--dataset", rng.choice([SAMPLE] * 8 + ["mujoco/nope/x-v0", "local/hopper", ""])]
    for s in TINY + sets:
        argv += ["--set", s]
    if rng.random() < 0.05:
        argv += ["--resume", str(rng.choice(list(fx.checkpoints.values())).parent)]
    return _train_main, argv, run


def _int_flag(rng, budget: int) -> str:
    v = rng.choice([-1, 0, 1, 2, budget, 10**13, "x", "1.5", "nan"])
    return str(v)


def draw_evaluate(rng, fx: Fixtures, i: int):
    argv = ["--checkpoint", str(rng.choice(list(fx.checkpoints.values()))), "--no-progress",
            "--max-episode-steps", rng.choice(["3", "5", "0", "-1", "x", "3"])]
    flags = {
        "--episodes": lambda: _int_flag(rng, 2), "--seed": lambda: rng.choice(["0", "-1", "1e3", str(2**40), "x"]),
        "--mode": lambda: rng.choice(["recurrent", "window", "all", "auto", "bogus", ""]),
        "--env": lambda: rng.choice(["Hopper-v5", "HalfCheetah-v5", "Nope-v0", "", "CartPole-v1"]),
        "--device": lambda: rng.choice(["cpu", "cuda", "xyz", "cpu:9"]),
        "--threads": lambda: rng.choice(["0", "1", "-1", "99999", "x"]),
        "--batch-size": lambda: _int_flag(rng, 1),
        "--target-return": lambda: rng.choice(["100", "nan", "inf", "1e30", "-5", "x"]),
        "--json": lambda: rng.choice([str(fx.tmp / f"eval-{i}.json"), "/proc/nope/x.json", str(fx.tmp)]),
    }
    for flag in rng.sample(list(flags), rng.randint(0, 3)):
        argv += [flag, flags[flag]()]
    if "--episodes" not in argv:
        argv += ["--episodes", "1"]
    return _evaluate_main, argv, None


def draw_export(rng, fx: Fixtures, i: int):
    out = rng.choice([fx.tmp / f"x{i}.pt", fx.tmp / f"x{i}.onnx", fx.tmp / f"x{i}.txt", Path("/proc/nope/x.pt"), fx.tmp])
    argv = ["--checkpoint", str(rng.choice(list(fx.checkpoints.values()))), "--out", str(out)]
    if rng.random() < 0.3:
        argv += ["--format", rng.choice(["onnx", "torchscript", "tflite"])]
    if rng.random() < 0.3:
        argv += ["--mode", rng.choice(["recurrent", "window", "auto", "x"])]
    if rng.random() < 0.7:
        argv.append("--no-check")
    return _export_main, argv, None


def pick(rng, good, bad: list, p_good: float = 0.8):
    """``good`` with probability ``p_good``, else one of ``bad``: most draws then differ from a valid command
    line in one or two places, and some are valid."""
    return good if rng.random() < p_good else rng.choice(bad)


def draw_build_dataset(rng, fx: Fixtures, i: int):
    from rl_minrnn.envs.offline.build_dataset import main

    policies = [p for name, p in fx.policies.items() if name != "good"]
    argv = ["--policy", str(pick(rng, fx.policies["good"], policies)),
            "--env", pick(rng, "Hopper-v5", ["Walker2d-v5", "Nope-v0", ""]),
            "--steps", pick(rng, "20", ["0", "-5", "x", "1e3"]),
            "--id", pick(rng, f"local/fuzz/b{i}-v0", ["bad id", "", "local/fuzz", "../../x-v0", "local/hopper/sample-v0"]),
            "--root", str(fx.tmp / "store"), "--no-progress",
            "--num-envs", pick(rng, rng.choice(["1", "2"]), ["0", "-1", "x"]),
            "--max-episode-steps", pick(rng, "10", ["0", "x", "-3"])]
    if rng.random() < 0.2:
        argv += ["--workers", rng.choice(["1", "0", "-2"])]
    if rng.random() < 0.2:
        argv += ["--seed", rng.choice(["-1", "0", str(2**70), "x"])]
    return main, argv, None


def d4rl_file(rng, path: Path) -> Path:
    """A D4RL-style file with random defects (or none): missing keys, shapes, dtypes, lengths, NaN, empty."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    n = rng.choice([30, 30, 30, 1, 0])
    arrays = {"observations": np.zeros((n, 11), np.float32) + 0.1, "actions": np.zeros((n, 3), np.float32),
              "rewards": np.ones(n, np.float32), "terminals": np.zeros(n, bool), "timeouts": np.zeros(n, bool)}
    if n:
        arrays["timeouts"][n // 2] = True
    if rng.random() < 0.3:
        arrays["next_observations"] = arrays["observations"] + 0.01
    for _ in range(rng.choice([0, 1, 1, 2])):
        key = rng.choice(list(arrays))
        defect = rng.choice(["drop", "shape3d", "scalar", "strings", "complex", "short", "nan", "inf", "wide", "1d",
                             "bool", "int", "huge-dim", "empty"])
        a = arrays[key]
        if a.ndim == 0:
            continue
        if defect == "drop":
            arrays.pop(key)
        elif defect == "shape3d":
            arrays[key] = np.zeros((n, 2, 2), np.float32)
        elif defect == "scalar":
            arrays[key] = np.float32(1.0)
        elif defect == "strings":
            arrays[key] = np.array([b"a"] * n)
        elif defect == "complex":
            arrays[key] = np.zeros(a.shape, np.complex64)
        elif defect == "short":
            arrays[key] = a[: max(0, n - 3)]
        elif defect in ("nan", "inf") and a.dtype.kind == "f" and a.size:
            a = a.copy()
            a.flat[0] = float(defect)
            arrays[key] = a
        elif defect == "wide":
            arrays[key] = np.zeros((n, 7), np.float32)
        elif defect == "1d":
            arrays[key] = a.reshape(-1)
        elif defect == "bool":
            arrays[key] = a.astype(bool)
        elif defect == "int":
            arrays[key] = a.astype(np.int64)
        elif defect == "huge-dim":
            arrays[key] = np.zeros((n, 0), np.float32)
        elif defect == "empty":
            arrays[key] = np.zeros((0,) + a.shape[1:], a.dtype)
    kind = rng.choice(["npz", "npz", "hdf5", "hdf5", "truncated", "text"])
    if kind == "npz":
        path = path.with_suffix(".npz")
        np.savez(path, **arrays)
    elif kind == "hdf5":
        import h5py

        path = path.with_suffix(".hdf5")
        with h5py.File(path, "w") as f:
            for k, v in arrays.items():
                if rng.random() < 0.05:
                    f.create_group(k)
                else:
                    f[k] = v
    elif kind == "truncated":
        path = path.with_suffix(".npz")
        np.savez(path, **arrays)
        path.write_bytes(path.read_bytes()[:200])
    else:
        path = path.with_suffix(".hdf5")
        path.write_text("observations,actions\n1,2\n")
    return path


def draw_import_d4rl(rng, fx: Fixtures, i: int):
    from rl_minrnn.envs.offline.import_d4rl import main

    path = d4rl_file(rng, fx.tmp / "d4rl" / f"f{i}") if rng.random() < 0.95 else fx.tmp / "missing.hdf5"
    argv = [str(path), "--env", rng.choice(["Hopper-v5"] * 5 + ["Walker2d-v5", "Nope-v0", ""]),
            "--id", rng.choice([f"local/fuzz/d{i}-v0"] * 4 + ["x", "", "local/hopper/sample-v0"]),
            "--root", str(fx.tmp / "store")]
    if rng.random() < 0.2:
        argv.append("--overwrite")
    return main, argv, None


def draw_build_suite(rng, fx: Fixtures, i: int):
    from rl_minrnn.envs.offline.build_suite import main

    argv = ["--steps", pick(rng, "20", ["0", "-1", "x"]), "--root", str(fx.tmp / "store"), "--no-progress",
            "--policies-dir", str(pick(rng, fx.policy_dirs["hopper"], [fx.policy_dirs["missing"], fx.policy_dirs["empty"]])),
            "--replay", str(rng.choice([fx.tmp / "missing.npz", fx.policies["truncated"], fx.policies["good"]])),
            "--num-envs", pick(rng, "1", ["0", "-3", "x"]), "--workers", pick(rng, "1", ["0", "x"]),
            "--tasks", pick(rng, "hopper", ["walker2d", "nope"])]
    return main, argv, None


def draw_suite(rng, fx: Fixtures, i: int):
    from benchmarks.suite import main

    out = fx.tmp / "suite" / f"s{i}"
    argv = ["--out", str(out), "--run-root", str(fx.tmp / "suite-runs" / f"s{i}"), "--quiet",
            "--datasets", rng.choice([SAMPLE, SAMPLE, "mujoco/nope/x-v0", "x"]),
            "--agents", rng.choice(["mingru", "dt", "nope", "minlstm"]),
            "--steps", rng.choice(["2", "0", "-1", "x", "2"]), "--eval-every", rng.choice(["0", "-1", "1", "x"]),
            "--episodes", rng.choice(["1", "0", "-2", "x"]), "--seeds", rng.choice(["0", "-1", "x", "0"])]
    for s in draw_overrides(rng) if rng.random() < 0.7 else []:
        argv += ["--set", s]
    argv += sum((["--set", s] for s in ["model.width=16", "model.depth=1", "model.context=4", "train.batch_size=4",
                                           "eval.max_episode_steps=5", "eval.target_returns=[100]",
                                           "train.compile=false"]), [])
    if rng.random() < 0.2:
        argv += ["--device", rng.choice(["cpu", "cuda", "x"])]
    if rng.random() < 0.2:
        argv += ["--threads", rng.choice(["1", "-1", "0", "x"])]
    if rng.random() < 0.1:
        argv.append("--aggregate-only")
    return main, argv, None


def draw_sweep(rng, fx: Fixtures, i: int):
    import yaml

    from benchmarks.sweep import main

    sweep: dict = {}
    if rng.random() < 0.8:
        sweep["datasets"] = rng.choice([[SAMPLE], ["x"], SAMPLE, [], None])
    if rng.random() < 0.5:
        sweep["agents"] = rng.choice([["mingru"], ["dt"], ["d3rlpy_dt"], ["nope"], "mingru", []])
    if rng.random() < 0.5:
        sweep["seeds"] = rng.choice([[0], [0, 1], [-1], ["x"], 3, []])
    if rng.random() < 0.3:
        sweep["protocol"] = rng.choice(["cpu", "nope", 3])
    for key in ("steps", "eval_every", "episodes"):
        if rng.random() < 0.3:
            sweep[key] = rng.choice([1, 0, -1, "x", None, 1e30])
    if rng.random() < 0.7:
        grid = {}
        for _ in range(rng.randint(0, 3)):
            key = rng.choice(list(KEYS) + ["nope.x"])
            try:
                value = yaml.safe_load(_value(rng, KEYS.get(key)) or "0")
            except yaml.YAMLError:
                value = "'"
            grid[key] = rng.choice([[value], [], "x", None, 3, [1, 2], [{"a": 1}]])
        sweep["grid"] = rng.choice([grid, grid, [], "x", None])
    if rng.random() < 0.3:
        space = {rng.choice(list(KEYS)): rng.choice([{"log_uniform": [1e-4, 1e-3]}, {"uniform": [0, 1]},
                                                     {"choice": [16, 32]}, {"uniform": [1]}, {"normal": 1},
                                                     "x", {"log_uniform": [-1, 1]}, {"choice": []}])}
        sweep["sample"] = rng.choice([{"n": 2, "space": space}, {"n": "x", "space": space}, {"n": -1, "space": space},
                                      {"space": space}, {"n": 2}, "x", {"n": 2, "space": space, "seed": "x"}])
    if rng.random() < 0.3:
        sweep["set"] = rng.choice([draw_overrides(rng), "model.width=16", [3], None])
    if rng.random() < 0.05:
        sweep["nope"] = 1
    path = fx.tmp / "sweeps" / f"w{i}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(sweep) if rng.random() < 0.95 else rng.choice(["[", "- a\n- b\n", "", ": :"])
    path.write_text(text)
    argv = [str(path), "--out", str(fx.tmp / "sweep-out" / f"w{i}"), "--run-root", str(fx.tmp / "sweep-runs"),
            "--quiet", "--dry-run"]
    return main, argv, None


COMMANDS = {"train": draw_train, "evaluate": draw_evaluate, "export": draw_export, "build_dataset": draw_build_dataset,
            "import_d4rl": draw_import_d4rl, "build_suite": draw_build_suite, "suite": draw_suite, "sweep": draw_sweep}
WEIGHTS = {"train": 5, "evaluate": 2, "export": 1, "build_dataset": 1, "import_d4rl": 2, "build_suite": 1, "suite": 1,
           "sweep": 2}


def classify(rc, text: str) -> str:
    """``ran`` (exit 0), ``error`` (exit 2 with an ``error:`` line), ``fault`` (exit 3: training started and
    stopped on a fault it reports, e.g. a valid but diverging train.lr), else ``traceback``."""
    if rc == 0:
        return "ran"
    if rc == 2 and "error:" in text:
        return "error"
    if rc == 3 and "error:" in text:
        return "fault"
    return "traceback"


def run_fuzz(draws: int, seed: int = 0, commands=None, log=print) -> dict:
    """``draws`` draws over ``commands`` (default all, weighted by ``WEIGHTS``); returns counts and failures."""
    previous_limit = os.environ.get("RL_MINRNN_MEMORY_LIMIT")
    os.environ.setdefault("RL_MINRNN_MEMORY_LIMIT", MEMORY_LIMIT)
    limit = os.environ["RL_MINRNN_MEMORY_LIMIT"]
    from rl_minrnn.threads import passive_openmp

    passive_openmp()
    import torch

    torch.set_num_threads(1)
    KEYS.update(_schema_keys())
    rng = random.Random(seed)
    names = list(commands or COMMANDS)
    weights = [WEIGHTS[n] for n in names]
    counts = {n: {"ran": 0, "error": 0, "fault": 0, "traceback": 0, "leftover": 0, "multi-line": 0} for n in names}
    failures, multi_line = [], {}
    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="rl_minrnn_fuzz-"))
    previous_store = os.environ.get("MINARI_DATASETS_PATH")
    try:
        shutil.copytree(ROOT / "envs" / "data", tmp / "store", dirs_exist_ok=True)
        fx = Fixtures(tmp)
        for i in range(draws):
            name = names[i % len(names)] if i < len(names) else rng.choices(names, weights)[0]
            try:
                fn, argv, run_dir = COMMANDS[name](rng, fx, i)
            except Exception:  # noqa: BLE001 - a defect of the fuzz itself, counted as such
                failures.append({"command": name, "argv": None, "outcome": "draw failed", "text": traceback.format_exc()})
                continue
            rc, stdout, text = call(fn, argv)
            outcome = classify(rc, text)
            counts[name][outcome] += 1
            if outcome in ("error", "fault") and error_lines(text) > 1:
                counts[name]["multi-line"] += 1
                first = text.strip().splitlines()[-error_lines(text)][:160]
                if len(multi_line.setdefault(name, [])) < 5 and first not in multi_line[name]:
                    multi_line[name].append(first)
            if outcome == "traceback":
                failures.append({"command": name, "argv": argv, "outcome": f"rc {rc!r}", "text": text[-3000:]})
            elif outcome == "error" and run_dir is not None and Path(run_dir).exists():
                counts[name]["leftover"] += 1
                failures.append({"command": name, "argv": argv, "outcome": "leftover run folder",
                                 "text": str(sorted(p.name for p in Path(run_dir).iterdir()))})
            if run_dir is not None:
                shutil.rmtree(run_dir, ignore_errors=True)
            if (i + 1) % 250 == 0:
                log(f"{i + 1}/{draws} draws, {time.perf_counter() - start:.0f} s, "
                    f"{sum(c['traceback'] for c in counts.values())} traceback(s)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        for name, value in (("MINARI_DATASETS_PATH", previous_store), ("RL_MINRNN_MEMORY_LIMIT", previous_limit)):
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"draws": draws, "seed": seed, "counts": counts, "failures": failures, "multi_line_examples": multi_line,
            "peak_rss_bytes": peak,
            "seconds": round(time.perf_counter() - start, 1), "memory_limit": limit}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--draws", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--commands", nargs="+", choices=list(COMMANDS))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fuzz"))
    args = p.parse_args(argv)
    if args.draws < 1:
        p.error("--draws must be at least 1")
    result = run_fuzz(args.draws, args.seed, args.commands)
    from benchmarks.common import machine_info, markdown_table, write_results

    rows = [[n, c["ran"], c["error"], c["fault"], c["traceback"], c["leftover"], c["multi-line"]]
            for n, c in result["counts"].items()]
    total = [sum(r[j] for r in rows) for j in range(1, 7)]
    table = markdown_table(["command", "ran", "clean error (exit 2)", "fault (exit 3)", "traceback", "run folder left",
                            "of the errors: message over one line"],
                           rows + [["all", *total]])
    cmd = "python -m benchmarks.fuzz " + " ".join(argv if argv is not None else sys.argv[1:])
    md = (f"Fuzz: {result['draws']} draws, seed {result['seed']}, {result['seconds']} s, peak RSS "
          f"{result['peak_rss_bytes'] / 2**20:.0f} MB (memory limit {result['memory_limit']}); `{cmd}`\n\n{table}\n")
    for name, firsts in result["multi_line_examples"].items():
        md += f"\n- {name}, messages over one line, e.g.: " + "; ".join(f"`{f}`" for f in firsts)
    md += "\n" if result["multi_line_examples"] else ""
    for f in result["failures"][:20]:
        md += f"\n- {f['command']} {f['outcome']}: `{json.dumps(f['argv'])}`\n\n```\n{f['text'][-1500:]}\n```\n"
    write_results(args.out, md, {"machine": machine_info(), **result})
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
