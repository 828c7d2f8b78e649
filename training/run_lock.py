"""One training process per run folder.

Two trainers writing the same ``checkpoints/last.pt`` and ``metrics.jsonl`` would interleave their
steps silently, so a trainer holds ``RUN_DIR/.lock`` for its whole life. The lock is an OS file lock
(``filelock``, ``flock`` on Linux/macOS): the kernel drops it when its process ends, however it ends,
so a run killed with SIGKILL leaves no stale lock behind and resumes at once. Who holds it (pid, host,
start time) is written beside it, in ``.lock.owner``, for the error message of the process refused.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from filelock import FileLock, Timeout

from .run_folder import RunFolder


class RunInUseError(Exception):
    """Another process is training in this run folder."""


class RunFolderError(Exception):
    """The run folder cannot be created or written."""


class RunLock:
    """``RunLock.acquire(run_dir)`` returns a held lock or raises ``RunInUseError`` at once."""

    def __init__(self, run_dir: Path, lock: FileLock, created: Path | None = None):
        self.run_dir, self._lock, self._created = run_dir, lock, created

    @classmethod
    def acquire(cls, run_dir: str | os.PathLike) -> "RunLock":
        run_dir = Path(run_dir)
        created = next((p for p in reversed([run_dir, *run_dir.parents]) if not p.exists()), None)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(RunFolder(run_dir).lock))
            lock.acquire(timeout=0)
        except Timeout:
            raise RunInUseError(
                f"{run_dir} is in use by another training process ({_owner(run_dir)}); wait for it to "
                f"finish or stop it, or pick another --run-dir"
            ) from None
        except OSError as exc:
            raise RunFolderError(f"Cannot use {run_dir} as a run folder ({exc.strerror or exc}); "
                                 "pick a writable --run-dir") from None
        try:
            owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
            RunFolder(run_dir).lock_owner.write_text(json.dumps(owner) + "\n")
        except OSError:  # the lock itself is held; the note is only for other processes' messages
            pass
        return cls(run_dir, lock, created)

    def release(self, remove_if_unused: bool = False) -> None:
        """Release the lock; with ``remove_if_unused``, also remove the folders ``acquire`` created when
        nothing but the lock was written in them (a run refused before it started leaves nothing behind)."""
        if self._lock.is_locked:
            self._lock.release()
        if remove_if_unused and self._created is not None:
            try:
                folder = RunFolder(self.run_dir)
                lock_files = (folder.lock, folder.lock_owner)
                if {p.name for p in self.run_dir.iterdir()} <= {f.name for f in lock_files}:
                    for file in lock_files:
                        file.unlink(missing_ok=True)
                    for folder in [self.run_dir, *self.run_dir.parents]:
                        folder.rmdir()
                        if folder == self._created:
                            break
            except OSError:  # another process wrote there meanwhile, or it cannot be removed: leave it
                pass


def _owner(run_dir: Path) -> str:
    try:
        owner = json.loads(RunFolder(run_dir).lock_owner.read_text())
        return f"pid {owner['pid']} on {owner['host']}, since {owner['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "owner unknown"
