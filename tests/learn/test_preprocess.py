import numpy as np
import pytest

from pnn.core.errors import PnnError
from pnn.core.points import mask
from pnn.learn.preprocess import InputScaler, PointPrior, cut_halves, folds, training_weights


def test_folds_follow_event_number_modulo_k() -> None:
    ev = np.array([0, 1, 2, 3, 4, 5, 6], dtype=np.uint64)
    assert folds(ev, 2).tolist() == [0, 1, 0, 1, 0, 1, 0]
    assert folds(ev, 3).tolist() == [0, 1, 2, 0, 1, 2, 0]


def test_cut_halves_are_independent_of_folds() -> None:
    ev = np.arange(10_000)
    f, h = folds(ev, 2), cut_halves(ev, 2)
    for i in (0, 1):
        assert h[f == i].mean() == pytest.approx(0.5, abs=0.01)


def test_training_weights_balance_masses_and_classes() -> None:
    label = np.array([1, 1, 1, 1, 0, 0, 0])
    mass = np.array([500, 500, 1000, 1000, np.nan, np.nan, np.nan])
    weight = np.array([1.0, 3.0, 0.5, 0.5, 10.0, -2.0, 5.0])
    w = training_weights(label, mass, weight, balance_signal=True, drop_negative=True)
    assert w[5] == 0.0
    assert w[:2].sum() == pytest.approx(w[2:4].sum())
    assert w[:4].sum() == pytest.approx(w[4:].sum())
    assert w[w != 0].mean() == pytest.approx(1.0)
    assert w[1] / w[0] == pytest.approx(3.0)  # shapes within a mass point are kept


def test_training_weights_can_keep_negative_and_skip_balance() -> None:
    label = np.array([1, 0, 0])
    weight = np.array([1.0, 2.0, -1.0])
    w = training_weights(label, np.array([500, np.nan, np.nan]), weight,
                         balance_signal=False, drop_negative=False)
    assert np.allclose(w / w[0], weight)


def test_mass_prior_draws_in_proportion_to_signal_weight() -> None:
    prior = PointPrior.from_signal(np.array([500.0, 500.0, 1000.0]), np.array([1.0, 1.0, 2.0]))
    assert prior.masses.tolist() == [500.0, 1000.0]
    assert prior.probabilities.tolist() == [0.5, 0.5]
    draws = prior.draw(np.random.default_rng(0), 20_000)
    assert set(np.unique(draws)) == {500.0, 1000.0}
    assert (draws == 500.0).mean() == pytest.approx(0.5, abs=0.02)
    again = prior.draw(np.random.default_rng(0), 20_000)
    assert np.array_equal(draws, again)


def test_scaler_fits_on_training_data_and_round_trips(tmp_path) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal([100.0, 5.0], [20.0, 1.0], size=(5000, 2))
    s = InputScaler.fit(["a", "b"], X, np.array([500.0, 1500.0]))
    out = s.transform(X, 1000.0)
    assert out.shape == (5000, 3) and out.dtype == np.float32
    assert np.median(out[:, 0]) == pytest.approx(0.0, abs=1e-3)
    assert np.all(out[:, 2] == 0.5)
    assert s.scale_mass(500.0) == 0.0 and s.scale_mass(1500.0) == 1.0
    s.save(tmp_path / "scaler.json")
    loaded = InputScaler.load(tmp_path / "scaler.json")
    np.testing.assert_array_equal(loaded.transform(X, 700.0), s.transform(X, 700.0))
    assert "pickle" not in (tmp_path / "scaler.json").read_text()


def test_mass_mask_tolerates_float_round_off() -> None:
    assert mask(np.array([500.0000001, 500.5, np.nan]), 500.0).tolist() == [True, False, False]


def test_model_metadata_from_before_parameters_reads_as_one_mass(tmp_path) -> None:
    import json

    from pnn.learn.metadata import ModelInfo, read_metadata

    path = tmp_path / "metadata.json"
    path.write_text(json.dumps({"folds": 2, "features": ["a"], "masses": [500.0, 1000.0]}))
    assert read_metadata(path)["masses"] == [500.0, 1000.0]
    info = ModelInfo.load_dir(tmp_path)  # without TensorFlow
    assert (info.k, info.parameters, info.trained_points) == (2, ["mass"], [(500.0,), (1000.0,)])
    path.write_text(json.dumps({"folds": 2, "features": ["a"], "parameters": ["mX", "mY"],
                                "masses": [500.0, 1000.0]}))
    with pytest.raises(PnnError, match="points of 2 finite numbers"):
        read_metadata(path)
    with pytest.raises(PnnError, match="no trained model in"):
        ModelInfo.load_dir(tmp_path / "elsewhere")
