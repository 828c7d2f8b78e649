"""Smoke tests of the benchmark scripts: each ``main`` runs end to end on a tiny setting (seconds), writes its
JSON and Markdown, and the rollout benchmark's window fast-forward acts exactly as real stepping."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_suite_tiny(tiny_dataset, tmp_path):
    from benchmarks import suite

    out = tmp_path / "suite"
    argv = ["--protocol", "cpu", "--datasets", tiny_dataset.dataset_id, "test/hopper/absent-v0",
            "--agents", "mingru", "dt", "--seeds", "0", "1", "--steps", "4", "--eval-every", "2", "--episodes", "1", "--final-episodes", "2",
            "--set", "model.width=8", "--set", "model.depth=1", "--set", "eval.max_episode_steps=10",
            "--set", "eval.target_returns=[100]", "--out", str(out), "--run-root", str(tmp_path / "runs"), "--quiet"]
    assert suite.main(argv) == 0
    runs = sorted((out / "runs").glob("*.json"))
    assert len(runs) == 4
    record = json.loads(runs[0].read_text())
    assert [e["step"] for e in record["evals"]] == [2, 4]
    assert record["best"] >= record["last"] - 1e-9 and record["train_s"] > 0
    assert record["final_episodes"] == 2 and record["final"]["last"]["step"] == 4  # the headline: last, fresh episodes
    assert record["final_last"] == record["final"]["last"]["score"] and record["final_best"] is not None
    assert "benchmarks.suite" in record["command"] and "--seeds" in record["command"]
    summary = json.loads((out / "suite.json").read_text())
    assert any("absent" in n for n in summary["notes"])
    md = (out / "suite.md").read_text()
    assert "Decision Transformer" in md and "Equal training time" in md
    assert md.index("the headline: last checkpoint (2 episodes per target)") < md.index("In-run evaluations")
    png = out / f"curves-{tiny_dataset.dataset_id.replace('/', '_')}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({png.name})" in md
    # resume: nothing left to run, tables rebuilt from the JSONs
    mtime = runs[0].stat().st_mtime
    assert suite.main(argv + ["--resume-ok"]) == 0
    assert runs[0].stat().st_mtime == mtime
    rebuilt = (out / "suite.md").read_text()  # the runs' own command beside the one that rebuilt the tables
    assert "--resume-ok" in rebuilt and "The runs' suite command(s): `python -m benchmarks.suite --protocol cpu" in rebuilt


def test_the_cpu_budget_grows_in_proportion_beyond_its_transitions(make_offline_dataset):
    """3000 steps up to 200k transitions, more in proportion above, rounded up to whole evaluations; no rule
    (``--steps`` given) keeps one budget."""
    from benchmarks import suite

    plan = {"steps": 3000, "eval_every": 500, "budget_transitions": suite.PROTOCOLS["cpu"]["budget_transitions"]}
    assert plan["budget_transitions"] == 200_000
    assert [suite.dataset_steps(plan, n) for n in (90_000, 200_000, 200_001, 400_000)] == [3000, 3000, 3500, 6000]
    assert suite.dataset_steps({**plan, "budget_transitions": None}, 400_000) == 3000
    small, large = make_offline_dataset([50, 50]), make_offline_dataset([150, 150])
    plans = suite.dataset_plans({**plan, "budget_transitions": 100, "eval_every": 100}, {"a": small, "b": large})
    assert plans["a"]["steps"] == 3000 and plans["b"]["steps"] == 9000 and plans["b"]["eval_every"] == 100


@pytest.mark.slow
def test_the_suite_gives_a_larger_dataset_its_larger_budget(tiny_dataset, tmp_path, monkeypatch):
    """Without ``--steps`` each dataset's runs train for the protocol's budget at its size, and the table says so."""
    from benchmarks import suite

    monkeypatch.setitem(suite.PROTOCOLS, "cpu", {**suite.PROTOCOLS["cpu"], "steps": 2,
                                                 "budget_transitions": tiny_dataset.num_steps // 2})
    out = tmp_path / "suite"
    argv = ["--protocol", "cpu", "--datasets", tiny_dataset.dataset_id, "--agents", "mingru", "--seeds", "0",
            "--eval-every", "2", "--episodes", "1", "--final-episodes", "1", "--set", "model.width=8",
            "--set", "model.depth=1", "--set", "eval.max_episode_steps=10", "--set", "eval.target_returns=[100]",
            "--out", str(out), "--run-root", str(tmp_path / "runs"), "--quiet"]
    assert suite.main(argv) == 0
    record = json.loads(next((out / "runs").glob("*.json")).read_text())
    assert record["steps"] == 4 and [e["step"] for e in record["evals"]] == [2, 4]
    assert "--steps 4" in record["command"]  # the run's own command reproduces it alone
    assert f"4 on {tiny_dataset.dataset_id}" in (out / "suite.md").read_text()


def test_suite_defaults_to_the_nine_datasets_with_published_context():
    """The suite's default datasets are the paper's nine (one per environment and kind, as build_suite names them);
    each maps to the D4RL dataset whose published DT score the tables show as context, averaged like the rows."""
    from benchmarks import suite
    from benchmarks.suite_tables import PUBLISHED_DT, d4rl_name, published_table

    assert len(suite.LOCAL_SUITE) == 9 == len({d4rl_name(d) for d in suite.LOCAL_SUITE}) == len(PUBLISHED_DT)
    assert d4rl_name("local/hopper/medium-replay-v0") == "hopper-medium-replay"
    assert d4rl_name("local/hopper/expert-v0") is None and d4rl_name("test/hopper/tiny") is None
    lines = published_table(["local/hopper/medium-v0", "local/walker2d/medium-replay-v0", "local/hopper/expert-v0"])
    table = [line for line in "\n".join(lines).splitlines() if line.startswith("| ")]
    assert table[2:] == ["| local/hopper/medium-v0 | 67.6 | 65.1 / 69.4 |",
                         "| local/walker2d/medium-replay-v0 | 66.6 | 59.9 / 68.2 |",
                         "| **average** | 67.1 | 62.5 / 68.8 |"]
    assert "other data" in lines[0] and published_table(["test/hopper/tiny"]) == []


def test_learning_curve_statistics():
    """Mean and band over seeds at the steps every seed reached; seconds averaged the same way."""
    from benchmarks.plots import curve

    runs = [{"evals": [{"step": 2, "score": 10.0, "train_s": 1.0}, {"step": 4, "score": 30.0, "train_s": 2.0}]},
            {"evals": [{"step": 2, "score": 20.0, "train_s": 3.0}, {"step": 4, "score": 50.0, "train_s": 4.0},
                       {"step": 6, "score": 90.0, "train_s": 5.0}]}]
    c = curve(runs)
    np.testing.assert_array_equal(c["step"], [2, 4])
    np.testing.assert_allclose(c["mean"], [15.0, 40.0])
    np.testing.assert_allclose(c["low"], [10.0, 30.0])
    np.testing.assert_allclose(c["high"], [20.0, 50.0])
    np.testing.assert_allclose(c["seconds"], [2.0, 3.0])


@pytest.mark.slow
def test_ablations_tiny(tiny_dataset, tmp_path):
    from benchmarks import ablations

    out = tmp_path / "ablations"
    argv = ["--variants", "fixed", "init-pytorch", "rollout-window", "--datasets", tiny_dataset.dataset_id,
            "--agents", "mingru", "dt", "--seeds", "0", "--steps", "2", "--eval-every", "2", "--episodes", "1", "--final-episodes", "2",
            "--set", "model.width=8", "--set", "model.depth=1", "--set", "eval.max_episode_steps=10",
            "--set", "eval.target_returns=[100]", "--out", str(out), "--run-root", str(tmp_path / "runs")]
    assert ablations.main(argv) == 0
    records = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    assert sorted((r["variant"], r["agent"]) for r in records) == [  # rollout-window is for the Decision-RNN only
        ("fixed", "dt"), ("fixed", "mingru"), ("init-pytorch", "dt"), ("init-pytorch", "mingru"),
        ("rollout-window", "mingru")]
    by = {(r["variant"], r["agent"]): r for r in records}
    assert by[("init-pytorch", "dt")]["config"]["model"]["init"] == "pytorch"
    assert by[("fixed", "dt")]["config"]["model"]["init"] == "gpt"
    assert by[("rollout-window", "mingru")]["config"]["eval"]["mode"] == "window"
    md = (out / "ablations.md").read_text()
    assert "`init-pytorch`" in md and "per target return" in md and "Late-training score" in md
    summary = json.loads((out / "ablations.json").read_text())
    cell = next(v for k, v in summary["summary"].items() if k.startswith("fixed|") and k.endswith("|dt"))
    assert cell["n"] == 1 and cell["late_mean"] == pytest.approx(by[("fixed", "dt")]["evals"][-1]["score"])
    assert cell["final_last_mean"] == pytest.approx(by[("fixed", "dt")]["final_last"])  # the headline, first
    assert md.index("Final evaluation, fresh episodes (the headline)") < md.index("In-run evaluations")


def test_main_job_overrides_go_to_this_trees_job_with_the_profile_spelled_out(tmp_path):
    from benchmarks.main_job import job_command

    assert job_command(0, tmp_path)[1:] == ["train_agent.py", "--no-progress", "--run-dir", str(tmp_path)]
    command = job_command(0, tmp_path, None, ["train.processes=2"])
    assert command[command.index("--profile") + 1] == "cpu" and "seed=0" in command
    assert command[command.index("train.processes=2") - 1] == "--set"


def test_main_job_reads_every_evaluation(tmp_path):
    from benchmarks.main_job import evaluations

    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"step": 100, "train/loss": 0.1},
        {"step": 1000, "eval/3600_normalized_score_mean": 40.0, "eval/1800_normalized_score_mean": 45.0, "eval/seconds": 3.0},
        {"step": 2000, "eval/3600_normalized_score_mean": 61.0, "eval/1800_normalized_score_mean": 50.0, "eval/seconds": 4.0}]))
    evals = evaluations(tmp_path)
    assert [(e["step"], e["score"], e["eval_s"]) for e in evals] == [(1000, 45.0, 3.0), (2000, 61.0, 4.0)]


@pytest.mark.slow
def test_train_speed_tiny(tmp_path):
    from benchmarks import train_speed

    out = tmp_path / "train_speed"
    assert train_speed.main(["--contexts", "4", "--width", "8", "--depth", "1", "--repeats", "1", "--warmup", "1",
                             "--matmul-size", "64", "--threads", "1", "--out", str(out)]) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    assert len(data["results"]) == 6  # 3 agents x 2 layouts
    for rec in data["results"]:
        assert rec["flops_per_step"] > 0 and rec["timesteps_per_s"] > 0
    dt = [r for r in data["results"] if r["agent"] == "dt"]
    assert all(r["attention_flops_analytic"] > 0 for r in dt)


@pytest.mark.slow
def test_train_speed_times_both_cell_scans_in_one_run(tmp_path):
    """``--scans fused chunked``: each recurrent agent once per scan (DT once), labelled, in the same rounds."""
    from benchmarks import train_speed

    out = tmp_path / "train_speed"
    assert train_speed.main(["--contexts", "4", "--width", "8", "--depth", "1", "--repeats", "1", "--warmup", "1",
                             "--matmul-size", "64", "--threads", "1", "--tokens", "fused", "--scans", "fused", "chunked",
                             "--out", str(out)]) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    assert sorted((r["agent"], r["scan"]) for r in data["results"]) == [
        ("dt", None), ("mingru", "chunked"), ("mingru", "fused"), ("minlstm", "chunked"), ("minlstm", "fused")]
    assert "Decision-minGRU (chunked scan)" in out.with_suffix(".md").read_text()


@pytest.mark.slow
def test_train_speed_versions_runs_a_revision_beside_the_working_tree(tmp_path):
    """Both versions' trainers run in their own processes (HEAD from ``git archive``, the working tree as
    it is) and every variant gets a rate and a ratio to the baseline."""
    from benchmarks import train_speed_versions

    out = tmp_path / "versions"
    assert train_speed_versions.main(["--baseline", "HEAD", "--agents", "mingru", "--variants", "base@1", "new@1",
                                      "new@1x2", "new@1p2", "--rounds", "1", "--steps", "2", "--warmup", "1",
                                      "--set", "model.width=8", "--set", "model.depth=1", "--set", "model.dropout=0.1",
                                      "--out", str(out)]) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["model_differences"] == {"mingru": {}}  # the same settings on both sides: nothing to declare
    rows = {r["variant"]: r for r in data["results"]}
    assert set(rows) == {"base@1", "new@1", "new@1x2", "new@1p2"} and rows["base@1"]["ratio_to_baseline"] == 1.0
    assert rows["new@1x2"]["processes"] == 2 and all(r["timesteps_per_s"] > 0 for r in rows.values())
    assert rows["new@1p2"]["processes"] == 1 and rows["new@1p2"]["processes_per_run"] == 2


def test_train_speed_versions_names_the_model_settings_in_which_the_versions_differ():
    """Each version reads its own config files, so a changed default must show beside the ratio it moves."""
    from benchmarks.train_speed_versions import model_differences

    base = {"width": 64, "dropout": 0.1, "tokens": "fused", "conv": 0}
    new = {"width": 64, "dropout": 0.0, "tokens": "fused", "init": "gpt2"}  # a key only one version has is no difference
    assert model_differences(base, new) == {"dropout": [0.1, 0.0]}
    assert model_differences(base, dict(base)) == {}


@pytest.mark.slow
def test_train_speed_versions_gives_each_agents_ratio_to_dt_from_the_same_rounds(tmp_path):
    """The agents' workers are asked in turn within each round, and ``vs_dt`` is the median over rounds of
    the agent's rate over DT's in the same round (DT's own: 1)."""
    import statistics

    from benchmarks import train_speed_versions

    out = tmp_path / "agents"
    assert train_speed_versions.main(["--baseline", "HEAD", "--agents", "mingru", "dt", "--variants", "new@1",
                                      "--rounds", "3", "--steps", "2", "--warmup", "1", "--set", "model.width=8",
                                      "--set", "model.depth=1", "--out", str(out)]) == 0
    rows = {r["agent"]: r for r in json.loads(out.with_suffix(".json").read_text())["results"]}
    assert rows["dt"]["vs_dt"] == 1.0 and len(rows["mingru"]["rounds_timesteps_per_s"]) == 3
    paired = [a / b for a, b in zip(rows["mingru"]["rounds_timesteps_per_s"], rows["dt"]["rounds_timesteps_per_s"])]
    assert rows["mingru"]["vs_dt"] == pytest.approx(statistics.median(paired))
    assert "vs DT (same variant)" in out.with_suffix(".md").read_text()


@pytest.mark.slow
def test_rollout_speed_tiny(tmp_path):
    from benchmarks import rollout_speed

    out = tmp_path / "rollout_speed"
    assert rollout_speed.main(["--contexts", "3", "--batches", "2", "--steps", "2", "6", "--repeats", "1",
                               "--width", "8", "--depth", "1", "--eval-envs", "2", "--eval-repeats", "1",
                               "--eval-max-steps", "5", "--out", str(out)]) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    assert len(data["agent_steps"]) == 3 * 2
    assert {r["variant"] for r in data["evaluation"]} == {"rnn-recurrent", "dt-window", "floor"}


@pytest.mark.parametrize("kind", ["decision_rnn", "decision_transformer"])
@pytest.mark.parametrize("tokens", ["fused", "interleaved"])
def test_window_fast_forward_matches_real_steps(kind, tokens):
    from benchmarks.rollout_speed import RandomInputs, fast_forward_window, make_agent, step

    for n in (2, 9):  # window partly filled, then full (K = 4)
        real, fast = make_agent(kind, 4, 8, 1, tokens), make_agent(kind, 4, 8, 1, tokens)
        inputs = RandomInputs(3)
        real.reset(3, mode="window")
        fast.reset(3, mode="window")
        for t in range(n):
            step(real, inputs, t)
        fast_forward_window(fast, inputs, n)
        for t in (n, n + 1):
            np.testing.assert_allclose(step(real, inputs, t), step(fast, inputs, t), atol=1e-6)


def test_main_job_puts_the_reference_beside_each_seed(tmp_path, monkeypatch):
    """``--reference``: d3rlpy's DT runs with each job's own run folder (its config) and its scores sit in the
    job's row and in the summary, the final evaluation first; ``--baseline``: that revision's job runs before
    each seed's and the wall-clock ratio is stated (the jobs and the peer are stubbed; both are exercised
    elsewhere)."""
    from benchmarks import main_job

    seen, order = [], []

    def job(seed, root, site=None, overrides=()):
        order.append(("baseline" if site else "tree", seed))
        return {"seed": seed, "wall_s": 60.0 if site else 120.0, "eval_s": 8.0,
                "evals": [{"step": 1000, "score": 50.0 + seed}], "last": 50.0 + seed, "best": 50.0 + seed,
                "final_last": 60.0 + seed, "final_best": 55.0, "final_s": 30.0, "final_episodes": 100,
                "dataset": "Dataset 'x': 3 episodes, 30 steps", "stdout_tail": []}

    def reference(run_dir, log=print):
        seen.append(run_dir.name)
        return {"final_last": 42.0, "final_best": 43.0, "last": 40.0, "best": 44.0 + len(seen),
                "evals": [{"step": 1000, "score": 40.0}], "wall_s": 1.0, "train_s": 1.0, "peer": {}}

    monkeypatch.setattr(main_job, "run_job", job)
    monkeypatch.setattr(main_job, "reference_run", reference)
    monkeypatch.setattr(main_job, "baseline_site", lambda rev, dest: dest)
    assert main_job.main(["--seeds", "0", "1", "--reference", "--baseline", "HEAD", "--out", str(tmp_path / "mj")]) == 0
    assert seen == ["seed0", "seed1"]
    assert order == [("baseline", 0), ("tree", 0), ("baseline", 1), ("tree", 1)]
    md = (tmp_path / "mj.md").read_text()
    assert "| 1 | 2.00 | 8 | 30 | 61.0 | 55.0 | 51.0 | 51.0 | 51.0 | 42.0 | 43.0 | 40.0 | 40.0 | 46.0 |" in md
    assert "the last checkpoint scores 60.5 ± 0.5" in md
    assert "this tree's wall-clock is **2.00x** that revision's" in md
    assert ("d3rlpy's DT, same data, config, budget, evaluation episodes and seeds: last checkpoint, final evaluation "
            "42.0 ± 0.0, best re-evaluated 43.0 ± 0.0; in-run last 40.0 ± 0.0, best 45.5 ± 0.5") in md


def test_steady_final_tables_the_held_out_loss_against_the_score(tmp_path):
    """Runs with ``dataset.holdout``: the held-out loss's lowest step, its rise after it and the runs whose
    held-out loss fell after their best score, from the run JSONs' evaluations (two made-up seeds: one that
    overfits, one that imitates better and scores worse)."""
    from benchmarks import steady_final

    def run(seed, held, scores):
        targets = lambda s: [{"normalized_score_mean": s, "normalized_score_std": 10.0}]  # noqa: E731
        evals = [{"step": 500 * (i + 1), "score": s, "targets": targets(s), "train_s": float(i),
                  "validation": {"val/action_loss": h, "val/train_action_loss": h - 0.01}}
                 for i, (h, s) in enumerate(zip(held, scores))]
        final = {"episodes": 100, "seconds": 1.0, "last": {"step": 1500, "targets": targets(scores[-1])},
                 "best": {"step": 500, "targets": targets(max(scores))}}
        return {"variant": ["dataset.holdout=0.1"], "dataset": "local/hopper/medium-v0", "agent": "mingru", "seed": seed,
                "steps": 1500, "config": {"eval": {"episodes": 10}}, "evals": evals, "final": final,
                "final_last": scores[-1], "final_best": max(scores), "train_s": 1.0}

    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "a.json").write_text(json.dumps(run(0, [0.10, 0.08, 0.09], [40.0, 50.0, 45.0])))
    (tmp_path / "runs" / "b.json").write_text(json.dumps(run(1, [0.10, 0.08, 0.07], [60.0, 50.0, 30.0])))
    assert steady_final.main([str(tmp_path)]) == 0
    held = json.loads((tmp_path / "steady_final.json").read_text())["held_out_loss"]["holdout=0.1|local/hopper/medium-v0"]
    assert [s["held_min_step"] for s in held] == [1000, 1500]
    assert held[0]["held_rise"] == pytest.approx(0.09 / 0.08 - 1) and held[1]["held_rise"] == 0.0
    assert [s["held_fell_after_best"] for s in held] == [False, True]
    md = (tmp_path / "steady_final.md").read_text()
    assert "| holdout=0.1 | local/hopper/medium-v0 | 2 | 0.1000 -> 0.0800 | 1250 | +6.2% | +0.0100 | 750 | 55.0 -> 37.5 | 1 of 2 |" in md


def test_compose_suite_takes_only_runs_whose_settings_are_todays(tiny_dataset, tmp_path):
    """A run joins the composed suite only when its config (completed as a resume would) equals the one today's
    protocol gives it; a peer's only when the settings its worker receives do (d3rlpy's DT has no token layout);
    the earlier folder wins, and a missing cell names the nearest run and what differs."""
    from benchmarks import compose_suite, suite
    from benchmarks.suite import run_overrides
    from rl_minrnn.training.options import load_config

    d = tiny_dataset.dataset_id
    datasets = {d: tiny_dataset}
    plans = suite.dataset_plans(suite.protocol_plan("cpu"), datasets)
    cells = [(d, "mingru", 0), (d, "mingru", 1), (d, "d3rlpy_dt", 0), (d, "dt", 0)]
    expected = compose_suite.expected_settings(cells, plans, datasets)

    def run(agent, seed, *extra):
        overrides = run_overrides(d, agent, seed, plans[d]) + list(extra)
        config = load_config(suite.config_files(d, "cpu", overrides)[0], overrides)
        return {"dataset": d, "agent": agent, "seed": seed, "config": config.to_dict()}

    def write(folder, name, record):
        (folder / "runs").mkdir(parents=True, exist_ok=True)
        (folder / "runs" / name).write_text(json.dumps(record))

    first, second = tmp_path / "first", tmp_path / "second"
    write(first, "a.json", run("mingru", 0, "train.lr=0.123"))            # another lr: not today's run
    write(second, "b.json", run("mingru", 0))
    write(first, "c.json", run("d3rlpy_dt", 0, "model.tokens=interleaved"))  # nothing d3rlpy receives
    write(second, "d.json", run("mingru", 1))
    write(first, "e.json", run("mingru", 1))                                # both match: the first folder's
    write(second, "f.json", run("dt", 0, "model.tokens=interleaved"))       # our DT has a token layout
    saved = run("mingru", 0)
    del saved["config"]["train"]["ema_ramp"]  # a key added since: completed with the value such a run had (10)
    write(tmp_path / "third", "g.json", saved)
    invalid = run("dt", 0)
    invalid["config"]["train"]["lr"] = -1.0  # refused by today's rules: a difference, not a crash
    write(tmp_path / "fourth", "h.json", invalid)
    write(tmp_path / "fourth", "i.json", {"dataset": d, "agent": "mingru", "seed": 0})

    chosen, missing = compose_suite.select_runs([first, second], expected, datasets)
    assert chosen[d, "mingru", 0][0].name == "b.json" and chosen[d, "mingru", 1][0].name == "e.json"
    assert chosen[d, "d3rlpy_dt", 0][0].name == "c.json"
    assert set(missing) == {(d, "dt", 0)}
    path, diff = missing[d, "dt", 0]
    assert path.name == "f.json" and diff == {"model.tokens": ("fused", "interleaved")}
    assert compose_suite.select_runs([tmp_path / "third"], expected, datasets)[0][d, "mingru", 0][0].name == "g.json"
    _, none = compose_suite.select_runs([tmp_path / "empty"], {(d, "dt", 0): expected[d, "dt", 0]}, datasets)
    assert none == {(d, "dt", 0): (None, {})}
    _, refused = compose_suite.select_runs([tmp_path / "fourth"], expected, datasets)
    assert "not valid today: train.lr" in refused[d, "dt", 0][1]["config"][1]
    assert refused[d, "mingru", 0][1] == {"config": ("today's", "not recorded in the run JSON")}
    write(tmp_path / "broken", "j.json", {})
    (tmp_path / "broken" / "runs" / "j.json").write_text("{not json")
    with pytest.raises(ValueError, match="j.json is not a readable run JSON"):
        compose_suite.select_runs([tmp_path / "broken"], expected, datasets)
    report = compose_suite.compose_report(chosen, missing, "cmd")
    assert "| second |" in report and "model.tokens: fused -> interleaved" in report


def test_compose_suite_refuses_folders_without_runs_and_an_out_among_them(tmp_path, capsys):
    from benchmarks import compose_suite

    (tmp_path / "a" / "runs").mkdir(parents=True)
    assert compose_suite.main(["--from", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    assert "has no runs/ folder" in capsys.readouterr().err
    assert compose_suite.main(["--from", str(tmp_path / "a"), "--out", str(tmp_path / "a")]) == 2
    assert "is one of the --from folders" in capsys.readouterr().err


@pytest.mark.slow
def test_compose_suite_tabulates_the_matching_runs_of_a_real_suite(tiny_dataset, tmp_path, monkeypatch):
    """End to end: a tiny suite's runs copied into a new folder (compose.json names each source) and tabled by the
    suite's own ``--aggregate-only``; a run whose config was edited stays out and is listed as missing."""
    from benchmarks import compose_suite, suite

    monkeypatch.setitem(suite.PROTOCOLS, "cpu", {**suite.PROTOCOLS["cpu"], "steps": 2, "eval_every": 2, "episodes": 1,
                                                 "final_episodes": 1, "seeds": [0, 1]})
    monkeypatch.setattr(suite, "run_overrides", lambda *a, _o=suite.run_overrides: _o(*a) + [
        "model.width=8", "model.depth=1", "eval.max_episode_steps=10", "eval.target_returns=[100]"])
    source, out = tmp_path / "suite", tmp_path / "composed"
    assert suite.main(["--protocol", "cpu", "--datasets", tiny_dataset.dataset_id, "--agents", "mingru",
                       "--out", str(source), "--run-root", str(tmp_path / "runs"), "--quiet"]) == 0
    edited = source / "runs" / f"{suite.run_name(tiny_dataset.dataset_id, 'mingru', 1)}.json"
    record = json.loads(edited.read_text())
    record["config"]["train"]["lr"] = 0.5
    edited.write_text(json.dumps(record))
    (out / "runs").mkdir(parents=True)
    (out / "runs" / "stale.json").write_text("{}")  # an earlier composition's run does not linger
    argv = ["--from", str(source), "--out", str(out), "--datasets", tiny_dataset.dataset_id, "--agents", "mingru"]
    assert compose_suite.main(argv) == 0
    runs = sorted(p.name for p in (out / "runs").glob("*.json"))
    assert runs == [f"{suite.run_name(tiny_dataset.dataset_id, 'mingru', 0)}.json"]
    assert (out / "runs" / runs[0]).read_bytes() == (source / "runs" / runs[0]).read_bytes()
    composed = json.loads((out / "compose.json").read_text())
    assert [c["from"] for c in composed["chosen"]] == [str(source / "runs" / runs[0])]
    assert [m["seed"] for m in composed["missing"]] == [1] and composed["missing"][0]["differences"] == {"train.lr": [0.001, 0.5]}
    md = (out / "suite.md").read_text()
    assert "(n=1)" in md and "--aggregate-only" in md
