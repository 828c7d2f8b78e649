"""One home for how this project's processes treat OpenMP's idle threads: ``OMP_WAIT_POLICY=PASSIVE``.

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
