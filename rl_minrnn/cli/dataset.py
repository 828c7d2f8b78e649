"""``rl-minrnn-dataset COMMAND ...``: the dataset command lines under one name.

    rl-minrnn-dataset build --policy ../shared/policies/hopper-sac.npz --env Hopper-v5 --steps 1000000 --id local/hopper/medium-v0
    rl-minrnn-dataset import-d4rl hopper_medium_replay-v2.hdf5 --env Hopper-v5 --id d4rl/hopper/medium-replay-v2
    rl-minrnn-dataset suite --steps 200000
    rl-minrnn-dataset combine ...

Each subcommand is the module's own command line (``python -m rl_minrnn.envs.offline.<module>``, same
options, same exit codes): ``rl-minrnn-dataset build --help`` prints its options.
"""

from __future__ import annotations

import sys
from importlib import import_module

COMMANDS = {  # subcommand -> (module whose main() it runs, what it does)
    "build": ("rl_minrnn.envs.offline.build_dataset", "roll a behaviour policy out into a Minari dataset"),
    "import-d4rl": ("rl_minrnn.envs.offline.import_d4rl", "convert an original D4RL hdf5 file"),
    "suite": ("rl_minrnn.envs.offline.build_suite", "build the local D4RL-style suite (local/<env>/<kind>-v0)"),
    "combine": ("rl_minrnn.envs.offline.combine", "concatenate datasets into one (e.g. medium-expert)"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:{width}}  {what}" for name, (_, what) in COMMANDS.items()]
    return "usage: rl-minrnn-dataset {" + ",".join(COMMANDS) + "} ...\n\ncommands:\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.split("\n\n")[0] + "\n\n" + usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; choose one of {', '.join(COMMANDS)} (rl-minrnn-dataset --help)",
              file=sys.stderr)
        return 2
    return int(import_module(COMMANDS[name][0]).main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
