"""pnn limits with two signal parameters (mX, mY): one folder, workspace and row per point."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyhf
import pytest
import uproot
import yaml
from click.testing import CliRunner
from threadpoolctl import threadpool_limits

from pnn.cli import main
from pnn.core.config import load_config
from pnn.stats import limits, report
from tests.conftest import write_config
from tests.faults.util import leftovers, one_line_error

GRID = [(1000.0, 300.0), (1000.0, 500.0), (1500.0, 300.0), (1500.0, 500.0)]
EVALUATED = [(1000.0, 300.0), (1500.0, 300.0), (1500.0, 500.0)]
BACKGROUNDS = {"qcd": (600.0, 400.0, 150.0, 250.0), "ttbar": (700.0, 300.0, 200.0, 150.0)}
SIDES = {"": 1.0, "__up": 1.03, "__down": 0.97}  # tree variations: a mass-scale shift


def _tree(rng: np.random.Generator, n: int, first: int, mjj4: np.ndarray, mjj2: np.ndarray,
          weight: float, shift: float, signal: bool) -> dict[str, np.ndarray]:
    return {"EventNumber": np.arange(first, first + n, dtype=np.int64),
            "weight": np.full(n, weight),
            "wscale_up": rng.normal(1.05, 0.01, n), "wscale_down": rng.normal(0.95, 0.01, n),
            "Mjj4": (mjj4 * shift).astype(np.float32), "Mjj2": (mjj2 * shift).astype(np.float32),
            "x1": rng.normal(1.0 if signal else 0.0, 1.0, n).astype(np.float32)}


def write_ntuples(folder: Path, n_signal: int = 600, n_background: int = 4000) -> None:
    """A resonance X -> Y + jets over an (mX, mY) grid: Mjj4 peaks at mX and Mjj2 at mY for
    signal, both fall for two backgrounds; every tree also as __up/__down, plus pseudo-data."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(11)
    with uproot.recreate(folder / "signal.root") as f:
        for i, (mx, my) in enumerate(GRID):
            mjj4, mjj2 = rng.normal(mx, 0.05 * mx, n_signal), rng.normal(my, 0.06 * my, n_signal)
            for side, shift in SIDES.items():
                f[f"X{mx:g}_Y{my:g}{side}"] = _tree(np.random.default_rng(i), n_signal,
                                                    100_000 * (i + 1), mjj4, mjj2, 0.02, shift,
                                                    True)
    with uproot.recreate(folder / "background.root") as f:
        for i, (name, (x0, xs, y0, ys)) in enumerate(BACKGROUNDS.items()):
            mjj4 = x0 + rng.exponential(xs, n_background)
            mjj2 = y0 + rng.exponential(ys, n_background)
            for side, shift in SIDES.items():
                f[f"{name}{side}"] = _tree(np.random.default_rng(50 + i), n_background,
                                           1_000_000 * (i + 1), mjj4, mjj2, 1.0, shift, False)
    with uproot.recreate(folder / "data.root") as f:
        n = n_background // 2
        f["data"] = _tree(rng, n, 9_000_000, 600 + rng.exponential(400, n),
                          150 + rng.exponential(250, n), 1.0, 1.0, False)


def config(tmp: Path) -> dict:
    data = tmp / "ntuples"
    return {
        "name": "xy",
        "output_dir": str(tmp / "runs"),
        "seed": 5,
        "luminosity": 140.0,
        "parameters": ["mX", "mY"],
        "samples": {
            "signal": [{"name": f"X{mx:g}_Y{my:g}", "files": str(data / "signal.root"),
                        "tree": f"X{mx:g}_Y{my:g}", "parameters": {"mX": mx, "mY": my}}
                       for mx, my in GRID],
            "background": [{"name": name, "files": str(data / "background.root"), "tree": name}
                           for name in BACKGROUNDS],
            "data": [{"name": "data", "files": str(data / "data.root"), "tree": "data"}],
        },
        "features": ["Mjj4", "Mjj2", "x1"],
        "training": {"epochs": 2, "batch_size": 256, "patience": 2},
        "evaluation": {"points": [{"mX": mx, "mY": my} for mx, my in EVALUATED],
                       "window_branch": {"mX": "Mjj4", "mY": "Mjj2"}},
        "limits": {"methods": ["pnn", "window"], "binning": {"max_bins": 5}, "systematics": [
            {"name": "lumi", "type": "lumi", "value": 0.017},
            {"name": "bkg_weight", "type": "weight", "up": "weight * wscale_up",
             "down": "weight * wscale_down", "samples": ["qcd", "ttbar"]},
            {"name": "scale", "type": "tree", "up": "{tree}__up", "down": "{tree}__down"}]},
    }


def _run(path: Path, *verbs: str) -> str:
    out = []
    for verb in verbs:
        res = CliRunner().invoke(main, ["-q", *verb.split(), str(path)], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        out.append(res.output)
    return "".join(out)


def _copy(path: Path, tmp: Path, **limit_keys) -> Path:
    """The run of ``path`` under ``tmp`` (without limits), its config with other limit keys."""
    raw = yaml.safe_load(path.read_text())
    shutil.copytree(Path(raw["output_dir"]) / raw["name"], tmp / "runs" / raw["name"],
                    ignore=shutil.ignore_patterns("limits"))
    raw["output_dir"] = str(tmp / "runs")
    raw["limits"] = {**raw["limits"], **limit_keys}
    return write_config(tmp / "config.yaml", raw)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> Path:
    """The (mX, mY) toy ingested, trained and evaluated at three of its four points."""
    tmp = tmp_path_factory.mktemp("limits-xy")
    write_ntuples(tmp / "ntuples")
    path = write_config(tmp / "config.yaml", config(tmp))
    _run(path, "ingest", "train", "evaluate")
    return path


@pytest.fixture(scope="module")
def limited(evaluated, tmp_path_factory) -> Path:
    """The evaluated toy with the limits of every evaluated point, collected."""
    path = _copy(evaluated, tmp_path_factory.mktemp("limited-xy"))
    _run(path, "limits")
    return path


def test_one_folder_workspace_and_row_per_point_and_method(limited) -> None:
    cfg = load_config(limited)
    out = cfg.run_dir / "limits"
    labels = ["mX1000_mY300", "mX1500_mY300", "mX1500_mY500"]
    assert sorted(p.parent.name for p in out.glob("*/limits.json")) == labels
    rows = json.loads((out / "limits.json").read_text())
    assert {(r["mX"], r["mY"], r["method"]) for r in rows} == {
        (mx, my, m) for mx, my in EVALUATED for m in ("pnn", "window")}
    assert len(rows) == 2 * len(EVALUATED) and all("mass" not in r for r in rows)
    for r in rows:
        band = [r[k] for k in limits.KEYS]
        assert all(np.isfinite(band)) and band == sorted(band) and band[0] > 0
        assert r["trained"] is True and r["status"] == "ok" and 2 <= r["bins"] <= 5
    csv = pd.read_csv(out / "limits.csv")
    assert list(csv.columns[:4]) == ["mX", "mY", "method", "trained"] and len(csv) == len(rows)
    for label in labels:
        per_point = json.loads((out / label / "limits.json").read_text())["rows"]
        mx, my = (float(v) for v in label[2:].split("_mY"))
        assert {(r["mX"], r["mY"]) for r in per_point} == {(mx, my)}
        for method in ("pnn", "window"):
            assert (out / "workspaces" / f"{method}_{label}.json").is_file()
        for plot in ("templates.png", "cls.png"):
            assert (out / label / plot).stat().st_size > 10_000
    # one Brazil plot per mY, against mX; none for the whole grid
    for name in ("brazil_mY300.png", "brazil_mY500.png", "brazil_mY300_fb.png"):
        assert (out / name).stat().st_size > 10_000
    assert not (out / "brazil.png").exists()
    assert not list(out.glob("m[0-9]*")) and leftovers(cfg.run_dir) == []


def test_the_window_is_a_box_and_the_pnn_sets_different_limits(limited) -> None:
    rows = json.loads((load_config(limited).run_dir / "limits" / "limits.json").read_text())
    by = {(r["mX"], r["mY"], r["method"]): r["expected"] for r in rows}
    # the two methods bin different discriminants of the same events
    assert all(by[(*p, "pnn")] != by[(*p, "window")] for p in EVALUATED)
    scores = pd.DataFrame({"window_Mjj4": [1000.0, 1100.0, 900.0],
                           "window_Mjj2": [300.0, 300.0, 360.0], "score": [0.5, 0.5, 0.5]})
    expected = [0.0, -0.1, -0.2]  # -max_i |x_i - theta_i| / theta_i
    for window in (["window_Mjj4", "window_Mjj2"], None):  # named, or found in the table
        got = limits.discriminant(scores, "window", (1000.0, 300.0), window)
        assert got == pytest.approx(expected)
    assert limits.discriminant(scores.drop(columns="window_Mjj2"), "window", (1000.0, 300.0)) is None


def test_a_workspace_validates_and_reproduces_its_limit_with_pyhf(limited) -> None:
    out = load_config(limited).run_dir / "limits"
    spec = json.loads((out / "workspaces" / "pnn_mX1500_mY300.json").read_text())
    ws = pyhf.Workspace(spec)  # validated against the HistFactory schema
    model = ws.model()
    assert {"lumi", "bkg_weight", "scale"} <= set(model.config.parameters)
    pyhf.set_backend("numpy")
    mu_b = model.config.suggested_init()
    mu_b[model.config.poi_index] = 0.0
    asimov = model.expected_data(mu_b)
    row = next(r for r in json.loads((out / "mX1500_mY300" / "limits.json").read_text())["rows"]
               if r["method"] == "pnn")
    scan = np.linspace(0.6 * row["expected"], 1.6 * row["expected"], 11)
    with threadpool_limits(1):
        _, expected = pyhf.infer.intervals.upper_limits.upper_limit(asimov, model, scan=scan)
    assert row["expected"] == pytest.approx(float(expected[2]), rel=0.01)


def test_comparison_summary_and_report_are_keyed_by_point(limited) -> None:
    cfg = load_config(limited)
    table = pd.read_csv(cfg.run_dir / "limits" / "limits.csv")
    wide = limits.comparison(table)
    assert list(wide.columns[:3]) == ["mX", "mY", "trained"]
    assert [tuple(p) for p in wide[["mX", "mY"]].to_numpy()] == EVALUATED
    assert np.all(wide["pnn/window"] > 0)
    columns = limits.summary_columns(cfg)
    assert sorted(columns) == EVALUATED
    assert all(set(v) == {"limit_pnn", "limit_window"} for v in columns.values())
    summary, _ = report.collect(cfg)  # the report's table (its plots are drawn elsewhere)
    assert {(r.mX, r.mY): r.limit_pnn for r in summary.itertuples()} == {
        p: v["limit_pnn"] for p, v in columns.items()}


def test_point_option_writes_only_that_point(evaluated, tmp_path) -> None:
    path = _copy(evaluated, tmp_path, methods=["pnn"], systematics=[])
    output = _run(path, "limits --point mX=1500,mY=500")
    run = load_config(path).run_dir / "limits"
    assert "mX = 1500, mY = 500 GeV: wrote" in output and str(run / "mX1500_mY500") in output
    assert [p.parent.name for p in run.glob("*/limits.json")] == ["mX1500_mY500"]
    assert not (run / "limits.json").exists()  # collecting is left to --collect
    assert [p.name for p in (run / "workspaces").iterdir()] == ["pnn_mX1500_mY500.json"]
    msg = one_line_error(CliRunner().invoke(main, ["limits", str(path), "--mass", "1000"]))
    assert "--mass is for a lone mass" in msg and "--point mX=...,mY=..." in msg


def test_limits_points_restricts_and_names_a_missing_evaluation(evaluated, tmp_path) -> None:
    path = _copy(evaluated, tmp_path, methods=["pnn"], systematics=[],
                 points=[{"mX": 1000.0, "mY": 500.0}])
    msg = one_line_error(CliRunner().invoke(main, ["limits", str(path)]))
    assert "no evaluation at mX = 1000, mY = 500 GeV" in msg
    assert "evaluate" in msg and "--point mX1000_mY500" in msg
    raw = yaml.safe_load(path.read_text())
    raw["limits"]["points"] = [{"mX": 1500.0, "mY": 300.0}]
    write_config(path, raw)
    _run(path, "limits")
    rows = json.loads((load_config(path).run_dir / "limits" / "limits.json").read_text())
    assert [(r["mX"], r["mY"], r["method"]) for r in rows] == [(1500.0, 300.0, "pnn")]
    raw["limits"] = {"masses": [1000.0]}
    write_config(path, raw)
    msg = one_line_error(CliRunner().invoke(main, ["limits", str(path)]))
    assert "limits.masses is for a lone mass" in msg and "limits.points" in msg
