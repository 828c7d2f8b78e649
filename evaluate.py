"""``python evaluate.py ...``: the same command as ``rl-minrnn-evaluate`` (``rl_minrnn/cli/evaluate.py``, where
its options and exit codes are)."""
import sys

from rl_minrnn.cli.evaluate import UsageError, build_parser, main, run  # noqa: F401  (tests call main)

if __name__ == "__main__":
    sys.exit(main())
