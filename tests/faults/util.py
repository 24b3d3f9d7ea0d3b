"""Assertions shared by the fault tests: one line, exit 2, nothing good changed, nothing left."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from click.testing import Result


def one_line_error(res: Result, code: int = 2) -> str:
    """The exit code is ``code`` and the output is one 'pnn: error:' line, never a traceback."""
    text = res.output.strip()
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output, res.output
    assert len(text.splitlines()) == 1, res.output
    assert text.startswith("pnn: "), res.output
    if res.exception is not None:
        assert isinstance(res.exception, SystemExit), repr(res.exception)
    return text


def snapshot(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` (relative path -> digest)."""
    out = {}
    for path in sorted(Path(root).rglob("*")):
        if path.is_file() and not path.name.endswith(".lock"):
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def leftovers(root: Path) -> list[str]:
    """Temporary files or folders left under ``root`` by an interrupted write."""
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*")
                  if ".tmp-" in p.name or p.name.startswith(".staging-"))


def children_of(pid: int) -> list[int]:
    """Live descendants of ``pid`` (from /proc): its workers, and the fork server they come
    from, to prove that none outlived the command."""
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            parents[int(entry)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        kids = [p for p, parent in parents.items() if parent in frontier]
        found += kids
        frontier = kids
    return found
