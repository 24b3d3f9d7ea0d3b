"""Real-file mistakes (misspelt branch or tree, unquoted expression in a YAML list, objects
used wrongly, an event number past int64): one line naming the fix, exit 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import uproot
import yaml
from click.testing import CliRunner

from pnn.cli import main
from tests.faults.util import leftovers, one_line_error


def _config(tmp: Path, hzz: Path, **change) -> dict:
    raw = {"name": "hzz", "output_dir": str(tmp / "runs"), "event_number": "_entry",
           "weight": "1",
           "samples": {"signal": [{"name": "s", "files": str(hzz), "tree": "events", "mass": 125,
                                   "selection": "NMuon >= 2"}],
                       "background": [{"name": "b", "files": str(hzz), "tree": "events",
                                       "selection": "NMuon == 1"}]},
           "features": ["MET_px"]}
    raw.update(change)
    return raw


def _ingest(tmp: Path, raw: dict | str) -> str:
    path = tmp / "config.yaml"
    path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw))
    line = one_line_error(CliRunner().invoke(main, ["ingest", str(path)]))
    assert not (tmp / "runs" / "hzz" / "events.parquet").exists()
    assert leftovers(tmp) == []
    return line


@pytest.fixture
def hzz(shared_testdata) -> Path:
    return shared_testdata / "uproot-HZZ.root"


def test_misspelt_branch_suggests_the_closest_names(hzz, tmp_path) -> None:
    line = _ingest(tmp_path, _config(tmp_path, hzz, features=["Muon_pX[0]"]))
    assert "has no branch 'Muon_pX'" in line
    assert "closest branches: Muon_Px, " in line  # by similarity, case ignored


def test_misspelt_collection_field_branch_suggests_by_similarity(hzz, tmp_path) -> None:
    line = _ingest(tmp_path, _config(tmp_path, hzz, features=["count(Jets)"]))
    assert "has no branch 'Jets' (nor a collection Jets_pt" in line
    assert "closest branches: NJet" in line or "closest branches: Jet_" in line


def test_misspelt_tree_suggests_the_closest_name(hzz, tmp_path) -> None:
    raw = _config(tmp_path, hzz)
    raw["samples"]["signal"][0]["tree"] = "event"
    line = _ingest(tmp_path, raw)
    assert "has no tree 'event'" in line and line.endswith("closest trees: events")


def test_unquoted_expression_in_a_flow_list_gets_a_hint_to_quote_it(hzz, tmp_path) -> None:
    text = yaml.safe_dump(_config(tmp_path, hzz)).replace("- MET_px", "- placeholder")
    text = text.replace("features:\n- placeholder\n", "features: [Muon_Pt[0], MET_px]\n")
    assert "features: [Muon_Pt[0], MET_px]" in text
    line = _ingest(tmp_path, text)
    assert "not valid YAML at line" in line and "[Muon_Pt[0], MET_px]" in line
    assert "must be quoted, e.g. features: ['Muon_pt[0]', x]" in line


@pytest.mark.parametrize(("feature", "message"), [
    ("Muon[0].btag", "objects of collection 'Muon' have no attribute 'btag': use one of pt, "
                     "eta, phi, mass, E, px, py, pz, rapidity, Charge, Iso"),
    ("Muon[0].boost(Muon[1])", "calling '.boost()' is not allowed"),
    ("Muon[0].__dict__", "the attribute '.__dict__' is not allowed"),
    ("Muon.pt", "uses the collection 'Muon' without a reduction: use Muon[0] (k-th object), "
                "count(Muon) or sum(Muon.pt)"),
    ("Muon[0]", "gives objects, not numbers"),
])
def test_objects_used_wrongly(hzz, tmp_path, feature, message) -> None:
    line = _ingest(tmp_path, _config(tmp_path, hzz, features=[feature], non_finite="drop"))
    assert message in line


def test_event_number_beyond_int64(tmp_path) -> None:
    path = tmp_path / "big.root"
    with uproot.recreate(path) as f:
        f.mkrntuple("Events", {"event": np.array([1, 2**63 + 5], np.uint64),
                               "x": np.array([1.0, 2.0])})
    raw = {"name": "hzz", "output_dir": str(tmp_path / "runs"), "event_number": "event",
           "weight": "1", "features": ["x"],
           "samples": {"signal": [{"name": "s", "files": str(path), "tree": "Events", "mass": 1}],
                       "background": [{"name": "b", "files": str(path), "tree": "Events"}]}}
    line = _ingest(tmp_path, raw)
    assert "event number 'event' has values beyond 2**63 - 1" in line
