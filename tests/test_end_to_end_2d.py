"""The chain with two signal parameters on a tiny X -> Y H toy: three ways to give a point,
training with background drawing whole points, evaluation per point with the exact optimum,
the hull refusal, and the report's table and heatmaps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from pnn.cli import main
from pnn.core.config import load_config
from pnn.io import ingest, toy2d
from tests.conftest import write_config

GRID = [(500.0, 90.0), (1000.0, 90.0), (1500.0, 90.0), (1000.0, 550.0), (1500.0, 550.0),
        (1500.0, 1000.0)]
OFFGRID = [(1250.0, 300.0)]
INSIDE_BOX_OUTSIDE_HULL = "mX=600,mY=900"
REGEX = r"XtoYH_mX(?P<mX>[\d.]+)_mY(?P<mY>[\d.]+)"


def config(tmp: Path, *, signal: list[dict] | None = None, **training) -> dict:
    data = tmp / "ntuples"
    files = str(data / "signal.root")
    trained = "|".join(toy2d.signal_tree_name(p) for p in GRID)
    signal = signal or [
        {"name": "{tree}", "files": files, "tree_regex": trained, "parameter_regex": REGEX},
        {"name": "{tree}", "files": files, "tree_regex": toy2d.signal_tree_name(OFFGRID[0]),
         "parameter_regex": REGEX, "train": False},
    ]
    return {
        "name": "xyh", "output_dir": str(tmp / "runs"), "seed": 5, "luminosity": 140.0,
        "parameters": ["mX", "mY"],
        "generate": {"toy": "xyh", "output": str(data), "points": [list(p) for p in GRID],
                     "offgrid_points": [list(p) for p in OFFGRID], "signal_events": 1500,
                     "background_events": 40000},
        "samples": {"signal": signal,
                    "background": [{"name": n, "files": str(data / "background.root"), "tree": n}
                                   for n in ("ttbar", "multijet")]},
        "features": list(toy2d.BRANCHES),
        "evaluation": {"window_branch": {"mX": "FourBodyMass", "mY": "TwoBodyMass"},
                       "bootstrap_replicates": 100},
        "training": {"epochs": 6, "batch_size": 512, "patience": 6, "layers": [16, 16],
                     "learning_rate": 0.1, **training},
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("xyh")
    path = write_config(tmp / "c.yaml", config(tmp))
    runner = CliRunner()
    for verb in ("generate", "ingest", "train", "evaluate", "report"):
        res = runner.invoke(main, [verb, str(path)])
        assert res.exit_code == 0, (verb, res.output)
    return path


def test_constants_branches_and_regex_give_the_same_points(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path / "c.yaml", config(tmp_path)))
    runner = CliRunner()
    assert runner.invoke(main, ["generate", cfg.source]).exit_code == 0
    files = str(tmp_path / "ntuples" / "signal.root")
    tables = []
    for way in ("regex", "constants", "branches"):
        signal = []
        for p in [*GRID, *OFFGRID]:
            s = {"name": toy2d.signal_tree_name(p), "files": files, "tree": toy2d.signal_tree_name(p),
                 "train": p in GRID}
            if way == "regex":
                s["parameter_regex"] = REGEX
            elif way == "constants":
                s["parameters"] = {"mX": p[0], "mY": p[1]}
            else:
                s["parameter_branches"] = {"mX": "mX", "mY": "mY"}
            signal.append(s)
        c = config(tmp_path, signal=signal)
        c["name"] = way
        cfg = load_config(write_config(tmp_path / f"{way}.yaml", c))
        ingest.ingest(cfg)
        events, _ = ingest.load_events(cfg)
        tables.append(events)
    sig = [t[t["label"] == 1][["mX", "mY"]].to_numpy() for t in tables]
    assert np.allclose(sig[0], sig[1]) and np.allclose(sig[0], sig[2])
    assert {tuple(r) for r in sig[0]} == {*GRID, *OFFGRID}
    assert tables[0][tables[0]["label"] == 0][["mX", "mY"]].isna().all().all()


def test_training_records_both_parameters_and_scales_each_to_the_unit_range(run: Path) -> None:
    cfg = load_config(run)
    meta = json.loads((cfg.run_dir / "model" / "metadata.json").read_text())
    assert meta["parameters"] == ["mX", "mY"] and meta["conditioning"] == "concat"
    assert sorted(tuple(p) for p in meta["masses"]) == sorted(GRID)
    scaler = json.loads((cfg.run_dir / "model" / "fold0.scaler.json").read_text())
    assert scaler["parameter_min"] == [500.0, 90.0] and scaler["parameter_max"] == [1500.0, 1000.0]


def test_every_point_is_evaluated_against_the_optimum(run: Path) -> None:
    cfg = load_config(run)
    summary = pd.read_json(cfg.run_dir / "summary.json")
    assert {"mX", "mY", "trained"} <= set(summary.columns) and "mass" not in summary.columns
    got = {(r.mX, r.mY): bool(r.trained) for r in summary.itertuples()}
    assert got == {**{p: True for p in GRID}, **{p: False for p in OFFGRID}}
    assert (summary["auc_optimal"] >= summary["auc"] - 3 * summary["auc_err"]).all()
    assert summary["z_ratio"].between(0.1, 1.2).all()  # a few epochs: far from the optimum
    assert (cfg.run_dir / "evaluate" / "mX1250_mY300" / "scores.parquet").is_file()
    scores = pd.read_parquet(cfg.run_dir / "evaluate" / "mX1000_mY550" / "scores.parquet")
    assert {"window_FourBodyMass", "window_TwoBodyMass", "llr"} <= set(scores.columns)
    assert (cfg.run_dir / "heatmap_z_ratio.png").is_file()
    assert (cfg.run_dir / "heatmap_auc_gap.png").is_file()
    assert "mX = 1250, mY = 300" in (cfg.run_dir / "report.html").read_text()


def test_a_point_inside_the_box_but_outside_the_hull_is_refused(run: Path) -> None:
    res = CliRunner().invoke(main, ["evaluate", str(run), "--point", INSIDE_BOX_OUTSIDE_HULL])
    assert res.exit_code == 2
    assert "outside the convex hull" in res.output and "--allow-extrapolation" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_mass_options_are_refused_with_several_parameters(run: Path) -> None:
    res = CliRunner().invoke(main, ["evaluate", str(run), "--mass", "1000"])
    assert res.exit_code == 2 and "--point" in res.output


def test_affine_conditioning_trains_and_evaluates(tmp_path: Path, run: Path) -> None:
    c = config(tmp_path, conditioning="affine")
    c["generate"]["output"] = str(Path(load_config(run).generate.output))
    for s in c["samples"]["signal"] + c["samples"]["background"]:
        s["files"] = s["files"].replace(str(tmp_path / "ntuples"), c["generate"]["output"])
    path = write_config(tmp_path / "affine.yaml", c)
    runner = CliRunner()
    for verb in ("ingest", "train"):
        assert runner.invoke(main, [verb, str(path)]).exit_code == 0
    res = runner.invoke(main, ["evaluate", str(path), "--point", "mX=1000,mY=550"])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "runs" / "xyh" / "evaluate" / "mX1000_mY550" / "metrics.json")
                   .read_text())
    assert m["point"] == {"mX": 1000.0, "mY": 550.0} and m["mass"] is None
    assert m["methods"]["pnn"]["auc"] > 0.9


def test_the_tuning_objective_averages_over_points(run: Path) -> None:
    from pnn.learn import tune

    cfg = load_config(run)
    events, _ = ingest.load_events(cfg)
    z = tune.mean_asimov_z(cfg, events, cfg.run_dir / "model")
    assert np.isfinite(z) and z > 0


def test_hold_out_jobs_list_the_interior_points_read_from_tree_names(run: Path) -> None:
    # the points come from the tree names, so submit reads them from the events table
    res = CliRunner().invoke(main, ["submit", str(run), "interpolation", "--dry-run"])
    assert res.exit_code == 0, res.output
    tasks = (load_config(run).run_dir / "jobs" / "interpolation" / "dry-run" / "tasks.txt")
    assert [line.split()[-1] for line in tasks.read_text().splitlines()] == [
        "mX1000_mY90", "mX1500_mY550"]  # on the hull's edges; (1000, 550) lies outside
