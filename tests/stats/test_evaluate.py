import json

import numpy as np
import pytest

from pnn.core.config import load_config
from pnn.core.errors import PnnError
from pnn.io import ingest
from pnn.stats import evaluate
from tests.conftest import echo_models


def test_every_background_event_gets_the_hypothesised_mass(small_toy) -> None:
    cfg = load_config(small_toy)
    ingest.ingest(cfg)
    events, _ = ingest.load_events(cfg)
    res = evaluate.evaluate_mass(cfg, events, echo_models(cfg.features, -1), 1000.0, True)
    # signal and background all score scale(1000) = 0.5: the PNN cannot tell them apart
    assert res.methods["pnn"].auc == pytest.approx(0.5)
    assert res.n_signal == (events.mass == 1000).sum()
    assert res.n_background == (events.label == 0).sum()
    assert res.background_yield == pytest.approx(events.loc[events.label == 0, "weight"].sum())
    # the optimum and the window really separate, and are reported next to the PNN
    assert res.methods["optimal"].auc > 0.95 and res.methods["window"].auc > 0.85
    saved = json.loads(evaluate.metrics_path(cfg.run_dir, 1000.0).read_text())
    assert saved["methods"]["pnn"]["auc"] == pytest.approx(0.5)
    assert res.trained


def test_masses_outside_the_trained_range_need_permission() -> None:
    evaluate.check_masses([500, 1500], [500, 1000, 1500], allow_extrapolation=False)
    with pytest.raises(PnnError, match="outside the trained range 500-1500"):
        evaluate.check_masses([400], [500, 1000, 1500], allow_extrapolation=False)
    evaluate.check_masses([400, 2000], [500, 1000, 1500], allow_extrapolation=True)


def test_a_mass_without_signal_is_an_error(small_toy) -> None:
    cfg = load_config(small_toy)
    ingest.ingest(cfg)
    events, _ = ingest.load_events(cfg)
    with pytest.raises(PnnError, match="no signal events at mass 1250"):
        evaluate.evaluate_mass(cfg, events, echo_models(cfg.features, -1), 1250.0, True)


def test_negative_weights_count_in_the_yields(small_toy) -> None:
    cfg = load_config(small_toy)
    ingest.ingest(cfg)
    events, _ = ingest.load_events(cfg)
    assert (events.weight < 0).any()
    res = evaluate.evaluate_mass(cfg, events, echo_models(cfg.features, -1), 500.0, True)
    bkg = events[events.label == 0]
    assert res.background_yield == pytest.approx(bkg.weight.sum())
    assert res.background_yield < bkg.weight.abs().sum()
    assert np.isfinite(res.methods["optimal"].z)


def test_scoring_in_many_chunks_gives_the_numbers_of_the_in_memory_reference(toy_events) -> None:
    import pandas as pd
    import pyarrow.parquet as pq

    from pnn.learn.preprocess import cut_halves
    from pnn.stats import metrics

    cfg, events = toy_events
    models = echo_models(cfg.features, 2)  # the score is sT: it separates, not perfectly
    whole = evaluate.evaluate_mass(cfg, events, models, 1000.0, True)
    path = evaluate.scores_path(cfg.run_dir, 1000.0)
    one = pd.read_parquet(path)
    chunked = evaluate.evaluate_mass(cfg, events, models, 1000.0, True, chunk=4999)
    assert pq.ParquetFile(path).metadata.num_row_groups == -(-len(one) // 4999)
    pd.testing.assert_frame_equal(pd.read_parquet(path), one)
    assert chunked == whole  # every number, the bootstrap uncertainties too

    # the reference: the whole arrays in memory, through sklearn's ROC and the plain cut scan
    score, label, w = (one[c].to_numpy() for c in ("score", "label", "weight"))
    half = cut_halves(one["event_number"].to_numpy(), 2)
    for name, values in (("pnn", score), ("optimal", one["llr"].to_numpy()),
                         ("window", -np.abs(one["window"].to_numpy() - 1000.0))):
        got = chunked.methods[name]
        assert got.auc == pytest.approx(metrics.roc(values, label, w).auc, rel=1e-12)
        ref = metrics.best_cut(values, label, w, half, cfg.evaluation.min_background_events)
        assert (got.cut, got.cut_other_half, got.n_bkg_mc) == (ref.threshold, ref.threshold_other,
                                                               ref.n_bkg)
        assert got.z == pytest.approx(ref.z, rel=1e-10)
        assert 0 < got.auc_err < 0.05 and 0 < got.z_err < got.z
        assert np.isfinite(got.bkg_eff_sig80_err) and np.isfinite(got.bkg_eff_sig95_err)
    saved = json.loads(evaluate.metrics_path(cfg.run_dir, 1000.0).read_text())
    assert saved["z_ratio"] == pytest.approx(whole.methods["pnn"].z / whole.methods["optimal"].z)
    assert saved["z_ratio_err"] > 0 and saved["bootstrap_replicates"] == 100
    assert saved["methods"]["optimal"]["z_err"] == whole.methods["optimal"].z_err


def test_a_failure_keeps_the_masses_before_it_and_nothing_of_its_own(toy_events, monkeypatch) -> None:
    cfg, events = toy_events
    models = echo_models(cfg.features, 2)
    monkeypatch.setattr(evaluate, "require_model", lambda *a, **k: "model-id")
    from pnn.learn.model import FoldModels

    monkeypatch.setattr(FoldModels, "load", staticmethod(lambda run_dir: models))
    monkeypatch.setattr(evaluate, "run_checks", lambda *a, **k: None)
    cfg = cfg.model_copy(update={"evaluation": cfg.evaluation.model_copy(update={"jobs": 1})})
    real = evaluate.evaluate_mass

    def failing(cfg, events, models, mass, *args, **kwargs):
        if mass == 1500.0:
            raise PnnError("planted failure")
        return real(cfg, events, models, mass, *args, **kwargs)

    monkeypatch.setattr(evaluate, "evaluate_mass", failing)
    with pytest.raises(PnnError, match="planted failure"):
        evaluate.evaluate(cfg, events, {"id": "events-id", "toy": True}, [500.0, 1000.0, 1500.0])
    for m in (500.0, 1000.0):
        folder = evaluate.mass_dir(cfg.run_dir, m)
        assert evaluate.metrics_path(cfg.run_dir, m).exists()
        assert (folder / "roc.png").exists()
        assert not list(folder.glob(".staging-*"))
    assert not evaluate.mass_dir(cfg.run_dir, 1500.0).exists()
