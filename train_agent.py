#!/usr/bin/env python
"""``python train_agent.py ...``: the same command as ``rl-minrnn-train`` (``rl_minrnn/cli/train.py``, where
its options and exit codes are), its run folders in this repository's runs/."""
import sys
from pathlib import Path

from rl_minrnn.cli.train import main

if __name__ == "__main__":
    sys.exit(main(runs_root=Path(__file__).resolve().parent / "runs"))
