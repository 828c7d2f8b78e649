#!/usr/bin/env python
"""The suite at today's defaults, assembled from runs already made: for every dataset x agent x seed, the first
run JSON among the ``--from`` folders whose resolved config is the one today's protocol gives that run.

A protocol's defaults change one dataset at a time (a per-dataset file of the cpu profile, a budget), and each
change is measured by a suite or sweep over the datasets it touches; rerunning the untouched datasets would
reproduce runs that exist. This copies, never trains: a run counts only when its config, completed as a resumed
checkpoint's would be (``with_added_keys``), equals ``suite.run_config(...)`` (the dataset's and the agent's files,
then the run's overrides) key for key (a peer's: the settings its worker receives), so a run at another lr, token
layout or budget cannot slip in. Equal configs are not equal code: ``compose.md`` lists each run's source folder and
date, so a reader can see which commits the table spans.

    python -m benchmarks.compose_suite --from benchmarks/results/suite-cpu-medium-replay-lr \\
        benchmarks/results/tokens-hopper benchmarks/results/suite-cpu-nine --out benchmarks/results/suite-cpu-defaults

Earlier ``--from`` folders win where several hold a matching run. Writes ``<out>/runs/<dataset>__<agent>__seed<k>.json``
(each a byte-for-byte copy of its source), ``<out>/compose.{md,json}`` (the source of every cell, and for every
missing one the nearest run's differing keys), then the suite's own tables (``suite.md``, curves) with ``--aggregate-only``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from pathlib import Path

from benchmarks import suite
from benchmarks.common import write_json
from benchmarks.peers.d3rlpy_dt import worker_spec
from rl_minrnn.configs.schema import ConfigError
from rl_minrnn.training.options import load_config
from rl_minrnn.training.run_logging import flatten


def run_settings(agent: str, config, dataset) -> dict:
    """What decides a run of ``agent``, flat: the whole config for this project's agents; for a peer, the
    settings its worker receives (``worker_spec``: d3rlpy's DT has no token layout or weight average to set)."""
    if agent in suite.PEERS:
        return {k: v for k, v in worker_spec(config, dataset, Path("-")).items() if k != "data"}
    return flatten(config.to_dict())


def setting_differences(expected: dict, recorded: dict) -> dict:
    """``{key: (expected, recorded)}`` for every key where two ``run_settings`` differ."""
    return {k: (expected.get(k), recorded.get(k)) for k in sorted(set(expected) | set(recorded))
            if expected.get(k) != recorded.get(k)}


def recorded_config(run: dict):
    """A run JSON's config completed with the keys added since (as a checkpoint of it would resume)."""
    return load_config([], [], base=run["config"])


def expected_settings(cells: list[tuple[str, str, int]], plans: dict, datasets: dict) -> dict:
    """``{(dataset, agent, seed): run_settings}`` of the run the suite would make today for each cell."""
    return {(d, a, s): run_settings(a, suite.run_config(d, a, s, plans[d]), datasets[d])
            for d, a, s in cells}


def _differences(expected: dict, agent: str, run: dict, dataset) -> dict:
    if not isinstance(run.get("config"), dict):
        return {"config": ("today's", "not recorded in the run JSON")}
    try:
        return setting_differences(expected, run_settings(agent, recorded_config(run), dataset))
    except ConfigError as exc:  # a value today's rules refuse: that run cannot be today's
        return {"config": ("today's", f"not valid today: {str(exc).splitlines()[0]}")}


def select_runs(sources: list[Path], expected: dict, datasets: dict) -> tuple[dict, dict]:
    """``(chosen, missing)``: ``chosen[cell] = (path, run)``, the first run in ``sources`` order whose settings
    equal today's; ``missing[cell] = (path, differences)`` for the candidate with the fewest differing keys
    (``(None, {})`` when no folder holds a run of that cell). A file that is not a run JSON raises ValueError."""
    candidates: dict = {cell: [] for cell in expected}
    for folder in sources:
        for path in sorted((folder / "runs").glob("*.json")):
            try:
                run = json.loads(path.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ValueError(f"{path} is not a readable run JSON ({exc}); remove it or rerun that run") from None
            if not isinstance(run, dict):
                raise ValueError(f"{path} is not a run JSON (no object at its top); remove it or rerun that run")
            cell = (run.get("dataset"), run.get("agent"), run.get("seed"))
            if cell in candidates:
                candidates[cell].append((path, run))
    chosen, missing = {}, {}
    for (d, a, s), runs in candidates.items():
        scored = [(path, run, _differences(expected[d, a, s], a, run, datasets[d])) for path, run in runs]
        match = next(((path, run) for path, run, diff in scored if not diff), None)
        if match is not None:
            chosen[d, a, s] = match
        else:
            nearest = min(scored, key=lambda t: len(t[2]), default=None)
            missing[d, a, s] = (nearest[0], nearest[2]) if nearest else (None, {})
    return chosen, missing


def _shown(value) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def compose_report(chosen: dict, missing: dict, command: str) -> str:
    lines = ["# Suite at today's defaults, composed from earlier runs", "", f"Command: `{command}`", "",
             "Every run's config equals, key for key, the one today's protocol gives it; equal configs are not equal "
             "code, so each row names its source folder and the run's date.", "",
             "| dataset | agent | seed | source | date |", "| --- | --- | ---: | --- | --- |"]
    for (d, a, s), (path, run) in sorted(chosen.items()):
        date = (run.get("machine") or {}).get("date", "")
        lines.append(f"| {d} | {a} | {s} | {path.parent.parent.name} | {date} |")
    if missing:
        lines += ["", f"## Missing: {len(missing)} run(s) with no matching config", "",
                  "| dataset | agent | seed | nearest run | differs in (today's -> the run's) |",
                  "| --- | --- | ---: | --- | --- |"]
        for (d, a, s), (path, diff) in sorted(missing.items()):
            where = f"{path.parent.parent.name}/{path.name}" if path else "none"
            what = "; ".join(f"{k}: {_shown(w)} -> {_shown(g)}" for k, (w, g) in diff.items()) or "-"
            lines.append(f"| {d} | {a} | {s} | {where} | {what} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="sources", nargs="+", required=True, help="result folders (each with runs/), earlier first")
    parser.add_argument("--out", required=True, help="the composed suite's folder (its runs/ is replaced)")
    parser.add_argument("--protocol", choices=sorted(suite.PROTOCOLS), default="cpu")
    parser.add_argument("--datasets", nargs="+", default=suite.LOCAL_SUITE)
    parser.add_argument("--agents", nargs="+", choices=sorted(suite.AGENTS), default=["mingru", "minlstm", "dt", "d3rlpy_dt"])
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: the protocol's")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "-m", "benchmarks.compose_suite", *(sys.argv[1:] if argv is None else argv)])

    sources = [Path(s) for s in args.sources]
    for folder in sources:
        if not (folder / "runs").is_dir():
            print(f"error: {folder} has no runs/ folder; give result folders written by benchmarks.suite or benchmarks.sweep",
                  file=sys.stderr)
            return 2
    out = Path(args.out)
    if out.resolve() in {f.resolve() for f in sources}:
        print(f"error: --out {out} is one of the --from folders; compose into a new folder", file=sys.stderr)
        return 2
    proto = suite.PROTOCOLS[args.protocol]
    plan = suite.protocol_plan(args.protocol)  # today's defaults: nothing overridden
    available = {}
    for d in args.datasets:  # a run's budget depends on its dataset's size (suite.dataset_steps)
        ds, why = suite.dataset_available(d)
        if ds is None:
            print(f"error: {d} is not available ({why}); build it or leave it out of --datasets", file=sys.stderr)
            return 2
        available[d] = ds
    plans = suite.dataset_plans(plan, available)
    seeds = args.seeds if args.seeds is not None else proto["seeds"]
    cells = [(d, a, s) for d in args.datasets for a in args.agents for s in seeds]
    try:
        expected = expected_settings(cells, plans, available)
    except ConfigError as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    try:
        chosen, missing = select_runs(sources, expected, available)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    runs_dir = out / "runs"
    if runs_dir.is_dir():  # a composition is rebuilt whole: no run of an earlier one may linger
        for stale in runs_dir.glob("*.json"):
            stale.unlink()
    runs_dir.mkdir(parents=True, exist_ok=True)
    for (d, a, s), (path, _) in chosen.items():  # byte for byte: git stores the copy as the source's own blob
        shutil.copyfile(path, runs_dir / f"{suite.run_name(d, a, s)}.json")
    report = compose_report(chosen, missing, command)
    (out / "compose.md").write_text(report)
    write_json(out / "compose.json", {
        "command": command, "sources": [str(s) for s in sources],
        "chosen": [{"dataset": d, "agent": a, "seed": s, "from": str(p)} for (d, a, s), (p, _) in sorted(chosen.items())],
        "missing": [{"dataset": d, "agent": a, "seed": s, "nearest": str(p) if p else None,
                     "differences": {k: list(v) for k, v in diff.items()}} for (d, a, s), (p, diff) in sorted(missing.items())]})
    print(report)
    if not chosen:
        print("error: no run matches today's defaults; nothing to tabulate", file=sys.stderr)
        return 2
    return suite.main(["--protocol", args.protocol, "--aggregate-only", "--out", str(out), "--datasets", *args.datasets,
                       "--agents", *args.agents, "--seeds", *map(str, seeds)])


if __name__ == "__main__":
    raise SystemExit(main())
