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


NOMINAL_BRANCHES = {"FourBodyMass", "Jet0CorrTLV", "sTNoMet", "sT", "Btag", "EventFlavour",
                    "EventNumber", "weight"}
OLD_MANIFEST_KEYS = ["generator", "seed", "luminosity_fb", "masses", "signal_events",
                     "background_events", "objects", "signal_trees", "background_trees"]


def _read(path, library="np"):
    import uproot

    with uproot.open(path) as f:
        return {k: f[k].arrays(library=library) for k in f.keys(cycle=False)}


def test_keys_off_write_exactly_the_nominal_samples(tmp_path) -> None:
    import json

    paths = toy.write(tmp_path, [500.0, 1000.0], 300, 1200, 140.0, 7)
    assert set(paths) == {"signal", "background"}
    assert {p.name for p in tmp_path.iterdir()} == {"signal.root", "background.root", "toy.json"}
    assert list(json.loads((tmp_path / "toy.json").read_text())) == OLD_MANIFEST_KEYS
    signal, background = toy.generate([500.0, 1000.0], 300, 1200, 140.0, 7)
    for path, expect in ((paths["signal"], signal), (paths["background"], background)):
        trees = _read(path)
        assert list(trees) == list(expect)
        for name, arrays in trees.items():
            assert set(arrays) == set(expect[name])
            assert set(arrays) - {"mass"} == NOMINAL_BRANCHES
            for branch, values in arrays.items():
                np.testing.assert_array_equal(values, expect[name][branch])


@pytest.fixture(scope="module")
def with_systematics(tmp_path_factory):
    out = tmp_path_factory.mktemp("syst")
    toy.write(out, [500.0, 1000.0], 300, 1200, 140.0, 7, objects=True, systematics=True, jes=0.03)
    return out


def test_every_tree_has_its_variations(with_systematics) -> None:
    import json

    for name, nominal in (("signal.root", ["Xtohh500", "Xtohh1000"]),
                          ("background.root", ["ttbar", "multijet"])):
        trees = _read(with_systematics / name, library="ak")
        assert set(trees) == {f"{t}{v}" for t in nominal for v in ("", "__1up", "__1down")}
    manifest = json.loads((with_systematics / "toy.json").read_text())
    assert manifest["systematics"]["jes"] == 0.03
    assert manifest["signal_trees"] == ["Xtohh500", "Xtohh1000"]
    assert "data" not in manifest


def test_variations_scale_only_energy_like_branches(with_systematics) -> None:
    import awkward as ak

    flat = toy.generate([500.0, 1000.0], 300, 1200, 140.0, 7)
    for name, generated in zip(("signal.root", "background.root"), flat, strict=True):
        trees = _read(with_systematics / name, library="ak")
        for tree in generated:
            nominal = trees[tree]
            # the nominal tree is the one written without systematics
            np.testing.assert_array_equal(ak.to_numpy(nominal.sT), generated[tree]["sT"])
            for suffix, factor in (("__1up", 1.03), ("__1down", 0.97)):
                varied = trees[tree + suffix]
                assert varied.fields == nominal.fields
                for b in ("FourBodyMass", "Jet0CorrTLV", "sTNoMet", "sT"):
                    nom = ak.to_numpy(nominal[b]).astype(np.float64)
                    got = ak.to_numpy(varied[b])
                    assert got.dtype == np.float32
                    np.testing.assert_array_equal(got, (nom * factor).astype(np.float32))
                    np.testing.assert_allclose(got / nom, factor, rtol=1e-6)
                for b in ("Btag", "EventNumber", "weight", "EventFlavour", "nJet", "Jet_eta",
                          "Jet_btag", *(["mass"] if "mass" in nominal.fields else [])):
                    assert ak.all(varied[b] == nominal[b]), b
                np.testing.assert_allclose(ak.to_numpy(ak.flatten(varied.Jet_pt)),
                                           factor * ak.to_numpy(ak.flatten(nominal.Jet_pt)),
                                           rtol=1e-6)


def test_weight_scale_on_backgrounds_only(with_systematics) -> None:
    for tree, arrays in _read(with_systematics / "signal.root").items():
        assert not {"weight_scale_up", "weight_scale_down"} & set(arrays), tree
    trees = _read(with_systematics / "background.root")
    for tree, arrays in trees.items():
        up, down = arrays["weight_scale_up"], arrays["weight_scale_down"]
        nominal_mass = trees[tree.split("__")[0]]["FourBodyMass"].astype(np.float64)
        delta = np.minimum(0.05 + 0.10 * nominal_mass / 1000.0, 0.5)
        np.testing.assert_allclose(up, 1 + delta)
        np.testing.assert_allclose(down, 1 - delta)
        assert (down > 0).all() and (up > 1).all() and (down < 1).all()
    m = trees["multijet"]["FourBodyMass"]
    up = trees["multijet"]["weight_scale_up"]
    assert up[m > 1500].min() > up[m < 500].max()  # grows into the tail


def test_bad_settings_are_refused(tmp_path) -> None:
    from pnn.core.errors import PnnError

    with pytest.raises(PnnError, match="jes"):
        toy.write(tmp_path, [500.0], 50, 100, 140.0, 1, systematics=True, jes=1.5)
    with pytest.raises(PnnError, match="inject_mass"):
        toy.write(tmp_path, [500.0], 50, 100, 140.0, 1, data=True, inject_xsec_fb=3.0)
    assert not (tmp_path / "signal.root").exists()


LUMI = 20.0


@pytest.fixture(scope="module")
def mc_background():
    _, background = toy.generate([500.0], 10, 100_000, LUMI, seed=21)
    return background


@pytest.fixture(scope="module")
def pseudo_data():
    return toy.generate_data(LUMI, seed=99)


def test_pseudo_data_count_matches_expected_yield(pseudo_data, mc_background) -> None:
    expected = sum(t["weight"].sum() for t in mc_background.values())
    assert expected == pytest.approx(toy.expected_background(LUMI))
    n = len(pseudo_data["weight"])
    assert abs(n - expected) < 5 * np.sqrt(expected)
    assert (pseudo_data["weight"] == 1.0).all()
    assert len(np.unique(pseudo_data["EventNumber"])) == n
    mc_numbers = np.concatenate([t["EventNumber"] for t in mc_background.values()])
    assert not np.isin(pseudo_data["EventNumber"], mc_numbers).any()
    # process truth: multijet alone has light flavour, in 80 % of its events
    share = toy.BACKGROUNDS[1].xsec_fb / sum(p.xsec_fb for p in toy.BACKGROUNDS)
    light = (pseudo_data["EventFlavour"] == 0).mean()
    assert light == pytest.approx(0.8 * share, abs=5 * np.sqrt(0.8 * share / n))


def test_pseudo_data_is_reproducible(pseudo_data) -> None:
    again = toy.generate_data(LUMI, seed=99)
    other = toy.generate_data(LUMI, seed=100)
    assert set(again) == set(pseudo_data) == NOMINAL_BRANCHES
    for branch in pseudo_data:
        np.testing.assert_array_equal(again[branch], pseudo_data[branch])
    assert not np.array_equal(other["FourBodyMass"][:100], pseudo_data["FourBodyMass"][:100])


def test_pseudo_data_spectrum_follows_weighted_mc(pseudo_data, mc_background) -> None:
    m_mc = np.concatenate([t["FourBodyMass"] for t in mc_background.values()])
    w_mc = np.concatenate([t["weight"] for t in mc_background.values()])
    edges = np.r_[np.arange(0, 2000, 100), np.inf]
    mu, _ = np.histogram(m_mc, edges, weights=w_mc)
    var_mc, _ = np.histogram(m_mc, edges, weights=w_mc**2)
    d, _ = np.histogram(pseudo_data["FourBodyMass"], edges)
    assert (mu > 0).all()
    chi2 = np.sum((d - mu) ** 2 / (mu + var_mc))
    assert stats.chi2.sf(chi2, len(d)) > 1e-3
    # the test has power: the unweighted (sliced) MC shape is far off
    raw, _ = np.histogram(m_mc, edges)
    raw = raw * d.sum() / raw.sum()
    assert stats.chi2.sf(np.sum((d - raw) ** 2 / (raw + 1)), len(d)) < 1e-6


def test_injected_signal_adds_the_expected_yield(pseudo_data) -> None:
    injected = toy.generate_data(LUMI, seed=99, inject_mass=1000.0, inject_xsec_fb=25.0)
    # the background events stay the same; the signal comes on top
    assert np.isin(pseudo_data["sT"], injected["sT"]).all()
    assert (injected["weight"] == 1.0).all()

    def window(d):
        return int(((d["FourBodyMass"] > 900) & (d["FourBodyMass"] < 1100)).sum())

    excess = window(injected) - window(pseudo_data)
    expected = 25.0 * LUMI * (stats.norm.cdf(1) - stats.norm.cdf(-1))  # +-1 resolution
    assert abs(excess - expected) < 5 * np.sqrt(expected)
    benchmark = toy.generate_data(LUMI, seed=99, inject_mass=1000.0)
    extra = len(benchmark["weight"]) - len(pseudo_data["weight"])
    expected = toy.signal_xsec_fb(1000.0) * LUMI
    assert extra > 0 and abs(extra - expected) < 5 * np.sqrt(expected)


def test_write_data_file_and_manifest(tmp_path) -> None:
    import json

    import awkward as ak

    paths = toy.write(tmp_path, [500.0], 50, 200, 2.0, 4, objects=True, data=True, data_seed=8,
                      inject_mass=750.0)
    assert paths["data"] == tmp_path / "data.root"
    trees = _read(paths["data"], library="ak")
    assert list(trees) == ["data"]
    d = trees["data"]
    assert set(d.fields) == NOMINAL_BRANCHES | {"nJet", "Jet_pt", "Jet_eta", "Jet_phi", "Jet_btag"}
    assert ak.all(d.weight == 1.0)
    np.testing.assert_allclose(ak.to_numpy(ak.sum(d.Jet_pt, axis=1)), ak.to_numpy(d.sTNoMet),
                               rtol=1e-4)
    flat = toy.generate_data(2.0, 8, inject_mass=750.0)
    np.testing.assert_array_equal(ak.to_numpy(d.FourBodyMass), flat["FourBodyMass"])
    manifest = json.loads((tmp_path / "toy.json").read_text())["data"]
    assert manifest["events"] == len(d) and manifest["seed"] == 8
    assert manifest["inject_mass"] == 750.0
    assert manifest["inject_xsec_fb"] == pytest.approx(toy.signal_xsec_fb(750.0))
    assert manifest["expected_background"] == pytest.approx(2.0 * 2800.0)
    assert toy.is_toy_file(paths["data"])
