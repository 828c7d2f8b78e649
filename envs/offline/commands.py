"""What the dataset command lines (build_dataset, build_suite, import_d4rl, combine) share: bad input
(a dataset or policy error) is one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import sys
from typing import Callable

from rl_minrnn.envs.offline.episodes import DatasetError
from rl_minrnn.envs.offline.policies import PolicyError


def run_command(action: Callable[[], object], errors: tuple[type[Exception], ...] = (DatasetError, PolicyError)) -> int:
    """Run a command line's work: exit code 0 when it finishes, 2 with ``error: <message>`` for ``errors``."""
    try:
        action()
    except errors as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
