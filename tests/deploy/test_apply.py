"""pnn apply on the ROOT-written HZZ file: entry-aligned friend trees, right fold, atomic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import uproot
from click.testing import CliRunner

from pnn.cli import main
from pnn.core.config import load_config
from pnn.deploy import apply
from pnn.io import ingest
from pnn.learn import train
from pnn.learn.model import FoldModels
from pnn.learn.preprocess import feature_matrix, folds
from tests.conftest import SHARED, write_config

ROOT = Path(__file__).resolve().parents[2]
HZZ = SHARED / "uproot-HZZ.root"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_testdata):
    """configs/real_hzz.yaml ingested and trained for two epochs in a temporary run folder."""
    import yaml

    tmp = tmp_path_factory.mktemp("apply")
    raw = yaml.safe_load((ROOT / "configs" / "real_hzz.yaml").read_text())
    raw["samples"]["signal"][0]["files"] = str(HZZ)
    raw["samples"]["background"][0]["files"] = str(HZZ)
    raw["output_dir"] = str(tmp / "runs")
    raw["training"].update(epochs=2, patience=2)
    path = write_config(tmp / "hzz.yaml", raw)
    cfg = load_config(path)
    ingest.ingest(cfg)
    events, _ = ingest.load_events(cfg)
    train.train(cfg, events)
    return path, cfg


def test_friend_tree_is_entry_aligned_and_scored_by_the_other_fold(trained, tmp_path) -> None:
    path, cfg = trained
    res = CliRunner().invoke(main, ["apply", str(path), "--input", str(SHARED / "uproot-H?Z.root"),
                                    "--mass", "125", "--mass", "200", "-o", str(tmp_path),
                                    "--allow-extrapolation"])  # trained at 125 GeV only
    assert res.exit_code == 0, res.output
    out = tmp_path / "uproot-HZZ_pnn.root"
    with uproot.open(HZZ) as f:
        n = f["events"].num_entries
        njet = f["events"]["NJet"].array(library="np")
    with uproot.open(out) as f:
        friend = f["events"].arrays(library="np")
    assert len(friend["_entry"]) == n
    np.testing.assert_array_equal(friend["_entry"], np.arange(n))
    outside = njet < 1
    assert outside.any()
    assert (friend["pnn_score_m125"][outside] == cfg.apply.fill).all()
    inside = friend["pnn_score_m125"][~outside]
    assert ((inside > 0) & (inside < 1)).all()
    assert not np.allclose(friend["pnn_score_m125"][~outside], friend["pnn_score_m200"][~outside])

    events, _ = ingest.load_events(cfg)
    models = FoldModels.load(cfg.run_dir)
    evno = events["event_number"].to_numpy()
    X = feature_matrix(events, models.features)
    fold = folds(evno, models.k)
    for i in range(models.k):  # each event by the model that did not train on it
        sel = fold == i
        direct = models.models[i].predict(models.scalers[i].transform(X[sel], 125.0), verbose=0)
        np.testing.assert_allclose(friend["pnn_score_m125"][evno[sel]], direct.ravel(), atol=1e-6)
    plain = apply.score(models, X, evno, [125.0])[125.0]
    np.testing.assert_allclose(friend["pnn_score_m125"][evno], plain, atol=1e-6)


def test_refuses_to_overwrite_without_force_and_is_atomic(trained, tmp_path, monkeypatch) -> None:
    path, _ = trained
    args = ["apply", str(path), "--input", str(HZZ), "-o", str(tmp_path)]
    assert CliRunner().invoke(main, args).exit_code == 0
    out = tmp_path / "uproot-HZZ_pnn.root"
    before = out.read_bytes()
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2 and "pass --force" in res.output
    monkeypatch.setattr(apply, "CHUNK_ENTRIES", 500)
    real, calls = apply.score_chunk, []

    def failing(*a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(apply, "score_chunk", failing)
    res = CliRunner().invoke(main, [*args, "--force"])
    assert res.exit_code == 130
    assert out.read_bytes() == before  # the old complete file stays, no half-written one
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]
    monkeypatch.setattr(apply, "score_chunk", real)
    assert CliRunner().invoke(main, [*args, "--force"]).exit_code == 0
    with uproot.open(out) as f:
        assert f["events"]["pnn_score_m125"].num_baskets == 5  # 2421 entries in chunks of 500


def test_default_output_dir_and_missing_input(trained) -> None:
    path, cfg = trained
    results = apply.apply(cfg, [str(HZZ)], force=True)
    assert results[0].output == cfg.run_dir / "apply" / "uproot-HZZ_pnn.root"
    assert results[0].masses == [125.0]
    res = CliRunner().invoke(main, ["apply", str(path), "--input", "nothing*.root"])
    assert res.exit_code == 2 and "no input file matches" in res.output


def test_point_names_a_mass_of_a_one_parameter_model(trained, tmp_path) -> None:
    path, _ = trained
    res = CliRunner().invoke(main, ["apply", str(path), "--input", str(HZZ), "--point", "mass=125",
                                    "--mass", "125", "-o", str(tmp_path)])
    assert res.exit_code == 0, res.output
    with uproot.open(tmp_path / "uproot-HZZ_pnn.root") as f:
        names = f["events"].keys()
    assert [k for k in names if k.startswith("pnn_")] == ["pnn_score_m125"]
    res = CliRunner().invoke(main, ["apply", str(path), "--input", str(HZZ), "--point", "150",
                                    "-o", str(tmp_path), "--force"])
    assert res.exit_code == 2 and "outside the trained range 125-125 GeV" in res.output


# Two parameters (m_X, m_Y): the trained points are a triangle, see tests/deploy/two_parameters.py


def _apply_two(path, tmp_path, *args: str):
    """``pnn apply`` of the two-parameter run on both of its ntuples, into ``tmp_path``."""
    ntuples = Path(load_config(path).output_dir).parent / "ntuples"
    return CliRunner().invoke(main, ["apply", str(path), "-i", str(ntuples / "*.root"),
                                     "-o", str(tmp_path), *args])


def test_two_parameter_scores_are_named_by_point_and_equal_the_fold_models(
        two_parameter_run, tmp_path) -> None:
    from tests.deploy.two_parameters import TRIANGLE, tree_name

    path, cfg = two_parameter_run("affine")
    res = _apply_two(path, tmp_path, "--point", "mX=1200,mY=400", "--point", "1500,100",
                     "--point", "mY=100,mX=1500")  # the same point twice: one branch
    assert res.exit_code == 0, res.output
    models = FoldModels.load(cfg.run_dir)
    with uproot.open(tmp_path / "background_pnn.root") as f:
        friend = f["bkg"].arrays(library="np")
    with uproot.open(Path(cfg.output_dir).parent / "ntuples" / "background.root") as f:
        raw = f["bkg"].arrays([*cfg.features, "EventNumber"], library="np")
    assert sorted(friend) == ["EventNumber", "pnn_score_mX1200_mY400", "pnn_score_mX1500_mY100"]
    np.testing.assert_array_equal(friend["EventNumber"], raw["EventNumber"])
    X = np.column_stack([raw[c] for c in cfg.features])
    for point, branch in (((1200.0, 400.0), "pnn_score_mX1200_mY400"),
                          ((1500.0, 100.0), "pnn_score_mX1500_mY100")):
        want, _ = models.score(X, point, raw["EventNumber"])
        assert np.std(want) > 0.01
        np.testing.assert_allclose(friend[branch], want, rtol=0, atol=1e-6)
    assert np.abs(friend["pnn_score_mX1200_mY400"] - friend["pnn_score_mX1500_mY100"]).max() > 1e-3
    # the plain scoring path takes points too
    plain = apply.score(models, X, raw["EventNumber"], [(1200.0, 400.0)])[(1200.0, 400.0)]
    np.testing.assert_allclose(friend["pnn_score_mX1200_mY400"], plain, atol=1e-6)
    # default: every trained point, in every tree of every input
    results = apply.apply(cfg, [str(Path(cfg.output_dir).parent / "ntuples" / "signal.root")],
                          output_dir=tmp_path / "all")
    assert results[0].points == TRIANGLE and results[0].masses == []
    with uproot.open(results[0].output) as f:
        assert sorted(f.keys(cycle=False)) == sorted(tree_name(p) for p in TRIANGLE)
        branches = f[tree_name(TRIANGLE[0])].keys()
    assert sorted(branches) == ["EventNumber", "pnn_score_mX1500_mY100",
                                "pnn_score_mX1500_mY1300", "pnn_score_mX500_mY100"]


def test_a_point_in_the_box_but_outside_the_hull_is_refused(two_parameter_run, tmp_path,
                                                            caplog) -> None:
    from tests.faults.util import one_line_error

    path, _ = two_parameter_run("affine")
    line = one_line_error(_apply_two(path, tmp_path, "--point", "mX=600,mY=1200"))
    assert "mX = 600, mY = 1200 GeV" in line and "convex hull" in line
    assert "--allow-extrapolation" in line
    assert list(tmp_path.iterdir()) == []  # refused before anything is written
    with caplog.at_level("WARNING", logger="pnn.core.points"):
        res = _apply_two(path, tmp_path, "--point", "mX=600,mY=1200", "--point", "1200,400",
                         "--allow-extrapolation")
    assert res.exit_code == 0, res.output
    warned = [r.getMessage() for r in caplog.records if r.name == "pnn.core.points"]
    assert len(warned) == 1 and "mX = 600, mY = 1200" in warned[0]
    with uproot.open(tmp_path / "background_pnn.root") as f:
        assert {"pnn_score_mX600_mY1200", "pnn_score_mX1200_mY400"} <= set(f["bkg"].keys())


@pytest.mark.parametrize(("args", "words"), [
    (["--mass", "1000"], ["--mass", "mX, mY", "--point mX=...,mY=..."]),
    (["--point", "mX=1000"], ["mX=1000", "mX, mY", "mX=...,mY=..."]),
    (["--point", "mX=1000,mZ=300"], ["no parameter 'mZ'", "mX, mY"]),
    (["--point", "mX=1000,mY=abc"], ["'mY=abc' is not a number"]),
])
def test_bad_points_of_a_two_parameter_model_are_one_line(two_parameter_run, tmp_path, args,
                                                          words) -> None:
    from tests.faults.util import one_line_error

    path, _ = two_parameter_run("affine")
    line = one_line_error(_apply_two(path, tmp_path, *args))
    for word in words:
        assert word in line, line
    assert list(tmp_path.iterdir()) == []
