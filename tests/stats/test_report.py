import json

import pandas as pd
import pytest

from pnn.core.config import load_config
from pnn.core.errors import PnnError
from pnn.stats import report
from tests.conftest import plant_run, toy_config, write_config


def _metrics(mass, trained, auc, z, optimal=True, made=None):
    methods = {"pnn": {"auc": auc, "z": z, "bkg_eff_sig80": 0.1, "bkg_eff_sig95": 0.2,
                       "s_over_sqrt_b": z},
               "window": {"auc": auc - 0.05, "z": z / 2}}
    if optimal:
        methods["optimal"] = {"auc": auc + 0.001, "z": z * 1.02}
    return {"mass": mass, "trained": trained, "methods": methods, "warnings": [], "provenance": made}


def test_report_collects_masses_in_order_and_writes_files(tmp_path) -> None:
    cfg = load_config(write_config(tmp_path / "c.yaml", toy_config(tmp_path)))
    made = plant_run(cfg)
    for m, trained in ((1000.0, True), (500.0, True), (750.0, False)):
        d = cfg.run_dir / "evaluate" / f"m{m:g}"
        d.mkdir(parents=True)
        (d / "metrics.json").write_text(
            json.dumps(_metrics(m, trained, 0.9 + m / 1e5, m / 100, made=made)))
    rep = report.report(cfg)
    assert rep.table["mass"].tolist() == [500.0, 750.0, 1000.0]
    rows = json.loads(rep.paths["json"].read_text())
    assert rows[1]["trained"] is False and rows[1]["z_window"] == pytest.approx(3.75)
    assert list(rows[0]) == report.COLUMNS
    assert pd.read_csv(rep.paths["csv"])["auc_optimal"].tolist() == pytest.approx(
        [0.906, 0.9085, 0.911])
    assert "| 750 | no |" in rep.markdown
    assert "smallest Z ratio 0.980" in rep.markdown


def test_missing_optimum_is_null_not_nan(tmp_path) -> None:
    cfg = load_config(write_config(tmp_path / "c.yaml", toy_config(tmp_path)))
    made = plant_run(cfg)
    d = cfg.run_dir / "evaluate" / "m500"
    d.mkdir(parents=True)
    (d / "metrics.json").write_text(json.dumps(_metrics(500.0, True, 0.9, 2.0, optimal=False,
                                                        made=made)))
    rep = report.report(cfg)
    text = rep.paths["json"].read_text()
    assert "NaN" not in text and json.loads(text)[0]["auc_optimal"] is None
    assert "PNN vs optimal" not in rep.markdown


def test_report_without_evaluation_is_an_error(tmp_path) -> None:
    cfg = load_config(write_config(tmp_path / "c.yaml", toy_config(tmp_path)))
    with pytest.raises(PnnError, match="run 'pnn evaluate' first"):
        report.report(cfg)


def test_summary_rows_carry_z_ratio_and_bootstrap_errors(tmp_path) -> None:
    cfg = load_config(write_config(tmp_path / "c.yaml", toy_config(tmp_path)))
    made = plant_run(cfg)
    m = _metrics(1000.0, True, 0.95, 3.0, made=made)
    m["methods"]["pnn"].update(auc_err=0.001, z_err=0.05, bkg_eff_sig80_err=0.002)
    m["methods"]["optimal"].update(z_err=0.06)
    m.update(z_ratio=0.98, z_ratio_err=0.004)
    d = cfg.run_dir / "evaluate" / "m1000"
    d.mkdir(parents=True)
    (d / "metrics.json").write_text(json.dumps(m))
    rep = report.report(cfg)
    row = json.loads(rep.paths["json"].read_text())[0]
    assert (row["z_err"], row["z_optimal_err"], row["z_ratio"], row["z_ratio_err"],
            row["auc_err"], row["bkg_eff_sig80_err"]) == (0.05, 0.06, 0.98, 0.004, 0.001, 0.002)
    assert row["auc_window_err"] is None  # not computed: null, never a made-up number
    assert "| 3.0000 ± 0.05 |" in rep.markdown and "z_err" not in rep.markdown
