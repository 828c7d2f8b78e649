"""train.processes: one run's batches split between processes (training/data_parallel.py) give the whole
batch's gradient, resume exactly, and stop with a clear error when a helper dies."""

import pytest
import torch

from rl_minrnn.configs.schema import ConfigError
from rl_minrnn.training import Trainer, TrainerCallback
from rl_minrnn.training.data_parallel import HelperFailed, row_bounds

from test_training import config, weights


def test_row_bounds_cover_every_row_once_the_leader_first():
    for rows in (1, 2, 7, 64):
        for processes in range(1, min(rows, 5) + 1):
            bounds = row_bounds(rows, processes)
            assert bounds[0][0] == 0 and bounds[-1][1] == rows
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
            sizes = [hi - lo for lo, hi in bounds]
            assert max(sizes) - min(sizes) <= 1 and sizes[0] == max(sizes)


@pytest.mark.parametrize("kind", ["decision_rnn", "decision_transformer"])
def test_two_processes_train_on_the_whole_batch(kind, tiny_dataset, tmp_path):
    """Without dropout (the one thing the helper draws differently) two processes follow one process's
    trajectory to float rounding: the same losses (the helper's half included: without it the loss would
    be about half) and the same weights after 15 steps."""
    extra = [f"model.kind={kind}", "model.dropout=0.0", "train.steps=15", "train.log_every=1"]
    one = Trainer(config(*extra), tmp_path / "one", progress=False, dataset=tiny_dataset)
    two = Trainer(config(*extra, "train.processes=2"), tmp_path / "two", progress=False, dataset=tiny_dataset)
    try:
        for _ in range(15):
            batch = one.sampler.sample()
            assert all((batch[k] == v).all() for k, v in two.sampler.sample().items())
            a, b = one.train_step(batch), two.train_step(batch)
            assert float(a["timesteps"]) == float(b["timesteps"])
            assert abs(float(a["loss"]) - float(b["loss"])) <= 1e-6 * max(1.0, float(a["loss"]))
        assert two.training_step.splitter.helpers  # it really ran a helper
        wa, wb = weights(one), weights(two)
        assert all(torch.allclose(wa[k], wb[k], atol=1e-5, rtol=1e-4) for k in wa)
    finally:
        two.training_step.close()
        two.lock.release()
        one.lock.release()


@pytest.mark.slow
def test_resume_is_exact_with_two_processes(tiny_dataset, tmp_path):
    """Dropout on: the helper's masks come from seeds the leader's generator draws, so 20 steps, a stop and
    a resume to 40 equal 40 straight, to the bit, the weight average included."""

    class StopAt20(TrainerCallback):
        def on_step(self, trainer, stats):
            if trainer.step == 20:
                raise KeyboardInterrupt

    extra = ["train.processes=2", "train.steps=40", "train.ema=0.9"]
    straight = Trainer(config(*extra), tmp_path / "a", progress=False, dataset=tiny_dataset)
    straight.run()
    half = Trainer(config(*extra), tmp_path / "b", progress=False, dataset=tiny_dataset)
    with pytest.raises(KeyboardInterrupt):
        half.run(callbacks=[StopAt20()])
    assert all(h.process.poll() is not None for h in half.training_step.splitter.helpers or [])
    resumed = Trainer.resume(tmp_path / "b", progress=False, dataset=tiny_dataset)
    resumed.run()
    for a, b in ((straight.agent, resumed.agent), (straight.policy, resumed.policy)):
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    one = Trainer(config("train.steps=40", "train.ema=0.9"), tmp_path / "c", progress=False, dataset=tiny_dataset)
    one.run()  # with dropout, one process draws other masks: a different run, from the same distribution
    assert not all(torch.equal(v, one.agent.state_dict()[k]) for k, v in straight.agent.state_dict().items())


def test_a_helper_that_dies_stops_the_run_with_a_clear_error_and_keeps_the_step_reached(tiny_dataset, tmp_path):
    from rl_minrnn.training import read_checkpoint

    class KillHelperAt2(TrainerCallback):
        def on_step(self, trainer, stats):
            if trainer.step == 2:
                helper = trainer.training_step.splitter.helpers[0]
                helper.process.kill()
                helper.process.wait()

    trainer = Trainer(config("train.processes=2", "train.steps=5"), tmp_path, progress=False, dataset=tiny_dataset)
    with pytest.raises(HelperFailed, match=r"helper process (died|closed).*saved at step 2.*continue with: .*train.processes=1"):
        trainer.run(callbacks=[KillHelperAt2()])
    assert read_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 2
    splitter = trainer.training_step.splitter
    assert not splitter.helpers and not splitter.folder.exists()  # stopped, and the shared buffers' files gone


@pytest.mark.parametrize("overrides, match", [
    (["train.regime=sequence"], "regime=window"),
    (["train.batch_size=1"], "batch_size"),
    (["train.compile=true"], "compile"),
])
def test_settings_that_cannot_split_are_refused(overrides, match):
    with pytest.raises(ConfigError, match=match):
        config("train.processes=2", *overrides)
    with pytest.raises(ConfigError, match="train.processes"):
        config("train.processes=-1")


@pytest.mark.parametrize("overrides, device, cores, expected", [
    ([], "cpu", 2, 2),
    ([], "cpu", 16, 2),
    ([], "cpu", 1, 1),  # a single core: nothing to split onto
    ([], "cuda", 2, 1),
    (["train.regime=sequence"], "cpu", 2, 1),
    (["train.compile=true"], "cpu", 2, 1),
    (["train.batch_size=1"], "cpu", 2, 1),
    (["train.processes=1"], "cpu", 2, 1),  # a number is taken as it is
    (["train.processes=3"], "cpu", 2, 3),
])
def test_auto_processes_split_only_where_splitting_applies(overrides, device, cores, expected, monkeypatch):
    from rl_minrnn.training import resources

    monkeypatch.setattr(resources, "usable_cores", lambda: cores)
    train = config("train.processes=0", *overrides).train
    assert resources.data_parallel_processes(train, torch.device(device)) == expected


def test_the_cpu_profile_trains_one_run_on_both_cores(tiny_dataset, tmp_path, monkeypatch):
    """The cpu profile's auto: a trainer on a 2-core machine splits its batches between two processes, as
    train.processes=2 does (the same losses, without dropout: the two trainers draw from one global generator here),
    and says so once."""
    from rl_minrnn.configs.loading import profile_path
    from rl_minrnn.training import resources
    from rl_minrnn.training.options import load_config

    monkeypatch.setattr(resources, "usable_cores", lambda: 2)
    small = ["model.width=16", "model.depth=1", "model.context=4", "model.dropout=0.0", "train.batch_size=4", "train.steps=3",
             "eval.every=0", "train.device=cpu", "train.loggers=[]"]
    profiled = load_config([profile_path("cpu")], small)
    assert profiled.train.processes == 0
    said = []
    auto = Trainer(profiled, tmp_path / "auto", progress=False, dataset=tiny_dataset, log=said.append)
    two = Trainer(load_config([profile_path("cpu")], [*small, "train.processes=2"]), tmp_path / "two",
                  progress=False, dataset=tiny_dataset, log=lambda *a: None)
    try:
        assert auto.processes == 2 and auto.training_step.splitter is not None
        assert sum("train.processes auto" in line for line in said) == 1
        for _ in range(3):
            batch = auto.sampler.sample()
            a, b = float(auto.train_step(batch)["loss"]), float(two.train_step(batch)["loss"])
            assert abs(a - b) <= 1e-6 * max(1.0, a)
    finally:
        auto.training_step.close()
        two.training_step.close()


def test_default_threads_are_half_the_usable_cores(monkeypatch):
    """The affinity mask counts, not the machine's cores: a run limited to 2 of 64 cores takes 1 thread."""
    from rl_minrnn import threads

    for mask, expected in [({0, 1}, 1), (set(range(4)), 2), (set(range(64)), 4), ({3}, 1)]:
        monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid, mask=mask: mask, raising=False)
        monkeypatch.setattr(threads.os, "cpu_count", lambda: 64)
        assert threads.usable_cores() == len(mask) and threads.default_threads() == expected
