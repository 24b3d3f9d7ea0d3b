"""The make targets form a file-based pipeline: a finished run is up to date, a config edit
reruns what depends on it, and evaluate-<mass> evaluates one mass."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import toy_config, write_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_pipeline_is_incremental(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", toy_config(tmp_path, epochs=2))
    stamp = tmp_path / "installed"
    stamp.touch()
    pnn = Path(sys.executable).with_name("pnn")
    args = ["make", "-C", str(ROOT), f"CONFIG={cfg}", f"PNN={pnn}", f"INSTALLED={stamp}"]

    def make(*targets: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([*args, *targets], capture_output=True, text=True, check=check)

    run = tmp_path / "runs" / "small"
    make("report")
    assert (run / "summary.json").is_file()
    assert (tmp_path / "ntuples" / "toy.json").is_file()
    assert make("-q", "report", check=False).returncode == 0  # nothing left to do
    assert "pnn" not in make("-n", "report").stdout

    before = (run / "evaluate" / "m1000" / "metrics.json").stat().st_mtime
    out = make("evaluate-1000").stdout
    assert "--point" not in out  # already evaluated: nothing to do
    time.sleep(1.1)
    os.utime(cfg)  # an edited config
    plan = make("-n", "report").stdout
    assert all(verb in plan for verb in ("generate", "ingest", "train", "inspect", "evaluate", "report"))
    assert make("-n", "evaluate-1000").stdout.count("--point m1000") == 1
    assert (run / "evaluate" / "m1000" / "metrics.json").stat().st_mtime == before


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_submit_and_status_pass_stage_and_scheduler(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", toy_config(tmp_path))
    stamp = tmp_path / "installed"
    stamp.touch()
    args = ["make", "-n", "-C", str(ROOT), f"CONFIG={cfg}", f"INSTALLED={stamp}", "PNN=pnn"]
    out = subprocess.run([*args, "submit", "STAGE=train", "SCHEDULER=slurm", "ARGS=--dry-run"],
                         capture_output=True, text=True, check=True).stdout
    assert f"pnn submit {cfg} train --scheduler slurm --dry-run" in out
    out = subprocess.run([*args, "status", "STAGE=evaluate"], capture_output=True, text=True,
                         check=True).stdout
    assert f"pnn status {cfg} evaluate" in out


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_tune_passes_the_workers(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", toy_config(tmp_path))
    stamp = tmp_path / "installed"
    stamp.touch()
    args = ["make", "-n", "-B", "-C", str(ROOT), f"CONFIG={cfg}", f"INSTALLED={stamp}", "PNN=pnn"]
    out = subprocess.run([*args, "tune", "WORKERS=3"], capture_output=True, text=True, check=True).stdout
    assert f"pnn tune {cfg} --workers 3" in out
    out = subprocess.run([*args, "tune"], capture_output=True, text=True, check=True).stdout
    assert f"pnn tune {cfg}" in [line.strip() for line in out.splitlines()]
