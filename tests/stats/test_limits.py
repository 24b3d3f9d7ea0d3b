"""pnn limits on a small toy with systematics and pseudo-data: outputs, physics, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyhf
import pytest
import yaml
from click.testing import CliRunner
from threadpoolctl import threadpool_limits

from pnn.cli import main
from pnn.core.config import load_config
from pnn.stats import limits
from tests.conftest import toy_config, write_config
from tests.faults.util import leftovers, one_line_error, snapshot

SYSTEMATICS = [
    {"name": "lumi", "type": "lumi", "value": 0.017},
    {"name": "ttbar_xsec", "type": "normsys", "up": 1.06, "down": 0.94, "samples": ["ttbar"]},
    {"name": "bkg_modelling", "type": "weight", "up": "weight * weight_scale_up",
     "down": "weight * weight_scale_down", "samples": ["ttbar", "multijet"]},
    {"name": "jes", "type": "tree", "up": "{tree}__1up", "down": "{tree}__1down"},
]


def _config(tmp: Path, **generate) -> dict:
    cfg = toy_config(tmp, signal_events=2000, background_events=20000, epochs=3)
    cfg["luminosity"] = 140.0
    cfg["generate"].update(systematics=True, data=True, **generate)
    cfg["samples"]["data"] = [{"name": "data", "files": str(tmp / "ntuples" / "data.root"),
                               "tree": "data"}]
    cfg["limits"] = {"methods": ["pnn", "window", "optimal"], "systematics": SYSTEMATICS,
                     "binning": {"max_bins": 6}}
    return cfg


def _run(path: Path, *verbs: str) -> None:
    for verb in verbs:
        res = CliRunner().invoke(main, ["-q", *verb.split(), str(path)], catch_exceptions=False)
        assert res.exit_code == 0, res.output


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> Path:
    """A small toy with variation trees and pseudo-data, trained and evaluated."""
    tmp = tmp_path_factory.mktemp("limits")
    path = write_config(tmp / "config.yaml", _config(tmp))
    _run(path, "generate", "ingest", "train", "evaluate")
    return path


@pytest.fixture(scope="module")
def limited(evaluated, tmp_path_factory) -> Path:
    """The evaluated toy with its limits (in a copy, so bad-input tests start clean)."""
    tmp = tmp_path_factory.mktemp("limited")
    raw = yaml.safe_load(evaluated.read_text())
    shutil.copytree(Path(raw["output_dir"]) / raw["name"], tmp / "runs" / raw["name"])
    raw["output_dir"] = str(tmp / "runs")
    path = write_config(tmp / "config.yaml", raw)
    _run(path, "limits")
    return path


def test_limits_json_has_every_mass_and_method(limited) -> None:
    cfg = load_config(limited)
    rows = json.loads((cfg.run_dir / "limits" / "limits.json").read_text())
    assert {(r["mass"], r["method"]) for r in rows} == {
        (m, method) for m in (500, 750, 1000, 1500) for method in ("pnn", "window", "optimal")}
    for r in rows:
        band = [r[k] for k in limits.KEYS]
        assert all(np.isfinite(band)) and band == sorted(band) and band[0] > 0
        assert r["observed"] is None  # blinded by default
        assert r["expected_fb"] == pytest.approx(r["expected"] * r["xsec_fb"])
        assert 2 <= r["bins"] <= 6 and r["status"] == "ok"
    csv = pd.read_csv(cfg.run_dir / "limits" / "limits.csv")
    assert len(csv) == len(rows) and list(csv.columns[:9]) == [
        "mass", "method", "trained", *limits.KEYS, "observed"]
    for name in ("brazil.png", "brazil_fb.png", "m750/templates.png", "m750/cls.png"):
        assert (cfg.run_dir / "limits" / name).stat().st_size > 10_000
    assert leftovers(cfg.run_dir) == []


def test_the_pnn_beats_the_window_and_the_optimum_beats_both(limited) -> None:
    rows = json.loads((load_config(limited).run_dir / "limits" / "limits.json").read_text())
    by = {(r["mass"], r["method"]): r["expected"] for r in rows}
    for m in (1000, 1500):
        assert by[(m, "optimal")] < by[(m, "window")] and by[(m, "optimal")] < by[(m, "pnn")]
    assert by[(1500, "pnn")] < by[(1500, "window")]  # three epochs of training: clear at 1500


def test_workspace_reproduces_the_limit_with_pyhf(limited) -> None:
    cfg = load_config(limited)
    spec = json.loads((cfg.run_dir / "limits" / "workspaces" / "pnn_m1500.json").read_text())
    ws = pyhf.Workspace(spec)
    model = ws.model()
    pyhf.set_backend("numpy")
    mu_b = model.config.suggested_init()
    mu_b[model.config.poi_index] = 0.0
    asimov = model.expected_data(mu_b)
    row = next(r for r in json.loads((cfg.run_dir / "limits" / "m1500" / "limits.json")
                                     .read_text())["rows"] if r["method"] == "pnn")
    scan = np.linspace(0.6 * row["expected"], 1.6 * row["expected"], 11)
    with threadpool_limits(1):
        _, expected = pyhf.infer.intervals.upper_limits.upper_limit(asimov, model, scan=scan)
    assert row["expected"] == pytest.approx(float(expected[2]), rel=0.01)
    assert row["expected_plus1"] == pytest.approx(float(expected[3]), rel=0.02)


def test_a_systematic_raises_the_limit_and_staterror_off_lowers_it(limited, tmp_path) -> None:
    base = json.loads((load_config(limited).run_dir / "limits" / "limits.json").read_text())
    nominal = {(r["mass"], r["method"]): r["expected"] for r in base}
    raw = yaml.safe_load(limited.read_text())
    src = Path(raw["output_dir"]) / raw["name"]
    for change, sign in (({"systematics": [*SYSTEMATICS, {"name": "extra", "type": "normsys",
                                                         "up": 1.3, "samples": ["multijet"]}]}, 1),
                         ({"staterror": False}, -1)):
        shutil.rmtree(tmp_path / "runs", ignore_errors=True)
        shutil.copytree(src, tmp_path / "runs" / raw["name"])
        raw2 = {**raw, "output_dir": str(tmp_path / "runs"),
                "limits": {**raw["limits"], "methods": ["pnn"], **change}}
        path = write_config(tmp_path / "c.yaml", raw2)
        _run(path, "limits --mass 1000")
        row = json.loads((tmp_path / "runs" / raw["name"] / "limits" / "m1000" / "limits.json")
                         .read_text())["rows"][0]
        assert sign * (row["expected"] - nominal[(1000, "pnn")]) > 0


def test_report_carries_the_limit_columns(limited) -> None:
    _run(limited, "report")
    rows = json.loads((load_config(limited).run_dir / "summary.json").read_text())
    assert all(r["limit_pnn"] > 0 and r["limit_window"] > 0 for r in rows)


def test_stale_limits_are_refused_by_the_collect_step(limited, tmp_path) -> None:
    raw = yaml.safe_load(limited.read_text())
    raw["limits"] = {**raw["limits"], "cl": 0.9}
    path = write_config(tmp_path / "c.yaml", raw)
    msg = one_line_error(CliRunner().invoke(main, ["limits", str(path), "--collect"]))
    assert "'limits' changed" in msg and "pnn limits" in msg


@pytest.mark.parametrize("change, words", [
    ({"systematics": [{"name": "x", "type": "shape"}]}, "limits.systematics"),
    ({"systematics": [{"name": "jes", "type": "tree", "up": "{tree}__2up"}]}, "__2up"),
    ({"systematics": [{"name": "n", "type": "normsys", "up": 1.1, "samples": ["zjets"]}]},
     "no sample 'zjets'"),
    ({"observed": True, "_no_data": True}, "no data sample"),
    ({"systematics": [{"name": "w", "type": "weight", "up": "weight * no_such_branch"}]},
     "no_such_branch"),
])
def test_bad_limits_input_is_one_line_and_writes_nothing(evaluated, tmp_path, change,
                                                          words) -> None:
    raw = yaml.safe_load(evaluated.read_text())
    run = Path(raw["output_dir"]) / raw["name"]
    raw["output_dir"] = str(tmp_path / "runs")
    shutil.copytree(run, tmp_path / "runs" / raw["name"],
                    ignore=shutil.ignore_patterns("limits"))
    if change.pop("_no_data", False):
        raw["samples"]["data"] = []
    raw["limits"] = {**raw["limits"], **change}
    path = write_config(tmp_path / "c.yaml", raw)
    before = snapshot(tmp_path / "runs")
    msg = one_line_error(CliRunner().invoke(main, ["limits", str(path)]))
    assert words in msg
    assert snapshot(tmp_path / "runs") == before and leftovers(tmp_path / "runs") == []


def test_an_empty_background_at_one_mass_fails_that_mass_only(evaluated, tmp_path) -> None:
    raw = yaml.safe_load(evaluated.read_text())
    run = Path(raw["output_dir"]) / raw["name"]
    raw["output_dir"] = str(tmp_path / "runs")
    dest = tmp_path / "runs" / raw["name"]
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("limits"))
    scores = pd.read_parquet(dest / "evaluate" / "m750" / "scores.parquet")
    scores.loc[scores["label"] == 0, "weight"] = 0.0
    scores.to_parquet(dest / "evaluate" / "m750" / "scores.parquet")
    raw["limits"] = {**raw["limits"], "methods": ["pnn"], "systematics": []}
    path = write_config(tmp_path / "c.yaml", raw)
    res = CliRunner().invoke(main, ["limits", str(path)])
    msg = one_line_error(res)
    assert "750 GeV" in msg and "empty" in msg
    assert sorted(p.parent.name for p in (dest / "limits").glob("m*/limits.json")) == [
        "m1000", "m1500", "m500"]


def _observed(evaluated: Path, tmp_path: Path, **inject) -> list[dict]:
    """Observed limits on fresh pseudo-data (optionally with a signal injected)."""
    raw = yaml.safe_load(evaluated.read_text())
    run = Path(raw["output_dir"]) / raw["name"]
    gen = {**raw, "generate": {**raw["generate"], "output": str(tmp_path / "data"), **inject}}
    _run(write_config(tmp_path / "gen.yaml", gen), "generate")
    raw["output_dir"] = str(tmp_path / "runs")
    shutil.copytree(run, tmp_path / "runs" / raw["name"], ignore=shutil.ignore_patterns("limits"))
    raw["samples"]["data"] = [{"name": "data", "files": str(tmp_path / "data" / "data.root"),
                               "tree": "data"}]
    raw["limits"] = {**raw["limits"], "methods": ["pnn"], "observed": True,
                     "masses": [500.0, 1000.0, 1500.0], "systematics": SYSTEMATICS[:2]}
    path = write_config(tmp_path / "c.yaml", raw)
    _run(path, "limits")
    return json.loads((tmp_path / "runs" / raw["name"] / "limits" / "limits.json").read_text())


def test_an_injected_signal_is_seen_where_it_was_injected(evaluated, tmp_path) -> None:
    from pnn.io import toy

    rows = _observed(evaluated, tmp_path, inject_mass=1000.0,
                     inject_xsec_fb=12 * toy.signal_xsec_fb(1000.0))
    at = {r["mass"]: r for r in rows}
    assert at[1000]["observed"] > at[1000]["expected_plus2"]
    assert max(rows, key=lambda r: r["significance"])["mass"] == 1000
    assert at[1000]["significance"] > 3


def test_background_only_data_fall_inside_the_band(evaluated, tmp_path) -> None:
    rows = _observed(evaluated, tmp_path)
    inside = [r["expected_minus2"] <= r["observed"] <= r["expected_plus2"] for r in rows]
    assert sum(inside) >= 2 and all(r["p0"] is not None for r in rows)


def test_limits_interrupted_midway_keep_every_other_mass(limited, tmp_path, monkeypatch) -> None:
    raw = yaml.safe_load(limited.read_text())
    shutil.copytree(Path(raw["output_dir"]) / raw["name"], tmp_path / "runs" / raw["name"])
    raw["output_dir"] = str(tmp_path / "runs")
    raw["limits"] = {**raw["limits"], "methods": ["pnn"]}
    path = write_config(tmp_path / "c.yaml", raw)
    before = snapshot(tmp_path / "runs")
    real, calls = limits.write_mass, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(limits, "write_mass", interrupted)
    res = CliRunner().invoke(main, ["limits", str(path)])
    assert one_line_error(res, code=130).startswith("pnn: interrupted")
    after = snapshot(tmp_path / "runs")
    changed = {k for k in before if before[k] != after.get(k)}
    # only the first mass was published again; every other output is as it was
    assert "small/limits/m500/limits.json" in changed
    assert changed <= {"small/limits/m500/limits.json", "small/limits/m500/templates.png",
                       "small/limits/m500/cls.png", "small/limits/workspaces/pnn_m500.json"}
    assert set(after) == set(before) and leftovers(tmp_path / "runs") == []


def test_score_templates_span_zero_to_one_and_baselines_their_values(small_toy) -> None:
    cfg = load_config(small_toy)
    rng = np.random.default_rng(4)
    label = np.r_[np.ones(2000), np.zeros(20000)].astype(int)
    score = np.where(label == 1, rng.beta(8, 1, label.size), rng.beta(1, 8, label.size))
    table = pd.DataFrame({"label": label, "weight": np.ones(label.size)})
    edges = limits._edges(cfg, "pnn", score, table)
    assert edges[0] == 0.0 and edges[-1] == 1.0 and len(edges) > 3
    window = -np.abs(rng.normal(0, 50, label.size))
    edges = limits._edges(cfg, "window", window, table)
    assert edges[0] == window.min() and edges[-1] == window.max()
