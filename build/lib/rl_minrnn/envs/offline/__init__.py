"""Offline data: the dataset model (``episodes``), where datasets live (``store``), Minari reading and
writing (``reading``, ``writing``), D4RL import, building from behaviour policies, combining, training
batches and state normalisation. Nothing here runs an agent or imports ``envs.evaluation``."""

from .episodes import (
    DatasetError, DatasetExistsError, DatasetFormatError, DatasetNotFoundError, Episode, OfflineDataset,
)
from .reading import dataset_metadata, env_id_from_metadata, load_dataset, read_metadata, read_minari_dataset
from .store import SAMPLE_DATASET_ID, datasets_root, find_dataset, list_local_datasets, resolve_dataset
from .writing import delete_dataset, write_dataset

__all__ = [
    "DatasetError", "DatasetExistsError", "DatasetFormatError", "DatasetNotFoundError", "Episode", "OfflineDataset",
    "dataset_metadata", "env_id_from_metadata", "load_dataset", "read_metadata", "read_minari_dataset",
    "SAMPLE_DATASET_ID", "datasets_root", "find_dataset", "list_local_datasets", "resolve_dataset",
    "delete_dataset", "write_dataset",
]
