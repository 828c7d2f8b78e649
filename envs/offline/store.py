"""Where datasets live: resolve a dataset id to a folder in Minari's format.

Resolution order for ``resolve_dataset(dataset_id)``:

1. the local Minari store: ``$MINARI_DATASETS_PATH`` or ``~/.minari/datasets`` (``<root>/<id>/data``);
2. the datasets shipped inside the project (``envs/data/<id>/data``, e.g. ``SAMPLE_DATASET_ID``);
3. ``minari.download_dataset`` when a remote answers (a quick connection probe first, so that an
   offline machine fails in seconds with one clear ``DatasetNotFoundError``, never a deep traceback)."""

from __future__ import annotations

import os
import socket
import warnings
from pathlib import Path

from .episodes import DatasetNotFoundError

SAMPLE_DATASET_ID = "local/hopper/sample-v0"


PACKAGE_DATA_DIR = Path(__file__).resolve().parents[1] / "data"  # envs/data: shipped with the package


DEFAULT_REMOTE_HOST = ("huggingface.co", 443)  # minari's default remote is hf://farama-minari


def datasets_root() -> Path:
    """The local Minari store: $MINARI_DATASETS_PATH, else ~/.minari/datasets (minari's own rule)."""
    env = os.environ.get("MINARI_DATASETS_PATH")
    return Path(env) if env else Path.home() / ".minari" / "datasets"


def check_dataset_id(dataset_id: str) -> None:
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        parse_dataset_id(dataset_id)
    except (ValueError, TypeError) as exc:
        raise DatasetNotFoundError(
            f"{dataset_id!r} is not a valid Minari dataset id: ids look like "
            "'namespace/env/name-vN', e.g. 'mujoco/hopper/medium-v0' or 'local/hopper/medium-v0'."
        ) from exc


def list_local_datasets(root: str | os.PathLike | None = None) -> list[str]:
    """Ids of the datasets under a store folder (default: the local store), like ``minari list local``."""
    root = Path(root) if root is not None else datasets_root()
    found = []
    if root.is_dir():
        for meta in root.rglob("data/metadata.json"):
            rel = meta.parent.parent.relative_to(root)
            if any(part.startswith(".") for part in rel.parts):
                continue
            found.append(rel.as_posix())
    return sorted(found)


def find_dataset(dataset_id: str) -> Path | None:
    """The dataset's folder (holding ``data/``) in the local store, else among the shipped datasets."""
    check_dataset_id(dataset_id)
    for root in (datasets_root(), PACKAGE_DATA_DIR):
        candidate = root / dataset_id
        if (candidate / "data" / "metadata.json").is_file():
            return candidate
    return None


def _offline_reason(timeout: float) -> str | None:
    """Why a download cannot work right now (None when a remote seems to answer)."""
    for var in ("RL_MINRNN_OFFLINE", "HF_HUB_OFFLINE", "MINARI_OFFLINE"):
        if os.environ.get(var, "").lower() in ("1", "true", "yes"):
            return f"offline mode (${var} is set)"
    remote = os.environ.get("MINARI_REMOTE", "hf://farama-minari")
    if remote.startswith("hf://"):
        try:
            import huggingface_hub  # noqa: F401
        except ImportError:
            return "huggingface_hub is not installed (pip install 'minari[hf]')"
        host = DEFAULT_REMOTE_HOST
    else:
        host = ("storage.googleapis.com", 443)
    try:
        with socket.create_connection(host, timeout=timeout):
            return None
    except OSError as exc:
        return f"no connection to {host[0]}:{host[1]} ({exc.__class__.__name__}: {exc})"


def _try_download(dataset_id: str, timeout: float) -> str | None:
    """Download into the local store; returns None on success, else why it failed."""
    reason = _offline_reason(timeout)
    if reason is not None:
        return reason
    import minari

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            minari.download_dataset(dataset_id)
    except Exception as exc:  # anything from deep inside minari / huggingface_hub
        return f"download failed ({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    return None


def not_found_message(dataset_id: str, download_note: str | None) -> str:
    root = datasets_root()
    local = list_local_datasets(root)
    shipped = list_local_datasets(PACKAGE_DATA_DIR)
    env_note = "$MINARI_DATASETS_PATH" if os.environ.get("MINARI_DATASETS_PATH") else "default; set $MINARI_DATASETS_PATH to change"
    lines = [
        f"Dataset {dataset_id!r} was not found.",
        f"  Searched: {root / dataset_id} (local Minari store, {env_note}) and {PACKAGE_DATA_DIR / dataset_id} (shipped).",
        f"  In the local store ({root}): {', '.join(local) if local else 'nothing'}.",
        f"  Shipped with the project: {', '.join(shipped) if shipped else 'nothing'}.",
    ]
    if download_note:
        lines.append(f"  Download: {download_note}.")
    lines += [
        "Ways out:",
        f"  - on a connected machine run `minari download {dataset_id}` and copy its folder "
        f"(~/.minari/datasets/{dataset_id}) to {root / dataset_id};",
        "  - build D4RL-style datasets here: `python -m rl_minrnn.envs.offline.build_suite` (local/{hopper,walker2d,halfcheetah}/"
        "{medium,expert,medium-expert}-v0) or `python -m rl_minrnn.envs.offline.build_dataset --policy POLICY.npz --env Hopper-v5 "
        "--steps 1000000 --id local/hopper/medium-v0`;",
        "  - import an original D4RL file: `python -m rl_minrnn.envs.offline.import_d4rl FILE.hdf5 --env Hopper-v5 --id local/hopper/medium-v2`;",
        f"  - or use the small sample shipped with the project: {SAMPLE_DATASET_ID!r}.",
    ]
    return "\n".join(lines)


def resolve_dataset(dataset_id: str, download: bool = True, timeout: float = 5.0) -> Path:
    """The folder of a dataset id (local store, shipped, or freshly downloaded); clear error otherwise."""
    found = find_dataset(dataset_id)
    if found is not None:
        return found
    note = "not attempted (download=False)"
    if download:
        note = _try_download(dataset_id, timeout)
        if note is None:
            found = find_dataset(dataset_id)
            if found is not None:
                return found
            note = "minari reported success but the folder is missing"
    raise DatasetNotFoundError(not_found_message(dataset_id, note))

