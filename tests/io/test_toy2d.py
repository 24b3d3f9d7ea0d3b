"""The two-parameter toy's closed-form densities must match what the generator draws."""

import json
import re

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats
from scipy.spatial import Delaunay
from scipy.stats import qmc

from pnn.core.errors import PnnError
from pnn.io import toy, toy2d
from pnn.stats import metrics

POINTS = [(750.0, 200.0), (1000.0, 350.0)]
LUMI = 140.0


@pytest.fixture(scope="module")
def sample():
    return toy2d.generate(POINTS, 20_000, 150_000, LUMI, seed=3)


@pytest.fixture(scope="module")
def background(sample):
    return pd.concat([pd.DataFrame(t) for t in sample[1].values()], ignore_index=True)


def _events(M4, M2, pt, ht, btag) -> dict:
    return {"FourBodyMass": M4, "TwoBodyMass": M2, "LeadPt": pt, "HT": ht,
            "Btag": np.full(len(M4), btag)}


def _box_integral(logpdf, lo, hi, ratio: bool, n: int = 2**17) -> float:
    """Integral of exp(logpdf) over (M4, M2, pT, HT), summed over Btag: a Sobol average
    over a box in (M4, M2 or M2 / M4, u = pT / M4, R = HT - pT), with the Jacobian."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    M4, b, u, r = (lo + (hi - lo) * qmc.Sobol(4, seed=1).random(n)).T
    M2 = b * M4 if ratio else b
    jacobian = M4 * (M4 if ratio else 1.0)
    total = sum(np.mean(np.exp(logpdf(_events(M4, M2, u * M4, u * M4 + r, k))) * jacobian)
                for k in range(3))
    return float(total * np.prod(hi - lo))


@pytest.mark.parametrize("point", [(500.0, 90.0), (1500.0, 800.0)])
def test_signal_density_integrates_to_one(point) -> None:
    mX, mY = point
    lo = [mX * (1 - 7 * toy2d.M4_RESOLUTION), mY * (1 - 7 * toy2d.M2_RESOLUTION), 0, 0]
    hi = [mX * (1 + 7 * toy2d.M4_RESOLUTION), mY * (1 + 7 * toy2d.M2_RESOLUTION), 1, 3 * mX]
    total = _box_integral(lambda e: toy2d.signal_logpdf(e, point), lo, hi, ratio=False)
    assert total == pytest.approx(1.0, abs=0.005)


def test_signal_density_is_what_is_drawn(sample) -> None:
    """The share of signal events in windows of (M4, M2, pT / M4, HT - pT) equals the
    density's integral there."""
    signal, _ = sample
    for mX, mY in POINTS:
        t = signal[toy2d.signal_tree_name((mX, mY))]
        u = t["LeadPt"] / t["FourBodyMass"]
        r = t["HT"] - t["LeadPt"]
        for half4, half2, u_hi, r_hi in ((0.05, 0.05, 1, 3), (0.12, 0.02, 1, 3),
                                         (0.3, 0.3, 0.3, 0.2), (0.3, 0.3, 1, 0.5)):
            lo = [mX * (1 - half4), mY * (1 - half2), 0, 0]
            hi = [mX * (1 + half4), mY * (1 + half2), u_hi, r_hi * mX]
            inside = ((np.abs(t["FourBodyMass"] / mX - 1) < half4)
                      & (np.abs(t["TwoBodyMass"] / mY - 1) < half2)
                      & (u < u_hi) & (r < r_hi * mX)).mean()
            expect = _box_integral(lambda e, p=(mX, mY): toy2d.signal_logpdf(e, p), lo, hi,
                                   ratio=False, n=2**14)
            assert inside == pytest.approx(expect, abs=4 * np.sqrt(expect * (1 - expect) / 20_000))


def test_background_density_integrates_to_one() -> None:
    total = _box_integral(toy2d.background_logpdf, [0, 0, 0, 0], [4000, 3, 1, 1500], ratio=True)
    assert total == pytest.approx(1.0, abs=0.01)


def test_signal_samples_have_the_stated_moments(sample) -> None:
    signal, _ = sample
    n = 20_000
    for mX, mY in POINTS:
        t = signal[toy2d.signal_tree_name((mX, mY))]
        for branch, mean, width in (("FourBodyMass", mX, toy2d.M4_RESOLUTION * mX),
                                    ("TwoBodyMass", mY, toy2d.M2_RESOLUTION * mY)):
            x = t[branch].astype(np.float64)
            assert x.mean() == pytest.approx(mean, abs=5 * width / np.sqrt(n))
            assert x.std() == pytest.approx(width, abs=5 * width / np.sqrt(2 * n))
        assert np.corrcoef(t["FourBodyMass"], t["TwoBodyMass"])[0, 1] == pytest.approx(0, abs=0.04)
        u = t["LeadPt"] / t["FourBodyMass"]
        assert u.mean() == pytest.approx(stats.beta.mean(*toy2d.SIGNAL_U), abs=0.003)
        r = (t["HT"] - t["LeadPt"]).astype(np.float64)
        assert r.mean() == pytest.approx(3 * 0.12 * mX, rel=0.02)
        frac = np.bincount(t["Btag"], minlength=3) / n
        np.testing.assert_allclose(frac, toy2d.SIGNAL_BTAG, atol=0.015)
        assert t["weight"].sum() == pytest.approx(toy2d.signal_xsec_fb((mX, mY)) * LUMI)


def test_sliced_background_reproduces_the_unsliced_density(sample) -> None:
    _, background = sample
    for proc in toy2d.BACKGROUNDS:
        t = background[proc.name]
        M4, M2, w = (t[k].astype(np.float64) for k in ("FourBodyMass", "TwoBodyMass", "weight"))
        assert w.sum() == pytest.approx(proc.xsec_fb * LUMI)
        k, theta = proc.mass
        a, c = proc.pair
        # weighted CDF of M4 and of M2 / M4 against the closed forms, at once
        for x, cdf in ((M4, stats.gamma(k, scale=theta).cdf), (M2 / M4, stats.gamma(a, scale=c).cdf)):
            edges = np.quantile(x, np.linspace(0.02, 0.98, 25))
            ecdf = np.array([w[x <= e].sum() for e in edges]) / w.sum()
            np.testing.assert_allclose(ecdf, cdf(edges), atol=0.012)
        assert np.average(M4, weights=w) == pytest.approx(k * theta, rel=0.02)
        assert np.average(M2, weights=w) == pytest.approx(a * c * k * theta, rel=0.03)
        # while the unweighted MC fills the tail: 30 % of the events above 1.1 TeV
        assert (M4 > 1100).mean() == pytest.approx(0.3, abs=0.01)
        assert (M4 > 1100).mean() > 10 * stats.gamma.sf(1100, k, scale=theta)
        assert (w < 0).mean() == pytest.approx(proc.negative_fraction, abs=0.005)
    assert 0.02 < (background["ttbar"]["weight"] < 0).mean() < 0.04


def test_background_density_is_what_is_drawn(background) -> None:
    """The weighted share of background in windows of (M4, M2 / M4) equals the density's
    integral there (pT and HT integrated out)."""
    m4 = background["FourBodyMass"].to_numpy(float)
    v = background["TwoBodyMass"].to_numpy(float) / m4
    w = background["weight"].to_numpy()
    for lo4, hi4, lo_v, hi_v in ((300, 600, 0.0, 0.15), (600, 1200, 0.5, 1.5), (1200, 2500, 0.1, 0.4)):
        inside = w[(m4 > lo4) & (m4 < hi4) & (v > lo_v) & (v < hi_v)].sum() / w.sum()
        expect = _box_integral(toy2d.background_logpdf, [lo4, lo_v, 0, 0], [hi4, hi_v, 1, 1500],
                               ratio=True, n=2**15)
        assert inside == pytest.approx(expect, rel=0.03)


def test_background_sample_is_the_density_of_the_ratio(background) -> None:
    """E_b[p_s/p_b] = 1 over the weighted background: p_b must be what was drawn."""
    w = background["weight"].to_numpy()
    for point in ((500.0, 90.0), (750.0, 200.0)):
        ratio = np.exp(toy2d.log_likelihood_ratio(background, point))
        assert np.sum(w * ratio) / w.sum() == pytest.approx(1.0, abs=0.1)


def _mass_only_llr(events: pd.DataFrame, point, use_m2: bool) -> np.ndarray:
    """Exact log-ratio of the M4 (and M2) marginals, the best use of the masses alone."""
    mX, mY = point
    M4, M2 = events["FourBodyMass"].to_numpy(float), events["TwoBodyMass"].to_numpy(float)
    sig = stats.norm.logpdf(M4, mX, toy2d.M4_RESOLUTION * mX)
    if use_m2:
        sig = sig + stats.norm.logpdf(M2, mY, toy2d.M2_RESOLUTION * mY)
    terms = [np.log(f) + stats.gamma.logpdf(M4, p.mass[0], scale=p.mass[1])
             + (stats.gamma.logpdf(M2, p.pair[0], scale=p.pair[1] * M4) if use_m2 else 0.0)
             for f, p in zip(toy2d.background_fractions(), toy2d.BACKGROUNDS, strict=True)]
    return sig - special.logsumexp(np.vstack(terms), axis=0)


def test_likelihood_ratio_is_the_best_classifier(sample, background) -> None:
    """Weighted AUCs (sklearn's roc_curve with the signed weights; roc_auc_score refuses a
    false-positive rate that steps back, which negative weights produce)."""
    signal, _ = sample
    point = (750.0, 200.0)
    sig = pd.DataFrame(signal[toy2d.signal_tree_name(point)]).drop(columns=["mX", "mY"])
    both = pd.concat([sig, background], ignore_index=True)
    label = np.r_[np.ones(len(sig)), np.zeros(len(background))]
    w = both["weight"].to_numpy()

    def auc(score):
        return metrics.roc(np.asarray(score, dtype=np.float64), label, w).auc

    best = auc(toy2d.log_likelihood_ratio(both, point))
    masses = auc(_mass_only_llr(both, point, use_m2=True))
    m4_only = auc(_mass_only_llr(both, point, use_m2=False))
    m4_window = auc(-np.abs(both["FourBodyMass"] - point[0]))
    m2_window = auc(-np.abs(both["TwoBodyMass"] - point[1]))
    assert best >= masses >= m4_only >= m4_window - 0.002
    assert best > max(m4_only, m2_window) + 0.02
    assert 0.98 < best < 0.999
    for wrong in ((750.0, 350.0), (1000.0, 200.0), (500.0, 200.0)):
        assert auc(toy2d.log_likelihood_ratio(both, wrong)) < best - 0.01


def test_likelihood_ratio_is_finite_on_generated_events(sample, background) -> None:
    signal, _ = sample
    for name, t in signal.items():
        point = toy2d.parse_tree_name(name)
        assert np.isfinite(toy2d.log_likelihood_ratio(t, point)).all()
        assert np.isfinite(toy2d.log_likelihood_ratio(background, point)).all()


def test_default_grid_and_offgrid_points() -> None:
    grid = toy2d.default_grid()
    assert len(grid) >= 16 and len(set(grid)) == len(grid)
    assert all(mY < mX - 125 for mX, mY in grid)
    offgrid = toy2d.default_offgrid()
    assert len(offgrid) >= 3
    hull = Delaunay(np.array(grid))
    assert (hull.find_simplex(np.array(offgrid)) >= 0).all()
    for mX, mY in offgrid:
        assert (mX, mY) not in grid
        assert mX not in toy2d.GRID_MX and mY not in toy2d.GRID_MY  # on no grid line
        assert mY < mX - 125
    assert (hull.find_simplex(np.array([[1500.0, 1000.0], [400.0, 90.0]])) < 0).all()


def test_tree_names_read_back() -> None:
    pattern = re.compile(r"XtoYH_mX(?P<mX>[\d.]+)_mY(?P<mY>[\d.]+)")
    assert toy2d.signal_tree_name((1000, 300)) == "XtoYH_mX1000_mY300"
    for point in [*toy2d.default_grid(), *toy2d.default_offgrid(), (812.5, 137.5)]:
        match = pattern.fullmatch(toy2d.signal_tree_name(point))
        assert (float(match["mX"]), float(match["mY"])) == point
        assert toy2d.parse_tree_name(toy2d.signal_tree_name(point)) == point
    assert toy2d.parse_tree_name("ttbar") is None


def test_points_are_checked() -> None:
    with pytest.raises(PnnError, match="0 < mY < mX"):
        toy2d.generate([(300.0, 400.0)], 10, 10, LUMI, 1)
    with pytest.raises(PnnError, match=r"0\.1 GeV"):
        toy2d.generate([(1000.0, 300.0), (1000.0, 300.01)], 10, 10, LUMI, 1)


def test_trees_are_independent_and_event_numbers_unique(sample) -> None:
    a = toy2d.generate([(750.0, 200.0)], 1000, 5000, LUMI, seed=11)
    b = toy2d.generate([(750.0, 200.0), (1000.0, 350.0)], 1000, 5000, LUMI, seed=11)
    c = toy2d.generate([(750.0, 200.0)], 1000, 5000, LUMI, seed=12)
    name = toy2d.signal_tree_name((750.0, 200.0))
    for branch in a[0][name]:
        np.testing.assert_array_equal(a[0][name][branch], b[0][name][branch])
    assert not np.array_equal(a[0][name]["TwoBodyMass"], c[0][name]["TwoBodyMass"])
    signal, background = sample
    numbers = np.concatenate([t["EventNumber"] for t in [*signal.values(), *background.values()]])
    assert numbers.dtype == np.uint64
    assert len(np.unique(numbers)) == len(numbers)
    assert abs((numbers % 2).mean() - 0.5) < 0.01


def _read(path) -> dict:
    import uproot

    with uproot.open(path) as f:
        return {k: f[k].arrays(library="np") for k in f.keys(cycle=False)}


def test_write_reads_back_and_repeats(tmp_path) -> None:
    points = [(500.0, 90.0), (1000.0, 350.0), (875.0, 275.0)]
    first = toy2d.write(tmp_path / "a", points, 300, 2000, LUMI, seed=5)
    again = toy2d.write(tmp_path / "b", points[::-1], 300, 2000, LUMI, seed=5)
    signal = _read(first["signal"])
    assert list(signal) == [toy2d.signal_tree_name(p) for p in sorted(points)]
    for name, arrays in signal.items():
        mX, mY = toy2d.parse_tree_name(name)
        assert set(arrays) == {*toy2d.BRANCHES, "EventNumber", "weight", "mX", "mY"}
        assert (arrays["mX"] == mX).all() and (arrays["mY"] == mY).all()
        assert arrays["weight"].sum() == pytest.approx(toy2d.signal_xsec_fb((mX, mY)) * LUMI)
    background = _read(first["background"])
    assert list(background) == [p.name for p in toy2d.BACKGROUNDS]
    for kind in ("signal", "background"):
        a, b = _read(first[kind]), _read(again[kind])
        assert list(a) == list(b)
        for name in a:
            for branch in a[name]:
                np.testing.assert_array_equal(a[name][branch], b[name][branch])
    manifest = json.loads((tmp_path / "a" / toy.MANIFEST).read_text())
    assert manifest["generator"] == "pnn.io.toy2d"
    assert manifest["parameters"] == ["mX", "mY"]
    assert manifest["points"] == [list(p) for p in sorted(points)]
    assert manifest["signal_trees"] == list(signal)
    assert (manifest["seed"], manifest["luminosity_fb"]) == (5, LUMI)
    assert (manifest["signal_events"], manifest["background_events"]) == (300, 2000)
    assert toy2d.is_toy2d_file(first["signal"])
    assert not toy.is_toy_file(first["signal"])  # the one-parameter toy's check stays its own
