"""The toy's closed-form densities must match what the generator draws."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pnn.io import ntuple, toy
from pnn.stats import metrics


@pytest.fixture(scope="module")
def sample():
    return toy.generate([500.0, 1000.0], 40_000, 200_000, 140.0, seed=3)


def test_generation_is_deterministic() -> None:
    a = toy.generate([500.0], 1000, 5000, 140.0, seed=11)
    b = toy.generate([500.0], 1000, 5000, 140.0, seed=11)
    c = toy.generate([500.0], 1000, 5000, 140.0, seed=12)
    for tree in a[1]:
        for branch in a[1][tree]:
            np.testing.assert_array_equal(a[1][tree][branch], b[1][tree][branch])
    assert not np.array_equal(a[0]["Xtohh500"]["FourBodyMass"], c[0]["Xtohh500"]["FourBodyMass"])


def test_adding_a_mass_point_leaves_other_trees_unchanged() -> None:
    a = toy.generate([500.0], 1000, 5000, 140.0, seed=11)
    b = toy.generate([500.0, 900.0], 1000, 5000, 140.0, seed=11)
    np.testing.assert_array_equal(a[0]["Xtohh500"]["sT"], b[0]["Xtohh500"]["sT"])


def test_event_numbers_unique_and_balanced(sample) -> None:
    signal, background = sample
    numbers = np.concatenate([t["EventNumber"] for t in [*signal.values(), *background.values()]])
    assert numbers.dtype == np.uint64
    assert len(np.unique(numbers)) == len(numbers)
    assert abs((numbers % 2).mean() - 0.5) < 0.01


def test_weights_are_xsec_times_lumi(sample) -> None:
    signal, background = sample
    assert signal["Xtohh500"]["weight"].sum() == pytest.approx(toy.signal_xsec_fb(500) * 140)
    for proc in toy.BACKGROUNDS:
        w = background[proc.name]["weight"]
        assert w.sum() == pytest.approx(proc.xsec_fb * 140)
        assert (w < 0).mean() == pytest.approx(proc.negative_fraction, abs=0.005)
    assert (background["ttbar"]["weight"] < 0).any()


def test_densities_are_normalised(sample) -> None:
    """E_b[p_s/p_b] = 1 (importance sampling): p_s is normalised and p_b is the density the
    background was drawn from; a wrong Jacobian or mixture fraction breaks it."""
    _, background = sample
    bkg = pd.concat([pd.DataFrame(t) for t in background.values()])
    w = bkg["weight"].to_numpy()
    ratio = np.exp(toy.log_likelihood_ratio(bkg, 500.0))
    assert np.sum(w * ratio) / w.sum() == pytest.approx(1.0, abs=0.05)


def test_background_mass_falls_smoothly(sample) -> None:
    _, background = sample
    m = np.concatenate([t["FourBodyMass"] for t in background.values()])
    w = np.concatenate([t["weight"] for t in background.values()])
    yields, _ = np.histogram(m, bins=np.arange(600, 2000, 100), weights=w)
    assert np.all(np.diff(yields) < 0) and yields[-1] > 0
    # the stitched high-mass slice keeps MC statistics in the tail
    assert (m > 1400).sum() > 0.02 * len(m)


def test_slices_are_stitched_without_a_step(sample) -> None:
    _, background = sample
    t = background["multijet"]
    m, w = t["FourBodyMass"], t["weight"]
    for edge in (700, 1100):
        below = w[(m > edge - 50) & (m < edge)].sum()
        above = w[(m > edge) & (m < edge + 50)].sum()
        expect = np.diff(stats.gamma.cdf([edge, edge + 50], 2.5, scale=150))[0] / np.diff(
            stats.gamma.cdf([edge - 50, edge], 2.5, scale=150))[0]
        assert above / below == pytest.approx(expect, rel=0.1)  # no step at the seam
    assert len(np.unique(np.round(w, 9))) == len(toy.SLICES)


def test_optimal_auc_at_500_overlaps_and_mass_matters(sample) -> None:
    signal, background = sample
    bkg = pd.concat([pd.DataFrame(t) for t in background.values()])
    sig = pd.DataFrame(signal["Xtohh500"])
    both = pd.concat([sig, bkg], ignore_index=True)
    label = np.r_[np.ones(len(sig)), np.zeros(len(bkg))]
    w = both["weight"].to_numpy()
    right = metrics.roc(toy.log_likelihood_ratio(both, 500.0), label, w).auc
    wrong = metrics.roc(toy.log_likelihood_ratio(both, 1000.0), label, w).auc
    assert 0.9 < right < 0.95
    assert wrong < right - 0.02


def test_write_produces_readable_trees(tmp_path) -> None:
    paths = toy.write(tmp_path, [500.0], 500, 2000, 140.0, seed=1)
    assert ntuple.check_tree(str(paths["signal"]), "Xtohh500", ["mass", *toy.BRANCHES]) == 500
    assert ntuple.check_tree(str(paths["background"]), "ttbar", ["EventFlavour"]) > 0
    assert toy.is_toy_file(paths["signal"])
    assert not toy.is_toy_file(tmp_path / "elsewhere" / "x.root")


def test_objects_are_consistent_with_the_flat_branches(tmp_path) -> None:
    import awkward as ak
    import uproot

    toy.write(tmp_path, [500.0, 1000.0], 400, 1500, 140.0, 5, objects=True)
    flat = toy.generate([500.0, 1000.0], 400, 1500, 140.0, 5)[0]["Xtohh500"]
    with uproot.open(tmp_path / "signal.root") as f:
        t = f["Xtohh500"]
        assert {"nJet", "Jet_pt", "Jet_eta", "Jet_phi", "Jet_btag"} <= set(t.keys())
        a = t.arrays(["nJet", "Jet_pt", "Jet_btag", "Jet0CorrTLV", "sTNoMet", "Btag"])
    np.testing.assert_array_equal(a.Jet0CorrTLV, flat["Jet0CorrTLV"])  # flat branches unchanged
    np.testing.assert_array_equal(ak.to_numpy(a.Jet_pt[:, 0]), ak.to_numpy(a.Jet0CorrTLV))
    np.testing.assert_allclose(ak.to_numpy(ak.sum(a.Jet_pt, axis=1)), ak.to_numpy(a.sTNoMet),
                               rtol=1e-4)
    np.testing.assert_array_equal(ak.to_numpy(ak.sum(a.Jet_btag > 0.5, axis=1)), ak.to_numpy(a.Btag))
    np.testing.assert_array_equal(ak.to_numpy(a.nJet), ak.to_numpy(ak.num(a.Jet_pt)))
    assert ak.min(a.nJet) >= 2
