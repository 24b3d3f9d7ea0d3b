"""Objects and four-vectors: std::vector<TLorentzVector> branches and NanoAOD-style collections
in expressions, on the ROOT-written files in ../shared/testdata and on small arrays."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
import vector

from pnn.core.config import load_config
from pnn.core.errors import PnnError
from pnn.io import expressions, ingest, objects
from tests.conftest import write_config

RNTUPLE = "Run2012BC_DoubleMuParked_Muons_1000evts_rntuple_v1-0-0-0.root"


def _ingest(tmp: Path, name: str, path: Path, tree: str, aliases: dict[str, str]) -> tuple:
    raw = {
        "name": name, "output_dir": str(tmp / "runs"), "event_number": "_entry", "weight": "1",
        "non_finite": "drop",
        "samples": {"signal": [{"name": "s", "files": str(path), "tree": tree, "mass": 125,
                                "selection": "_entry % 2 == 0"}],
                    "background": [{"name": "b", "files": str(path), "tree": tree,
                                    "selection": "_entry % 2 == 1"}]},
        "features": list(aliases), "aliases": aliases,
    }
    cfg = load_config(write_config(tmp / f"{name}.yaml", raw))
    ingest.ingest(cfg)
    return ingest.load_events(cfg)


def _direct(p4, order: np.ndarray) -> dict[str, np.ndarray]:
    pair = ak.pad_none(p4, 2)
    return {"mll": ak.to_numpy((pair[:, 0] + pair[:, 1]).mass)[order],
            "pt0": ak.to_numpy(pair[:, 0].pt)[order],
            "dr": ak.to_numpy(pair[:, 0].deltaR(pair[:, 1]))[order]}


def test_lorentz_vectors_and_flat_collection_give_identical_tables(shared_testdata, tmp_path):
    objs, _ = _ingest(tmp_path, "objects", shared_testdata / "uproot-HZZ-objects.root", "events",
                      {"mll": "(muonp4[0] + muonp4[1]).mass", "pt0": "muonp4[0].pt",
                       "dr": "muonp4[0].deltaR(muonp4[1])"})
    flat, _ = _ingest(tmp_path, "flat", shared_testdata / "uproot-HZZ.root", "events",
                      {"mll": "(Muon[0] + Muon[1]).mass", "pt0": "Muon[0].pt",
                       "dr": "Muon[0].deltaR(Muon[1])"})
    assert objs.equals(flat)
    with uproot.open(shared_testdata / "uproot-HZZ.root") as f:
        a = f["events"].arrays(["Muon_Px", "Muon_Py", "Muon_Pz", "Muon_E"])
    p4 = vector.zip({c: ak.values_astype(a[f"Muon_{b}"], np.float64)  # mass: no float32 loss
                     for c, b in (("px", "Px"), ("py", "Py"), ("pz", "Pz"), ("E", "E"))})
    two = ak.to_numpy(ak.num(p4)) >= 2
    entries = np.arange(len(two))
    order = np.r_[entries[two & (entries % 2 == 0)], entries[two & (entries % 2 == 1)]]
    np.testing.assert_array_equal(flat["event_number"], order)
    for name, values in _direct(p4, order).items():
        np.testing.assert_allclose(flat[name], values, rtol=1e-6, err_msg=name)


def test_nanoaod_rntuple_dimuon_mass(shared_testdata, tmp_path) -> None:
    table, meta = _ingest(tmp_path, "nano", shared_testdata / RNTUPLE, "Events",
                          {"mll": "(Muon[0] + Muon[1]).mass", "pt0": "Muon[0].pt",
                           "dr": "Muon[0].deltaR(Muon[1])", "q": "Muon[0].charge * Muon[1].CHARGE",
                           "n": "count(Muon)", "ht": "sum(Muon.pt)"})
    with uproot.open(shared_testdata / RNTUPLE) as f:
        a = f["Events"].arrays(filter_field=lambda fld: fld.path.startswith("Muon_"))
    p4 = vector.zip({c: ak.values_astype(a[f"Muon_{c}"], np.float64)
                     for c in ("pt", "eta", "phi", "mass")})
    two = ak.to_numpy(ak.num(p4)) >= 2
    entries = np.arange(len(two))
    order = np.r_[entries[two & (entries % 2 == 0)], entries[two & (entries % 2 == 1)]]
    np.testing.assert_array_equal(table["event_number"], order)
    for name, values in _direct(p4, order).items():
        np.testing.assert_allclose(table[name], values, rtol=1e-6, err_msg=name)
    charge = ak.pad_none(a.Muon_charge, 2)
    np.testing.assert_array_equal(table["q"], ak.to_numpy(charge[:, 0] * charge[:, 1])[order])
    np.testing.assert_array_equal(table["n"], ak.to_numpy(ak.num(p4))[order])
    np.testing.assert_allclose(table["ht"], ak.to_numpy(ak.sum(p4.pt, axis=1))[order], rtol=1e-6)
    assert sum(s["selected"] for s in meta["samples"]) == two.sum() == 872


def _collection(**branches) -> dict:
    chunk = {k: ak.Array(v) for k, v in branches.items()}
    attrs = {"charge", "Iso"}
    reading = objects.Reading(set(chunk))
    for name in ("Muon", "Jet"):
        spec = objects.find_collection(name, chunk, attrs)
        if spec:
            reading.collections[name] = spec
    return objects.assemble(chunk, reading)


def test_missing_kth_object_is_nan_never_a_zero_vector() -> None:
    chunk = _collection(Muon_pt=[[50.0, 40.0], [30.0], []], Muon_eta=[[0.1, -0.2], [1.0], []],
                        Muon_phi=[[0.0, 3.0], [1.0], []], Muon_mass=[[0.1, 0.1], [0.1], []],
                        Muon_charge=[[1, -1], [1], []])
    mll = expressions.evaluate("(Muon[0] + Muon[1]).mass", chunk)
    assert np.isfinite(mll[0]) and np.isnan(mll[1:]).all()
    for expr in ("Muon[1].pt", "Muon[1].E", "Muon[1].charge", "Muon[0].deltaR(Muon[1])"):
        assert np.isnan(expressions.evaluate(expr, chunk)[1:]).all(), expr
    assert expressions.evaluate("count(Muon)", chunk).tolist() == [2, 1, 0]
    assert expressions.evaluate("sum(Muon.pt)", chunk).tolist() == [90.0, 30.0, 0.0]
    assert expressions.evaluate("Muon[0].charge", chunk)[:2].tolist() == [1.0, 1.0]


def test_pt_eta_phi_mass_wins_and_fields_are_case_insensitive() -> None:
    keys = ["Muon_Px", "Muon_Py", "Muon_Pz", "Muon_E", "Muon_PT", "Muon_eta", "Muon_phi",
            "Muon_Mass", "Muon_Iso", "Muon_Charge", "Jet_pt"]
    spec = objects.find_collection("Muon", keys, {"iso", "charge", "pt", "E"})
    assert spec.coordinates == {"pt": "Muon_PT", "eta": "Muon_eta", "phi": "Muon_phi",
                                "mass": "Muon_Mass"}
    assert spec.fields == {"Iso": "Muon_Iso", "Charge": "Muon_Charge"}
    assert objects.find_collection("Jet", keys, set()) is None
    cartesian = objects.find_collection("Muon", keys[:4], set())
    assert cartesian.coordinates == {"px": "Muon_Px", "py": "Muon_Py", "pz": "Muon_Pz",
                                     "E": "Muon_E"}


def test_tlorentzvector_records_become_four_vectors() -> None:
    raw = ak.Array([{"fP": {"fX": 3.0, "fY": 4.0, "fZ": 0.0}, "fE": 13.0}])
    p4 = objects.lorentz(raw)
    assert ak.to_list(p4.pt) == [5.0] and ak.to_list(p4.mass) == [12.0]
    chunk = {"lep": p4}
    assert expressions.evaluate("lep.mass + lep.rapidity", chunk).tolist() == [12.0]
    with pytest.raises(PnnError, match="one value per event"):
        expressions.evaluate("lep[0].pt", chunk)


@pytest.mark.parametrize(("expr", "message"), [
    ("Muon[0].__class__", "the attribute '.__class__' is not allowed"),
    ("Muon[0].boost_p4(Muon[1])", r"calling '.boost_p4\(\)' is not allowed"),
    ("Muon[0].deltaR(Muon[1], Muon[0])", r"deltaR\(\) takes one object"),
    ("Muon[0].btag", "objects have no attribute 'btag': use one of pt, eta"),
    ("Muon_pt[0].pt", "'.pt' needs an object"),
    ("Muon[0]", "gives objects, not numbers"),
    ("Muon[0].deltaR(1)", "takes two four-vectors"),
])
def test_attributes_and_methods_outside_the_allow_list_are_refused(expr, message) -> None:
    chunk = _collection(Muon_pt=[[50.0]], Muon_eta=[[0.1]], Muon_phi=[[0.0]], Muon_mass=[[0.1]])
    with pytest.raises(PnnError, match=message):
        expressions.evaluate(expr, {**chunk, "Muon_pt": ak.Array([[50.0]])})


def test_unreduced_collection_and_fields_read() -> None:
    assert expressions.unreduced("Muon.pt + 1", {"Muon"}) == "Muon"
    assert expressions.unreduced("Muon[0].deltaR(Muon[1]) + sum(Jet.pt)", {"Muon", "Jet"}) is None
    assert expressions.attributes("Muon[0].charge + Muon[0].deltaR(Muon[1])") == {"charge"}
    assert expressions.branches("Muon[0].deltaR(Jet[1])") == {"Muon", "Jet"}
