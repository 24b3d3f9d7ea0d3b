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
