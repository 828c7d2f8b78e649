"""The command lines, installed as console commands (``pyproject.toml``): ``rl-minrnn-train`` (``train``),
``rl-minrnn-evaluate`` (``evaluate``), ``rl-minrnn-dataset`` (``dataset``: build / import-d4rl / suite /
combine) and ``rl-minrnn-export`` (``rl_minrnn.deploy.export``). ``train_agent.py`` and ``evaluate.py`` at
the repository root call the first two. Each parses arguments and calls ``rl_minrnn.api`` (or the module
that owns the job); exit code 2 with one line for bad input."""
