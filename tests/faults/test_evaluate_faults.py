"""Evaluation inputs that would give a silently wrong number: one line, or a stated skip."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest
from click.testing import CliRunner

from pnn.cli import main
from pnn.core.config import load_config
from pnn.stats.metrics import roc
from tests.faults.conftest import edit
from tests.faults.util import leftovers, one_line_error, snapshot


def run(*args: str):
    return CliRunner().invoke(main, [*args])


def test_all_zero_or_negative_background_weights(finished) -> None:
    cfg = load_config(finished)
    path = cfg.run_dir / "events.parquet"
    for factor in (0.0, -1.0):
        events = pd.read_parquet(path)
        events.loc[events["label"] == 0, "weight"] = events["weight"].abs() * factor
        events.to_parquet(path)
        kept = snapshot(cfg.run_dir)
        msg = one_line_error(run("evaluate", str(finished), "--mass", "500"))
        assert "background weights sum to" in msg and "weight expression" in msg
        assert snapshot(cfg.run_dir) == kept and leftovers(cfg.run_dir) == []


def test_an_explicit_window_branch_must_exist(finished) -> None:
    cfg = load_config(finished)
    edit(finished, "evaluation", window_branch="m4l")
    kept = snapshot(cfg.run_dir)
    msg = one_line_error(run("evaluate", str(finished), "--mass", "500"))
    assert "evaluation.window_branch" in msg and "'m4l'" in msg and "null" in msg
    assert snapshot(cfg.run_dir) == kept


def test_window_branch_null_turns_the_window_off(finished) -> None:
    cfg = load_config(finished)
    edit(finished, "evaluation", window_branch=None)
    res = run("evaluate", str(finished), "--mass", "500")
    assert res.exit_code == 0, res.output
    methods = json.loads((cfg.run_dir / "evaluate" / "m500" / "metrics.json").read_text())["methods"]
    assert "window" not in methods and "pnn" in methods


def test_a_missing_default_window_branch_is_skipped_with_a_warning(finished, caplog) -> None:
    cfg = load_config(finished)
    edit(finished, "", features=["Jet0CorrTLV", "sT", "sTNoMet", "Btag"])
    raw = finished.read_text()
    for verb in ("ingest", "train"):
        assert run(verb, str(finished)).exit_code == 0
    events = pd.read_parquet(cfg.run_dir / "events.parquet")
    events.drop(columns=["FourBodyMass"]).to_parquet(cfg.run_dir / "events.parquet")
    meta = json.loads((cfg.run_dir / "events.json").read_text())
    meta["toy"] = False  # as for real ntuples, where no exact likelihood ratio exists
    (cfg.run_dir / "events.json").write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING):
        res = run("evaluate", str(finished), "--mass", "500")
    assert res.exit_code == 0, res.output
    assert "no 'FourBodyMass' in the events table: the mass-window baseline is skipped" in caplog.text
    methods = json.loads((cfg.run_dir / "evaluate" / "m500" / "metrics.json").read_text())["methods"]
    assert "window" not in methods and finished.read_text() == raw


def test_folds_that_leave_a_fold_empty_are_refused(finished) -> None:
    cfg = load_config(finished)
    edit(finished, "preprocessing", folds=10**6)
    kept = snapshot(cfg.run_dir)
    msg = one_line_error(run("train", str(finished)))
    assert "preprocessing.folds = 1000000 leaves fold" in msg and "use fewer folds" in msg
    assert snapshot(cfg.run_dir) == kept


def test_scores_file_holds_every_test_event_once_with_its_fold_model(finished) -> None:
    cfg = load_config(finished)
    scores = pd.read_parquet(cfg.run_dir / "evaluate" / "m500" / "scores.parquet")
    events = pd.read_parquet(cfg.run_dir / "events.parquet")
    expected = events[(events["label"] == 0) | ((events["label"] == 1) & (events["mass"] == 500))]
    assert len(scores) == len(expected)
    assert not scores.duplicated(["sample", "event_number"]).any()
    assert set(scores.columns) >= {"event_number", "sample", "fold", "weight", "label", "score",
                                   "window", "llr"}
    assert (scores["fold"] == scores["event_number"] % cfg.preprocessing.folds).all()
    assert scores["weight"].sum() == pytest.approx(expected["weight"].sum())
    metrics = json.loads((cfg.run_dir / "evaluate" / "m500" / "metrics.json").read_text())
    auc = roc(scores["score"].to_numpy(), scores["label"].to_numpy(), scores["weight"].to_numpy()).auc
    assert auc == pytest.approx(metrics["methods"]["pnn"]["auc"], rel=1e-12)
    z = metrics["methods"]["pnn"]
    assert z["z_bkg_uncertainty"] == z["z"]  # evaluation.background_uncertainty = 0
