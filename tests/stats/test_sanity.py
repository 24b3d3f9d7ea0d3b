"""Each sanity check passes on a correct setup and fires when its fault is planted."""

import json

import numpy as np
import pandas as pd
import pytest

from pnn.core.config import load_config
from pnn.io import ingest
from pnn.io.ingest import events_identity
from pnn.learn.preprocess import PointPrior
from pnn.learn.train import training_events
from pnn.stats import evaluate, report, sanity
from tests.conftest import echo_models, plant_model, toy_config, write_config


def test_mass_leak_passes_when_background_masses_follow_the_signal(toy_events) -> None:
    cfg, events = toy_events
    check = sanity.mass_leak(cfg, training_events(cfg, events), 0.02)
    assert check.passed and abs(check.value - 0.5) < 0.02 and check.warning == ""


def test_mass_leak_fires_for_background_masses_fixed_at_zero(toy_events, monkeypatch) -> None:
    cfg, events = toy_events
    monkeypatch.setattr(PointPrior, "draw", lambda self, rng, n: np.zeros((n, 1)))
    check = sanity.mass_leak(cfg, training_events(cfg, events), 0.02)
    assert not check.passed and check.value > 0.99
    assert "mass leak" in check.warning


def test_mass_leak_fires_for_continuous_background_masses(toy_events, monkeypatch) -> None:
    cfg, events = toy_events
    monkeypatch.setattr(PointPrior, "draw", lambda self, rng, n: rng.uniform(
        self.masses.min(), self.masses.max(), (n, 1)))
    check = sanity.mass_leak(cfg, training_events(cfg, events), 0.02)
    assert not check.passed and check.value > 0.9


def test_ignored_mass_fires_for_a_network_blind_to_the_mass(toy_events) -> None:
    cfg, events = toy_events
    blind = evaluate.run_checks(cfg, events, echo_models(cfg.features, 0))
    assert [c.name for c in blind] == ["mass_leak", "mass_sensitivity", "shared_events", "convergence"]
    assert not blind[1].passed and "ignored mass" in blind[1].warning
    saved = json.loads(evaluate.sanity_path(cfg.run_dir).read_text())
    assert saved[1]["warning"] == blind[1].warning
    seeing = evaluate.run_checks(cfg, events, echo_models(cfg.features, -1))
    assert seeing[1].passed and seeing[1].value == pytest.approx(1.0)


def test_identical_auc_at_every_mass_is_reported() -> None:
    assert sanity.identical_auc({500.0: 0.91, 1000.0: 0.95}).passed
    one = sanity.identical_auc({500.0: 0.91})  # one mass: nothing to compare, so not passed
    assert not one.passed and "only 1 mass evaluated" in one.warning
    same = sanity.identical_auc({500.0: 0.9312, 1000.0: 0.9312, 1500.0: 0.9312})
    assert not same.passed and "0.931200 at every one of the 3 masses" in same.warning


def test_overtraining_fires_on_differing_train_and_test_scores() -> None:
    rng = np.random.default_rng(1)
    train_scores = rng.beta(8, 2, 5000)  # overtrained: training events score higher
    test_scores = rng.beta(5, 3, 5000)
    same = rng.beta(5, 3, 5000)
    ones = np.ones(5000)
    p_bad = evaluate._ks(train_scores, test_scores, ones, ones)
    p_good = evaluate._ks(same, test_scores, ones, ones)
    assert sanity.overtraining({"signal": p_good}, 0.01) == []
    warned = sanity.overtraining({"signal": p_bad}, 0.01)
    assert len(warned) == 1 and "KS p-value" in warned[0]


def test_statistics_fire_for_thin_samples(tmp_path) -> None:
    from pnn.io import toy

    cfg_dict = toy_config(tmp_path, signal_events=60)
    g = cfg_dict["generate"]
    toy.write(g["output"], g["masses"] + g["offgrid_masses"], g["signal_events"],
              g["background_events"], 140.0, cfg_dict["seed"])
    cfg = load_config(write_config(tmp_path / "c.yaml", cfg_dict))
    ingest.ingest(cfg)
    events, _ = ingest.load_events(cfg)
    res = evaluate.evaluate_mass(cfg, events, echo_models(cfg.features, 0), 1000.0, True)
    assert any("only 60 signal MC events" in w for w in res.warnings)


def test_effective_events_of_weights() -> None:
    assert sanity.effective_events(np.ones(100)) == pytest.approx(100)
    assert sanity.effective_events(np.r_[np.ones(99), 1000.0]) < 2
    w = np.r_[np.ones(50), -np.ones(49)]
    warned = sanity.statistics(np.r_[np.ones(200), np.zeros(99)], np.r_[np.ones(200), w], 50,
                               min_signal_events=100, min_effective_events=25,
                               min_background_events=20)
    assert any("background weights are worth only" in x for x in warned)


def test_report_prints_the_sanity_warnings(toy_events) -> None:
    cfg, events = toy_events
    inputs = plant_model(cfg, events_identity(cfg))
    evaluate.run_checks(cfg, events, echo_models(cfg.features, 0))
    evaluate.evaluate_mass(cfg, events, echo_models(cfg.features, 0), 1000.0, True, inputs)
    rep = report.report(cfg)
    assert any("ignored mass" in w for w in rep.warnings)


def test_a_nan_value_never_passes() -> None:
    check = sanity.Check("anything", float("nan"), True)
    assert not check.passed and "could not be computed" in check.warning
    assert sanity.Check("anything", 0.3, True).passed


def test_one_trained_mass_is_a_warning() -> None:
    check = sanity.mass_sensitivity({500.0: np.array([0.1, 0.9])})
    assert not check.passed and "trained on one mass only" in check.warning
    assert not sanity.single_mass([500.0, 500.0]).passed
    assert sanity.single_mass([500.0, 1000.0]).passed


def test_null_auc_error_is_the_hanley_mcneil_value_at_one_half() -> None:
    assert sanity.null_auc_error(100, 100) == pytest.approx(np.sqrt(201 / 120000))
    assert np.isnan(sanity.null_auc_error(0, 100))


def test_mass_leak_tolerance_grows_for_small_samples(toy_events) -> None:
    cfg, events = toy_events
    small = training_events(cfg, events).sample(400, random_state=3)
    check = sanity.mass_leak(cfg, small, 0.02)
    assert check.tolerance > 0.02 and check.passed
    big = sanity.mass_leak(cfg, training_events(cfg, events), 0.02)
    assert big.tolerance == pytest.approx(0.02) or big.tolerance < check.tolerance


def test_shared_events_pass_for_separate_samples(toy_events) -> None:
    cfg, events = toy_events
    check = sanity.shared_events(cfg, events)
    assert check.passed and check.value == 0


def _history(val_loss) -> pd.DataFrame:
    return pd.DataFrame({"epoch": np.arange(1, len(val_loss) + 1), "val_loss": val_loss})


def test_convergence_warns_for_a_fold_whose_best_epoch_is_its_last() -> None:
    folds = [{"fold": 0, "epochs_run": 40, "best_epoch": 28},
             {"fold": 1, "epochs_run": 100, "best_epoch": 100}]
    check = sanity.convergence(folds, 100)
    assert not check.passed and check.value == 1
    assert "fold 1: best epoch 100 is the last one" in check.warning
    assert "fold 0" not in check.warning


def test_convergence_warns_when_the_loss_still_falls_at_the_last_epoch() -> None:
    rng = np.random.default_rng(1)
    falling = 0.2 * np.exp(-np.arange(100) / 60) + rng.normal(0, 1e-5, 100)
    flat = 0.1 + rng.normal(0, 1e-4, 100)
    falling[-1] = falling[-2] + 1e-6  # the best is not the last epoch, but the trend is down
    folds = [{"fold": 0, "epochs_run": 100, "best_epoch": 99},
             {"fold": 1, "epochs_run": 100, "best_epoch": 90}]
    check = sanity.convergence(folds, 100, {0: _history(falling), 1: _history(flat)})
    assert check.value == 1 and "fold 0: ran all 100 epochs with the validation loss still falling" \
        in check.warning
    stopped = sanity.convergence([{"fold": 0, "epochs_run": 60, "best_epoch": 40}], 100,
                                 {0: _history(falling[:60])})
    assert stopped.passed and stopped.warning == ""
