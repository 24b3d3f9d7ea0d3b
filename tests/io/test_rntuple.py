"""RNTuple read like TTree: the same events written both ways (with uproot) give the same
events table, with NanoAOD-style collections, a uint64 event number and sum_weights from Runs."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
import vector

from pnn.core.config import load_config
from pnn.io import ingest, ntuple
from tests.conftest import write_config

EVENTS = 300


def _events(seed: int) -> dict:
    """NanoAOD-like columns: 0-3 muons per event, a uint64 event number beyond 2**32."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 4, EVENTS)
    total = int(counts.sum())

    def jagged(values):
        return ak.unflatten(values, counts)

    return {
        "event": np.arange(EVENTS, dtype=np.uint64) + np.uint64(5_000_000_000 + seed * EVENTS),
        "genWeight": rng.normal(1.0, 0.1, EVENTS).astype(np.float32),
        "MET_pt": rng.exponential(30.0, EVENTS).astype(np.float32),
        "Muon_pt": jagged(rng.exponential(40.0, total).astype(np.float32) + 5),
        "Muon_eta": jagged(rng.uniform(-2.4, 2.4, total).astype(np.float32)),
        "Muon_phi": jagged(rng.uniform(-np.pi, np.pi, total).astype(np.float32)),
        "Muon_mass": jagged(np.full(total, 0.1057, np.float32)),
        "Muon_charge": jagged(rng.choice(np.array([-1, 1], np.int32), total)),
    }


def _write(path: Path, kind: str, events: dict, sumw: float) -> None:
    runs = {"genEventSumw": np.array([sumw], np.float64)}
    with uproot.recreate(path) as f:
        if kind == "rntuple":
            f.mkrntuple("Events", {**events, "nMuon": ak.num(events["Muon_pt"])})
            f.mkrntuple("Runs", runs)
        else:
            flat = {k: v for k, v in events.items() if not k.startswith("Muon_")}
            muon = ak.zip({k[5:]: v for k, v in events.items() if k.startswith("Muon_")})
            f.mktree("Events", {**flat, "Muon": muon})
            f.mktree("Runs", runs)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, list[Path]]:
    """Two files of the same events as TTrees and as RNTuples."""
    base = tmp_path_factory.mktemp("rntuple")
    out: dict[str, list[Path]] = {}
    for kind in ("ttree", "rntuple"):
        out[kind] = []
        for i in range(2):
            path = base / f"{kind}_{i}.root"
            _write(path, kind, _events(i), sumw=1000.0 * (i + 1))
            out[kind].append(path)
    return out


def _config(tmp: Path, name: str, paths: list[Path]) -> dict:
    sample = {"files": [str(p) for p in paths], "tree": "Events",
              "cross_section": 2.0, "sum_weights": {"tree": "Runs", "branch": "genEventSumw"}}
    return {
        "name": name, "output_dir": str(tmp / "runs"), "event_number": "event",
        "weight": "genWeight", "luminosity": 10.0, "non_finite": "drop",
        "samples": {"signal": [{"name": "s", "mass": 100, "selection": "event % 2 == 0", **sample}],
                    "background": [{"name": "b", "selection": "event % 2 == 1", **sample}]},
        "features": ["mll", "q0", "nmu", "ht", "MET_pt", "dr"],
        "aliases": {"mll": "(Muon[0] + Muon[1]).mass", "q0": "Muon[0].charge",
                    "nmu": "count(Muon)", "ht": "sum(Muon.pt)", "dr": "Muon[0].deltaR(Muon[1])"},
    }


def test_ttree_and_rntuple_give_identical_events_tables(files, tmp_path) -> None:
    tables, metas = {}, {}
    for kind, paths in files.items():
        cfg = load_config(write_config(tmp_path / f"{kind}.yaml", _config(tmp_path, kind, paths)))
        ingest.ingest(cfg)
        tables[kind], metas[kind] = ingest.load_events(cfg)
    assert tables["ttree"].equals(tables["rntuple"])
    assert metas["ttree"]["samples"] == metas["rntuple"]["samples"]

    table = tables["rntuple"]
    raw = [_events(i) for i in range(2)]
    events = {k: ak.concatenate([r[k] for r in raw]) for k in raw[0]}
    two = ak.to_numpy(ak.num(events["Muon_pt"])) >= 2
    evno = ak.to_numpy(events["event"])
    even = evno % 2 == 0
    order = np.r_[np.flatnonzero(even & two), np.flatnonzero(~even & two)]
    # events with fewer than two muons have a NaN dimuon mass (never that of a zero vector)
    assert [s["selected"] for s in metas["rntuple"]["samples"]] == [(even & two).sum(),
                                                                     (~even & two).sum()]
    assert [s["non_finite"]["mll"] for s in metas["rntuple"]["samples"]] == [
        (even & ~two).sum(), (~even & ~two).sum()]
    np.testing.assert_array_equal(table["event_number"], evno[order].astype(np.int64))
    assert (table["event_number"] > 2**32).all()

    mu = vector.zip({c: ak.values_astype(events[f"Muon_{c}"], np.float64)
                     for c in ("pt", "eta", "phi", "mass")})
    pair = ak.pad_none(mu, 2)
    mll = ak.to_numpy((pair[:, 0] + pair[:, 1]).mass)[order]
    np.testing.assert_allclose(table["mll"], mll.astype(np.float32), rtol=1e-6)
    dr = ak.to_numpy(pair[:, 0].deltaR(pair[:, 1]))[order]
    np.testing.assert_allclose(table["dr"], dr.astype(np.float32), rtol=1e-6)
    np.testing.assert_array_equal(table["q0"], ak.to_numpy(events["Muon_charge"][order][:, 0]))
    np.testing.assert_allclose(table["ht"], ak.to_numpy(ak.sum(mu.pt, axis=1))[order], rtol=1e-6)

    # sum_weights from the Runs ntuple, summed over both files
    total = 1000.0 + 2000.0
    weights = ak.to_numpy(events["genWeight"]).astype(np.float64) * 2.0 * 10.0 / total
    np.testing.assert_allclose(table["weight"], weights[order], rtol=1e-12)
    assert {s["sum_weights"] for s in metas["rntuple"]["samples"]} == {total}


def test_rntuple_collection_records_are_not_branches(shared_testdata) -> None:
    path = str(shared_testdata / "Run2012BC_DoubleMuParked_Muons_1000evts_rntuple_v1-0-0-0.root")
    with ntuple.open_files([path]) as handles:
        assert ntuple.list_trees(handles[path]) == ["Events"]
        tree = ntuple.get_tree(handles[path], path, "Events", ["Muon_pt", "nMuon"])
        names = ntuple.branch_names(tree)
        assert not any(n.startswith("_collection") for n in names)
        assert ntuple.branch_kinds(tree, ["Muon_pt", "nMuon"]) == {"Muon_pt": "jagged",
                                                                   "nMuon": "flat"}
        reading = ntuple.resolve(tree, path, {"Muon", "nMuon"}, {"charge"})
        assert reading.branches == {"Muon_pt", "Muon_eta", "Muon_phi", "Muon_mass",
                                    "Muon_charge", "nMuon"}
        chunks = list(ntuple.iterate([tree], reading.branches, 300, awkward=reading.branches))
    assert [len(c["nMuon"]) for c in chunks] == [300, 300, 300, 100]
    assert set(chunks[0]) == reading.branches  # no _collection0 record read along
