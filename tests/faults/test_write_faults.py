"""Outputs that cannot be written, two writers, and stages stopped by a signal: one line, and
no good output lost, no temporary file or worker process left."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from pnn.cli import main
from pnn.core.atomic import HOST, sweep
from pnn.core.config import load_config
from pnn.core.locks import task_lock
from tests.faults.conftest import edit
from tests.faults.util import children_of, leftovers, one_line_error, snapshot


def run(*args: str):
    return CliRunner().invoke(main, [*args])


@contextlib.contextmanager
def immutable(path: Path):
    """Make ``path`` unwritable even for root (``chattr +i``)."""
    if os.geteuid() != 0:
        path.chmod(0o555)
    elif subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported on this filesystem")
    try:
        yield
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(0o755)


@contextlib.contextmanager
def tiny_disk(path: Path, size: str):
    """A tmpfs of ``size`` mounted at ``path``, to fill up."""
    path.mkdir(parents=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def test_read_only_run_directory(finished) -> None:
    cfg = load_config(finished)
    kept = snapshot(cfg.run_dir)
    with immutable(cfg.run_dir / "evaluate" / "m500"):
        msg = one_line_error(run("evaluate", str(finished), "--mass", "500"))
    assert "not writable" in msg and "m500" in msg
    assert snapshot(cfg.run_dir) == kept and leftovers(cfg.run_dir) == []


def test_read_only_output_dir_for_a_new_run(small_toy, tmp_path) -> None:
    parent = tmp_path / "locked"
    parent.mkdir()
    with immutable(parent):
        msg = one_line_error(run("ingest", str(small_toy), "-o", str(parent)))
    assert "not writable" in msg and str(parent) in msg


def test_a_full_disk_leaves_nothing_half_written(small_toy, tmp_path) -> None:
    with tiny_disk(tmp_path / "disk", "256k") as disk:
        msg = one_line_error(run("ingest", str(small_toy), "-o", str(disk)))
        assert "disk is full" in msg
        assert leftovers(disk) == [] and not list(disk.rglob("events.*"))


def test_a_second_writer_of_the_same_task_refuses(finished) -> None:
    cfg = load_config(finished)
    kept = snapshot(cfg.run_dir)
    with task_lock(cfg.run_dir, "evaluate-m500"):
        msg = one_line_error(run("evaluate", str(finished), "--mass", "500"))
    assert "'evaluate-m500'" in msg and "being written by pnn (pid" in msg
    assert snapshot(cfg.run_dir) == kept
    assert not (cfg.run_dir / ".locks").exists()  # released locks leave no file


def test_temporaries_of_dead_processes_are_swept_and_live_ones_kept(tmp_path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".fold0.tmp-{HOST}-{dead.pid}.keras"
    staging = tmp_path / f".staging-fold0.tmp-{HOST}-{dead.pid}"
    live = tmp_path / f".fold1.tmp-{HOST}-{os.getpid()}.keras"
    other_host = tmp_path / f".fold1.tmp-othernode-{dead.pid}.keras"
    for p in (stale, live, other_host):
        p.write_text("x")
    (staging / "sub").mkdir(parents=True)
    assert sorted(sweep(tmp_path)) == sorted([stale, staging])
    assert live.exists() and other_host.exists()


def test_temporaries_of_an_unreaped_dead_process_are_swept(tmp_path) -> None:
    """A zombie (dead, never reaped, as a killed command's workers may stay) holds nothing."""
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    _wait_for(lambda: not _running(zombie.pid))
    assert Path(f"/proc/{zombie.pid}").exists()  # not reaped yet
    staging = tmp_path / f".staging-fold0.tmp-{HOST}-{zombie.pid}"
    staging.mkdir()
    try:
        assert sweep(tmp_path) == [staging]
    finally:
        zombie.wait()


def _wait_for(predicate, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out waiting for the stage to start"
        time.sleep(0.1)


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _start_training(finished: Path) -> tuple[subprocess.Popen, Path]:
    edit(finished, "training", epochs=200, patience=200)
    cfg = load_config(finished)
    proc = subprocess.Popen([sys.executable, "-m", "pnn", "-q", "train", str(finished)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    model = cfg.run_dir / "model"
    _wait_for(lambda: any(model.glob(".staging-fold0.tmp-*")))
    time.sleep(1.0)  # inside an epoch
    return proc, model


@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "terminated"),
                                             (signal.SIGINT, 130, "interrupted")])
def test_a_signal_mid_training_keeps_the_old_model(finished, sig, code, word) -> None:
    cfg = load_config(finished)
    kept = snapshot(cfg.run_dir)
    proc, _ = _start_training(finished)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [f"pnn: {word}; no partial output was kept"], err
    assert snapshot(cfg.run_dir) == kept and leftovers(cfg.run_dir) == []


def test_sigkill_leftovers_are_removed_by_the_next_run(finished) -> None:
    """SIGKILL gives the command no chance to clean up: its fold workers die with it (none
    goes on writing), and the next run removes what they were staging."""
    cfg = load_config(finished)
    kept = snapshot(cfg.run_dir)
    proc, _ = _start_training(finished)
    workers = children_of(proc.pid)
    assert workers
    proc.kill()
    proc.communicate(timeout=60)
    _wait_for(lambda: not [w for w in workers if _running(w)])
    left = leftovers(cfg.run_dir)
    assert left and all(".staging-fold" in p for p in left)
    assert snapshot(cfg.run_dir) == kept  # the complete old model is untouched
    edit(finished, "training", epochs=1)
    res = run("train", str(finished), "--fold", "1")
    assert res.exit_code == 0, res.output
    assert leftovers(cfg.run_dir) == []


def test_sigterm_stops_the_study_workers(finished) -> None:
    edit(finished, "study", jobs=2)
    edit(finished, "training", epochs=200, patience=200)
    cfg = load_config(finished)
    proc = subprocess.Popen([sys.executable, "-m", "pnn", "-q", "study", "dedicated", str(finished)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    study = cfg.run_dir / "study"
    _wait_for(lambda: len(list(study.rglob(".staging-fold*.tmp-*"))) >= 1)
    workers = children_of(proc.pid)
    assert workers
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert [line for line in err.splitlines() if line.strip()] == [
        "pnn: terminated; no partial output was kept"], err
    time.sleep(0.5)
    assert [w for w in workers if _running(w)] == []
    assert leftovers(study) == []
    shutil.rmtree(study)
