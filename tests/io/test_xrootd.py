"""Ingest and apply through root:// URLs served by a real XRootD server on localhost
(tests/integration/xrootd_server.sh): the results must equal reading the same files locally.

Runs under CI=true (installing xrootd-server when missing); elsewhere it skips when no server
can be started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import uproot
from click.testing import CliRunner

from pnn.cli import main
from pnn.core.config import load_config
from pnn.io import ingest, toy
from tests.conftest import toy_config, write_config

pytestmark = pytest.mark.xrootd

SCRIPT = Path(__file__).resolve().parents[1] / "integration" / "xrootd_server.sh"
REQUIRED = os.environ.get("CI") == "true" or os.environ.get("PNN_XROOTD_INSTALL") == "1"


def free_port() -> int:
    """A TCP port on localhost that nothing listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def xrootd_server() -> Iterator[tuple[str, Path]]:
    """A read-only XRootD server on localhost: yields its URL prefix ('root://localhost:PORT/')
    and the directory it serves. The directory is world-readable (the server runs as an
    unprivileged user when the tests run as root) and removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="pnn-xrootd-"))
    try:
        (base / "data").mkdir()
        for d in (base, base / "data"):
            d.chmod(0o755)
        closed = [p for p in base.parents if not p.stat().st_mode & 0o001]
        if closed:
            pytest.fail(f"the server cannot reach {base}: '{closed[0]}' is closed to other "
                        "users; point TMPDIR at a folder they can enter")
        res = subprocess.run(["bash", str(SCRIPT), "start", str(base), str(free_port())],
                             capture_output=True, text=True, check=False, timeout=900)
        if res.returncode != 0:
            why = (res.stderr.strip().splitlines() or [f"exit code {res.returncode}"])[-1]
            message = f"no XRootD server could be started: {why}"
            if REQUIRED:
                pytest.fail(message)
            pytest.skip(message)
        try:
            yield res.stdout.strip().splitlines()[-1].removeprefix("URL="), base / "data"
        finally:
            subprocess.run(["bash", str(SCRIPT), "stop", str(base)], check=False, timeout=60)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def write_toy(folder: Path) -> None:
    """Tiny toy ntuples in ``folder``, readable by everyone, without the toy manifest (so the
    local and the remote copy are read the same way)."""
    folder.mkdir()
    toy.write(folder, [500, 1000], 300, 2000, 140.0, 7)
    (folder / toy.MANIFEST).unlink()
    folder.chmod(0o755)
    for f in folder.iterdir():
        f.chmod(0o644)


def config(tmp: Path, name: str, signal: str, background: str) -> Path:
    cfg = toy_config(tmp, masses=(500, 1000), offgrid=(), epochs=1)
    del cfg["generate"]
    cfg["output_dir"] = str(tmp / name)
    cfg["training"]["layers"] = [8]
    for s in cfg["samples"]["signal"]:
        s["files"] = signal
    for s in cfg["samples"]["background"]:
        s["files"] = background
    return write_config(tmp / f"{name}.yaml", cfg)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, Path]]:
    with xrootd_server() as (url, data):
        write_toy(data / "ntuples")
        yield url, data


@pytest.fixture(scope="module")
def runs(served, tmp_path_factory):
    """The same ntuples ingested from local paths and from root:// URLs (a glob among them);
    the remote config's model trained."""
    url, data = served
    tmp = tmp_path_factory.mktemp("xrootd")
    local = config(tmp, "local", str(data / "ntuples" / "signal.root"),
                   str(data / "ntuples" / "back*.root"))
    remote = config(tmp, "remote", f"{url}/ntuples/signal.root", f"{url}/ntuples/back*.root")
    runner = CliRunner()
    for path in (local, remote):
        res = runner.invoke(main, ["ingest", str(path)])
        assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["train", str(remote)])
    assert res.exit_code == 0, res.output
    return local, remote, tmp


def test_ingest_over_root_equals_local_files(runs) -> None:
    local, remote, _ = runs
    (a, meta_a), (b, meta_b) = (ingest.load_events(load_config(p)) for p in (local, remote))
    assert len(a) == 2600
    pd.testing.assert_frame_equal(a, b)
    for meta in (meta_a, meta_b):
        meta.pop("id")
        meta.pop("provenance")
    assert meta_a == meta_b


def test_apply_over_root_equals_local_files(served, runs) -> None:
    url, data = served
    _, remote, tmp = runs
    runner = CliRunner()
    res = runner.invoke(main, ["apply", str(remote), "-i", str(data / "ntuples" / "*.root"),
                               "-o", str(tmp / "scored_local")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["apply", str(remote), "-i", f"{url}/nt*/*.root",
                               "-o", str(tmp / "scored_remote")])
    assert res.exit_code == 0, res.output
    assert f"{url}/ntuples/signal.root -> " in res.output  # the URL as given, not a path
    for name in ("signal", "background"):
        with uproot.open(tmp / "scored_local" / f"{name}_pnn.root") as a, \
                uproot.open(tmp / "scored_remote" / f"{name}_pnn.root") as b:
            assert a.keys() == b.keys() and len(a.keys()) == 2
            for tree in a.keys(cycle=False):
                x, y = a[tree].arrays(library="np"), b[tree].arrays(library="np")
                assert sorted(x) == sorted(y) == ["EventNumber", "pnn_score_m1000", "pnn_score_m500"]
                for column in x:
                    np.testing.assert_array_equal(x[column], y[column])
                assert ((x["pnn_score_m500"] > 0) & (x["pnn_score_m500"] < 1)).all()


def test_batch_jobs_ingest_and_apply_remote_files(served, runs) -> None:
    url, _ = served
    local, remote, tmp = runs
    runner = CliRunner()
    out = tmp / "jobs"
    res = runner.invoke(main, ["submit", str(remote), "ingest", "--scheduler", "local",
                               "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "shard0: done" in res.output
    sharded, _ = ingest.load_events(load_config(remote, {"output_dir": str(out)}))
    expect, _ = ingest.load_events(load_config(local))
    keys = ["sample", "event_number"]
    a = expect.astype({"sample": str}).sort_values(keys).reset_index(drop=True)
    b = sharded.astype({"sample": str}).sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)

    res = runner.invoke(main, ["submit", str(remote), "apply", "--scheduler", "local", "--dry-run",
                               "--files", f"{url}/ntuples/*.root", "--files-per-job", "1"])
    assert res.exit_code == 0, res.output
    tasks = (load_config(remote).run_dir / "jobs" / "apply" / "dry-run" / "tasks.txt").read_text()
    lines = tasks.splitlines()
    assert len(lines) == 2
    for line, name in zip(lines, ("background", "signal"), strict=True):
        assert f"--input {url}/ntuples/{name}.root" in line  # the URL, not resolved as a path
