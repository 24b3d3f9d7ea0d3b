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
