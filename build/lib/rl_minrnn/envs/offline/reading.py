"""Reading datasets in Minari's format (hdf5 or arrow) into an ``OfflineDataset``; ``load_dataset`` is
the way in: resolve the id (``store``), then read."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from .episodes import DatasetError, DatasetFormatError, DatasetNotFoundError, Episode, OfflineDataset
from .store import resolve_dataset

def _parse_spec(text):
    if text is None:
        return None
    from gymnasium.envs.registration import EnvSpec

    if not isinstance(text, str):
        return text
    text = (  # gymnasium 1.0 compatibility, as minari does it
        text.replace('"order_enforce": true,', "")
        .replace('"apply_api_compatibility": false,', "")
        .replace('"autoreset": false, ', "")
    )
    try:
        return EnvSpec.from_json(text)
    except Exception:
        return None


def read_metadata(dataset_dir: str | os.PathLike) -> dict:
    """The raw metadata.json of a dataset folder (the one holding ``data/``, or ``data/`` itself)."""
    dataset_dir = Path(dataset_dir)
    data_dir = dataset_dir if dataset_dir.name == "data" else dataset_dir / "data"
    path = data_dir / "metadata.json"
    try:
        with open(path) as f:
            metadata = json.load(f)
    except FileNotFoundError as exc:
        raise DatasetNotFoundError(f"No Minari dataset at {data_dir}: {path.name} is missing.") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetFormatError(
            f"Corrupt Minari metadata {path}: {exc}. Delete the folder {data_dir.parent} and rebuild or re-copy it."
        ) from exc
    if not isinstance(metadata, dict):
        raise DatasetFormatError(f"Corrupt Minari metadata {path}: not a JSON object.")
    return metadata


def env_id_from_metadata(metadata: dict) -> tuple[str | None, object]:
    """(gymnasium id of the evaluation env, its EnvSpec or None): eval spec, then env spec, then 'env_id'."""
    for key in ("eval_env_spec", "env_spec"):
        spec = _parse_spec(metadata.get(key))
        if spec is not None:
            return spec.id, spec
    env_id = metadata.get("env_id")
    return (str(env_id) if env_id else None), None


def read_minari_dataset(dataset_dir: str | os.PathLike, dataset_id: str | None = None) -> OfflineDataset:
    """Read a Minari dataset folder (hdf5 or arrow) into an ``OfflineDataset``."""
    dataset_dir = Path(dataset_dir)
    data_dir = dataset_dir if dataset_dir.name == "data" else dataset_dir / "data"
    metadata = read_metadata(data_dir)
    dataset_id = dataset_id or metadata.get("dataset_id") or str(dataset_dir)
    try:
        from minari.dataset.minari_storage import MinariStorage

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            storage = MinariStorage.read(data_dir)
            n = int(storage.total_episodes)
            seeds = [m.get("seed") for m in storage.get_episode_metadata(range(n))]
            raw = list(storage.get_episodes(range(n)))
    except DatasetError:
        raise
    except Exception as exc:
        raise DatasetFormatError(
            f"Cannot read the Minari dataset {dataset_id!r} at {data_dir}: {exc.__class__.__name__}: {exc}. "
            "The files are corrupt or incomplete: delete the folder and rebuild it, or copy it again."
        ) from exc
    episodes = []
    for i, (ep, seed) in enumerate(zip(raw, seeds)):
        obs, act = ep["observations"], ep["actions"]
        if isinstance(obs, (dict, tuple)) or isinstance(act, (dict, tuple)):
            raise DatasetFormatError(
                f"Dataset {dataset_id!r} has structured (Dict/Tuple) observations or actions; only flat Box "
                "spaces (MuJoCo locomotion) are supported."
            )
        try:
            episodes.append(
                Episode(obs, act, ep["rewards"], ep["terminations"], ep["truncations"], seed=seed)
            )
        except DatasetFormatError as exc:
            raise DatasetFormatError(f"Dataset {dataset_id!r}, episode {i}: {exc}") from exc
    env_id, spec = env_id_from_metadata(metadata)
    return OfflineDataset(
        episodes,
        dataset_id=dataset_id,
        env_id=env_id,
        ref_min_score=metadata.get("ref_min_score"),
        ref_max_score=metadata.get("ref_max_score"),
        eval_env_spec=spec,
        metadata=metadata,
        path=data_dir.parent,
    )


def load_dataset(dataset_id: str, download: bool = True, timeout: float = 5.0) -> OfflineDataset:
    """Resolve ``dataset_id`` (local store, shipped data, then download) and load all its episodes."""
    if isinstance(dataset_id, (str, os.PathLike)) and Path(dataset_id).is_dir() and (
        (Path(dataset_id) / "data").is_dir() or Path(dataset_id).name == "data"
    ):
        return read_minari_dataset(dataset_id)
    return read_minari_dataset(resolve_dataset(str(dataset_id), download, timeout), dataset_id)


def dataset_metadata(dataset_id: str, download: bool = False) -> dict:
    """Metadata of a dataset without loading its episodes."""
    return read_metadata(resolve_dataset(dataset_id, download=download))

