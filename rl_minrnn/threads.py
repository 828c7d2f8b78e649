"""One home for how this project's processes use the cores: how many there are to use
(:func:`usable_cores`), the default torch thread count (:func:`default_threads`), and how OpenMP's idle
threads behave (``OMP_WAIT_POLICY=PASSIVE``).

With the default policy an idle OpenMP thread spins for a while before it sleeps; beside the evaluation
envs, another run or the other jobs of a shared machine, the spinning takes the cores they need (on 2 cores
a second torch thread beside other work ran 5-10x slower). OpenMP reads the variable when its runtime
loads, so an entry point calls :func:`passive_openmp` before it imports torch, and a process it starts
(a subprocess, a Ray worker) gets :data:`OPENMP_ENV` in its environment. This module imports nothing else.
"""

from __future__ import annotations

import os

OPENMP_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


def passive_openmp() -> None:
    """Set :data:`OPENMP_ENV` in this process's environment where the user has not set it."""
    for name, value in OPENMP_ENV.items():
        os.environ.setdefault(name, value)


def usable_cores() -> int:
    """The cores this process may run on: its affinity mask (a container's or ``taskset``'s limit), which
    ``os.cpu_count`` does not see, else the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def default_threads() -> int:
    """Torch threads for a run that does not say: half the usable cores, at least 1 and at most 4. Torch's
    threads wait for each other at every operation, so one that shares its core with the evaluation envs or
    another job stalls all of them (oversubscription), and these small models have too little work per
    operation to use many."""
    return max(1, min(4, usable_cores() // 2))
