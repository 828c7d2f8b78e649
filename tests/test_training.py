"""Training: the loss goes down, a tiny dataset is memorised, resume is exact, errors are clear."""

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from rl_minrnn.training import CheckpointError, load_agent, read_checkpoint, save_checkpoint
from rl_minrnn.training import Trainer
from rl_minrnn.configs.schema import ConfigError
from rl_minrnn.configs import loading
from rl_minrnn.configs.loading import config_for_dataset, profile_files
from rl_minrnn.training.options import load_config

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["model.width=16", "model.depth=1", "model.context=5", "model.dropout=0.1", "train.batch_size=8",
         "train.warmup_steps=10", "train.log_every=10", "train.checkpoint_every=1000", "eval.every=0",
         "eval.at_end=false", "train.threads=1"]


def config(*overrides):
    return load_config(overrides=SMALL + list(overrides))


def weights(trainer):
    return {k: v.clone() for k, v in trainer.agent.state_dict().items()}


def first_and_last_loss(run_dir, n=5):
    import json

    losses = [json.loads(l)["train/loss"] for l in open(run_dir / "metrics.jsonl") if "train/loss" in l]
    return sum(losses[:n]) / n, sum(losses[-n:]) / n


def test_training_lowers_the_loss(tiny_dataset, tmp_path):
    """Below the best prediction that ignores the inputs (the mean action, whose MSE is the actions'
    variance): the model reads its inputs. (The first losses are not the yardstick: a GPT-initialised
    head already starts near the mean action.)"""
    trainer = Trainer(config("train.steps=300", "train.lr=3e-3"), tmp_path, progress=False, dataset=tiny_dataset)
    trainer.run()
    actions = np.concatenate([ep.actions for ep in tiny_dataset.episodes])
    blind = float(actions.var(axis=0).mean())
    first, last = first_and_last_loss(tmp_path)
    assert last < 0.8 * blind, (first, last, blind)


@pytest.mark.parametrize("kind", ["decision_rnn", "decision_transformer"])
def test_tiny_dataset_is_memorised(kind, make_offline_dataset, tmp_path):
    """Two 12-step episodes of random actions (variance 1/3): with the timestep and state in its input a
    model can only fit them by memorising, so a training MSE under 0.01 (3% of the variance) shows the
    whole path (windows, masks, head, optimiser) learns."""
    data = make_offline_dataset([12, 12], obs_dim=11, act_dim=3, seed=3)
    cfg = config("train.steps=600", "train.lr=3e-3", f"model.kind={kind}", "model.width=32",
                 "model.dropout=0.0", "train.weight_decay=0.0")
    trainer = Trainer(cfg, tmp_path, progress=False, dataset=data)
    trainer.run()
    assert first_and_last_loss(tmp_path)[1] < 0.01


@pytest.mark.parametrize("regime", ["window", "sequence"])
def test_resume_is_exact(regime, tiny_dataset, tmp_path):
    """20 steps, then resumed to 40, equal 40 straight: a constant lr after the warm-up, because a decaying
    schedule ends at ``train.steps`` and so moves when a run is extended (a run stopped before its end resumes
    exactly under any schedule: ``test_resume_is_exact_with_the_weight_average_and_a_decaying_lr``)."""
    extra = [f"train.regime={regime}", "train.chunk_len=7", "train.lr_schedule=constant"]
    straight = Trainer(config("train.steps=40", *extra), tmp_path / "a", progress=False, dataset=tiny_dataset)
    straight.run()
    half = Trainer(config("train.steps=20", *extra), tmp_path / "b", progress=False, dataset=tiny_dataset)
    half.run()
    resumed = Trainer.resume(tmp_path / "b", ["train.steps=40"], progress=False, dataset=tiny_dataset)
    assert resumed.step == 20
    resumed.run()
    a, b = weights(straight), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert straight.sampler.state_dict().keys() == resumed.sampler.state_dict().keys()


def test_checkpoint_from_before_a_config_key_existed_resumes_as_it_was_trained(tiny_dataset, tmp_path):
    """A run saved before ``ADDED_KEYS`` existed has no such keys in its config: it resumes with the values
    it was trained with (one decay group, ...), not with today's defaults, and exactly."""
    from rl_minrnn.configs.loading import ADDED_KEYS

    legacy = [f"{k}={v}" for k, v in ADDED_KEYS.items()]
    straight = Trainer(config("train.steps=30", *legacy), tmp_path / "a", progress=False, dataset=tiny_dataset)
    straight.run()
    Trainer(config("train.steps=15", *legacy), tmp_path / "b", progress=False, dataset=tiny_dataset).run()
    path = tmp_path / "b" / "checkpoints" / "last.pt"
    data = read_checkpoint(path)
    for key in ADDED_KEYS:  # as an older version wrote it
        section, name = key.split(".")
        del data["config"][section][name]
    save_checkpoint(path, {k: v for k, v in data.items() if k != "format"})
    agent, _ = load_agent(path)  # evaluate.py's way in: builds the model from the legacy config, then its weights
    assert all(torch.equal(v, data["model"][k]) for k, v in agent.state_dict().items())
    resumed = Trainer.resume(tmp_path / "b", ["train.steps=30"], progress=False, dataset=tiny_dataset)
    assert [resumed.config.model.init, resumed.config.train.weight_decay_on] == ["pytorch", "all"]
    resumed.run()
    a, b = weights(straight), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_evaluation_during_training_keeps_resume_exact(tiny_dataset, tmp_path):
    ev = ["eval.every=10", "eval.episodes=1", "eval.max_episode_steps=15", "eval.target_returns=[100]",
          "eval.final_episodes=1", "train.lr_schedule=constant"]  # extended on resume: test_resume_is_exact
    straight = Trainer(config("train.steps=20", *ev), tmp_path / "a", progress=False, dataset=tiny_dataset)
    straight.run()
    half = Trainer(config("train.steps=10", *ev), tmp_path / "b", progress=False, dataset=tiny_dataset)
    half.run()
    resumed = Trainer.resume(tmp_path / "b", ["train.steps=20"], progress=False, dataset=tiny_dataset)
    resumed.run()
    a, b = weights(straight), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "a" / "checkpoints" / "best.pt").is_file()
    agent, info = load_agent(tmp_path / "a" / "checkpoints" / "best.pt")
    assert info["env_id"] == tiny_dataset.env_id and info["step"] in (10, 20)
    assert info["ref_max_score"] == pytest.approx(tiny_dataset.ref_max_score)


def test_corrupt_and_mismatched_checkpoints_give_clear_errors(tiny_dataset, tmp_path):
    Trainer(config("train.steps=5"), tmp_path / "run", progress=False, dataset=tiny_dataset).run()
    path = tmp_path / "run" / "checkpoints" / "last.pt"
    data = read_checkpoint(path)

    data["config"]["model"]["width"] = 32  # weights of width 16 under a width-32 config
    save_checkpoint(tmp_path / "mismatch.pt", {k: v for k, v in data.items() if k != "format"})
    with pytest.raises(CheckpointError, match="does not fit this model"):
        load_agent(tmp_path / "mismatch.pt")

    (tmp_path / "corrupt.pt").write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable"):
        load_agent(tmp_path / "corrupt.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_agent(tmp_path / "nothing.pt")
    with pytest.raises(CheckpointError, match="is a folder"):
        load_agent(tmp_path / "run")

    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a readable"):
        Trainer.resume(tmp_path / "run", progress=False, dataset=tiny_dataset)


def test_resume_refuses_to_change_the_model(tiny_dataset, tmp_path):
    Trainer(config("train.steps=5"), tmp_path, progress=False, dataset=tiny_dataset).run()
    with pytest.raises(ConfigError, match="model.width"):
        Trainer.resume(tmp_path, ["model.width=64"], progress=False, dataset=tiny_dataset)


@pytest.mark.parametrize(
    "override, key",
    [("train.stepz=3", "train.stepz"), ("model.cell=gru", "model.cell"), ("train.steps=-1", "train.steps"),
     ("train.batch_size=abc", "train.batch_size"), ("nonsense=1", "nonsense"), ("model.kind=lstm", "model.kind"),
     ("eval.target_returns=[a]", "eval.target_returns"), ("dataset.holdout=1", "dataset.holdout"),
     ("dataset.holdout=-0.1", "dataset.holdout")],
)
def test_config_errors_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(overrides=[override])


def test_every_shipped_config_loads():
    files = sorted((ROOT / "configs").glob("*.yaml"))
    assert len(files) == 12  # 3 envs x medium, medium-replay, medium-expert, expert
    for f in files:
        cfg = load_config([f, *profile_files("cpu", load_config([f]).dataset.id)])
        assert cfg.dataset.id and cfg.eval.target_returns
        # the config a dataset id picks is the file that names it, whichever store the id comes from
        task, kind = f.stem.split("-", 1)
        for dataset_id in (cfg.dataset.id, f"local/{task}/{kind}-v0"):
            assert config_for_dataset(dataset_id) == (f, None)


def test_shipped_configs_hold_only_what_differs_from_the_defaults():
    defaults = load_config().to_dict()
    for f in sorted((ROOT / "configs").glob("*.yaml")):
        for section, values in yaml.safe_load(f.read_text()).items():
            for key, value in values.items():
                if (section, key) not in {("dataset", "id"), ("eval", "target_returns")}:
                    assert load_config([f]).to_dict()[section][key] != defaults[section][key], (f.name, section, key)


def test_a_profiles_files_for_a_dataset_come_after_it_most_specific_last(tmp_path, monkeypatch):
    """An id of a known task without a config of its own (the shipped sample) gets its task's medium files, as it
    gets that config (``config_for_dataset``)."""
    monkeypatch.setattr(loading, "CONFIG_DIR", tmp_path)
    (tmp_path / "profiles" / "p").mkdir(parents=True)
    for stem in ("hopper-medium-replay", "hopper-medium", "walker2d-medium-replay", "walker2d-medium"):
        (tmp_path / f"{stem}.yaml").write_text("{}\n")
    (tmp_path / "profiles" / "p.yaml").write_text("train: {lr: 1.0e-3}\n")
    for stem, lr in (("medium-replay", 3.0e-4), ("hopper", 2.0e-4), ("hopper-medium-replay", 1.0e-4)):
        (tmp_path / "profiles" / "p" / f"{stem}.yaml").write_text(f"train: {{lr: {lr}}}\n")
    folder = tmp_path / "profiles" / "p"
    assert profile_files("p", "local/hopper/medium-replay-v0") == [
        tmp_path / "profiles" / "p.yaml", folder / "medium-replay.yaml", folder / "hopper.yaml",
        folder / "hopper-medium-replay.yaml"]
    assert profile_files("p", "d4rl/walker2d/medium-replay-v2") == [tmp_path / "profiles" / "p.yaml",
                                                                    folder / "medium-replay.yaml"]
    assert profile_files("p", "mujoco/hopper/medium-v0") == [tmp_path / "profiles" / "p.yaml", folder / "hopper.yaml"]
    assert profile_files("p", "local/hopper/sample-v0") == profile_files("p", "mujoco/hopper/medium-v0")
    assert profile_files("p", "local/walker2d/sample-v0") == [tmp_path / "profiles" / "p.yaml"]  # walker2d-medium
    # an unknown task never gets another task's files, whichever config it falls back to
    (folder / "thing.yaml").write_text("train: {lr: 5.0e-4}\n")
    assert profile_files("p", "test/unknown/thing-v0") == [tmp_path / "profiles" / "p.yaml", folder / "thing.yaml"]
    assert profile_files("p", "medium-replay-v0") == [tmp_path / "profiles" / "p.yaml", folder / "medium-replay.yaml"]
    assert load_config(profile_files("p", "local/hopper/medium-replay-v0")).train.lr == 1.0e-4
    with pytest.raises(ConfigError, match="Unknown profile 'q'; available: p"):
        profile_files("q", "local/hopper/medium-v0")


def test_an_agents_profile_files_come_after_the_datasets_and_reach_the_api(tmp_path, monkeypatch):
    """``profiles/<name>/<agent>/`` holds what one agent needs differently on a dataset; its files come after the
    dataset's (same names, most specific last), and the agent is the one the config files and overrides name."""
    from rl_minrnn import api

    monkeypatch.setattr(loading, "CONFIG_DIR", tmp_path)
    folder = tmp_path / "profiles" / "p"
    (tmp_path / "hopper-medium-replay.yaml").write_text("{}\n")
    (folder / "minlstm").mkdir(parents=True)
    (folder / "decision_transformer").mkdir()
    (tmp_path / "profiles" / "p.yaml").write_text("train: {lr: 1.0e-3}\n")
    (folder / "hopper-medium-replay.yaml").write_text("train: {lr: 3.0e-4, ema_ramp: 4}\n")
    (folder / "minlstm" / "hopper-medium-replay.yaml").write_text("train: {ema_ramp: 10}\n")
    (folder / "minlstm" / "medium-replay.yaml").write_text("model: {dropout: 0.2}\n")
    (folder / "decision_transformer" / "hopper.yaml").write_text("model: {tokens: fused}\n")
    dataset_id = "local/hopper/medium-replay-v0"
    assert profile_files("p", dataset_id, "minlstm") == [
        tmp_path / "profiles" / "p.yaml", folder / "hopper-medium-replay.yaml", folder / "minlstm" / "medium-replay.yaml",
        folder / "minlstm" / "hopper-medium-replay.yaml"]
    assert profile_files("p", dataset_id, "mingru") == profile_files("p", dataset_id)
    assert profile_files("p", dataset_id, "decision_transformer")[-1] == folder / "decision_transformer" / "hopper.yaml"
    assert loading.profile_agent(load_config(overrides=["model.cell=minlstm"])) == "minlstm"
    assert loading.profile_agent(load_config(overrides=["model.kind=decision_transformer", "model.cell=minlstm"])) == \
        "decision_transformer"
    base = tmp_path / "base.yaml"
    base.write_text(f"dataset: {{id: {dataset_id}}}\n")
    said = []

    def resolved(*overrides, log=lambda *a: None):
        return api.resolve_config(base, overrides=list(overrides), profile="p", log=log)[0]
    lstm = resolved("model.cell=minlstm", log=said.append)
    assert (lstm.train.lr, lstm.train.ema_ramp, lstm.model.dropout) == (3.0e-4, 10.0, 0.2)
    assert said[-1] == f"Profile p for {dataset_id} and minlstm: " + " + ".join(
        str(path) for path in profile_files("p", dataset_id, "minlstm"))
    gru = resolved()
    assert (gru.train.lr, gru.train.ema_ramp, gru.model.dropout, gru.model.tokens) == (3.0e-4, 4.0, 0.1, "interleaved")
    assert resolved("model.kind=decision_transformer").model.tokens == "fused"
    assert resolved("model.cell=minlstm", "train.ema_ramp=3").train.ema_ramp == 3.0  # a --set still has the last word


def test_the_cpu_profiles_dataset_files_reach_every_way_a_run_is_configured(tmp_path):
    """The cpu profile sets one lr for every dataset; its ``walker2d-medium-replay.yaml`` and
    ``hopper-medium-replay.yaml`` set those buffers' own (the latter also the weight-average ramp),
    ``medium-replay.yaml`` every medium-replay buffer's dropout, ``hopper-medium-expert.yaml`` that dataset's token
    layout. The command line and Python API (``resolve_config``, whichever way the dataset is named) and the suite
    read them; a ``--set`` still has the last word; the medium datasets and HalfCheetah medium-replay keep the
    profile's lr."""
    from benchmarks import suite
    from rl_minrnn import api

    profile = load_config([loading.profile_path("cpu")])
    replay_lr = yaml.safe_load((ROOT / "configs/profiles/cpu/walker2d-medium-replay.yaml").read_text())["train"]["lr"]
    assert replay_lr != profile.train.lr
    quiet = lambda *a: None  # noqa: E731

    def suite_config(dataset_id, agent="mingru"):
        overrides = [f"dataset.id={dataset_id}", *suite.AGENTS[agent]]
        return load_config(suite.config_files(dataset_id, "cpu", overrides)[0], overrides)
    for dataset_id, lr in (("local/walker2d/medium-replay-v0", replay_lr), ("local/hopper/medium-replay-v0", replay_lr),
                           ("local/walker2d/medium-v0", profile.train.lr),
                           ("local/halfcheetah/medium-replay-v0", profile.train.lr)):
        assert api.resolve_config(dataset=dataset_id, profile="cpu", log=quiet)[0].train.lr == lr
        config_file = ROOT / "configs" / f"{dataset_id.split('/')[1]}-{dataset_id.split('/')[2][:-3]}.yaml"
        assert api.resolve_config(config_file, overrides=[f"dataset.id={dataset_id}"], profile="cpu",
                                  log=quiet)[0].train.lr == lr
        assert suite_config(dataset_id).train.lr == lr
    said = []
    assert api.resolve_config(dataset="local/walker2d/medium-replay-v0", profile="cpu", overrides=["train.lr=0.002"],
                              log=said.append)[0].train.lr == 0.002
    assert ("Profile cpu for local/walker2d/medium-replay-v0 and mingru: configs/profiles/cpu.yaml + "
            "configs/profiles/cpu/medium-replay.yaml + configs/profiles/cpu/walker2d-medium-replay.yaml") in said
    assert api.resolve_config(dataset="local/hopper/medium-replay-v0", log=quiet)[0].train.lr == load_config().train.lr
    # Hopper medium-replay's weight-average ramp is its own
    assert suite_config("local/hopper/medium-replay-v0").train.ema_ramp == 4.0
    assert suite_config("local/walker2d/medium-replay-v0").train.ema_ramp == profile.train.ema_ramp
    # a task-and-kind file: Hopper medium-expert's token layout, not Walker2d medium-expert's
    assert suite_config("local/hopper/medium-expert-v0").model.tokens == "interleaved"
    assert suite_config("local/walker2d/medium-expert-v0").model.tokens == profile.model.tokens
    # the medium-replay buffers' dropout (a kind's file, every task) against the profile's none; the main job (its
    # Hopper medium id) and the shipped sample it trains on, read as Hopper medium, keep the profile's
    dropout = yaml.safe_load((ROOT / "configs/profiles/cpu/medium-replay.yaml").read_text())["model"]["dropout"]
    assert dropout != profile.model.dropout
    for dataset_id in ("local/hopper/medium-replay-v0", "local/walker2d/medium-replay-v0",
                       "local/halfcheetah/medium-replay-v0", "mujoco/halfcheetah/medium-replay-v0"):
        assert api.resolve_config(dataset=dataset_id, profile="cpu", log=quiet)[0].model.dropout == dropout
        assert suite_config(dataset_id, "d3rlpy_dt").model.dropout == dropout
    for dataset_id in ("local/hopper/sample-v0", "mujoco/hopper/medium-v0", "local/hopper/medium-v0",
                       "local/halfcheetah/medium-expert-v0"):
        assert api.resolve_config(dataset=dataset_id, profile="cpu", log=quiet)[0].model.dropout == profile.model.dropout
        assert suite_config(dataset_id).model.dropout == profile.model.dropout
    # an agent's file: the DT (and d3rlpy's, trained with its config) keeps the profile's fused tokens there
    for agent in ("dt", "d3rlpy_dt"):
        assert suite_config("local/hopper/medium-expert-v0", agent).model.tokens == profile.model.tokens
    assert suite_config("local/hopper/medium-expert-v0", "minlstm").model.tokens == "interleaved"
    assert api.resolve_config(dataset="local/hopper/medium-expert-v0", profile="cpu", log=quiet,
                              overrides=["model.kind=decision_transformer"])[0].model.tokens == profile.model.tokens


def test_the_profiles_dataset_and_agent_files_hold_only_what_differs_from_what_they_follow():
    """A dataset's file changes only what the profile sets otherwise; an agent's file only what the profile and
    the dataset's file of the same name set otherwise (none of them repeats a value it would not change)."""
    checked = 0
    for folder in sorted(p for p in (ROOT / "configs" / "profiles").iterdir() if p.is_dir()):
        for f in sorted(folder.rglob("*.yaml")):
            before = [folder.with_suffix(".yaml")]
            if f.parent != folder:  # an agent's file follows the dataset's file of the same name, where there is one
                assert f.parent.parent == folder and f.parent.name in {"mingru", "minlstm", "decision_transformer"}, f
                before += [folder / f.name] if (folder / f.name).is_file() else []
            previous = load_config(before).to_dict()
            for section, values in yaml.safe_load(f.read_text()).items():
                for key in values:
                    assert load_config([*before, f]).to_dict()[section][key] != previous[section][key], (f, key)
                    checked += 1
    assert checked >= 5


def test_a_dataset_without_a_config_of_its_own_gets_its_tasks_medium_config():
    path, note = config_for_dataset("local/walker2d/sample-v0")
    assert path.name == "walker2d-medium.yaml" and "no configs/walker2d-sample.yaml" in note
    assert config_for_dataset("test/unknown/thing-v0")[0].name == "hopper-medium.yaml"


@pytest.mark.slow
def test_train_agent_dataset_flag_picks_the_datasets_config(tiny_dataset, tmp_path, minari_store):
    """``--dataset ID`` trains on ID with the config its id names (here the Hopper medium fallback, whose one
    change to the defaults is width 256; SMALL's width is left out so that it shows)."""
    run = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "train_agent.py"), "--no-progress", "--run-dir", str(run),
           "--dataset", tiny_dataset.dataset_id, "--set", "train.steps=2", "--set", "eval.every=0"]
    for s in SMALL:
        if not s.startswith("model.width="):
            cmd += ["--set", s]
    env = dict(os.environ, MINARI_DATASETS_PATH=str(minari_store))
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "using configs/hopper-medium.yaml" in proc.stdout
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["dataset"]["id"] == tiny_dataset.dataset_id
    assert saved["model"]["width"] == 256  # the file was applied, not only named (the schema default is 128)


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_that_resumes(tiny_dataset, tmp_path, minari_store):
    run = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "train_agent.py"), "--no-progress", "--run-dir", str(run),
           "--set", f"dataset.id={tiny_dataset.dataset_id}", "--set", "train.steps=1000000"]
    for s in SMALL:
        cmd += ["--set", s]
    env = dict(os.environ, MINARI_DATASETS_PATH=str(minari_store))
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not (run / "metrics.jsonl").exists() or (run / "metrics.jsonl").stat().st_size == 0:
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read() if proc.poll() is not None else "timeout"
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "--resume" in out
    step = read_checkpoint(run / "checkpoints" / "last.pt")["step"]
    assert step >= 10


@pytest.mark.slow
def test_evaluation_videos_are_recorded(tiny_dataset, tmp_path):
    from rl_minrnn.envs.evaluation.render import RenderError, setup_headless_gl

    try:
        setup_headless_gl()
    except RenderError as error:
        pytest.skip(str(error))
    ev = ["eval.every=5", "eval.episodes=1", "eval.max_episode_steps=8", "eval.target_returns=[100]", "eval.video=true",
          "eval.final_episodes=1"]
    Trainer(config("train.steps=5", *ev), tmp_path, progress=False, dataset=tiny_dataset).run()
    video = tmp_path / "videos" / "step0000005.mp4"
    assert video.is_file() and video.stat().st_size > 0
    assert any((tmp_path / "tensorboard").iterdir())


def test_reference_scores_keep_their_source(make_offline_dataset, tmp_path):
    """A dataset without its own reference scores is scored with D4RL's for its task, and the run says so
    (it was labelled "dataset" before); a checkpoint carries the label to evaluate.py."""
    data = make_offline_dataset([12, 12], obs_dim=11, act_dim=3, env_id="Hopper-v5")
    assert data.reference_scores.source == "d4rl"
    trainer = Trainer(config("train.steps=2"), tmp_path, progress=False, dataset=data)
    assert trainer.ref_scores == data.reference_scores
    trainer.run()
    _, info = load_agent(tmp_path / "checkpoints" / "last.pt")
    assert info["ref_source"] == "d4rl" and info["ref_max_score"] == pytest.approx(3234.3)


# ------------------------------------------------------------------ steady final policies: schedules, weight average, final evaluation

def test_lr_schedules_warm_up_then_decay_to_lr_final_at_the_last_step():
    from rl_minrnn.training.optimizer import lr_factor

    for schedule in ("cosine", "linear"):
        train = config("train.steps=100", "train.warmup_steps=10", f"train.lr_schedule={schedule}",
                       "train.lr_final=0.1").train
        f = [lr_factor(train)(k) for k in range(100)]
        assert f[:10] == pytest.approx([(k + 1) / 10 for k in range(10)])  # the k-th update's warm-up
        assert f[9] == 1.0 and f[-1] == pytest.approx(0.1)  # full lr at the warm-up's end, lr_final at the last update
        assert all(a >= b for a, b in zip(f[9:], f[10:]))  # decays without a bump
        middle = f[9 + 45]  # halfway through the decay: cosine and linear both at (1 + 0.1) / 2
        assert middle == pytest.approx(0.55)
    cosine = lr_factor(config("train.steps=100", "train.warmup_steps=10", "train.lr_schedule=cosine").train)
    assert cosine(20) > 1 - 0.45 * (11 / 90)  # cosine stays above the straight line early on
    constant = lr_factor(config("train.steps=100", "train.warmup_steps=10", "train.lr_schedule=constant").train)
    assert [constant(k) for k in (0, 9, 50, 99, 500)] == pytest.approx([0.1, 1, 1, 1, 1])


@pytest.mark.parametrize("ramp", [10.0, 3.0])
def test_the_weight_average_is_the_ramped_ema_of_the_weights_brute_force(ramp):
    """``WeightAverage`` against the recurrence written out: a_0 = w_1, a_n = d_n a_{n-1} + (1 - d_n) w_n with
    d_n = min(decay, (1 + n) / (ramp + n)) for the n-th update after the first, in float64."""
    from rl_minrnn.training.averaging import WeightAverage

    torch.manual_seed(0)
    module = torch.nn.Linear(3, 2)
    average = WeightAverage(module, 0.9, ramp) if ramp != 10.0 else WeightAverage(module, 0.9)  # 10: the default
    expected, history = None, []
    for n in range(40):
        with torch.no_grad():
            for p in module.parameters():
                p.add_(torch.randn_like(p))
        average.update()
        w = torch.cat([p.detach().double().flatten() for p in module.parameters()])
        if expected is None:
            expected = w.clone()
        else:
            d = min(0.9, (1 + n) / (ramp + n))  # n earlier updates
            expected = d * expected + (1 - d) * w
        history.append(w)
    got = torch.cat([p.double().flatten() for p in average.module.parameters()])
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, history[-1], atol=1e-2)  # it is an average, not the last weights
    assert not any(p.requires_grad for p in average.module.parameters())


def test_the_weight_average_is_averagedmodels_update_to_the_bit():
    """The cached tensor lists give ``AveragedModel.update_parameters``'s average exactly, buffers included,
    through training steps that move the weights in place."""
    from torch.optim.swa_utils import AveragedModel

    from rl_minrnn.agents.factory import build_agent
    from rl_minrnn.configs.schema import ModelConfig
    from rl_minrnn.training.averaging import WeightAverage, ramped_ema

    torch.manual_seed(0)
    agent = build_agent(dataclasses.asdict(ModelConfig(width=32, depth=2, context=5)), 4, 2)
    average = WeightAverage(agent, 0.99)
    reference = AveragedModel(agent, multi_avg_fn=ramped_ema(0.99), use_buffers=True)
    optimizer = torch.optim.AdamW(agent.parameters(), lr=1e-2)
    for _ in range(25):
        preds, _ = agent(torch.randn(3, 5, 4), torch.randn(3, 5, 2), torch.randn(3, 5), torch.randint(0, 9, (3, 5)))
        optimizer.zero_grad()
        preds.square().mean().backward()
        optimizer.step()
        average.update()
        reference.update_parameters(agent)
    got, want = average.module.state_dict(), reference.module.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)
    assert int(average.averaged.n_averaged) == int(reference.n_averaged) == 25
    raw = agent.state_dict()
    assert any(not torch.equal(got[k], raw[k]) for k in got)  # an average, not a copy of the weights


def test_resume_is_exact_with_the_weight_average_and_a_decaying_lr(tiny_dataset, tmp_path):
    """The raw weights, the average, the optimiser and the schedule continue exactly: 40 steps straight
    equal 20 + resume to 40, and ``last.pt``'s ``model`` (what evaluate.py and the exporter load) is the
    average, the raw weights beside it."""
    from rl_minrnn.training import TrainerCallback

    class StopAt20(TrainerCallback):  # a run killed half-way (the schedule decays to step 40 in both)
        def on_step(self, trainer, stats):
            if trainer.step == 20:
                raise KeyboardInterrupt

    extra = ["train.ema=0.9", "train.lr_schedule=cosine", "train.lr_final=0.2", "train.steps=40"]
    straight = Trainer(config(*extra), tmp_path / "a", progress=False, dataset=tiny_dataset)
    straight.run()
    half = Trainer(config(*extra), tmp_path / "b", progress=False, dataset=tiny_dataset)
    with pytest.raises(KeyboardInterrupt):
        half.run(callbacks=[StopAt20()])
    resumed = Trainer.resume(tmp_path / "b", progress=False, dataset=tiny_dataset)
    assert resumed.step == 20
    resumed.run()
    for a, b in ((straight.agent, resumed.agent), (straight.policy, resumed.policy)):
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(v, straight.policy.state_dict()[k]) for k, v in straight.agent.state_dict().items())
    data = read_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")
    assert all(torch.equal(data["model"][k], v) for k, v in resumed.policy.state_dict().items())
    assert all(torch.equal(data["training_model"][k], v) for k, v in resumed.agent.state_dict().items())
    assert data["average"]["num_averaged"] == 40
    agent, _ = load_agent(tmp_path / "b" / "checkpoints" / "last.pt")
    assert all(torch.equal(v, resumed.policy.state_dict()[k]) for k, v in agent.state_dict().items())


def test_the_final_evaluation_scores_the_last_and_the_best_checkpoint_on_fresh_episodes(tiny_dataset, tmp_path):
    import json

    ev = ["eval.every=5", "eval.episodes=1", "eval.max_episode_steps=20", "eval.target_returns=[100]",
          "eval.final_episodes=3", "eval.final_seed=777", "train.ema=0.9"]
    trainer = Trainer(config("train.steps=15", *ev), tmp_path, progress=False, dataset=tiny_dataset)
    summary = trainer.run()
    final = json.loads((tmp_path / "final_eval.json").read_text())
    assert summary["final"] == final
    assert final["episodes"] == 3 and final["seed"] == 777 and final["last"]["step"] == 15
    assert len(final["last"]["targets"]) == 1
    # the last checkpoint, re-run by hand on the same seeds, gives the same returns
    from rl_minrnn.envs.evaluation.rollout import evaluate_agent

    agent, _ = load_agent(tmp_path / "checkpoints" / "last.pt")
    again = evaluate_agent(agent, tiny_dataset.env_id, 3, [100], seed=777, max_episode_steps=20, progress=False)
    assert again.targets[0].summary()["return_mean"] == pytest.approx(final["last"]["targets"][0]["return_mean"])
    best = final["best"]
    assert best["step"] == trainer.best["step"] and best["in_run_score"] == trainer.best["score"]
    assert best.get("same_as_last") == (trainer.best["step"] == 15)
    metrics = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any("final/last_score" in m for m in metrics)


def test_no_final_evaluation_when_evaluation_is_off(tiny_dataset, tmp_path):
    summary = Trainer(config("train.steps=5", "eval.final_episodes=5"), tmp_path, progress=False,
                      dataset=tiny_dataset).run()
    assert summary["final"] is None and not (tmp_path / "final_eval.json").exists()


def test_run_folder_names_are_those_of_the_run_folders_on_disk():
    """The names are a contract with existing run folders: a run writes them, and the run folders committed
    under benchmarks/results are read through them."""
    import json

    from rl_minrnn.training import RunFolder

    f = RunFolder("runs/x")
    names = {name: getattr(f, name).relative_to("runs/x").as_posix() for name in (
        "config", "metrics", "final_eval", "error_log", "checkpoints", "last", "best", "videos", "tensorboard",
        "mlflow_run_id", "wandb_run_id", "wandb", "lock", "lock_owner")}
    assert names == {"config": "config.yaml", "metrics": "metrics.jsonl", "final_eval": "final_eval.json",
                     "error_log": "error.log", "checkpoints": "checkpoints", "last": "checkpoints/last.pt",
                     "best": "checkpoints/best.pt", "videos": "videos", "tensorboard": "tensorboard",
                     "mlflow_run_id": "mlflow_run_id", "wandb_run_id": "wandb_run_id", "wandb": "wandb",
                     "lock": ".lock", "lock_owner": ".lock.owner"}
    assert f.video(1000) == Path("runs/x/videos/step0001000.mp4")
    assert f.mlflow_store == Path("runs/mlflow.db").resolve()
    committed = [RunFolder(p.parent) for p in sorted((ROOT / "benchmarks" / "results").rglob("config.yaml"))]
    assert committed
    for run in committed:
        assert run.metrics.is_file() and "last" in json.loads(run.final_eval.read_text())
        load_config([run.config])


def test_held_out_episodes_are_split_by_the_seed_whole_and_apart(make_offline_dataset):
    """``dataset.holdout``'s split: whole episodes, disjoint, together the dataset, each part in the dataset's
    order, the count rounded (at least one, never all), fixed by the seed; 0 leaves the dataset as it is."""
    from rl_minrnn.envs.offline import DatasetFormatError
    from rl_minrnn.envs.offline.holdout import split_episodes

    data = make_offline_dataset([5 + i for i in range(20)], seed=1)
    ids = {id(ep): i for i, ep in enumerate(data.episodes)}
    train, held = split_episodes(data, 0.25, seed=3)
    a, b = [ids[id(ep)] for ep in train.episodes], [ids[id(ep)] for ep in held.episodes]
    assert len(b) == 5 and sorted(a + b) == list(range(20)) and a == sorted(a) and b == sorted(b)
    assert [ids[id(ep)] for ep in split_episodes(data, 0.25, seed=3)[1].episodes] == b
    assert [ids[id(ep)] for ep in split_episodes(data, 0.25, seed=4)[1].episodes] != b
    assert held.reference_scores is data.reference_scores and held.env_id == data.env_id
    states = np.concatenate([ep.states for ep in train.episodes]).astype(np.float64)
    np.testing.assert_allclose(train.state_mean, states.mean(axis=0), rtol=1e-5, atol=1e-6)
    assert (split_episodes(data, 0.01, 0)[1].num_episodes, split_episodes(data, 0.99, 0)[1].num_episodes) == (1, 19)
    assert split_episodes(data, 0.0, 0) == (data, None)
    with pytest.raises(DatasetFormatError, match="dataset.holdout=0.5 needs at least 2 episodes"):
        split_episodes(make_offline_dataset([9]), 0.5, 0)
    with pytest.raises(DatasetFormatError, match="at least one episode"):
        data.subset([])


HOLDOUT = ["dataset.holdout=0.2", "eval.every=10", "eval.episodes=1", "eval.max_episode_steps=15",
           "eval.target_returns=[100]", "eval.final_episodes=0", "train.lr_schedule=constant"]


def logged(run_dir, key):
    import json

    return {row["step"]: row[key] for row in map(json.loads, open(run_dir / "metrics.jsonl")) if key in row}


def test_the_validation_loss_is_the_policys_action_loss_on_held_out_episodes_brute_force(make_offline_dataset, tmp_path):
    """The run trains on the other episodes only; at every evaluation it logs the evaluated policy's action
    MSE, without dropout, over the held-out episodes' windows and as many training windows: here recomputed
    one window and one step at a time, with the policy left in the mode it was in."""
    data = make_offline_dataset([12 + i for i in range(10)], obs_dim=11, act_dim=3, seed=5)
    trainer = Trainer(config("train.steps=20", "train.ema=0.9", *HOLDOUT), tmp_path, progress=False, dataset=data)
    assert trainer.sampler.flat.num_episodes == 8 and trainer.held_out.num_episodes == 2
    trainer.run()
    assert set(logged(tmp_path, "val/action_loss")) == {10, 20}
    policy = trainer.policy
    policy.train()
    for key, batches in trainer.validation.sets.items():
        errors = []
        with torch.no_grad():
            policy.eval()
            for b in batches:
                for r in range(b["states"].shape[0]):
                    row = {k: v[r:r + 1] for k, v in b.items()}
                    preds, _ = policy(row["states"], row["actions"], row["returns_to_go"], row["timesteps"], None)
                    errors += [float(((preds[0, t] - row["actions"][0, t]) ** 2).mean())
                               for t in range(row["mask"].shape[1]) if row["mask"][0, t] > 0]
            policy.train()
        assert trainer.validation(policy)[key] == pytest.approx(np.mean(errors), rel=1e-5)
        assert logged(tmp_path, key)[20] == pytest.approx(np.mean(errors), rel=1e-5)
        assert policy.training
    # what the held-out windows hold: episodes the training sampler never draws
    held_rows = {tuple(np.round(b["states"][r, 0].numpy(), 5)) for b in trainer.validation.sets["val/action_loss"]
                 for r in range(b["states"].shape[0])}
    train_first = {tuple(np.round(trainer.normalizer.normalize(ep.states[t]), 5)) for ep in trainer.dataset.episodes
                   for t in range(len(ep))}
    assert held_rows and not held_rows & train_first


def test_resume_is_exact_with_held_out_episodes(tiny_dataset, tmp_path):
    """The split and the validation windows come from the seed alone: a resumed run trains on the same
    episodes, to the same weights, and measures the same validation loss."""
    straight = Trainer(config("train.steps=20", *HOLDOUT), tmp_path / "a", progress=False, dataset=tiny_dataset)
    straight.run()
    Trainer(config("train.steps=10", *HOLDOUT), tmp_path / "b", progress=False, dataset=tiny_dataset).run()
    resumed = Trainer.resume(tmp_path / "b", ["train.steps=20"], progress=False, dataset=tiny_dataset)
    resumed.run()
    a, b = weights(straight), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert logged(tmp_path / "a", "val/action_loss") == logged(tmp_path / "b", "val/action_loss")
