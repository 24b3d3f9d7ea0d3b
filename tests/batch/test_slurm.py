"""Cluster jobs on a real one-node Slurm (tests/integration/slurm_cluster.sh): training folds
and per-mass evaluation as job arrays with a collect job, a task that fails on purpose, and a
re-submission that reruns only that task. The result must equal a local run's.

Runs under CI=true (and `make test-slurm`); elsewhere it skips when no Slurm can be started.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pnn.core.config import load_config
from pnn.io import toy
from tests.conftest import toy_config, write_config

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SCRIPT = Path(__file__).resolve().parents[1] / "integration" / "slurm_cluster.sh"
PNN = [sys.executable, "-m", "pnn"]
REQUIRED = os.environ.get("CI") == "true" or os.environ.get("PNN_SLURM_INSTALL") == "1"


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """Start the one-node cluster for this module; SLURM_CONF points the clients at it."""
    state = tmp_path_factory.mktemp("slurm")
    res = subprocess.run(["bash", str(SCRIPT), "start", str(state)], capture_output=True, text=True,
                         check=False)
    if res.returncode != 0:
        why = (res.stderr.strip().splitlines() or [f"exit code {res.returncode}"])[-1]
        message = f"no Slurm cluster could be started: {why}"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    conf = res.stdout.strip().splitlines()[-1].removeprefix("SLURM_CONF=")
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf
    try:
        yield conf
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(state)], check=False)
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old


def pnn(*args: str, check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess:
    res = subprocess.run([*PNN, *args], capture_output=True, text=True, check=False, cwd=cwd)
    if check:
        assert res.returncode == 0, res.stdout + res.stderr
    return res


def wait_for_queue(timeout: float = 400) -> None:
    """Until squeue lists no job (array tasks, collect jobs)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        out = subprocess.run(["squeue", "-h"], capture_output=True, text=True, check=True).stdout
        if not out.strip():
            return
        time.sleep(1)
    pytest.fail(f"Slurm jobs still queued after {timeout} s:\n{out}")


def states(output: str) -> dict[str, str]:
    rows = [line.split() for line in output.splitlines() if line[:1].isalpha()]
    return {r[0]: r[1] for r in rows if len(r) >= 2 and r[1] in
            {"done", "running", "queued", "failed", "pending"}}


@pytest.fixture(scope="module")
def toy_runs(tmp_path_factory):
    """One small ingested toy, with two run directories: one for local jobs, one for Slurm."""
    tmp = tmp_path_factory.mktemp("cluster")
    cfg = toy_config(tmp, offgrid=(), signal_events=2000, background_events=20000, epochs=2,
                     evaluation={"masses": [500, 1500]},
                     cluster={"memory": "500M", "time": "00:10:00", "max_concurrent": 2})
    g = cfg["generate"]
    toy.write(g["output"], g["masses"], g["signal_events"], g["background_events"], 140.0, cfg["seed"])
    path = write_config(tmp / "config.yaml", cfg)
    pnn("ingest", str(path))
    run = load_config(path).run_dir
    local, slurm_out = tmp / "local", tmp / "slurm"
    for out in (local, slurm_out):
        (out / "small").mkdir(parents=True)
        for name in ("events.parquet", "events.json"):
            shutil.copy(run / name, out / "small" / name)
    return path, local, slurm_out


def test_slurm_arrays_match_local_run_and_resubmit_only_the_failed_task(slurm, toy_runs, tmp_path) -> None:
    path, local, slurm_out = toy_runs
    cfg = str(path)
    elsewhere = tmp_path  # jobs must not depend on the submitting shell's directory
    pnn("submit", cfg, "train", "--scheduler", "local", "-o", str(local))
    res = pnn("submit", cfg, "evaluate", "--scheduler", "local", "-o", str(local))
    assert "collect: done" in res.stdout
    expected = json.loads((local / "small" / "summary.json").read_text())
    assert [r["mass"] for r in expected] == [500, 1500]

    res = pnn("submit", cfg, "train", "--scheduler", "slurm", "-o", str(slurm_out), cwd=elsewhere)
    assert "submitted 2 task(s) as Slurm job array" in res.stdout
    assert "collect" not in res.stdout  # training has nothing to merge
    wait_for_queue()
    res = pnn("status", cfg, "train", "-o", str(slurm_out))
    assert states(res.stdout) == {"fold0": "done", "fold1": "done"}

    run = slurm_out / "small"
    blocker = run / "evaluate" / "m1500"  # a file where the task needs a directory: it fails
    blocker.parent.mkdir(parents=True)
    blocker.write_text("in the way\n")
    res = pnn("submit", cfg, "evaluate", "--scheduler", "slurm", "-o", str(slurm_out), cwd=elsewhere)
    assert "submitted 2 task(s)" in res.stdout and "collect job" in res.stdout
    first = pnn("status", cfg, "evaluate", "-o", str(slurm_out), check=False)
    assert set(states(first.stdout).values()) <= {"queued", "running"}, first.stdout
    again = pnn("submit", cfg, "evaluate", "--scheduler", "slurm", "-o", str(slurm_out), check=False)
    assert again.returncode == 2 and "still queued or running" in again.stderr
    wait_for_queue()

    res = pnn("status", cfg, "evaluate", "-o", str(slurm_out), check=False)
    assert res.returncode == 1, res.stdout
    got = states(res.stdout)
    assert got == {"m500": "done", "m1500": "failed", "collect": "pending"}, res.stdout
    log_path = run / "jobs" / "evaluate" / "logs" / "m1500.log"
    assert f"log {log_path}" in res.stdout
    error = res.stdout.split(f"log {log_path}")[1].splitlines()[1]
    assert "pnn: error: cannot write" in error and "evaluate/m1500" in error  # one line, the fix
    assert not (run / "summary.json").exists()  # the collect job never ran

    done_before = {m: (run / "evaluate" / m / "metrics.json").stat().st_mtime for m in ("m500",)}
    blocker.unlink()
    res = pnn("submit", cfg, "evaluate", "--scheduler", "slurm", "-o", str(slurm_out), cwd=elsewhere)
    assert "submitted 1 task(s)" in res.stdout
    assert "#SBATCH --array=1%2" in (run / "jobs" / "evaluate" / "tasks.sbatch").read_text()
    wait_for_queue()
    res = pnn("status", cfg, "evaluate", "-o", str(slurm_out))
    assert set(states(res.stdout).values()) == {"done"}
    for m, mtime in done_before.items():
        assert (run / "evaluate" / m / "metrics.json").stat().st_mtime == mtime  # not rerun
    assert json.loads((run / "summary.json").read_text()) == expected
    state = json.loads((run / "jobs" / "evaluate" / "state" / "m1500.json").read_text())
    assert state["exit_code"] == 0 and state["job_id"].endswith("_1")  # array task 1 of the rerun

    res = pnn("submit", cfg, "evaluate", "--scheduler", "slurm", "-o", str(slurm_out))
    assert "nothing to submit" in res.stdout


@pytest.fixture(scope="module")
def tune_toy(tmp_path_factory):
    """A tiny ingested toy with a tune section: each trial trains for seconds."""
    tmp = tmp_path_factory.mktemp("tune")
    cfg = toy_config(tmp, offgrid=(), signal_events=300, background_events=3000, epochs=2,
                     cluster={"memory": "500M", "time": "00:10:00"},
                     tune={"trials": 6, "startup_trials": 2,
                           "space": {"learning_rate": {"low": 0.02, "high": 0.3, "log": True},
                                     "layers": {"choices": [[8], [8, 8]]}}})
    cfg["training"]["layers"] = [8]
    g = cfg["generate"]
    toy.write(g["output"], g["masses"], g["signal_events"], g["background_events"], 140.0, cfg["seed"])
    path = write_config(tmp / "config.yaml", cfg)
    pnn("ingest", str(path))
    return path, load_config(path).run_dir


def _run_copy(events_run: Path, out: Path) -> Path:
    """A run directory under ``out`` holding only the ingested events."""
    (out / "small").mkdir(parents=True)
    for name in ("events.parquet", "events.json"):
        shutil.copy(events_run / name, out / "small" / name)
    return out / "small"


def _trials(run: Path) -> list:
    import optuna

    from pnn.learn.tune import JOURNAL, STUDY

    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(run / "tune" / JOURNAL)))
    return optuna.load_study(study_name=STUDY, storage=storage).get_trials()


def _finished(trials: list) -> int:
    return sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials)


def test_tune_workers_as_a_slurm_array_share_one_study(slurm, tune_toy, tmp_path) -> None:
    path, events_run = tune_toy
    out = tmp_path / "out"
    run = _run_copy(events_run, out)
    res = pnn("submit", str(path), "tune", "--scheduler", "slurm", "--workers", "2", "-o", str(out))
    assert "submitted 2 task(s) as Slurm job array" in res.stdout and "collect job" in res.stdout
    wait_for_queue()
    res = pnn("status", str(path), "tune", "-o", str(out))
    assert states(res.stdout) == {"worker0": "done", "worker1": "done", "collect": "done"}, res.stdout
    assert res.stdout.splitlines()[0].startswith("trials: ")

    assert [p.name for p in (run / "tune").glob("*.log")] == ["journal.log"]  # one journal
    trials = _trials(run)
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    assert 6 <= _finished(trials) <= 7  # one more at most: a worker started as another finished
    assert {t.user_attrs["worker"] for t in trials} == {0, 1}  # both workers took trials
    assert sum(bool(t.user_attrs.get("default")) for t in trials) == 1
    best = load_config(run / "tune" / "best.yaml")
    assert best.name == "small-best"
    assert len((run / "tune" / "trials.csv").read_text().splitlines()) == len(trials) + 1


def test_a_killed_tune_worker_leaves_its_trial_failed_and_a_rerun_finishes(slurm, tune_toy, tmp_path) -> None:
    import signal

    path, events_run = tune_toy
    out = tmp_path / "out"
    run = _run_copy(events_run, out)
    raw = load_config(path).model_dump(mode="json")
    raw["tune"]["trials"] = 2
    small = write_config(tmp_path / "two.yaml", raw)
    pnn("submit", str(small), "tune", "--scheduler", "slurm", "--workers", "1", "-o", str(out))
    end = time.monotonic() + 180
    while True:
        running = [t for t in (_trials(run) if (run / "tune" / "journal.log").is_file() else [])
                   if t.state.name == "RUNNING" and "alive" in t.user_attrs]
        if running:
            break
        assert time.monotonic() < end, "no trial started"
        time.sleep(0.2)
    victim = running[0]
    os.kill(victim.user_attrs["pid"], signal.SIGKILL)  # the worker dies mid-trial
    wait_for_queue()
    res = pnn("status", str(small), "tune", "-o", str(out), check=False)
    assert res.returncode == 1 and states(res.stdout)["worker0"] == "failed", res.stdout
    assert "1 failed" in res.stdout.splitlines()[0], res.stdout  # status marked the trial failed
    (killed,) = [t for t in _trials(run) if t.number == victim.number]
    assert killed.state.name == "FAIL" and "is gone" in killed.user_attrs["failed_because"]

    res = pnn("submit", str(small), "tune", "--scheduler", "slurm", "-o", str(out))
    assert "submitted 1 task(s)" in res.stdout
    wait_for_queue()
    res = pnn("status", str(small), "tune", "-o", str(out))
    assert set(states(res.stdout).values()) == {"done"}, res.stdout
    trials = _trials(run)
    assert _finished(trials) == 2 and [t.state.name for t in trials].count("FAIL") == 1
    assert any(t.user_attrs.get("default") and t.state.name == "COMPLETE" for t in trials)
    assert (run / "tune" / "best.yaml").is_file()
