"""pnn apply on the ROOT-written NanoAOD-style RNTuple: scores as an RNTuple that joins back
entry by entry; score names without a dot; the event number keeps its type; ONNX sidecar."""

from __future__ import annotations

import json
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
import yaml
from click.testing import CliRunner

from pnn.cli import main
from pnn.core.config import load_config
from pnn.deploy import apply
from pnn.io import ingest
from pnn.learn.model import FoldModels
from pnn.learn.preprocess import feature_matrix
from tests.conftest import SHARED, echo_models, write_config

ROOT = Path(__file__).resolve().parents[2]
NANO = SHARED / "Run2012BC_DoubleMuParked_Muons_1000evts_rntuple_v1-0-0-0.root"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_testdata):
    """configs/real_nanoaod.yaml ingested and trained for one epoch in a temporary run folder."""
    tmp = tmp_path_factory.mktemp("apply_rntuple")
    raw = yaml.safe_load((ROOT / "configs" / "real_nanoaod.yaml").read_text())
    for group in ("signal", "background"):
        raw["samples"][group][0]["files"] = str(NANO)
    raw["output_dir"] = str(tmp / "runs")
    raw["training"].update(epochs=1, patience=1, layers=[8])
    path = write_config(tmp / "nano.yaml", raw)
    for verb in ("ingest", "train"):
        res = CliRunner().invoke(main, [verb, str(path)])
        assert res.exit_code == 0, res.output
    return path, load_config(path)


def test_rntuple_scores_join_back_entry_by_entry(trained, tmp_path) -> None:
    path, cfg = trained
    res = CliRunner().invoke(main, ["apply", str(path), "-i", str(NANO), "-o", str(tmp_path),
                                    "--mass", "91", "--mass", "91.5", "--allow-extrapolation"])
    assert res.exit_code == 0, res.output
    out = tmp_path / f"{NANO.stem}_pnn.root"
    with uproot.open(out) as f:
        assert f.classnames() == {"Events;1": "ROOT::RNTuple"}
        scores = f["Events"].arrays()
    with uproot.open(NANO) as f:
        source = f["Events"].arrays(filter_field=lambda fld: fld.path in {"nMuon", "Muon_pt"})
    assert len(scores) == len(source) == 1000
    assert sorted(scores.fields) == ["_entry", "pnn_score_m91", "pnn_score_m91p5"]
    joined = ak.zip({"nMuon": source.nMuon, "score": scores.pnn_score_m91}, depth_limit=1)
    np.testing.assert_array_equal(scores["_entry"], np.arange(1000))
    outside = ak.to_numpy(joined.nMuon) < 2
    assert outside.sum() == 128
    assert (ak.to_numpy(joined.score)[outside] == cfg.apply.fill).all()
    inside = ak.to_numpy(joined.score)[~outside]
    assert ((inside >= 0) & (inside <= 1)).all()  # a sigmoid, saturated for an outlier

    events, _ = ingest.load_events(cfg)
    models = FoldModels.load(cfg.run_dir)
    evno = events["event_number"].to_numpy()
    plain = apply.score(models, feature_matrix(events, models.features), evno, [91.0])[91.0]
    np.testing.assert_allclose(ak.to_numpy(scores.pnn_score_m91)[evno], plain, atol=1e-6)


def test_onnx_sidecar_lists_the_alias_expressions(trained) -> None:
    path, cfg = trained
    res = CliRunner().invoke(main, ["export", str(path)])
    assert res.exit_code == 0, res.output
    side = json.loads((cfg.run_dir / "export" / "pnn_onnx.json").read_text())
    assert side["expressions"]["mumu_mass"] == "(Muon[0] + Muon[1]).mass"
    assert side["expressions"]["mumu_dr"] == "Muon[0].deltaR(Muon[1])"
    assert list(side["expressions"]) == side["inputs"][:-1]


@pytest.mark.parametrize(("mass", "name"), [(172.5, "pnn_score_m172p5"), (125, "pnn_score_m125"),
                                            (1500.0, "pnn_score_m1500"),
                                            (2e6, "pnn_score_m2000000"),
                                            (0.25, "pnn_score_m0p25")])
def test_score_branch_names_have_no_dot(mass, name) -> None:
    assert apply.score_branch(mass) == name


def test_event_number_keeps_the_source_type(tmp_path) -> None:
    raw = {"name": "t", "output_dir": str(tmp_path), "event_number": "event", "weight": "1",
           "samples": {"signal": [{"name": "s", "files": __file__, "tree": "t", "mass": 500}],
                       "background": [{"name": "b", "files": __file__, "tree": "t"}]},
           "features": ["x"]}
    cfg = load_config(write_config(tmp_path / "c.yaml", raw))
    event = np.array([2**40 + 1, 2**40 + 2, 7], dtype=np.uint64)
    out = apply.score_chunk(cfg, echo_models(["x"], 0), {"x": np.zeros(3), "event": event},
                            [500.0], fill=-1.0)
    assert out["event"].dtype == np.uint64
    np.testing.assert_array_equal(out["event"], event)
