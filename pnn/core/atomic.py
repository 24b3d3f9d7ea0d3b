"""All-or-nothing outputs: files are written under temporary names and renamed, and a task
that writes several files stages them in a private folder and moves them in together.

Temporary names carry the host and the process id, so the next run can remove what a killed
process left behind without ever touching a live file of a job on another node of a shared
filesystem.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pnn.core.errors import PnnError

log = logging.getLogger(__name__)

HOST = socket.gethostname().split(".")[0].replace("-", "_") or "host"
_BLOCKED = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


def _tag() -> str:
    return f"{HOST}-{os.getpid()}"


def write_error(path: Path, exc: OSError) -> PnnError:
    """One line for an OSError met while writing ``path``, saying how to fix it."""
    if exc.errno == errno.ENOSPC:
        why = "the disk is full: free space or choose another output_dir"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = "it is not writable: fix its permissions or choose another output_dir (-o)"
    elif exc.errno == errno.EDQUOT:
        why = "the disk quota is exceeded: free space or choose another output_dir"
    else:
        why = f"{exc.strerror or exc}: check the output_dir"
    return PnnError(f"cannot write '{path}': {why}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto ``path`` only if the block succeeds.

    The temporary name keeps the suffix, since writers such as Keras check it.
    """
    final = Path(path)
    tmp = final.with_name(f".{final.stem}.tmp-{_tag()}{final.suffix}")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, final)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EROFS, errno.EDQUOT):
            raise write_error(final, exc) from None
        raise
    finally:
        with contextlib.suppress(OSError):
            if tmp.is_dir():
                shutil.rmtree(tmp)
            elif tmp.exists():
                tmp.unlink()


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomically write a text file."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Atomically write pretty-printed JSON."""
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: Path, rerun: str) -> Any:
    """JSON written by a stage, or one line naming the file and the command that rewrites it."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise PnnError(f"'{path}' is missing: run '{rerun}'") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PnnError(f"'{path}' is damaged ({type(exc).__name__}): rerun '{rerun}'") from None


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGHUP while a few renames publish a task, then deliver them."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _BLOCKED)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class Staging:
    """A private folder where a task writes every output before they are published together.

    ``path(name)`` gives where to write the output that will become ``final_dir / name``;
    :meth:`publish` moves them all in (signals held), and leaving the ``with`` block without
    publishing removes them, so the previous complete outputs stay as they were.
    """

    def __init__(self, final_dir: Path, label: str):
        self.final_dir = Path(final_dir)
        self.dir = self.final_dir / f".staging-{label}.tmp-{_tag()}"

    def __enter__(self) -> Staging:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_error(self.final_dir, exc) from None
        return self

    def path(self, name: str) -> Path:
        """Where to write the output ``name`` (relative to the final folder)."""
        target = self.dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def publish(self, last: list[str] | None = None) -> list[str]:
        """Move every staged file into place; ``last`` (e.g. a manifest) goes in after the rest.

        Returns the published names, relative to the final folder.
        """
        last = last or []
        names = sorted(str(p.relative_to(self.dir)) for p in self.dir.rglob("*") if p.is_file())
        order = [n for n in names if n not in last] + [n for n in last if n in names]
        with signals_held():
            for name in order:
                dest = self.final_dir / name
                try:
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(self.dir / name, dest)
                except OSError as exc:
                    raise write_error(dest, exc) from None
        return order

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs: a zombie (dead, not yet reaped, as the workers of
    a killed command can stay under an init that does not reap) counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):  # no /proc (not Linux): signal 0 is all there is
        return True
    return state != "Z"


def sweep(root: Path) -> list[Path]:
    """Remove temporary files and staging folders under ``root`` left by dead processes of
    this host (a SIGKILL leaves them); those of live processes or other hosts stay."""
    removed = []
    root = Path(root)
    if not root.is_dir():
        return removed
    for path in root.rglob("*.tmp-*"):
        tag = path.name.rsplit(".tmp-", 1)[1].split(".", 1)[0]
        host, _, pid = tag.rpartition("-")
        if host != HOST or not pid.isdigit() or process_alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
            log.info("removed %s, left by an interrupted run", path)
    return removed
