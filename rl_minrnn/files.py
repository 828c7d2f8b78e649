"""Writing a file so that a reader never sees half of it: the one mechanism behind checkpoints, exported
policies, replay-build checkpoints and the suite's progress files. In the bottom layer so that every
layer (dataset building included) can use it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(path: str | Path, write) -> Path:
    """``write(tmp)`` writes the file's bytes to the path ``tmp``; only a complete, synced file replaces
    ``path`` (``os.replace`` is atomic), and the folder is synced so the rename survives a power cut. A
    crash or a failed write leaves the previous file intact and no temporary file behind. The file gets
    the usual permissions (``0o666`` less the umask), not ``mkstemp``'s private ``0o600``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
        tmp = None
        _fsync_folder(path.parent)
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return path


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not possible on every OS (Windows); the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
