"""root:// inputs that cannot be read: an unreachable server, a server that never answers, a
missing remote file, a glob that matches nothing, a directory, another kind of URL, no XRootD
client. Each is one line and exit code 2, within seconds, before anything is written; a server
that stops while a file is read is one line too."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from pnn.cli import main
from pnn.io import ingest  # noqa: F401  (imported now, so the timings below are pnn's alone)
from tests.conftest import toy_config, write_config
from tests.faults.util import one_line_error
from tests.io.test_xrootd import free_port, write_toy, xrootd_server

pytest.importorskip("XRootD.client", reason="the xrootd extra is not installed")


def remote_config(tmp: Path, files: str) -> Path:
    cfg = toy_config(tmp, masses=(500,), offgrid=())
    del cfg["generate"]
    cfg["samples"]["signal"][0]["files"] = files
    for s in cfg["samples"]["background"]:
        s["files"] = files
    return write_config(tmp / "config.yaml", cfg)


def test_unreachable_server_is_one_line_within_seconds(tmp_path) -> None:
    url = f"root://localhost:{free_port()}//ntuples/signal.root"  # nothing listens there
    path = remote_config(tmp_path, url)
    start = time.monotonic()
    line = one_line_error(CliRunner().invoke(main, ["ingest", str(path)]))
    seconds = time.monotonic() - start
    assert "cannot reach the XRootD server root://localhost:" in line and url in line, line
    assert seconds < 10, seconds  # pnn's connection window and one retry, not minutes
    line = one_line_error(CliRunner().invoke(main, ["apply", str(path), "-i", url]))
    assert "cannot reach the XRootD server" in line, line
    assert not (tmp_path / "runs").exists()


def test_server_that_never_answers_times_out_as_the_xrd_variables_say(tmp_path) -> None:
    with socket.socket() as silent:  # accepts connections, never speaks XRootD
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        url = f"root://localhost:{silent.getsockname()[1]}//ntuples/signal.root"
        path = remote_config(tmp_path, url)
        env = {**os.environ, "XRD_CONNECTIONWINDOW": "1", "XRD_CONNECTIONRETRY": "1"}
        start = time.monotonic()
        res = subprocess.run([sys.executable, "-m", "pnn", "ingest", str(path)], env=env,
                             capture_output=True, text=True, timeout=120, check=False)
        seconds = time.monotonic() - start
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pnn: error: cannot reach the XRootD server")
    assert "timeout" in lines[0].lower(), lines[0]
    assert seconds < 20, seconds  # interpreter start-up plus a one-second window


@pytest.fixture(scope="module")
def served():
    with xrootd_server() as (url, data):
        write_toy(data / "ntuples")
        yield url


@pytest.mark.xrootd
@pytest.mark.parametrize(("where", "expect"), [
    ("/ntuples/nothere.root", "file matches"),
    ("/ntuples/zz*.root", "file matches"),
    ("/nothere/*.root", "file matches"),
    ("/ntuples", "is a directory on the server"),
])
def test_missing_remote_files_are_one_line(served, tmp_path, where, expect) -> None:
    url = served + where
    path = remote_config(tmp_path, url)
    line = one_line_error(CliRunner().invoke(main, ["ingest", str(path)]))
    assert expect in line and url in line, line
    line = one_line_error(CliRunner().invoke(main, ["apply", str(path), "-i", url]))
    assert expect in line and url in line, line
    assert not (tmp_path / "runs").exists()


def test_other_urls_are_refused_with_the_url_form(tmp_path) -> None:
    path = remote_config(tmp_path, "https://example.org/signal.root")
    line = one_line_error(CliRunner().invoke(main, ["ingest", str(path)]))
    assert "not a file URL pnn can read" in line and "root://" in line, line


def test_urls_without_the_xrootd_extra_say_how_to_install_it(tmp_path, monkeypatch) -> None:
    from pnn.core import inputs

    monkeypatch.setattr(inputs, "_configured", [])
    for name in ("XRootD", "XRootD.client"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    path = remote_config(tmp_path, "root://localhost:1094//ntuples/signal.root")
    line = one_line_error(CliRunner().invoke(main, ["ingest", str(path)]))
    assert "pip install 'pnn[xrootd]'" in line, line


@pytest.mark.xrootd
def test_server_that_stops_while_reading_is_one_line_within_seconds() -> None:
    from pnn.core.errors import PnnError
    from pnn.io import ntuple
    from tests.io.test_xrootd import SCRIPT

    with xrootd_server() as (url, data):
        write_toy(data / "ntuples")
        name = f"{url}/ntuples/background.root"
        with ntuple.open_files([name]) as handles:
            tree = ntuple.get_tree(handles[name], name, "ttbar", ["sT"])  # checked, then
            subprocess.run(["bash", str(SCRIPT), "stop", str(data.parent)], check=True)
            start = time.monotonic()
            with pytest.raises(PnnError) as err:
                list(ntuple.iterate([tree], ["sT"]))
            seconds = time.monotonic() - start
    message = str(err.value)
    assert "cannot be read from its XRootD server" in message and name in message, message
    assert len(message.splitlines()) == 1 and seconds < 10, (message, seconds)
