"""The suite's runs (and a sweep's) as Ray Tune trials: one trial per (dataset, agent, seed, overrides) run,
scheduled over a local Ray (``--ray``) or an existing cluster (``--ray-address``).

Why Tune and not bare Ray tasks: a trial reports its evaluations as they happen (``tune.report``), its
checkpoints are persisted by Tune to ``storage_path`` and handed back to the retry of a trial whose worker
died (``FailureConfig.max_failures``), and resources are declared per trial (``tune.with_resources``: CPUs,
a GPU fraction so that small runs share a GPU). Tasks would need all three built by hand.

What a trial does (``_trial``):

- **Data**: carried with the trial. The driver loads each dataset once and puts the ``OfflineDataset`` in
  Ray's object store (``ray.put``); a trial gets its own by reference, and Ray copies it to a node that has
  never seen it (numpy arrays, read zero-copy on the node). Nothing needs to exist on a worker node but the
  installed project; no shared file system is needed for the data. The record says how long the fetch took.
- **Checkpoints**: at every evaluation the trial writes ``RUN/checkpoints/last.pt`` (``Trainer.save``) and,
  first, ``RUN/checkpoints/suite_progress.json`` (the evaluations so far and the clocks), then reports the
  folder to Tune as its checkpoint. A retry (the worker died: killed, out of memory, node lost) gets that
  checkpoint back (``tune.get_checkpoint``), on whatever node it lands, and continues with
  ``Trainer.resume``: the same weights, data order and RNG streams as an uninterrupted run (tested
  bit-exact). Checkpoints at evaluations only, so the run's config (``train.checkpoint_every``) is the
  same as in a local suite and the run JSON compares one to one.
- **A suite interrupted as a whole** continues with ``--resume-ok``: finished runs (their JSON exists) are
  skipped, and a run whose folder holds ``last.pt`` and a progress file written by the same plan continues
  from it (the run root must then be where it was: the same machine, or shared storage).
- **Threads**: one trial per CPU by default (``cpus_per_trial=1``), with ``train.threads`` = the trial's
  CPUs and ``OMP_WAIT_POLICY=PASSIVE`` in every worker: never more torch threads than cores.
- **Results**: the trial's last report carries its run record; the driver writes it to ``<out>/runs/``
  as the local suite does (a driver callback, as each trial ends), so the JSONs and tables are the same
  files whether the suite ran here or on a cluster.

On a multi-node cluster ``--storage-path`` must be storage every node reaches (NFS, or a ``s3://`` /
``gs://`` URI): Ray Tune (2.7 and later) persists checkpoints there and does not sync them between nodes
by itself. ``--run-root`` (run folders: logs, TensorBoard, the working ``last.pt``) may stay node-local.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from benchmarks.common import write_json
from rl_minrnn.threads import OPENMP_ENV

ROOT = Path(__file__).resolve().parents[1]
PROGRESS_NAME = "suite_progress.json"
# Not shipped to a cluster with the benchmarks (runtime_env working_dir): the package folders, which the nodes
# have installed (a copy on the workers' path would shadow the installed rl_minrnn, whose subpackages map to
# these folders; the YAML configs come with the installed rl_minrnn.configs), and what is not code.
EXCLUDES = ["/rl_minrnn", "/agents", "/envs", "/configs", "/training", "/deploy", "/tests", "/docs", "/.venv", "/.git", "/runs",
            "/build", "/benchmarks/results", "/benchmarks/peers/.venv-d3rlpy", "*.egg-info", "__pycache__",
            ".pytest_cache"]


@dataclass
class RayOptions:
    """How to reach Ray and what each trial declares."""

    address: str | None = None        # None: start a local Ray on this machine
    num_cpus: int | None = None       # local Ray only: CPUs it may use (default: all)
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0       # a fraction lets several small runs share one GPU
    max_failures: int = 3             # retries of a trial whose worker died, each from its last checkpoint
    storage_path: str | None = None   # where Tune keeps checkpoints; shared storage on a multi-node cluster
    resume_ok: bool = False           # continue runs from their run folder's last checkpoint (suite restart)
    quiet: bool = False
    name: str = field(default_factory=lambda: time.strftime("suite-%Y%m%d-%H%M%S"))


@dataclass
class Job:
    """One run: a dataset, an agent, a seed, and the plan (the suite's settings plus this run's overrides)."""

    name: str
    dataset: str
    agent: str
    seed: int
    plan: dict

    def key(self) -> dict:
        return {"dataset": self.dataset, "agent": self.agent, "seed": self.seed, "plan": self.plan}


@dataclass(frozen=True)
class RunFunctions:
    """What a trial calls to train one run, given by the caller (``benchmarks.suite.ray_runs()``): the suite
    hands its own functions to the scheduler rather than the scheduler importing the suite, which imports it.
    Ray ships them to the workers by reference (module and name)."""

    run_dir_of: Callable          # (dataset, agent, seed, plan) -> the run folder
    timed_evaluations: Callable   # (name, log, previous) -> the callback that times the evaluations
    train_and_evaluate: Callable  # (dataset, agent, seed, plan, dataset=, log=, timed=, callbacks=, resume=) -> record
    peers: tuple                  # agents trained by another library: no checkpoints, no resume


# ----------------------------------------------------------------------------------------------- trial side

def _progress_path(run_dir: Path) -> Path:
    from rl_minrnn.training import RunFolder

    return RunFolder(run_dir).checkpoints / PROGRESS_NAME


def _read_progress(run_dir: Path, job: Job) -> dict | None:
    """The evaluations and clocks of an earlier attempt of this very job, cut at the checkpoint's step,
    or None when the folder holds no checkpoint of it (none, another plan, unreadable)."""
    from rl_minrnn.training import RunFolder, read_checkpoint

    try:
        progress = json.loads(_progress_path(run_dir).read_text())
        step = int(read_checkpoint(RunFolder(run_dir).last)["step"])
    except Exception:
        return None
    if progress.get("job") != json.loads(json.dumps(job.key())):
        return None
    evals = [e for e in progress["evals"] if e["step"] <= step]  # written before last.pt: may be one ahead
    if len(evals) != len(progress["evals"]):  # the clocks ran past the checkpoint: take the last kept eval's
        train_s = evals[-1]["train_s"] if evals else 0.0
        eval_s = sum(e["eval_s"] for e in evals)
    else:
        train_s, eval_s = progress["train_s"], progress["eval_s"]
    return {"evals": evals, "train_s": train_s, "eval_s": eval_s, "step": step}


def _reporter(job: Job, run_dir: Path, timed):
    from ray import tune

    from rl_minrnn.training import RunFolder, TrainerCallback
    from rl_minrnn.files import write_atomically

    class ReportAndCheckpoint(TrainerCallback):
        """After each evaluation: progress file, ``last.pt``, then both reported to Tune with the score."""

        def on_evaluation(self, trainer, result, seconds: float) -> None:
            state = {"job": job.key(), **timed.state()}
            write_atomically(_progress_path(run_dir), lambda tmp: Path(tmp).write_text(json.dumps(state)))
            trainer.save("last")
            last = timed.evals[-1]
            tune.report({"step": trainer.step, "score": last["score"], "train_s": last["train_s"],
                         "eval_s": last["eval_s"]},
                        checkpoint=tune.Checkpoint.from_directory(str(RunFolder(run_dir).checkpoints)))

    return ReportAndCheckpoint()


def _trial(config: dict, datasets: dict, runs: RunFunctions, resume_ok: bool = False, quiet: bool = False) -> None:
    """One run as a Tune trial (see the module docstring)."""
    import ray
    from ray import tune

    from rl_minrnn.training import RunFolder

    start = time.perf_counter()
    job = Job(**config["job"])
    log = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    tick = time.perf_counter()
    dataset = ray.get(datasets[job.dataset])
    fetch_s = time.perf_counter() - tick
    run_dir = runs.run_dir_of(job.dataset, job.agent, job.seed, job.plan)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # a retry: the worker of an earlier attempt died
        checkpoint.to_directory(str(RunFolder(run_dir).checkpoints))
    previous = None
    if job.agent not in runs.peers and (checkpoint is not None or resume_ok):
        previous = _read_progress(run_dir, job)
    if previous is not None:
        log(f"{job.name}: resuming from its checkpoint at step {previous['step']}")
    timed = runs.timed_evaluations(job.name, log, previous)
    callbacks = [] if job.agent in runs.peers else [_reporter(job, run_dir, timed)]
    record = runs.train_and_evaluate(job.dataset, job.agent, job.seed, job.plan, dataset=dataset, log=log,
                                     timed=timed, callbacks=callbacks, resume=previous is not None)
    record["ray"] = {"run": job.name, "node": socket.gethostname(), "pid": os.getpid(),
                     "attempt_resumed_from_step": previous["step"] if previous else None,
                     "dataset_fetch_s": fetch_s, "trial_s": time.perf_counter() - start}
    tune.report({"step": record["steps"], "score": record["last"], "record": json.dumps(record)})


# ----------------------------------------------------------------------------------------------- driver side

def _record_writer(on_record, log, total: int):
    from ray import tune

    class RecordWriter(tune.Callback):
        """On the driver: each trial's evaluations as a log line, its record to ``on_record`` when it ends."""

        def __init__(self):
            self.done = 0

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if "record" in result:
                self.done += 1
                record = json.loads(result["record"])
                on_record(record)
                log(f"[{self.done}/{total}] done {record['dataset']} {record['agent']} seed "
                    f"{record['seed']}: last {record['last']:.1f}, best {record['best']:.1f}, "
                    f"wall {record['wall_s']:.0f}s")
            else:
                log(f"  {trial.config['job']['name']} step {result['step']}: score {result['score']:.1f}")

        def on_trial_error(self, iteration, trials, trial, **info):
            log(f"  {trial.config['job']['name']}: attempt failed (retried from its last checkpoint while "
                "retries are left)")

    return RecordWriter()


def _init_ray(options: RayOptions) -> None:
    import ray

    env_vars = dict(OPENMP_ENV)
    if options.address:  # a cluster: ship this checkout's code (the project itself is installed on the nodes)
        runtime_env = {"working_dir": str(ROOT), "excludes": EXCLUDES, "env_vars": env_vars}
        ray.init(address=options.address, runtime_env=runtime_env, log_to_driver=not options.quiet)
    else:  # workers start from this interpreter's environment; the repository root holds benchmarks/
        path = os.pathsep.join(p for p in [str(ROOT), os.environ.get("PYTHONPATH", "")] if p)
        ray.init(num_cpus=options.num_cpus, include_dashboard=False, log_to_driver=not options.quiet,
                 runtime_env={"env_vars": {**env_vars, "PYTHONPATH": path}})


def run_trials(jobs: list[Job], datasets: dict, options: RayOptions, on_record, runs: RunFunctions, log=print) -> list[str]:
    """Run ``jobs`` as Tune trials, calling ``on_record(record)`` on the driver as each run ends; returns notes
    on the runs that failed for good (after ``max_failures`` retries)."""
    import ray
    from ray import tune

    if not jobs:
        return []
    # Tune warns when keeping few checkpoints forces its experiment snapshots; ours are a handful per run
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    started_here = not ray.is_initialized()
    if started_here:
        _init_ray(options)
    try:
        tick = time.perf_counter()
        refs = {d: ray.put(datasets[d]) for d in sorted({j.dataset for j in jobs})}
        log(f"Ray: {len(jobs)} trial(s), {options.cpus_per_trial:g} CPU(s)"
            + (f" and {options.gpus_per_trial:g} GPU" if options.gpus_per_trial else "") + " each, on "
            f"{ray.cluster_resources().get('CPU', 0):g} CPU(s); {len(refs)} dataset(s) put in the object store in "
            f"{time.perf_counter() - tick:.1f}s; checkpoints in {options.storage_path}")
        trainable = tune.with_parameters(_trial, datasets=refs, runs=runs, resume_ok=options.resume_ok, quiet=options.quiet)
        resources = {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial}
        tuner = tune.Tuner(
            tune.with_resources(trainable, resources),
            param_space={"job": tune.grid_search([vars(j) for j in jobs])},
            # reuse_actors: the next trial runs in a finished trial's worker process, without starting a process
            # and importing torch again (8 trivial trials on 2 CPUs: 7 s instead of 25 s)
            tune_config=tune.TuneConfig(reuse_actors=True, trial_name_creator=lambda t: t.config["job"]["name"],
                                        trial_dirname_creator=lambda t: t.config["job"]["name"]),
            run_config=tune.RunConfig(
                name=options.name, storage_path=options.storage_path, verbose=0,
                failure_config=tune.FailureConfig(max_failures=options.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),  # the latest, and one in case it is cut
                callbacks=[_record_writer(on_record, log, len(jobs))]))
        results = tuner.fit()
        notes = []
        for result in results:
            if result.error is not None:
                name = result.config["job"]["name"] if result.config else "?"
                lines = str(result.error).strip().splitlines()
                notes.append(f"run {name} failed after {options.max_failures} retries: "
                             f"{lines[-1] if lines else type(result.error).__name__}")
        return notes
    finally:
        if started_here:
            ray.shutdown()


def jobs_with_threads(jobs: list[Job], options: RayOptions) -> list[Job]:
    """``train.threads`` = the trial's CPUs where the plan leaves it automatic (0): a trial never runs more
    torch threads than the cores Ray gave it."""
    out = []
    for j in jobs:
        plan = dict(j.plan)
        if not plan.get("threads"):
            plan["threads"] = max(1, int(options.cpus_per_trial))
        out.append(Job(j.name, j.dataset, j.agent, j.seed, plan))
    return out


def add_runner_arguments(parser, run_root: str) -> None:
    """What ``run_jobs`` reads, for the suite's and the sweep's command lines: where runs live, whether
    finished ones are skipped, how much is printed, and the Ray flags."""
    parser.add_argument("--run-root", default=run_root, help="run directories (checkpoints, logs)")
    parser.add_argument("--resume-ok", action="store_true", help="skip runs whose JSON already exists")
    parser.add_argument("--quiet", action="store_true")
    add_ray_arguments(parser)


def add_ray_arguments(parser) -> None:
    """The Ray flags of the suite and the sweep (``args.ray`` is set by ``--ray-address`` too)."""
    group = parser.add_argument_group('Ray (benchmarks/ray_suite.py; pip install -e ".[ray]")')
    group.add_argument("--ray", action="store_true", help="run the runs as Ray Tune trials on a local Ray")
    group.add_argument("--ray-address", default=None,
                       help="run them on an existing Ray cluster instead (e.g. auto, or ray://HEAD:10001)")
    group.add_argument("--ray-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    group.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs each trial declares (default 1: a trial per core)")
    group.add_argument("--gpus-per-trial", type=float, default=0.0,
                       help="GPU each trial declares; a fraction shares a GPU (0.25: four runs on one)")
    group.add_argument("--max-failures", type=int, default=3,
                       help="retries of a trial whose worker died, each from its last checkpoint (default 3)")
    group.add_argument("--storage-path", default=None,
                       help="where Ray Tune keeps the trials' checkpoints (default <run-root>/ray); on a multi-node "
                            "cluster storage every node reaches: an NFS path or s3://...")


def run_jobs(jobs: list[Job], datasets: dict, args, runs_dir: Path, command: str, runs: RunFunctions,
             log=print) -> list[str]:
    """``run_trials`` with the options of parsed ``add_runner_arguments`` flags, writing each run's JSON into ``runs_dir``; one line and exit 2 when Ray is not installed."""
    try:
        import ray  # noqa: F401  (the optional extra)
    except ImportError as exc:
        raise SystemExit(f'error: --ray needs Ray: pip install -e ".[ray]" ({exc})') from None
    options = RayOptions(
        address=args.ray_address, num_cpus=args.ray_cpus, cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial, max_failures=args.max_failures, resume_ok=args.resume_ok,
        quiet=args.quiet, storage_path=args.storage_path or str(Path(args.run_root).resolve() / "ray"))
    return run_trials(jobs_with_threads(jobs, options), datasets, options, write_record(runs_dir, command), runs, log)


def write_record(runs_dir: Path, command: str):
    """The driver's ``on_record``: the run JSON where the local suite writes it."""

    def on_record(record: dict) -> None:
        record["suite_command"] = command
        write_json(runs_dir / f"{record['ray']['run']}.json", record)

    return on_record
