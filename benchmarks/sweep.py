#!/usr/bin/env python
"""A hyperparameter sweep from a YAML file: every variant (a set of config overrides) x dataset x agent x seed
is one run of the score suite (``benchmarks/suite.py``'s ``train_and_evaluate``: same protocol, evaluations,
run JSON), one at a time here or as Ray Tune trials with ``--ray`` / ``--ray-address`` (checkpointed at each
evaluation, retried from the last checkpoint when a worker dies; ``benchmarks/ray_suite.py``).

The file (``benchmarks/sweeps/*.yaml`` are examples):

    protocol: cpu                      # the suite's protocol: configs, steps, evaluation, threads
    datasets: [local/hopper/medium-v0]
    agents: [mingru]                   # suite agents (mingru, minlstm, dt)
    seeds: [0, 1]                      # default: the protocol's
    steps: 1200                        # optional: steps, eval_every, episodes, final_episodes override the protocol's
    set: [eval.episodes=5]             # optional: overrides applied to every run
    variants:                          # optional: variants listed one by one, each crossed with the grid
      - {}                             #   the protocol as it is
      - {train.ema: 0.999, train.lr_schedule: cosine}
    grid:                              # every combination of these values
      train.lr: [1.0e-3, 3.0e-4]
      model.width: [32, 64]
      model.cell: [mingru, minlstm]
    sample:                            # optional: n random draws (numpy, seeded), each crossed with the grid
      n: 4
      seed: 0
      space:
        model.dropout: {uniform: [0.0, 0.2]}
        train.lr: {loguniform: [1.0e-4, 1.0e-2]}
        model.tokens: {choice: [fused, interleaved]}

Variants are expanded here, before anything runs, so their names (``<run>__<key><value>_...``) are the same
every time: ``--resume-ok`` skips runs whose JSON exists (and, on Ray, continues unfinished ones from their
last checkpoint). Writes ``<out>/runs/<name>.json`` and ``<out>/sweep.{md,json}`` (a row per variant, a
column per dataset and agent: last ± std / best ± std over seeds, and the late-training score).

    python -m benchmarks.sweep benchmarks/sweeps/lr-width-cell.yaml --ray
    python -m benchmarks.sweep benchmarks/sweeps/lr-width-cell.yaml --ray-address auto --storage-path /nfs/ray
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import shlex
import sys
from pathlib import Path

import numpy as np
import yaml

from benchmarks import suite, suite_tables
from benchmarks.common import machine_info, markdown_table, write_json
from benchmarks.ray_suite import Job, add_runner_arguments, run_jobs
from rl_minrnn.configs.schema import ConfigError

KEYS = {"protocol", "datasets", "agents", "seeds", "steps", "eval_every", "episodes", "final_episodes", "set", "variants", "grid", "sample"}
DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint")


class SweepError(ValueError):
    """The sweep file is malformed; the message names the file and the key."""


def _value_text(value) -> str:
    """A YAML value as the text of a ``key=value`` override (parsed back as YAML by the config loader)."""
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("\n...").strip()


def _draw(rng, key: str, spec, where: str):
    if not (isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in DISTRIBUTIONS):
        raise SweepError(f"{where}: sample.space.{key} must be one of {{{'|'.join(DISTRIBUTIONS)}: ...}}, got {spec!r}")
    (kind, args), = spec.items()
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise SweepError(f"{where}: sample.space.{key}: choice needs a non-empty list of values, got {args!r}")
        return args[int(rng.integers(len(args)))]
    numbers = isinstance(args, list) and len(args) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in args)
    if not numbers or not args[0] < args[1] or (kind == "loguniform" and args[0] <= 0) or (
            kind == "randint" and not all(isinstance(v, int) for v in args)):
        need = {"uniform": "two finite numbers low < high", "loguniform": "two numbers 0 < low < high",
                "randint": "two integers low < high"}[kind]
        raise SweepError(f"{where}: sample.space.{key}: {kind} needs [low, high], {need}; got {args!r}")
    low, high = args
    if kind == "uniform":  # 4 significant digits: readable names, and no real difference lost
        return float(f"{rng.uniform(low, high):.4g}")
    if kind == "loguniform":
        return float(f"{np.exp(rng.uniform(np.log(low), np.log(high))):.4g}")
    return int(rng.integers(low, high))


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def variants(sweep: dict, where: str = "sweep") -> list[list[str]]:
    """The override lists, one per variant: the listed variants (each a mapping of overrides; ``{}`` is the
    protocol as it is) crossed with the grid's product, crossed with the random draws if any."""
    grid = sweep.get("grid") or {}
    if not isinstance(grid, dict) or any(not isinstance(v, list) or not v for v in grid.values()):
        raise SweepError(f"{where}: grid must map config keys to non-empty lists of values")
    listed = sweep.get("variants") or [{}]
    if not isinstance(listed, list) or not all(isinstance(v, dict) for v in listed):
        raise SweepError(f"{where}: variants must be a list of mappings (config key -> value), e.g. "
                         "[{}, {train.ema: 0.999}]")
    combos = [list(v.items()) + list(zip(grid, values)) for v in listed
              for values in itertools.product(*grid.values())]
    draws = [[]]
    if sweep.get("sample"):
        sample = sweep["sample"]
        n, seed = (sample.get("n"), sample.get("seed", 0)) if isinstance(sample, dict) else (None, None)
        if not (isinstance(sample.get("space") if isinstance(sample, dict) else None, dict) and _is_int(n) and n >= 1
                and _is_int(seed) and seed >= 0):
            raise SweepError(f"{where}: sample needs n (an integer >= 1), space (config key -> distribution) and "
                             f"optionally seed (an integer >= 0); got {sample!r}")
        rng = np.random.default_rng(seed)
        draws = [[(k, _draw(rng, k, spec, where)) for k, spec in sample["space"].items()] for _ in range(int(sample["n"]))]
    return [[f"{k}={_value_text(v)}" for k, v in combo + draw] for combo in combos for draw in draws]


def variant_tag(overrides: list[str]) -> str:
    """``train.lr=0.001, model.width=32`` -> ``lr0.001_width32`` (file-name safe)."""
    parts = []
    for o in overrides:
        key, value = o.split("=", 1)
        parts.append(re.sub(r"[^A-Za-z0-9.+-]", "", key.split(".")[-1] + value))
    return "_".join(parts) or "base"


def load_sweep(path: str) -> dict:
    try:
        sweep = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SweepError(f"cannot read the sweep file {path}: {' '.join(str(exc).split())}") from None
    if not isinstance(sweep, dict):
        raise SweepError(f"{path}: a sweep file is a mapping (see python -m benchmarks.sweep --help)")
    unknown = set(sweep) - KEYS
    if unknown:
        raise SweepError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(KEYS))}")
    if not isinstance(sweep.get("protocol", "cpu"), str) or sweep.get("protocol", "cpu") not in suite.PROTOCOLS:
        raise SweepError(f"{path}: protocol must be one of {', '.join(suite.PROTOCOLS)}")
    for key, kind in (("datasets", str), ("agents", str), ("seeds", int), ("set", str)):
        if key not in sweep or (key == "set" and sweep[key] is None):
            continue
        value = sweep[key]
        if not isinstance(value, list) or (key != "set" and not value) or not all(
                isinstance(v, kind) and not isinstance(v, bool) and (kind is not int or v >= 0) for v in value):
            what = "integers >= 0" if kind is int else "strings" + (" (key=value)" if key == "set" else "")
            raise SweepError(f"{path}: {key} must be a {'' if key == 'set' else 'non-empty '}list of {what}, got {value!r}")
    agents = sweep.get("agents", ["mingru"])
    bad = [a for a in agents if a not in suite.AGENTS or a in suite.PEERS]
    if bad:
        raise SweepError(f"{path}: agents {bad} not sweepable; use {[a for a in suite.AGENTS if a not in suite.PEERS]}")
    return sweep


def plan_jobs(sweep: dict, path: str, out: Path, run_root: str) -> tuple[dict, list[Job]]:
    """The base plan (the suite's) and one job per variant x dataset x seed x agent (seeds outer)."""
    protocol = sweep.get("protocol", "cpu")
    proto = suite.PROTOCOLS[protocol]
    # without ``steps`` the protocol's budget rule: more steps on a larger dataset (suite.dataset_steps)
    plan = suite.protocol_plan(protocol, steps=sweep.get("steps"), eval_every=sweep.get("eval_every"),
                               episodes=sweep.get("episodes"), final_episodes=sweep.get("final_episodes"),
                               overrides=sweep.get("set") or [], out=str(out), run_root=run_root)
    if not _is_int(plan["eval_every"]) or plan["eval_every"] < 1:  # a run's score is its evaluations
        raise SweepError(f"{path}: eval_every must be an integer >= 1 (each run is scored by its evaluations), "
                         f"got {plan['eval_every']!r}")
    jobs = []  # seeds outer: an interrupted sweep has every variant on the same seeds
    for s in sweep.get("seeds", proto["seeds"]):
        for d in sweep.get("datasets", ["local/hopper/medium-v0"]):
            for overrides in variants(sweep, path):
                tag = variant_tag(overrides)
                for a in sweep.get("agents", ["mingru"]):
                    name = f"{suite.run_name(d, a, s)}__{tag}"
                    job = Job(name, d, a, s, {**plan, "overrides": plan["overrides"] + overrides, "name": name,
                                              "variant": overrides})
                    try:  # every run's config (keys, values, steps, seeds) checked before anything runs
                        suite.run_config(d, a, s, job.plan)
                    except ConfigError as exc:
                        raise SweepError(f"{path}: {str(exc).splitlines()[0]}") from None
                    jobs.append(job)
    return plan, jobs


def aggregate(records: list[dict], jobs: list[Job]) -> tuple[str, dict]:
    """A row per variant, a column per (dataset, agent): last ± std / best ± std (n), and the late score."""
    columns = list(dict.fromkeys((j.dataset, j.agent) for j in jobs))
    rows, summary = [], {}
    by = {}
    for r in records:
        by.setdefault((tuple(r["variant"]), r["dataset"], r["agent"]), []).append(r)
    for variant in dict.fromkeys(tuple(j.plan["variant"]) for j in jobs):
        row = [variant_tag(list(variant)), ", ".join(f"`{o}`" for o in variant) or "-"]
        for d, a in columns:
            rs = by.get((variant, d, a), [])
            if not rs:
                row.append("-")
                continue
            last, last_sd = suite_tables.mean_std([r["last"] for r in rs])
            best, best_sd = suite_tables.mean_std([r["best"] for r in rs])
            late, late_sd = suite_tables.mean_std([suite_tables.late_score(r) for r in rs])
            fl, fl_sd = suite_tables.mean_std([r.get("final_last") for r in rs])
            fb, fb_sd = suite_tables.mean_std([r.get("final_best") for r in rs])
            final = "" if np.isnan(fl) else f"**{fl:.1f}** ± {fl_sd:.1f} / {fb:.1f} ± {fb_sd:.1f}; in-run "
            row.append(f"{final}{last:.1f} ± {last_sd:.1f} / {best:.1f} ± {best_sd:.1f}; late {late:.1f} (n={len(rs)})")
            summary[f"{variant_tag(list(variant))}|{d}|{a}"] = {
                "variant": list(variant), "n": len(rs), "final_last_mean": fl, "final_last_std": fl_sd,
                "final_best_mean": fb, "final_best_std": fb_sd, "last_mean": last, "last_std": last_sd, "best_mean": best,
                "best_std": best_sd, "last3_mean": late, "last3_std": late_sd}
        rows.append(row)
    heads = ["variant", "overrides"] + [f"{d} {suite_tables.AGENT_NAMES[a]}" for d, a in columns]
    md = ("### Normalised score, mean ± std over seeds: **last checkpoint, final evaluation** (`eval.final_episodes` "
          "fresh episodes per target) / best checkpoint re-evaluated on them (an online selection); then the in-run "
          "evaluations' last / best (their maximum); late = mean of the last "
          f"{suite_tables.LATE_EVALUATIONS} in-run evaluations\n\n" + markdown_table(heads, rows))
    return md, summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", help="the sweep's YAML file")
    parser.add_argument("--out", default=None, help="default: benchmarks/results/sweep-<file name>")
    parser.add_argument("--dry-run", action="store_true", help="print the runs and stop")
    add_runner_arguments(parser, run_root="/tmp/rl_minrnn_sweep")
    args = parser.parse_args(argv)
    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    out = Path(args.out or suite.ROOT / "benchmarks" / "results" / f"sweep-{Path(args.sweep).stem}")
    try:
        sweep = load_sweep(args.sweep)
        plan, jobs = plan_jobs(sweep, args.sweep, out, args.run_root)
    except SweepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    command = shlex.join(["python", "-m", "benchmarks.sweep", *(sys.argv[1:] if argv is None else argv)])
    runs_dir = out / "runs"
    pending = [j for j in jobs if not (args.resume_ok and (runs_dir / f"{j.name}.json").is_file())]
    n_variants = len({tuple(j.plan["variant"]) for j in jobs})
    log(f"Sweep {args.sweep}: {n_variants} variant(s) x {len(jobs) // n_variants} run(s) = {len(jobs)} runs, "
        f"{len(jobs) - len(pending)} already done; {plan['steps']} steps each"
        f"{' (more on a dataset above ' + format(plan['budget_transitions'], ',') + ' transitions)' if plan.get('budget_transitions') else ''}"
        f" ({plan['protocol']} protocol).")
    if args.dry_run:
        for j in pending:
            log(f"  {j.name}: {' '.join(j.plan['overrides'])}")
        return 0
    runs_dir.mkdir(parents=True, exist_ok=True)
    datasets, notes = {}, []
    for d in dict.fromkeys(j.dataset for j in pending):
        datasets[d], why = suite.dataset_available(d)
        if datasets[d] is None:
            notes.append(f"skipped {d}: not available ({why})")
            log(f"SKIP {d}: not available ({why})")
    pending = [j for j in pending if datasets.get(j.dataset) is not None]
    for j in pending:  # the protocol's budget for the dataset's size, where the sweep sets no steps
        j.plan = {**j.plan, "steps": suite.dataset_steps(j.plan, datasets[j.dataset].num_steps)}

    if args.ray or args.ray_address:
        notes += run_jobs(pending, {d: ds for d, ds in datasets.items() if ds is not None}, args, runs_dir, command,
                          suite.ray_runs(), log)
    else:
        for i, j in enumerate(pending):
            log(f"[{i + 1}/{len(pending)}] {j.name}")
            try:
                record = suite.train_and_evaluate(j.dataset, j.agent, j.seed, j.plan, dataset=datasets[j.dataset], log=log)
            except suite.TrainingStopped as exc:  # as train_agent.py: exit 3, the message says what was kept
                print(f"error: {j.name}: {exc}", file=sys.stderr)
                return 3
            except (ConfigError, suite.DatasetError, suite.CheckpointError, suite.RunInUseError, suite.RunFolderError) as exc:
                print(f"error: {j.name}: {exc}", file=sys.stderr)
                return 2
            record["suite_command"] = command
            write_json(runs_dir / f"{j.name}.json", record)
            log(f"  done: last {record['last']:.1f}, best {record['best']:.1f}, wall {record['wall_s']:.0f}s")
    names = {f"{j.name}.json" for j in jobs}
    records = [json.loads(p.read_text()) for p in sorted(runs_dir.glob("*.json")) if p.name in names]
    if not records:
        print(f"error: no runs to aggregate in {runs_dir}" + (f" ({'; '.join(notes)})" if notes else ""), file=sys.stderr)
        return 2
    table, summary = aggregate(records, jobs)
    machine = machine_info()
    markdown = (f"Sweep `{args.sweep}`, `{plan['protocol']}` protocol: {plan['steps']} steps, evaluation every "
                f"{plan['eval_every']} steps, {plan['episodes']} episodes per target.\n\nMachine: {machine['cpu_model']}, "
                f"{machine['usable_cores']} cores, torch {machine['torch']}; date {machine['date']}.\n\nCommand: `{command}`\n\n"
                + "".join(f"- {n}\n" for n in notes) + ("\n" if notes else "") + table + "\n")
    print(markdown)
    (out / "sweep.md").write_text(markdown)
    write_json(out / "sweep.json", {"command": command, "sweep": sweep, "plan": plan, "notes": notes, "machine": machine,
                                    "summary": summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
