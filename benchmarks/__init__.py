"""Benchmarks: scripts that print a table and write JSON + Markdown under ``benchmarks/results/``.

Run them from the repository root as modules (``python -m benchmarks.suite ...``) in the environment the
README sets up; they import the installed ``rl_minrnn`` package and each other as ``benchmarks.*``."""
