"""Small helpers shared by the benchmark scripts: timing, peak memory, machine info, JSON and Markdown output.

Timing conventions (all scripts): every measured call is bracketed by :func:`sync` (``torch.cuda.synchronize``
on CUDA), variants are measured round-robin (:func:`time_interleaved`) so that noise from other jobs on the
machine hits them alike, and the reported figure is the median.

Peak memory:

- CUDA: :func:`cuda_peak_memory` -- ``torch.cuda.max_memory_allocated`` during the call minus what was
  allocated just before it (tensors the call creates, including ones it frees again; not the caching
  allocator's reserve).
- CPU: the allocations of torch's CPU allocator are invisible to ``tracemalloc``, so :func:`rss_peak_during`
  measures the process's resident memory: it returns free heap memory to the system (``malloc_trim``),
  resets the kernel's high-water mark (``/proc/self/clear_refs``), runs the call and reads ``VmHWM`` from
  ``/proc/self/status``; the figure is that peak minus the resident size just before the call. torch's CPU
  allocator does not cache, and ``malloc_trim`` hands glibc's free pages back first, so this works in a
  long-lived process; a fresh process per measurement (:func:`run_json_subprocess`) is the stricter option
  (nothing an earlier call freed and the allocator kept can be reused unseen). Where ``clear_refs`` is not writable it falls
  back to ``getrusage`` peak minus the resident size before the call (``method`` says which).
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import json
import math
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import torch

from rl_minrnn.threads import usable_cores

MB = 1024.0 * 1024.0


# ----------------------------------------------------------------------------------------------- devices

def sync(device: torch.device | str) -> None:
    """Wait for queued work on ``device`` (no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; otherwise the named device (error if CUDA is missing)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but torch.cuda.is_available() is False")
    return device


# ------------------------------------------------------------------------------------------------ timing

def time_call(fn: Callable[[], object], device: torch.device | str) -> float:
    """Seconds taken by one call of ``fn``, synchronised before and after."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def time_interleaved(
    fns: Mapping[str, Callable[[], object]],
    device: torch.device | str,
    repeats: int = 5,
    warmup: int = 1,
    max_seconds: float = math.inf,
    log: Callable[[str], None] | None = None,
    prior_warmup_s: Mapping[str, Sequence[float]] | None = None,
) -> dict[str, dict]:
    """Time several callables round-robin: ``warmup`` untimed calls each, then up to ``repeats`` rounds in
    which every callable runs once.

    Per-callable budget: a callable gets another timed call only while its time spent so far (warm-up
    included) plus its median so far stays within ``max_seconds``; it always gets at least one timed call,
    except when its warm-up alone already took more than ``max_seconds``: then the last warm-up time is its
    only measurement (``"warmup_only": True``), so a very slow call runs once, not twice.
    ``prior_warmup_s``: warm-up calls the caller already made (seconds per name), counted like ``warmup``.
    Returns ``{name: {"times_s": [...], "median_s", "min_s", "n", "warmup_s": [...], "budget_limited",
    "warmup_only"}}``.
    """
    names = list(fns)
    prior = prior_warmup_s or {}
    res = {n: {"times_s": [], "warmup_s": list(prior.get(n, [])), "budget_limited": False, "warmup_only": False}
           for n in names}
    spent = {n: sum(res[n]["warmup_s"]) for n in names}
    for n in names:
        if res[n]["warmup_s"] and spent[n] > max_seconds:
            res[n].update(times_s=[res[n]["warmup_s"][-1]], warmup_only=True, budget_limited=True)
    for _ in range(warmup):
        for n in names:
            t = time_call(fns[n], device)
            res[n]["warmup_s"].append(t)
            spent[n] += t
            if spent[n] > max_seconds:
                res[n].update(times_s=[t], warmup_only=True, budget_limited=True)
            if log:
                log(f"  warm-up {n}: {t * 1e3:.1f} ms")
    for _ in range(repeats):
        ran = False
        for n in names:
            r = res[n]
            estimate = statistics.median(r["times_s"] or r["warmup_s"] or [0.0])
            if r["warmup_only"] or (r["times_s"] and spent[n] + estimate > max_seconds):
                r["budget_limited"] = True
                continue
            t = time_call(fns[n], device)
            r["times_s"].append(t)
            spent[n] += t
            ran = True
        if not ran:
            break
    for n in names:
        r = res[n]
        r["n"] = len(r["times_s"])
        r["median_s"] = statistics.median(r["times_s"])
        r["min_s"] = min(r["times_s"])
        if log:
            log(f"  {n}: median {r['median_s'] * 1e3:.1f} ms over {r['n']}")
    return res


# ------------------------------------------------------------------------------------------------ memory

def _status_bytes(field: str) -> int:
    from rl_minrnn.training.memory_estimate import proc_bytes

    value = proc_bytes("/proc/self/status", field)
    if value is None:
        raise RuntimeError(f"{field} not found in /proc/self/status")
    return value


def _rss_bytes() -> int:
    return _status_bytes("VmRSS")


def _hwm_bytes() -> int:
    return _status_bytes("VmHWM")


def _malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def rss_peak_during(fn: Callable[[], object]) -> dict:
    """Peak resident memory growth (bytes) of this process while ``fn`` runs (see the module docstring).
    Returns ``{"peak_bytes", "method", "seconds"}`` (``seconds``: the call alone). Linux only."""
    _malloc_trim()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        method = "VmHWM after clear_refs, minus RSS before"
    except OSError:
        method = "ru_maxrss minus RSS before (peak may predate the call)"
    before = _rss_bytes()
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    if method.startswith("VmHWM"):
        peak = _hwm_bytes()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"peak_bytes": max(0, peak - before), "method": method, "seconds": seconds}


def available_memory_bytes(device: torch.device | str = "cpu") -> int | None:
    """Memory a new allocation could use now: ``MemAvailable`` on CPU (Linux), free device memory on CUDA."""
    if torch.device(device).type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def cuda_peak_memory(fn: Callable[[], object], device: torch.device | str) -> dict:
    """``torch.cuda.max_memory_allocated`` during ``fn`` minus the allocated bytes just before it."""
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return {"peak_bytes": max(0, torch.cuda.max_memory_allocated(device) - before),
            "method": "torch.cuda.max_memory_allocated minus allocated before",
            "seconds": time.perf_counter() - start}


def run_json_subprocess(args: Sequence[str], timeout: float | None = None, env: Mapping[str, str] | None = None) -> dict:
    """Run ``python args...`` in a fresh interpreter; its last stdout line must be a JSON object, returned.
    Raises ``RuntimeError`` with the child's stderr tail on failure."""
    cmd = [sys.executable, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=None if env is None else {**os.environ, **env})
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{shlex.join(cmd)} failed (rc {proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(lines[-1])


# ---------------------------------------------------------------------------------------------- machine

def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device | str | None = None) -> dict:
    """What a reader needs to compare runs: CPU, cores, torch and its threads, GPU, date, command line."""
    info = {
        "date": _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_model": cpu_model(),
        "cpu_capability": getattr(torch.backends.cpu, "get_cpu_capability", lambda: None)(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "command": shlex.join([sys.executable, *sys.argv]),
    }
    if device is not None and torch.device(device).type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 1e9, 1),
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    return info


# ----------------------------------------------------------------------------------------------- output

def write_json(path: str | Path, data: object) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def write_results(out: str | Path, markdown: str, data: object) -> None:
    """Print a benchmark's Markdown and write it to ``<out>.md``, with its data as ``<out>.json``."""
    print(markdown)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(markdown)
    write_json(out.with_suffix(".json"), data)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]], align: Sequence[str] | None = None) -> str:
    """A GitHub Markdown table; ``align`` per column is ``"l"`` or ``"r"`` (default: left for the first)."""
    headers = [str(h) for h in headers]
    rows = [["" if c is None else str(c) for c in row] for row in rows]
    align = align or ["l"] + ["r"] * (len(headers) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(x: float | None, digits: int = 1, suffix: str = "") -> str:
    """Format a number for a table; ``None``/NaN -> ``"-"``."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:,.{digits}f}{suffix}"
