"""Import an original D4RL file (hdf5) or an npz with the same arrays as a Minari dataset.

    python -m rl_minrnn.envs.offline.import_d4rl FILE --env ENV_ID --id DATASET_ID

Arrays: ``observations``, ``actions``, ``rewards``, ``terminals``, ``timeouts`` (optional in D4RL v0),
optional ``next_observations``. Episodes end where ``terminals | timeouts``; steps after the last
boundary form a final episode cut off when recording stopped (marked truncated). The final observation
of an episode (Minari stores T+1) is ``next_observations`` at its last step; without that array it is
the last observation repeated (no learner reads it: states are observations[:-1]), recorded in the
metadata as ``final_observation: repeated``. The env id and D4RL reference scores go into the metadata.

Files written by ``build_replay --npz`` carry three more arrays, read when present: ``final_observations``
(one per episode, in place of ``next_observations``), ``episode_seeds`` (each episode's reset seed) and
``metadata_json`` (the build's metadata, merged into the dataset's).
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

import numpy as np

from rl_minrnn.envs.offline.commands import run_command
from rl_minrnn.envs.offline import DatasetError, DatasetFormatError, Episode, datasets_root, write_dataset
from rl_minrnn.envs.offline.writing import written_summary

REQUIRED = ("observations", "actions", "rewards", "terminals")
OPTIONAL = ("timeouts", "next_observations")
PER_EPISODE = ("final_observations", "episode_seeds", "metadata_json")  # build_replay's npz files


def read_d4rl_arrays(path) -> dict:
    """The flat D4RL arrays of an hdf5 or npz file, checked: same length, 2-d observations/actions."""
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(f"{path} does not exist.")
    arrays = {}
    try:
        if path.suffix == ".npz" or zipfile.is_zipfile(path):
            with np.load(path, allow_pickle=False) as data:
                for k in REQUIRED + OPTIONAL:
                    if k in data.files:
                        arrays[k] = np.asarray(data[k])
                extras = {k: np.asarray(data[k]) for k in PER_EPISODE if k in data.files}
                keys = list(data.files)
        else:
            import h5py

            extras = {}
            with h5py.File(path, "r") as f:
                for k in REQUIRED + OPTIONAL:
                    if k in f and isinstance(f[k], h5py.Dataset):
                        arrays[k] = f[k][()]
                keys = list(f.keys())
    except DatasetError:
        raise
    except Exception as exc:
        raise DatasetFormatError(
            f"Cannot read {path} as a D4RL file (hdf5 or npz): {exc.__class__.__name__}: {exc}. "
            "The file is corrupt or not in that format; download or copy it again."
        ) from exc
    missing = [k for k in REQUIRED if k not in arrays]
    if missing:
        raise DatasetFormatError(
            f"{path} lacks the arrays {missing} (it has {sorted(keys)}); a D4RL file holds observations, actions, "
            "rewards, terminals, timeouts and optionally next_observations."
        )
    for k, v in arrays.items():
        if v.ndim == 0:
            raise DatasetFormatError(f"{path}: {k} is a single value; it must hold one entry per transition.")
        if v.dtype.kind not in "biuf":
            raise DatasetFormatError(f"{path}: {k} holds {v.dtype} values; every array must hold real numbers "
                                     "(terminals and timeouts: booleans or 0/1).")
    n = len(arrays["rewards"])
    lengths = {k: len(v) for k, v in arrays.items()}
    if any(v != n for v in lengths.values()):
        raise DatasetFormatError(
            f"{path}: arrays of unequal length {lengths}; every array must have one entry per transition."
        )
    if n == 0:
        raise DatasetFormatError(f"{path}: no transitions.")
    for k in ("observations", "actions", "next_observations"):
        if k in arrays:
            if arrays[k].ndim == 1:
                arrays[k] = arrays[k][:, None]
            if arrays[k].ndim != 2:
                raise DatasetFormatError(f"{path}: {k} must be 2-d (N, dim), got shape {arrays[k].shape}.")
    if "next_observations" in arrays and arrays["next_observations"].shape != arrays["observations"].shape:
        raise DatasetFormatError(
            f"{path}: next_observations {arrays['next_observations'].shape} and observations "
            f"{arrays['observations'].shape} differ in shape."
        )
    for k in ("rewards", "terminals", "timeouts"):
        if k in arrays and arrays[k].size != n:
            raise DatasetFormatError(f"{path}: {k} must hold one value per transition (shape ({n},)), got shape "
                                     f"{arrays[k].shape}.")
    arrays["rewards"] = np.asarray(arrays["rewards"]).reshape(-1)
    arrays["terminals"] = np.asarray(arrays["terminals"]).reshape(-1).astype(bool)
    arrays["timeouts"] = np.asarray(arrays.get("timeouts", np.zeros(n, bool))).reshape(-1).astype(bool)
    arrays.update(extras)
    return arrays


def split_episodes(arrays: dict) -> list[Episode]:
    """Episodes from flat arrays: an episode ends where terminals | timeouts (its last step)."""
    obs, act, rew = arrays["observations"], arrays["actions"], arrays["rewards"]
    term, tout = arrays["terminals"], arrays["timeouts"]
    nxt = arrays.get("next_observations")
    n = len(rew)
    ends = np.flatnonzero(term | tout) + 1
    if len(ends) == 0 or ends[-1] != n:
        ends = np.append(ends, n)  # trailing steps: an episode cut off when recording stopped
    starts = np.concatenate([[0], ends[:-1]])
    finals, seeds = arrays.get("final_observations"), arrays.get("episode_seeds")
    for name, per_episode in (("final_observations", finals), ("episode_seeds", seeds)):
        if per_episode is not None and len(per_episode) != len(ends):
            raise DatasetFormatError(
                f"{name} has {len(per_episode)} entries but the arrays hold {len(ends)} episodes; "
                "the file is damaged: write it again with build_replay --npz."
            )
    episodes = []
    for i, (s, e) in enumerate(zip(starts, ends)):
        if finals is not None:
            final = finals[i]
        else:
            final = nxt[e - 1] if nxt is not None else obs[e - 1]
        truncations = tout[s:e].copy()
        if not (term[e - 1] or tout[e - 1]):
            truncations[-1] = True
        try:
            episodes.append(
                Episode(
                    observations=np.concatenate([obs[s:e], final[None]], axis=0),
                    actions=act[s:e],
                    rewards=rew[s:e],
                    terminations=term[s:e],
                    truncations=truncations,
                    seed=None if seeds is None else int(seeds[i]),
                )
            )
        except DatasetFormatError as exc:
            raise DatasetFormatError(f"Episode {i} (transitions {s}-{e - 1}): {exc}") from None
    return episodes


def import_d4rl(path, env_id: str, dataset_id: str, root=None, overwrite: bool = False, verbose: bool = True) -> Path:
    """Write the D4RL file at ``path`` as the Minari dataset ``dataset_id``; returns its folder."""
    root = Path(root) if root is not None else datasets_root()
    arrays = read_d4rl_arrays(path)
    episodes = split_episodes(arrays)
    has_next = "next_observations" in arrays or "final_observations" in arrays
    extra = {"source_file": Path(path).name, "final_observation": "next_observations" if has_next else "repeated"}
    if "metadata_json" in arrays:
        import json

        extra.update(json.loads(str(arrays["metadata_json"])))
    out = write_dataset(
        dataset_id,
        episodes,
        env_id,
        description=f"Imported from the D4RL-style file {Path(path).name} ({len(arrays['rewards'])} transitions).",
        algorithm_name="d4rl-import",
        extra_metadata=extra,
        root=root,
        overwrite=overwrite,
    )
    if verbose:
        print(written_summary(dataset_id, episodes, out))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m rl_minrnn.envs.offline.import_d4rl",
        description="Import an original D4RL hdf5 file (or an npz with the same arrays) as a Minari dataset.",
    )
    p.add_argument("file", help="D4RL .hdf5 or .npz (observations, actions, rewards, terminals, timeouts[, next_observations])")
    p.add_argument("--env", required=True, help="gymnasium id of the evaluation env, e.g. Hopper-v5")
    p.add_argument("--id", required=True, dest="dataset_id", help="dataset id, e.g. local/hopper/medium-replay-v0")
    p.add_argument("--root", default=None, help="store folder (default: $MINARI_DATASETS_PATH or ~/.minari/datasets)")
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    return run_command(lambda: import_d4rl(args.file, args.env, args.dataset_id, root=args.root, overwrite=args.overwrite))


if __name__ == "__main__":
    sys.exit(main())
