"""One writer per task of a run: a second command that would write the same outputs refuses."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from pnn.core.atomic import HOST, write_error
from pnn.core.errors import PnnError


@contextlib.contextmanager
def task_lock(run_dir: Path, key: str) -> Iterator[None]:
    """Hold ``<run>/.locks/<key>.lock`` while a task writes; refuse at once if another holds it.

    The lock is an advisory ``flock``: the kernel drops it when its holder dies, so a killed
    run never blocks the next one.
    """
    folder = Path(run_dir) / ".locks"
    path = folder / f"{key}.lock"
    handle = _acquire(folder, path, key, run_dir)
    try:
        handle.write(f"pnn (pid {os.getpid()} on {HOST})")
        handle.flush()
        yield
    finally:
        # Unlink before unlocking: a waiter that opened the old file sees that it is gone
        # and retries on a new one, so the lock file never outlives the task.
        with contextlib.suppress(OSError):
            path.unlink()
        with contextlib.suppress(OSError):
            folder.rmdir()
        handle.close()


def _acquire(folder: Path, path: Path, key: str, run_dir: Path) -> IO[str]:
    while True:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            handle = open(path, "a+")  # noqa: SIM115 - held until the task ends
        except OSError as exc:
            raise write_error(folder, exc) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise PnnError(f"'{key}' of run '{run_dir}' is being written by {holder}: wait for it "
                           "to finish, or stop it") from None
        try:
            same = os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            handle.seek(0)
            handle.truncate()
            return handle
        handle.close()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created if missing) for the block: processes that update
    one shared file (a metadata record, a study's set-up) take their turns."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
