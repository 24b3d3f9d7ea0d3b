"""Input names: local paths stay as before, URLs are never treated as paths, and a remote glob
walks the server's listing (here a planted listing; tests/io/test_xrootd.py uses a real server)."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from pnn.core import inputs
from pnn.core.errors import PnnError

URL = "root://eos.example.org//store/user/ana/ntuples/ttbar_1.root"


def test_urls_are_not_paths(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.root").write_bytes(b"")
    os.symlink(tmp_path / "a.root", tmp_path / "b.root")
    assert inputs.is_remote(URL) and inputs.is_remote("xroot://h//a.root")
    assert not inputs.is_remote("a.root") and not inputs.is_remote(str(tmp_path / "a.root"))
    assert inputs.absolute(URL) == URL and inputs.identity(URL) == URL
    assert inputs.absolute("a.root") == str(tmp_path / "a.root")
    assert inputs.identity("b.root") == str(tmp_path / "a.root")
    assert inputs.expand("*.root") == ["a.root", "b.root"]
    assert inputs.expand("none*.root") == []


def test_other_urls_are_refused_with_the_form_to_use() -> None:
    with pytest.raises(PnnError, match=r"not a file URL pnn can read.*root://host"):
        inputs.expand("https://example.org/a.root")


class PlantedServer:
    """An XRootD FileSystem stand-in: a dict of directories -> {name: is directory}."""

    def __init__(self, tree: dict[str, dict[str, bool]]) -> None:
        self.tree = tree
        self.listed: list[str] = []

    @staticmethod
    def status(ok: bool) -> SimpleNamespace:
        return SimpleNamespace(ok=ok, errno=0 if ok else 3011, fatal=False, code=0 if ok else 400,
                               message="" if ok else "no such file or directory")

    def dirlist(self, path, flags, timeout):
        from XRootD.client.flags import StatInfoFlags

        self.listed.append(path)
        if path not in self.tree:
            return self.status(False), None
        entries = [SimpleNamespace(name=n, statinfo=SimpleNamespace(
            flags=StatInfoFlags.IS_DIR if d else 0)) for n, d in self.tree[path].items()]
        return self.status(True), entries


def test_remote_globs_walk_the_listing_and_keep_the_url_form(monkeypatch) -> None:
    pytest.importorskip("XRootD.client", reason="the xrootd extra is not installed")
    server = PlantedServer({
        "/store": {"v1": True, "v2": True, "notes.txt": False},
        "/store/v1": {"a.root": False, "b.root": False, ".hidden.root": False, "c.root": True},
        "/store/v2": {"a.root": False},
    })
    monkeypatch.setattr(inputs, "_filesystem", lambda _server: server)
    got = inputs.expand("root://h:1094//store/v*/[ac].root?svcClass=t")
    assert got == ["root://h:1094//store/v1/a.root?svcClass=t",
                   "root://h:1094//store/v2/a.root?svcClass=t"]  # c.root is a directory
    assert inputs.expand("root://h:1094//store/v1/*.root") == [
        "root://h:1094//store/v1/a.root", "root://h:1094//store/v1/b.root"]  # no hidden file
    assert inputs.expand("root://h:1094//gone/*.root") == []
    assert "/store" in server.listed and "/gone" in server.listed


def test_the_xrootd_client_loads_before_tensorflow() -> None:
    """Loaded after TensorFlow, the XRootD client crashes the process (a segmentation fault,
    not a one-line error): every module that may import TensorFlow lives in pnn.learn or
    imports it, and importing pnn.learn loads the client first."""
    pytest.importorskip("XRootD.client", reason="the xrootd extra is not installed")
    code = ("import sys, pnn.learn; "
            "assert 'pyxrootd.client' in sys.modules and 'tensorflow' not in sys.modules")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False, timeout=120)
    assert res.returncode == 0, res.stderr


def test_a_script_that_loads_tensorflow_first_gets_a_line_not_a_crash() -> None:
    """A user script that imports keras before pnn must still run; a remote read then says
    how to order the imports instead of crashing the process."""
    pytest.importorskip("XRootD.client", reason="the xrootd extra is not installed")
    code = ("import keras, pnn.learn.model\n"
            "from pnn.core import inputs\n"
            "from pnn.core.errors import PnnError\n"
            "try:\n    inputs.client()\n"
            "except PnnError as exc:\n    print(exc)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False, timeout=120)
    assert res.returncode == 0, res.stderr[-500:]
    assert "import pnn before tensorflow or keras" in res.stdout
