"""TensorFlow's native start-up lines stay off stderr unless -v; pnn's own log lines do not.

Native output goes to file descriptor 2 directly, which CliRunner cannot see, so these tests
run real processes. A stand-in 'tensorflow' package that writes to descriptor 2 checks the
import hook cheaply; one real training per mode checks the actual noise.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from pnn.cli import main
from pnn.core import quiet
from tests.conftest import toy_config, write_config
from tests.faults.util import leftovers, one_line_error, snapshot

PNN = [sys.executable, "-m", "pnn"]
LOG_LINE = re.compile(r"\d\d:\d\d:\d\d pnn(\.[a-z_]+)+: ")

FAKE_TF = """\
import os
os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n")
os.write(2, b"I0000 cudart_stub.cc:31] Could not find cuda drivers on your machine\\n")
if os.environ.get("FAKE_TF_BREAK"):
    raise ImportError("libtensorflow_framework.so.2: cannot open shared object file")
"""

SCRIPT = """\
import logging, sys
from pnn.core.quiet import silence_native_logs
logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
if sys.argv[1] == "quiet":
    silence_native_logs()
import tensorflow
logging.getLogger("pnn.demo").info("after the import")
"""


def _fake(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    pkg = tmp_path / "fake" / "tensorflow"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text(FAKE_TF)
    mode = env.pop("mode")
    root = str(Path(__file__).resolve().parents[2])
    return subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": f"{tmp_path / 'fake'}:{root}", **env},
                          check=False)


def test_import_hook_hides_native_lines_and_keeps_python_logging(tmp_path: Path) -> None:
    res = _fake(tmp_path, mode="quiet")
    assert res.returncode == 0, res.stderr
    assert res.stderr == "pnn.demo: after the import\n"
    loud = _fake(tmp_path, mode="loud")
    assert loud.returncode == 0
    assert loud.stderr.count("absl::InitializeLog") == 1 and "after the import" in loud.stderr


def test_a_failed_import_shows_what_was_captured(tmp_path: Path) -> None:
    res = _fake(tmp_path, mode="quiet", FAKE_TF_BREAK="1")
    assert res.returncode == 1
    assert "Could not find cuda drivers" in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("ImportError: libtensorflow_framework")


def test_only_verbose_leaves_tensorflow_alone(small_toy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    quiet.remove_hook()  # an earlier CLI call in this process may have installed it
    for name in (*quiet.LOG_LEVEL_VARIABLES, quiet.INHERIT_VARIABLE):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    monkeypatch.delitem(sys.modules, quiet.QUIET_MODULE, raising=False)
    run = small_toy.parent / "runs"
    res = CliRunner().invoke(main, ["-v", "submit", str(small_toy), "train", "--time", "1h", "--dry-run"])
    one_line_error(res)
    assert not quiet.hook_installed() and "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    res = CliRunner().invoke(main, ["-q", "submit", str(small_toy), "train", "--time", "1h", "--dry-run"])
    one_line_error(res)
    assert quiet.hook_installed() and os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    assert "TF_ENABLE_ONEDNN_OPTS" not in os.environ  # it changes numerics: never ours to set
    assert not run.exists() and leftovers(small_toy.parent) == []


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A tiny toy, generated and ingested in this process (neither needs TensorFlow)."""
    tmp = tmp_path_factory.mktemp("quiet")
    config = write_config(tmp / "c.yaml", toy_config(tmp, epochs=1, signal_events=300,
                                                     background_events=2000))
    finders, environ = list(sys.meta_path), dict(os.environ)
    for verb in ("generate", "ingest"):
        res = CliRunner().invoke(main, ["-q", verb, str(config)])
        assert res.exit_code == 0, res.output
    sys.meta_path[:] = finders  # the CLI's quiet set-up is for its own process only
    os.environ.clear()
    os.environ.update(environ)
    yield config


def _train(config: Path, *flags: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in (*quiet.LOG_LEVEL_VARIABLES, quiet.INHERIT_VARIABLE)}
    return subprocess.run([*PNN, *flags, "train", str(config)], capture_output=True, text=True,
                          env=env, check=False)


def test_train_is_silent_with_q_and_logs_only_pnn_lines_by_default(ingested: Path) -> None:
    events = ingested.parent / "runs" / "small" / "events.parquet"
    before = (snapshot(ingested.parent / "ntuples"), events.read_bytes())
    res = _train(ingested, "-q")
    assert res.returncode == 0, res.stderr
    # one epoch never converges: -q keeps exactly that warning, one line per fold
    lines = res.stderr.splitlines()
    assert len(lines) == 2 and all(LOG_LINE.match(ln) and "has not converged" in ln
                                   for ln in lines), res.stderr
    res = _train(ingested)
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    assert lines and all(LOG_LINE.match(ln) for ln in lines), res.stderr
    assert any("epoch 1/1" in ln for ln in lines)
    assert (snapshot(ingested.parent / "ntuples"), events.read_bytes()) == before
    assert leftovers(ingested.parent) == []


def test_a_user_error_after_tensorflow_loaded_is_still_one_line(ingested: Path) -> None:
    """An impossible fold is refused after the heavy imports: only pnn's line reaches stderr."""
    model = ingested.parent / "runs" / "small" / "model"
    before = snapshot(model)
    res = subprocess.run([*PNN, "train", str(ingested), "--fold", "7"], capture_output=True,
                         text=True, check=False)
    assert res.returncode == 2
    assert len(res.stderr.splitlines()) == 1 and res.stderr.startswith("pnn: error: "), res.stderr
    assert "fold 7" in res.stderr
    assert snapshot(model) == before and leftovers(ingested.parent) == []
