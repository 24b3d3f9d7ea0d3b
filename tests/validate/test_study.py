"""The validation studies: planted classifiers with known answers, and one CLI run."""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from pnn.cli import main
from pnn.core.errors import PnnError
from pnn.io import toy
from pnn.validate import study
from tests.conftest import toy_config, write_config


def oracle(features):
    """The exact likelihood ratio of the toy, in the shape of a trained scorer. Events that
    neither hypothesis can produce (a permuted feature may make them) score lowest."""
    def score(X, mass, evno):
        llr = toy.log_likelihood_ratio(dict(zip(features, X.T, strict=True)), mass)
        return np.nan_to_num(llr, nan=-1e30, neginf=-1e30, posinf=1e30)
    return score


def blind(X, mass, evno):
    """A classifier that ignores the mass: the four-body mass alone, read near 1000 GeV."""
    return -np.abs(X[:, 0] - 1000.0)


def test_variants_cover_hold_outs_and_baselines() -> None:
    names = [v.name for v in study.network_variants([500.0, 750.0, 1000.0, 1250.0])]
    assert names == ["nonparametric", "holdout-m750", "holdout-m1000", "dedicated-m500",
                     "dedicated-m750", "dedicated-m1000", "dedicated-m1250"]
    variants = {v.name: v for v in study.network_variants([500.0, 750.0, 1000.0, 1250.0])}
    assert variants["holdout-m750"].signal_masses == (500.0, 1000.0, 1250.0)
    assert variants["holdout-m750"].parametric and not variants["dedicated-m500"].parametric
    assert study.neighbours(875.0, [500.0, 750.0, 1000.0]) == (750.0, 1000.0)
    assert study.neighbours(500.0, [500.0, 750.0]) == (None, 750.0)
    with pytest.raises(PnnError, match="no holdout network 'holdout-m500'"):
        study.select_variants(study.network_variants([500.0, 750.0, 1000.0]), "holdout", [500.0])


def test_detuning_of_the_optimal_classifier_peaks_at_the_true_mass(toy_events) -> None:
    cfg, events = toy_events
    cfg = cfg.model_copy(update={"study": cfg.study.model_copy(update={"detuning_step": 100.0})})
    methods = study.Methods([500.0, 1000.0, 1500.0], oracle(cfg.features))
    table, peaks = study.detuning(cfg, events, methods)
    assert sorted(set(table.hypothesis)) == [500.0 + 100 * i for i in range(11)]
    assert [p.true_mass for p in peaks] == [500.0, 750.0, 1000.0, 1500.0]
    for p in peaks:
        assert p.within_one_step, p
        assert p.range_low <= p.true_mass <= p.range_high
    # a mass-blind classifier cannot follow the true mass
    _, flat = study.detuning(cfg, events, study.Methods([500.0, 1000.0, 1500.0], blind))
    assert not all(p.within_one_step for p in flat)


def test_interpolation_compares_every_method_at_every_mass(toy_events) -> None:
    cfg, events = toy_events
    o = oracle(cfg.features)
    methods = study.Methods([500.0, 1000.0, 1500.0], o,
                            networks={"holdout-m1000": o, "nonparametric": blind,
                                      "dedicated-m500": o, "dedicated-m1000": o, "dedicated-m1500": o})
    table = study.interpolation(cfg, events, methods, is_toy=True)
    at = {m: set(table.loc[table.mass == m, "method"]) for m in (500.0, 750.0, 1000.0)}
    assert at[1000.0] == {"pnn", "pnn_holdout", "dedicated", "dedicated_below", "dedicated_above",
                          "nonparametric", "window", "optimal"}
    assert at[750.0] == {"pnn", "dedicated_below", "dedicated_above", "nonparametric", "window",
                         "optimal"}
    assert "dedicated_below" not in at[500.0]
    row = table[(table.mass == 1000.0)].set_index("method")
    assert row.loc["pnn", "auc"] == pytest.approx(row.loc["optimal", "auc"])
    assert row.loc["pnn", "auc"] > row.loc["nonparametric", "auc"]
    assert not row.loc["pnn_holdout", "trained_at_mass"] and row.loc["pnn", "trained_at_mass"]
    lines = study.interpolation_conclusions(table, [500.0, 1000.0, 1500.0])
    assert any(line.startswith("PNN with 1000 GeV held out: AUC") for line in lines)


def test_parametric_bdt_learns_and_scores_unseen_folds(toy_events) -> None:
    cfg, events = toy_events
    cfg = cfg.model_copy(update={"study": cfg.study.model_copy(update={"bdt_max_iter": 30})})
    score = study.fit_bdt(cfg, events)
    t = study.test_set(cfg, events, 1000.0)
    from pnn.stats.metrics import roc

    s = score(t.X, 1000.0, t.evno)
    assert s.shape == (len(t.X),) and np.all((s >= 0) & (s <= 1))
    assert roc(s, t.label, t.weight).auc > 0.85
    # the mass input matters: the same events scored at another mass change
    assert not np.allclose(s, score(t.X, 500.0, t.evno))


def test_permutation_importance_ranks_the_features(toy_events) -> None:
    cfg, events = toy_events
    cfg = cfg.model_copy(update={"study": cfg.study.model_copy(update={"importance_repeats": 1})})
    table = study.importance(cfg, events, study.Methods([500.0, 1000.0, 1500.0], oracle(cfg.features)))
    assert set(table.feature) == set(cfg.features)
    assert len(table) == 4 * len(cfg.features)
    wide = table.pivot(index="mass", columns="feature", values="auc_drop")
    assert wide.loc[500.0].idxmax() == "FourBodyMass"
    assert (wide.idxmin(axis=1) == "Btag").all()  # the weakest input of the toy
    assert (table.auc_drop > 0).all()


def test_study_all_from_the_command_line(tmp_path) -> None:
    cfg = toy_config(tmp_path, signal_events=1500, background_events=12000, epochs=2,
                     study={"jobs": 2, "detuning_step": 250.0, "importance_repeats": 1,
                            "bdt_max_iter": 10})
    path = write_config(tmp_path / "c.yaml", cfg)
    runner = CliRunner()
    for verb in ("generate", "ingest", "train"):
        assert runner.invoke(main, ["-q", verb, str(path)]).exit_code == 0
    res = runner.invoke(main, ["-q", "study", "all", str(path)])
    assert res.exit_code == 0, res.output
    out = tmp_path / "runs" / "small" / "study"
    rows = pd.DataFrame(json.loads((out / "interpolation.json").read_text()))
    assert {"pnn_holdout", "dedicated", "nonparametric", "bdt", "bdt_holdout"} <= set(rows.method)
    assert set(rows.loc[rows.method == "pnn_holdout", "mass"]) == {1000.0}
    assert np.isfinite(rows.auc).all()
    for name in ("interpolation.png", "detuning.png", "importance.png", "detuning_peaks.json"):
        assert (out / name).is_file()
    md = (out / "study.md").read_text()
    assert "PNN with 1000 GeV held out: AUC" in md and "## Detuning" in md
    assert "Most important input at 500 GeV" in md
    # networks are reused: asking for the hold-out again trains nothing
    again = runner.invoke(main, ["study", "interpolation", str(path), "--holdout", "1000"])
    assert again.exit_code == 0 and "all were already trained" in again.output
    bad = runner.invoke(main, ["study", "interpolation", str(path), "--holdout", "500"])
    assert bad.exit_code == 2 and "choose among masses 1000 GeV" in bad.output
