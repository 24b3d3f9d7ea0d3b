import json

import numpy as np
import pandas as pd
import pytest

from pnn.learn import train as pnn_train
from pnn.learn.preprocess import InputScaler, PointPrior, folds


def test_off_grid_signal_never_enters_training(toy_events) -> None:
    cfg, events = toy_events
    used = pnn_train.training_events(cfg, events)
    assert 750 not in set(used.loc[used.label == 1, "mass"])
    assert (used.label == 0).sum() == (events.label == 0).sum()


def test_fold_split_uses_only_other_folds(toy_events) -> None:
    cfg, events = toy_events
    events = pnn_train.training_events(cfg, events)
    train, val = pnn_train.split_fold(cfg, events, 0)
    in_fold1 = events[folds(events.event_number.to_numpy(), 2) == 1]
    positive = in_fold1[in_fold1.weight > 0]
    assert len(train) + len(val) == len(positive)  # negative weights dropped by default
    assert 0.15 < len(val) / (len(train) + len(val)) < 0.25
    assert np.all(train.w > 0) and np.all(val.w > 0)
    sig = train.y == 1
    totals = [train.w[sig & (train.mass[:, 0] == m)].sum()
              + val.w[(val.y == 1) & (val.mass[:, 0] == m)].sum() for m in (500, 1000, 1500)]
    assert totals == pytest.approx([totals[0]] * 3, rel=1e-6)


def test_background_masses_are_redrawn_every_epoch(toy_events) -> None:
    from pnn.learn import model as pnn_model

    cfg, events = toy_events
    train, _ = pnn_train.split_fold(cfg, pnn_train.training_events(cfg, events), 0)
    sig = train.y == 1
    prior = PointPrior.from_signal(train.mass[sig], train.w[sig])
    scaler = InputScaler.fit(cfg.features, train.X, prior.points)
    x = scaler.transform(train.X, np.where(sig[:, None], train.mass, 500.0))
    bkg = np.flatnonzero(~sig)
    net = pnn_model.build_model(x.shape[1], [8], "relu", seed=0)
    pnn_model.compile_model(net, cfg.training)
    rng = np.random.default_rng(0)
    pnn_train.run_epoch(net, x, train.y, train.w, bkg, prior, scaler, rng, 1024, 0)
    first = x[bkg, -1].copy()
    pnn_train.run_epoch(net, x, train.y, train.w, bkg, prior, scaler, rng, 1024, 1)
    second = x[bkg, -1]
    assert set(np.round(first, 6)) == {0.0, 0.5, 1.0}  # the scaled trained masses only
    assert 0.5 < np.mean(first != second) < 0.8  # about 2/3 change with three masses
    assert np.array_equal(x[sig, -1], scaler.scale_mass(train.mass[sig, 0]).astype(np.float32))


def test_repeated_event_numbers_within_a_sample_are_reported(toy_events, caplog) -> None:
    _, events = toy_events
    assert pnn_train.warn_repeated_event_numbers(events, "EventNumber") == 0
    doubled = events.copy()
    doubled.loc[doubled.index[:5], "event_number"] = doubled["event_number"].iloc[5]
    with caplog.at_level("WARNING"):
        assert pnn_train.warn_repeated_event_numbers(doubled, "EventNumber") == 5
    assert "repeat an event number" in caplog.text


def test_early_stop_counts_only_falls_larger_than_min_delta() -> None:
    stop = pnn_train.EarlyStop(min_delta=0.01)
    assert stop.update(1, 1.0)
    assert not stop.update(2, 0.995)  # 0.5 % lower: noise at the floor, not an improvement
    assert stop.best_epoch == 1 and stop.best_loss == 1.0
    assert stop.update(3, 0.98)
    assert not stop.update(4, float("nan"))
    assert (stop.best_epoch, stop.best_loss) == (3, 0.98)


def test_plateau_schedule_lowers_the_rate_and_stops_early(toy_events, tmp_path) -> None:
    cfg, events = toy_events
    training = cfg.training.model_copy(update={
        "schedule": "plateau", "learning_rate": 0.05, "plateau_patience": 1, "plateau_factor": 0.5,
        "patience": 3, "epochs": 60, "min_delta": 0.01, "layers": [8], "batch_size": 512})
    cfg = cfg.model_copy(update={"training": training})
    res = pnn_train.train_fold(cfg, pnn_train.training_events(cfg, events), 0, tmp_path)
    hist = pd.read_csv(tmp_path / "fold0.history.csv")
    assert res.epochs_run < 60  # a 1 % improvement cannot go on for 60 epochs
    assert res.epochs_run - res.best_epoch == 3
    rates = hist["learning_rate"].to_numpy()
    assert rates[0] == pytest.approx(0.05)
    assert np.all(np.diff(rates) <= 0) and rates[-1] < rates[0]
    assert set(np.round(rates / 0.05, 6)) <= {0.5 ** i for i in range(20)}  # halvings only


def test_inverse_time_schedule_records_the_decaying_rate(toy_events, tmp_path) -> None:
    cfg, events = toy_events
    training = cfg.training.model_copy(update={"epochs": 2, "layers": [8], "decay": 0.01,
                                              "schedule": "inverse_time"})
    cfg = cfg.model_copy(update={"training": training})
    pnn_train.train_fold(cfg, pnn_train.training_events(cfg, events), 0, tmp_path)
    rates = pd.read_csv(tmp_path / "fold0.history.csv")["learning_rate"].to_numpy()
    steps = np.ceil(len(pnn_train.split_fold(cfg, pnn_train.training_events(cfg, events), 0)[0])
                    / training.batch_size)
    assert rates[0] == pytest.approx(training.learning_rate)
    assert rates[1] == pytest.approx(training.learning_rate / (1 + 0.01 * steps), rel=1e-5)


def test_a_diverging_fold_goes_back_to_its_best_weights_at_a_lower_rate(toy_events, tmp_path,
                                                                       caplog) -> None:
    cfg, events = toy_events
    training = cfg.training.model_copy(update={
        "schedule": "plateau", "learning_rate": 1.0e6, "momentum": 0.99, "plateau_factor": 0.01,
        "patience": 30, "epochs": 8, "layers": [8], "batch_size": 256})
    cfg = cfg.model_copy(update={"training": training})
    with caplog.at_level("WARNING"):
        res = pnn_train.train_fold(cfg, pnn_train.training_events(cfg, events), 0, tmp_path)
    assert "training diverged" in caplog.text
    hist = pd.read_csv(tmp_path / "fold0.history.csv")
    assert not np.isfinite(hist["val_loss"]).all()  # it did diverge
    rates = hist["learning_rate"].to_numpy()
    assert rates[-1] < rates[0]  # each restart lowered the rate
    assert np.isfinite(res.best_val_loss)
    import keras

    model = keras.saving.load_model(tmp_path / "fold0.keras", compile=False)
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_folds_trained_in_parallel_processes_match_one_after_the_other(toy_events,
                                                                       tmp_path) -> None:
    """jobs=2 trains the folds in two worker processes; each publishes its own record, and
    the networks are the ones the folds give when trained in turn."""
    import keras

    cfg, events = toy_events
    training = cfg.training.model_copy(update={"epochs": 2, "layers": [8]})
    cfg = cfg.model_copy(update={"training": training})
    both = pnn_train.train(cfg, events, out_dir=tmp_path / "parallel", jobs=2, events_id="t")
    pnn_train.train(cfg, events, out_dir=tmp_path / "serial", jobs=1, events_id="t")
    assert [f.fold for f in both.folds] == [0, 1]
    meta = json.loads((tmp_path / "parallel" / "metadata.json").read_text())
    assert [r["fold"] for r in meta["fold_results"]] == [0, 1]
    assert not list((tmp_path / "parallel").glob(".staging*"))
    for fold in (0, 1):
        a = keras.saving.load_model(tmp_path / "parallel" / f"fold{fold}.keras").get_weights()
        b = keras.saving.load_model(tmp_path / "serial" / f"fold{fold}.keras").get_weights()
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
