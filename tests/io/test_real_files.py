"""The ROOT-written files in ../shared/testdata through the configs in configs/."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from pnn.core.config import load_config
from pnn.core.errors import PnnError
from pnn.io import ingest
from tests.conftest import write_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def hzz_config(shared_testdata, tmp_path, monkeypatch):
    """configs/real_hzz.yaml as shipped, run from the project root into a temporary folder."""
    monkeypatch.chdir(ROOT)
    return load_config("configs/real_hzz.yaml", {"output_dir": str(tmp_path / "runs")})


def test_real_hzz_flat_jagged_selection_and_derived_features(hzz_config, shared_testdata) -> None:
    ingest.ingest(hzz_config)
    table, meta = ingest.load_events(hzz_config)
    with uproot.open(shared_testdata / "uproot-HZZ.root") as f:
        a = f["events"].arrays(["NMuon", "MET_px", "MET_py", "Jet_Px", "Jet_Py", "Jet_btag",
                                "Muon_Iso", "Jet_E"])
    has_jet = ak.to_numpy(ak.num(a.Jet_E)) >= 1
    nmu = ak.to_numpy(a.NMuon)
    sig, bkg = has_jet & (nmu >= 2), has_jet & (nmu == 1)
    assert [s["selected"] for s in meta["samples"]] == [sig.sum(), bkg.sum()]
    entries = np.arange(len(nmu))
    np.testing.assert_array_equal(table["event_number"], np.r_[entries[sig], entries[bkg]])
    order = np.r_[entries[sig], entries[bkg]]
    jet_pt = np.sqrt(a.Jet_Px**2 + a.Jet_Py**2)
    expect = {
        "MET_px": ak.to_numpy(a.MET_px),
        "met": np.hypot(ak.to_numpy(a.MET_px), ak.to_numpy(a.MET_py)),
        "lead_jet_pt": ak.to_numpy(ak.fill_none(ak.firsts(jet_pt), 0.0)),
        "sublead_jet_pt": ak.to_numpy(ak.fill_none(ak.pad_none(jet_pt, 2)[:, 1], 0.0)),
        "ht": ak.to_numpy(ak.sum(jet_pt, axis=1)),
        "lead_jet_btag": ak.to_numpy(ak.fill_none(ak.firsts(a.Jet_btag), -1.0)),
        "lead_mu_iso": ak.to_numpy(ak.fill_none(ak.firsts(a.Muon_Iso), 0.0)),
    }
    for name, values in expect.items():
        np.testing.assert_allclose(table[name], values[order], rtol=2e-6, err_msg=name)
    assert (table["sublead_jet_pt"] == 0).any() and (table["sublead_jet_pt"] > 0).any()


def test_real_flat_tree_every_type_and_a_string_spectator(shared_testdata, tmp_path) -> None:
    path = str(shared_testdata / "uproot-small-flat-tree.root")
    ints = ["Int32", "Int64", "UInt32", "UInt64", "Float32", "Float64"]
    raw = {
        "name": "flat", "output_dir": str(tmp_path / "runs"), "event_number": "Int64",
        "weight": "1",
        "samples": {"signal": [{"name": "s", "files": path, "tree": "tree", "mass": 1,
                                "selection": "Int32 % 2 == 0"}],
                    "background": [{"name": "b", "files": path, "tree": "tree",
                                    "selection": "Int32 % 2 == 1"}]},
        "features": [*ints, "ArrayFloat64[3]", "ArrayInt32[9]", "N", "sum(SliceFloat32)",
                     "SliceInt64[1]"],
        "spectators": ["Str"],
    }
    cfg = load_config(write_config(tmp_path / "f.yaml", raw))
    ingest.ingest(cfg)
    table, _ = ingest.load_events(cfg)
    with uproot.open(path) as f:
        a = f["tree"].arrays(library="ak")
    even = ak.to_numpy(a.Int32) % 2 == 0
    order = np.r_[np.flatnonzero(even), np.flatnonzero(~even)]
    for name in ints:
        np.testing.assert_allclose(table[name], ak.to_numpy(a[name])[order].astype(np.float32))
    np.testing.assert_array_equal(table["ArrayInt32[9]"], ak.to_numpy(a.ArrayInt32)[order, 9])
    np.testing.assert_allclose(table["sum(SliceFloat32)"],
                               ak.to_numpy(ak.sum(a.SliceFloat32, axis=1))[order], rtol=1e-6)
    strings = ak.to_list(a.Str)
    assert table["Str"].tolist() == [strings[i] for i in order]

    raw["features"].append("Str")
    bad = load_config(write_config(tmp_path / "g.yaml", raw))
    with pytest.raises(PnnError, match="holds strings: it can be a spectator"):
        ingest.ingest(bad)


def test_real_zmumu_string_spectator_with_flat_branches_only(shared_testdata, tmp_path) -> None:
    path = str(shared_testdata / "uproot-Zmumu.root")
    raw = {
        "name": "zmumu", "output_dir": str(tmp_path / "runs"), "event_number": "Event",
        "weight": "1",
        "samples": {"signal": [{"name": "peak", "files": path, "tree": "events", "mass": 91,
                                "selection": "abs(M - 91) < 10"}],
                    "background": [{"name": "side", "files": path, "tree": "events",
                                    "selection": "abs(M - 91) >= 10"}]},
        "features": ["pt1", "eta1"],
        "spectators": ["Type"],
    }
    cfg = load_config(write_config(tmp_path / "z.yaml", raw))
    ingest.ingest(cfg)
    table, _ = ingest.load_events(cfg)
    with uproot.open(path) as f:
        a = f["events"].arrays(["Type", "M"], library="np")
    peak = np.abs(a["M"] - 91) < 10
    assert table["Type"].tolist() == [*a["Type"][peak], *a["Type"][~peak]]
