import numpy as np
import pytest

from pnn.learn import train as pnn_train
from pnn.learn.preprocess import InputScaler, MassPrior, folds


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
    totals = [train.w[sig & (train.mass == m)].sum() + val.w[(val.y == 1) & (val.mass == m)].sum()
              for m in (500, 1000, 1500)]
    assert totals == pytest.approx([totals[0]] * 3, rel=1e-6)


def test_background_masses_are_redrawn_every_epoch(toy_events) -> None:
    from pnn.learn import model as pnn_model

    cfg, events = toy_events
    train, _ = pnn_train.split_fold(cfg, pnn_train.training_events(cfg, events), 0)
    sig = train.y == 1
    prior = MassPrior.from_signal(train.mass[sig], train.w[sig])
    scaler = InputScaler.fit(cfg.features, train.X, prior.masses)
    x = scaler.transform(train.X, np.where(sig, train.mass, 500.0))
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
    assert np.array_equal(x[sig, -1], scaler.scale_mass(train.mass[sig]))


def test_repeated_event_numbers_within_a_sample_are_reported(toy_events, caplog) -> None:
    _, events = toy_events
    assert pnn_train.warn_repeated_event_numbers(events, "EventNumber") == 0
    doubled = events.copy()
    doubled.loc[doubled.index[:5], "event_number"] = doubled["event_number"].iloc[5]
    with caplog.at_level("WARNING"):
        assert pnn_train.warn_repeated_event_numbers(doubled, "EventNumber") == 5
    assert "repeat an event number" in caplog.text
