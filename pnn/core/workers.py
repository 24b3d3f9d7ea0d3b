"""Worker processes for the stages that spread work over cores (study networks, limit fits).

Workers are spawned (no inherited TensorFlow state), start as quiet as the command that
made them, and are stopped, not awaited, when the stage is interrupted or fails: none may
outlive the command.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from pnn.core.atomic import sweep
from pnn.core.quiet import inherit

PR_SET_PDEATHSIG = 1  # prctl option: the signal a process gets when its parent dies
_LIMITS: list[object] = []  # keeps the thread limits of this worker in force


def _die_with(parent: int) -> None:
    """Have the kernel SIGKILL this worker when its command dies (Linux): a command killed
    with SIGKILL cannot stop its workers itself, and they must not go on writing."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux
        return
    if os.getppid() != parent:  # the command died before the request took effect
        os._exit(1)


def _start_worker(blas_threads: int | None, parent: int) -> None:
    _die_with(parent)
    inherit()
    if blas_threads is not None:
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = str(blas_threads)  # before numpy loads, where it has not yet
        from threadpoolctl import threadpool_limits

        _LIMITS.append(threadpool_limits(blas_threads))


def available_cores() -> int:
    """The cores this process may run on (a batch slot's share, not the whole machine)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def process_pool(jobs: int, blas_threads: int | None = None, *,
                 leftovers: Path | None = None) -> Iterator[ProcessPoolExecutor]:
    """A pool of ``jobs`` spawned workers, stopped at once if the block raises (Ctrl-C,
    SIGTERM, an error) and shut down cleanly otherwise.

    ``blas_threads`` caps the BLAS/OpenMP threads of each worker: numpy-heavy workers that
    each spread over every core slow one another down several times over. ``leftovers`` is
    the folder whose temporaries and staging folders stopped workers leave to be swept.
    """
    # The initializer runs before a worker unpickles its first task (which may import TF).
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
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
