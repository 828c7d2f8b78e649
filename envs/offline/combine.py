"""Concatenate datasets into one, e.g. medium-expert = medium followed by expert (as D4RL did).

    python -m rl_minrnn.envs.offline.combine --id local/hopper/medium-expert-v0 local/hopper/medium-v0 local/hopper/expert-v0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rl_minrnn.envs.offline.commands import run_command
from rl_minrnn.envs.offline import DatasetFormatError, OfflineDataset, load_dataset, read_minari_dataset, write_dataset


def _load(dataset_id: str, root) -> OfflineDataset:
    if root is not None and (Path(root) / dataset_id / "data").is_dir():
        return read_minari_dataset(Path(root) / dataset_id, dataset_id)
    return load_dataset(dataset_id, download=False)


def combine_datasets(sources, dataset_id: str, root=None, overwrite: bool = False, verbose: bool = True) -> Path:
    """Write the episodes of ``sources`` (ids or ``OfflineDataset``s), in order, as ``dataset_id``."""
    datasets = [s if isinstance(s, OfflineDataset) else _load(s, root) for s in sources]
    if not datasets:
        raise DatasetFormatError("Nothing to combine: give at least one source dataset.")
    env_ids = {d.env_id for d in datasets}
    if len(env_ids) != 1:
        raise DatasetFormatError(f"Cannot combine datasets of different environments: {sorted(map(str, env_ids))}.")
    dims = {(d.obs_dim, d.act_dim) for d in datasets}
    if len(dims) != 1:
        raise DatasetFormatError(f"Cannot combine datasets with different obs/action dims: {sorted(dims)}.")
    first = datasets[0]
    episodes = [ep for d in datasets for ep in d.episodes]
    names = [d.dataset_id for d in datasets]
    out = write_dataset(
        dataset_id,
        episodes,
        first.env_id,
        ref_min_score=first.ref_min_score,
        ref_max_score=first.ref_max_score,
        description=f"Concatenation of {', '.join(names)} (in this order).",
        algorithm_name="combined",
        extra_metadata={"combined_datasets": names},
        root=root,
        overwrite=overwrite,
    )
    if verbose:
        print(f"{dataset_id}: {len(episodes)} episodes, {sum(len(e) for e in episodes)} steps from {', '.join(names)} -> {out}")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m rl_minrnn.envs.offline.combine", description=__doc__.splitlines()[0])
    p.add_argument("sources", nargs="+", help="dataset ids, in order")
    p.add_argument("--id", required=True, dest="dataset_id", help="id of the combined dataset")
    p.add_argument("--root", default=None, help="store folder to write to (default: the local Minari store)")
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    return run_command(lambda: combine_datasets(args.sources, args.dataset_id, root=args.root, overwrite=args.overwrite))


if __name__ == "__main__":
    sys.exit(main())
