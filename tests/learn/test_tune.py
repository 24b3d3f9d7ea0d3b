"""Hyperparameter search: the space follows the Training schema, list choices survive the
journal, the first trial is the config's own settings (once), dead workers' trials end failed,
and a local search that is interrupted with SIGTERM resumes and writes its outputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from pydantic import Field

import pnn.core.config as config_module
from pnn.cli import main
from pnn.core.config import Config, Training, Tune, load_config
from pnn.io import toy
from pnn.learn import tune
from tests.conftest import toy_config, write_config
from tests.faults.util import children_of

SPACE = {"learning_rate": {"low": 0.02, "high": 0.3, "log": True},
         "layers": {"choices": [[8], [8, 8]]}}


def _cfg(tmp_path: Path, **tune_keys) -> Config:
    raw = toy_config(tmp_path)
    raw["training"]["layers"] = [8]
    raw["tune"] = {"trials": 3, "space": SPACE, **tune_keys}
    return Config.model_validate(raw)


def test_every_training_key_is_tunable_and_new_ones_too(monkeypatch) -> None:
    for key, field in Training.model_fields.items():
        Tune(space={key: {"choices": [field.get_default()]}})

    class Later(Training):  # a training key added after this code was written
        warmup_epochs: int = Field(0, ge=0)

    monkeypatch.setattr(config_module, "Training", Later)
    monkeypatch.setattr(tune, "Training", Later)
    space = Tune(space={"warmup_epochs": {"low": 0, "high": 5}}).space
    dist = tune.distributions(space)["warmup_epochs"]
    assert (type(dist).__name__, dist.low, dist.high) == ("IntDistribution", 0, 5)
    with pytest.raises(ValueError, match="'warmup_epochs': -1 is not a valid value"):
        Tune(space={"warmup_epochs": {"low": -1, "high": 5}})


def test_list_choices_survive_the_journal_and_the_first_trial_is_enqueued_once(tmp_path) -> None:
    cfg = _cfg(tmp_path)
    study, _ = tune.open_study(cfg, "events-id", seed=1)
    tune.open_study(cfg, "events-id", seed=2)  # a second worker joins: nothing enqueued again
    assert not tune.ensure_default(cfg, study)
    (waiting,) = study.get_trials()
    assert waiting.state.name == "WAITING" and waiting.user_attrs == {tune.DEFAULT: True}

    dists = tune.distributions(cfg.tune.space)
    assert dists["layers"].choices == ("[8]", "[8, 8]")  # what Optuna's storage accepts
    first = study.ask(dists)
    assert tune.decode(cfg.tune.space, first.params) == {"learning_rate": 0.1, "layers": [8]}
    study.tell(first, 0.5)
    second = study.ask(dists)
    study.tell(second, 0.4)

    reread, _ = tune.load_study(cfg)  # from the file, as another process sees it
    values = [tune.decode(cfg.tune.space, t.params) for t in reread.get_trials()]
    assert all(isinstance(v["layers"], list) for v in values)
    assert tune.trial_config(cfg, values[1]).training.layers == values[1]["layers"]


def test_a_worker_never_reads_a_study_half_way_through_its_set_up(tmp_path) -> None:
    """Between the study's creation and its provenance another worker must wait, not call
    the journal stale (two Slurm array tasks start together)."""
    import threading

    import optuna

    cfg = _cfg(tmp_path)
    seen: list = []
    with tune._setup_lock(tune.tune_dir(cfg)):
        storage = tune._storage(tune.journal_path(cfg))
        study = optuna.create_study(storage=storage, study_name=tune.STUDY)
        reader = threading.Thread(target=lambda: seen.append(tune.load_study(cfg)))
        reader.start()
        reader.join(timeout=1.0)
        assert reader.is_alive()  # waits for the set-up to finish
        study.set_user_attr(tune.provenance.KEY,
                            tune.provenance.record(cfg, "tune", {"events": "events-id"}))
    reader.join(timeout=30)
    assert not reader.is_alive() and seen and seen[0] is not None


def test_trials_of_dead_workers_end_failed(tmp_path) -> None:
    cfg = _cfg(tmp_path, stale_after=60)
    study, storage = tune.open_study(cfg, "events-id", seed=1)
    gone = subprocess.Popen(["true"])
    gone.wait()
    dists = tune.distributions(cfg.tune.space)
    attrs = [{"host": tune.HOST, "pid": gone.pid},  # killed on this host
             {"host": tune.HOST, "pid": os.getpid(), "pid_start": tune.process_start(os.getpid()),
              "boot": tune.BOOT},
             {"host": "elsewhere", "pid": 1, "alive": time.time() - 600},  # silent for 10 min
             {"host": "elsewhere", "pid": 1, "alive": time.time()},  # reported just now
             {"host": tune.HOST, "pid": os.getpid(), "boot": "before a restart"}]
    trials = []
    for a in attrs:
        trial = study.ask(dists)
        for k, v in a.items():
            trial.set_user_attr(k, v)
        trials.append(trial.number)
    assert tune.fail_dead_trials(cfg, study, storage) == [trials[0], trials[2], trials[4]]
    states = {t.number: t.state.name for t in study.get_trials()}
    assert [states[n] for n in trials] == ["FAIL", "RUNNING", "FAIL", "RUNNING", "FAIL"]
    why = {t.number: t.user_attrs.get("failed_because") for t in study.get_trials()}
    assert f"pid {gone.pid}" in why[trials[0]] and "no epoch report" in why[trials[2]]
    assert "restarted" in why[trials[4]]
    assert tune.study_status(cfg).counts["FAIL"] == 3  # status checks too (nothing new here)


def test_best_asimov_z_is_the_best_cut_with_enough_background() -> None:
    score = np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    label = np.array([1, 0, 1, 0, 0])
    weight = np.array([4.0, 1.0, 2.0, 10.0, 10.0])

    def z(s, b):
        return np.sqrt(2 * ((s + b) * np.log(1 + s / b) - s))

    assert tune.best_asimov_z(score, label, weight, 1) == pytest.approx(z(6.0, 1.0))
    assert tune.best_asimov_z(score, label, weight, 2) == pytest.approx(z(6.0, 11.0))
    assert tune.best_asimov_z(score, label, weight, 4) == 0.0


def test_asimov_objective_reads_exactly_the_validation_share_of_fold_0(toy_events) -> None:
    from pnn.learn.preprocess import feature_matrix
    from pnn.learn.train import split_fold, training_events

    cfg, events = toy_events
    events = training_events(cfg, events)
    rows = tune.validation_rows(cfg, events)
    _, val = split_fold(cfg, events, 0)
    assert len(rows) == len(val) and len(set(rows)) == len(rows)
    np.testing.assert_array_equal(feature_matrix(events.iloc[rows], cfg.features), val.X)
    assert (events["event_number"].to_numpy()[rows] % cfg.preprocessing.folds != 0).all()


def _journal(cfg: Config) -> list:
    got = tune.load_study(cfg)
    return [] if got is None else got[0].get_trials()


@pytest.mark.slow
def test_local_search_survives_sigterm_resumes_and_writes_best_yaml(tmp_path, monkeypatch) -> None:
    raw = toy_config(tmp_path, offgrid=(), signal_events=300, background_events=3000, epochs=2)
    raw["training"]["layers"] = [8]
    raw["tune"] = {"trials": 2, "space": SPACE, "startup_trials": 1}
    g = raw["generate"]
    toy.write(g["output"], g["masses"], g["signal_events"], g["background_events"], 140.0, raw["seed"])
    path = write_config(tmp_path / "config.yaml", raw)
    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(main, ["ingest", str(path)]).exit_code == 0
    cfg = load_config(path)

    proc = subprocess.Popen([sys.executable, "-m", "pnn", "tune", str(path), "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 120
    while not any("alive" in t.user_attrs and t.state.name == "RUNNING" for t in _journal(cfg)):
        assert proc.poll() is None and time.monotonic() < end, proc.communicate()
        time.sleep(0.2)
    workers = children_of(proc.pid)
    proc.send_signal(signal.SIGTERM)  # mid-trial
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "terminated" in err, err
    end = time.monotonic() + 10
    while [p for p in workers if Path(f"/proc/{p}").exists()] and time.monotonic() < end:
        time.sleep(0.2)  # the pool's helper processes end with it
    assert not [p for p in workers if Path(f"/proc/{p}").exists()]  # no worker outlived it
    states = [t.state.name for t in _journal(cfg)]
    assert "RUNNING" not in states and "FAIL" in states, states

    res = CliRunner().invoke(main, ["tune", str(path)])  # resumes in this process
    assert res.exit_code == 0, res.output
    trials = pd.read_csv(cfg.run_dir / "tune" / "trials.csv")
    assert trials["number"].is_unique
    assert (trials["state"].isin(["COMPLETE", "PRUNED"])).sum() == 2
    assert (trials["state"] == "FAIL").sum() == states.count("FAIL")
    own = trials[trials["default"] & (trials["state"] == "COMPLETE")]
    assert len(own) == 1 and own["layers"].iloc[0] == "[8]" and own["learning_rate"].iloc[0] == 0.1
    summary = json.loads((cfg.run_dir / "tune" / "summary.json").read_text())
    assert summary["best"]["value"] <= summary["default"]["value"]
    assert summary["best"]["value"] == pytest.approx(trials["value"].min(), rel=1e-12)

    best = load_config(cfg.run_dir / "tune" / "best.yaml")
    assert best.name == "small-best" and best.output_dir == cfg.output_dir
    for key, value in summary["best"]["training"].items():
        assert getattr(best.training, key) == value
    assert best.samples.signal[0].resolved_files()  # the ntuples are found from here
    assert yaml.safe_load((cfg.run_dir / "tune" / "best.yaml").read_text())["training"]["epochs"] == 2
    for plot in ("history.png", "slices.png"):
        assert (cfg.run_dir / "tune" / plot).stat().st_size > 0

    status = CliRunner().invoke(main, ["status", str(path), "tune"])
    assert status.output.startswith("trials: 2 of 2 finished"), status.output
    again = CliRunner().invoke(main, ["tune", str(path)])  # the study is complete: nothing runs
    assert again.exit_code == 0 and len(_journal(cfg)) == len(trials)
