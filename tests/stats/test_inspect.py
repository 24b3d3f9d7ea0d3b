"""Input diagnostics: separation, weighted correlations, binning, and the stage's outputs."""

import json

import numpy as np
import pytest

from pnn.stats import inspect


def test_separation_is_zero_for_equal_and_one_for_disjoint_shapes() -> None:
    assert inspect.separation([1, 2, 3], [2, 4, 6]) == pytest.approx(0.0)
    assert inspect.separation([5, 5, 0, 0], [0, 0, 1, 3]) == pytest.approx(1.0)
    # 1/2 * ((0.5 - 1)^2 / 1.5 + (0.5 - 0)^2 / 0.5) = 1/2 * (1/6 + 1/2) = 1/3
    assert inspect.separation([0.5, 0.5], [1.0, 0.0]) == pytest.approx(1 / 3)
    assert np.isnan(inspect.separation([0, 0], [1, 1]))


def test_weighted_correlation_matches_numpy_and_uses_the_weights() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=2000)
    X = np.column_stack([x, 0.6 * x + 0.8 * rng.normal(size=2000), rng.normal(size=2000)])
    np.testing.assert_allclose(inspect.weighted_correlation(X, np.ones(2000)),
                               np.corrcoef(X, rowvar=False), atol=1e-12)
    w = rng.integers(1, 4, 2000)
    np.testing.assert_allclose(inspect.weighted_correlation(X, w.astype(float)),
                               np.corrcoef(np.repeat(X, w, axis=0), rowvar=False), atol=1e-12)


def test_edges_give_integer_features_one_bin_per_value() -> None:
    np.testing.assert_allclose(inspect.edges_of(np.array([0.0, 1, 2, 2, 3])),
                               [-0.5, 0.5, 1.5, 2.5, 3.5])
    edges = inspect.edges_of(np.random.default_rng(2).normal(size=5000))
    assert len(edges) == inspect.BINS + 1 and edges[0] < -2.5 and edges[-1] > 2.5


def test_inspect_writes_plots_tables_and_provenance(toy_events) -> None:
    cfg, _ = toy_events
    res = inspect.inspect(cfg)
    out = cfg.run_dir / "inputs"
    manifest = json.loads((out / "inputs.json").read_text())
    assert manifest["provenance"]["stage"] == "inspect"
    assert manifest["scaled_by"] is None and manifest["data"] == "none"  # no model, no data yet
    for f in cfg.features:
        assert (out / f"{f}.png").stat().st_size > 10_000
    assert (out / "correlation_signal.png").is_file() and (out / "correlation_background.png").is_file()
    sep = res.separation.set_index(["feature", "mass"])["separation"]
    assert set(sep.index.get_level_values("mass")) == {500.0, 750.0, 1000.0, 1500.0}
    # the four-body mass separates a 1500 GeV resonance far better than a 500 GeV one
    assert sep["FourBodyMass", 1500.0] > sep["FourBodyMass", 500.0]
    assert ((sep >= 0) & (sep <= 1)).all()
    inspect.require_inputs(cfg)
    assert not list(out.glob(".*tmp*"))
