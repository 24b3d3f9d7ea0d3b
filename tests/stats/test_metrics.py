import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from pnn.stats import metrics


def _pairwise_auc(score, label, w):
    s, b = label == 1, label == 0
    diff = score[s][:, None] - score[b][None, :]
    win = (diff > 0) + 0.5 * (diff == 0)
    ww = w[s][:, None] * w[b][None, :]
    return (win * ww).sum() / ww.sum()


def test_auc_matches_sklearn_for_positive_weights() -> None:
    rng = np.random.default_rng(0)
    label = rng.integers(0, 2, 2000)
    score = rng.normal(label * 1.0, 1.0)
    w = rng.uniform(0.5, 2.0, 2000)
    assert metrics.roc(score, label, w).auc == pytest.approx(
        roc_auc_score(label, score, sample_weight=w), abs=1e-12)


def test_auc_with_negative_weights_is_weighted_mann_whitney() -> None:
    rng = np.random.default_rng(1)
    label = rng.integers(0, 2, 600)
    score = rng.normal(label * 1.0, 1.0)
    w = rng.uniform(0.5, 2.0, 600) * np.where(rng.random(600) < 0.1, -1, 1)
    assert metrics.roc(score, label, w).auc == pytest.approx(_pairwise_auc(score, label, w), abs=1e-9)


def test_bkg_eff_at_signal_efficiency() -> None:
    score = np.arange(10.0)
    label = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    r = metrics.roc(score + label * 0, label, np.ones(10))
    assert metrics.bkg_eff_at(r, 0.8) == 0.0
    overlapping = np.array([0, 0, 1, 0, 1, 0, 1, 1, 0, 1])
    r = metrics.roc(score, overlapping, np.ones(10))
    # loosest cut reaching 4 of 5 signal events keeps the three highest backgrounds of five
    assert metrics.bkg_eff_at(r, 0.8) == pytest.approx(0.4)


def test_asimov_z_formula_and_small_signal_limit() -> None:
    assert metrics.asimov_z(10.0, 5.0) == pytest.approx(np.sqrt(2 * (15 * np.log(3) - 10)))
    assert metrics.asimov_z(1.0, 1e4) == pytest.approx(1.0 / 100, rel=1e-3)
    assert np.isnan(metrics.asimov_z(1.0, 0.0))


def test_best_cut_is_chosen_on_one_half_and_measured_on_the_other() -> None:
    # Signal at score 1, background spread over [0, 1); halves alternate.
    n = 4000
    label = np.r_[np.ones(200), np.zeros(n)]
    score = np.r_[np.ones(200), np.linspace(0, 0.999, n)]
    w = np.ones(len(label))
    half = np.arange(len(label)) % 2 == 0
    res = metrics.best_cut(score, label, w, half, min_bkg_events=20)
    # The cut must keep >= 20 background events of the 2000 in the choosing half.
    assert res.threshold <= np.sort(score[half & (label == 0)])[-20]
    assert res.threshold_other <= np.sort(score[~half & (label == 0)])[-20]
    assert res.s == pytest.approx(200)
    assert res.b == pytest.approx(2 * res.n_bkg, abs=2)
    assert res.z == pytest.approx(float(metrics.asimov_z(res.s, res.b)), rel=0.05)


def test_a_fluctuation_in_the_choosing_half_does_not_inflate_z() -> None:
    """Background-free score bins in one half lure the choice; the other half measures it."""
    rng = np.random.default_rng(5)
    n = 20_000
    label = np.r_[np.ones(n // 10), np.zeros(n)]
    score = rng.random(len(label))  # no separation at all
    w = np.r_[np.full(n // 10, 0.1), np.ones(n)]
    half = rng.random(len(label)) < 0.5
    res = metrics.best_cut(score, label, w, half, min_bkg_events=20)
    total = metrics.asimov_z(w[label == 1].sum(), w[label == 0].sum())
    biased = np.nanmax(metrics.scan(score, label, w).z[20:])
    assert res.z < biased
    assert res.z == pytest.approx(float(total), rel=0.35)


def test_best_cut_respects_min_background_events() -> None:
    label = np.r_[np.ones(100), np.zeros(100)]
    score = np.r_[np.full(100, 0.9), np.linspace(0, 1, 100)]
    half = np.arange(200) % 2 == 0
    loose = metrics.best_cut(score, label, np.ones(200), half, min_bkg_events=1)
    tight = metrics.best_cut(score, label, np.ones(200), half, min_bkg_events=40)
    assert tight.threshold < loose.threshold
    assert np.isnan(metrics.best_cut(score, label, np.ones(200), half, 1000).z)


def test_asimov_z_with_background_uncertainty() -> None:
    s, b = np.array([5.0, 20.0, 50.0]), np.array([100.0, 400.0, 25.0])
    np.testing.assert_array_equal(metrics.asimov_z_uncertain(s, b, 0.0), metrics.asimov_z(s, b))
    np.testing.assert_allclose(metrics.asimov_z_uncertain(s, b, 1e-7), metrics.asimov_z(s, b),
                               rtol=1e-5)
    z = [metrics.asimov_z_uncertain(s, b, r) for r in (0.05, 0.1, 0.3)]
    assert (z[0] < metrics.asimov_z(s, b)).all() and (z[1] < z[0]).all() and (z[2] < z[1]).all()
    # s << b with a large uncertainty: Z -> s / sqrt(b + (rel b)^2)
    np.testing.assert_allclose(metrics.asimov_z_uncertain(1.0, 1e4, 0.01), 1 / np.sqrt(1e4 + 1e4),
                               rtol=1e-3)


def _sample(n: int, seed: int, negative: float = 0.0, ties: bool = False):
    rng = np.random.default_rng(seed)
    label = (rng.random(n) < 0.2).astype(int)
    score = 1 / (1 + np.exp(-rng.normal(2.0 * label - 1, 1.0)))
    if ties:
        score = np.round(score, 3)
    w = rng.uniform(0.5, 2.0, n) * np.where(rng.random(n) < negative, -1, 1)
    return score, label, w, rng.random(n) < 0.5


def test_one_sort_gives_the_same_numbers_as_the_reference(monkeypatch) -> None:
    monkeypatch.setattr(metrics, "BLOCK", 500)  # the cut scan in many blocks
    score, label, w, half = _sample(20_000, 11, negative=0.05, ties=True)
    got = metrics.summarise(score, label, w, half, 20, bkg_uncertainty=0.1)
    ref_roc = metrics.roc(score, label, w)
    assert got.roc.auc == pytest.approx(ref_roc.auc, rel=1e-12)
    np.testing.assert_allclose(got.roc.bkg_eff, ref_roc.bkg_eff, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(got.roc.sig_eff, ref_roc.sig_eff, rtol=1e-10, atol=1e-14)
    ref_scan = metrics.scan(score, label, w)
    np.testing.assert_array_equal(got.scan.thresholds, ref_scan.thresholds)
    np.testing.assert_array_equal(got.scan.n_bkg, ref_scan.n_bkg)
    ref = metrics.best_cut(score, label, w, half, 20, bkg_uncertainty=0.1)
    assert (got.significance.threshold, got.significance.threshold_other, got.significance.n_bkg) \
        == (ref.threshold, ref.threshold_other, ref.n_bkg)
    for key in ("z", "s", "b", "s_over_sqrt_b", "z_uncertain"):
        assert getattr(got.significance, key) == pytest.approx(getattr(ref, key), rel=1e-10)
    # every background event is in one bin of one half
    assert got.bins.n_bkg.sum() == (label == 0).sum()
    assert got.bkg_eff_sig80 == pytest.approx(metrics.bkg_eff_at(ref_roc, 0.8), rel=1e-12)
    thinned = metrics.summarise(score, label, w, half, 20, bkg_uncertainty=0.1, points=200)
    assert len(thinned.roc.sig_eff) <= 200 and thinned.roc.auc == got.roc.auc
    assert thinned.significance == got.significance


def _errors(score, label, w, half, seed=1, replicates=100):
    s = metrics.summarise(score, label, w, half, 20)
    reps = metrics.bootstrap({"m": s.bins}, w, 20, replicates, np.random.default_rng(seed))["m"]
    return {k: metrics.spread(v) for k, v in reps.items()}


def test_poisson_weights_have_mean_and_variance_one() -> None:
    table = metrics.poisson_table()
    assert table.mean() == pytest.approx(1.0, abs=1e-4) and table.var() == pytest.approx(1.0, abs=1e-3)


def test_bootstrap_auc_error_matches_delong_and_shrinks_as_one_over_sqrt_n() -> None:
    from scipy.stats import rankdata

    errs = {}
    for n in (4_000, 16_000):
        score, label, _, half = _sample(n, 3)
        w = np.full(n, 4_000 / n)  # more MC for the same luminosity, as sigma x L / N
        errs[n] = _errors(score, label, w, half)
        # DeLong: the variance of the Mann-Whitney AUC from each event's placement.
        s, b = score[label == 1], score[label == 0]
        ranks = rankdata(np.r_[s, b])
        v_sig = (ranks[:len(s)] - rankdata(s)) / len(b)
        v_bkg = 1 - (ranks[len(s):] - rankdata(b)) / len(s)
        delong = np.sqrt(v_sig.var(ddof=1) / len(s) + v_bkg.var(ddof=1) / len(b))
        assert errs[n]["auc"] == pytest.approx(delong, rel=0.25)
    for key in ("auc", "z", "bkg_eff_sig80"):
        assert errs[4_000][key] / errs[16_000][key] == pytest.approx(2.0, rel=0.3)


def test_same_seed_same_errors_and_negative_weights_are_fine() -> None:
    score, label, w, half = _sample(5_000, 4, negative=0.05)
    first, again = _errors(score, label, w, half, seed=9), _errors(score, label, w, half, seed=9)
    assert first == again and all(np.isfinite(v) and v > 0 for v in first.values())
    assert _errors(score, label, w, half, seed=10)["auc"] != first["auc"]


def test_joint_resampling_makes_the_ratio_error_smaller_than_naive_propagation() -> None:
    rng = np.random.default_rng(6)
    n = 20_000
    label = (rng.random(n) < 0.1).astype(int)
    optimal = rng.normal(2.0 * label, 1.0)
    pnn = optimal + rng.normal(0, 0.05, n)  # nearly the optimum: the two Z move together
    w, half = np.ones(n), rng.random(n) < 0.5
    sums = {k: metrics.summarise(v, label, w, half, 20) for k, v in (("pnn", pnn), ("opt", optimal))}
    reps = metrics.bootstrap({k: s.bins for k, s in sums.items()}, w, 20, 100,
                             np.random.default_rng(2))
    z_p, z_o = reps["pnn"]["z"], reps["opt"]["z"]
    ratio = np.mean(z_p) / np.mean(z_o)
    naive = ratio * np.hypot(metrics.spread(z_p) / np.mean(z_p), metrics.spread(z_o) / np.mean(z_o))
    assert metrics.spread(z_p / z_o) < 0.5 * naive
