"""Worker processes for the stages that spread work over cores (folds, points, limit fits).

Workers are forked from a fork server that a command starts once: the server imports the
modules the workers need (numpy, pandas, and TensorFlow for the stages that score or train)
and never runs anything, so each worker starts with them loaded but with no TensorFlow
state, instead of importing them itself (TensorFlow alone takes seconds of CPU per process).
Workers start as quiet as the command that made them, watch it and die with it however it
ends, and are stopped, not awaited, when the stage is interrupted or fails: none may outlive
the command.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.forkserver
import os
import select
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from pnn.core.atomic import process_alive, sweep
from pnn.core.quiet import inherit

#: What every fork server imports: what all workers use, this module for their initializer.
BASE_PRELOAD = ("pnn.core.preload", "numpy", "pandas", "pyarrow.parquet", "scipy.stats",
                "matplotlib.pyplot", "pnn.core.workers")
#: What the workers of each stage import besides: once, in the fork server.
STAGE_MODULES = {
    "train": ("pnn.learn.train", "pnn.learn.model"),
    "evaluate": ("pnn.stats.evaluate", "pnn.learn.model"),
    "study": ("pnn.validate.study", "pnn.learn.model"),
    "tune": ("pnn.learn.tune", "pnn.learn.model"),
    "limits": ("pnn.stats.limits",),
}
_LIMITS: list[object] = []  # keeps the thread limits of this worker in force
_SERVER: list[str] = []  # what this command's fork server was asked to import


def _watch(command: int) -> None:
    """SIGKILL this worker as soon as its command ends, however it ends (SIGKILL included): a
    killed command cannot stop its workers itself, and they must not go on writing."""
    try:
        handle: int | None = os.pidfd_open(command)
    except ProcessLookupError:  # the command is already gone
        os._exit(1)
    except (AttributeError, OSError):  # no pidfd (not Linux, or an old kernel): poll
        handle = None
    threading.Thread(target=_die_with, args=(command, handle), name="pnn-watch",
                     daemon=True).start()


def _die_with(command: int, handle: int | None) -> None:
    if handle is not None:
        select.select([handle], [], [])  # readable once the command has ended
    else:
        while process_alive(command):
            time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGKILL)


def _start_worker(blas_threads: int | None, command: int) -> None:
    _watch(command)
    inherit()
    if blas_threads is not None:
        from threadpoolctl import threadpool_limits

        _LIMITS.append(threadpool_limits(blas_threads))


def warm_workers(stage: str | None = None) -> None:
    """Start this command's fork server now, importing what the workers of ``stage`` need
    (:data:`STAGE_MODULES`) besides the common modules, so that its imports overlap the
    command's own work; every later pool of the command forks its workers from it. Only the
    first call chooses what it imports."""
    if not _SERVER:
        _SERVER[:] = list(dict.fromkeys([*BASE_PRELOAD, *STAGE_MODULES.get(stage or "", ())]))
        multiprocessing.get_context("forkserver").set_forkserver_preload(_SERVER)
    multiprocessing.forkserver.ensure_running()


def available_cores() -> int:
    """The cores this process may run on (a batch slot's share, not the whole machine)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def process_pool(jobs: int, blas_threads: int | None = None, *, leftovers: Path | None = None,
                 stage: str | None = None) -> Iterator[ProcessPoolExecutor]:
    """A pool of ``jobs`` workers, stopped at once if the block raises (Ctrl-C, SIGTERM, an
    error) and shut down cleanly otherwise.

    ``blas_threads`` caps the BLAS/OpenMP threads of each worker: numpy-heavy workers that
    each spread over every core slow one another down several times over. ``leftovers`` is
    the folder whose temporaries and staging folders stopped workers leave to be swept.
    ``stage``: whose modules the fork server imports once (:func:`warm_workers`), rather
    than every worker.
    """
    warm_workers(stage)
    pool = ProcessPoolExecutor(max_workers=jobs,
                               mp_context=multiprocessing.get_context("forkserver"),
                               initializer=_start_worker, initargs=(blas_threads, os.getpid()))
    try:
        yield pool
    except BaseException:
        stop_workers(pool)
        if leftovers is not None:
            sweep(leftovers)  # what the stopped workers were staging under it
        raise
    pool.shutdown()


def stop_workers(pool: ProcessPoolExecutor) -> None:
    """Stop every worker of ``pool`` now: terminate, then kill what does not stop."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for proc in procs:
        proc.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=5)
