"""The studies with several signal parameters, and the conditioning study in 1-D and 2-D."""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from pnn.cli import main
from pnn.core.config import load_config
from pnn.core.errors import PnnError
from pnn.io import toy, toy2d
from pnn.validate import study
from tests.conftest import toy_config, write_config

NAMES = ["mX", "mY"]
# A triangle, a point inside it and the middle of its bottom edge; one point off the grid.
TRIANGLE = [(500.0, 90.0), (1500.0, 90.0), (1500.0, 800.0)]
INSIDE = (1200.0, 300.0)
EDGE = (1000.0, 90.0)
OFFGRID = (1300.0, 500.0)
TINY_TRAINING = {"layers": [8], "epochs": 2, "batch_size": 512, "patience": 2}


def test_interior_points_with_two_parameters() -> None:
    # a triangle with one point inside: only that point is interior
    grid = sorted([*TRIANGLE, INSIDE])
    assert study.interior(grid) == [INSIDE]
    # a point on the boundary of the others' hull, between two of them, is interpolation
    # (held out); the corners never are
    grid = sorted([*TRIANGLE, INSIDE, EDGE])
    assert study.interior(grid) == [EDGE, INSIDE]
    # a point outside the others' hull is not interior, even inside their bounding box
    assert study.interior(sorted([*TRIANGLE, (600.0, 700.0)])) == []
    # one parameter: the masses with a neighbour on each side, as before
    assert study.interior([500.0, 750.0, 1000.0]) == [750.0]


def test_variants_with_two_parameters_are_the_hold_outs() -> None:
    grid = sorted([*TRIANGLE, INSIDE, EDGE])
    variants = study.network_variants(grid, NAMES)
    assert [v.name for v in variants] == ["holdout-mX1000_mY90", "holdout-mX1200_mY300"]
    held = {v.name: v for v in variants}["holdout-mX1200_mY300"]
    assert held.parametric and INSIDE not in held.signal_masses and len(held.signal_masses) == 4
    chosen = study.select_variants(variants, "holdout", [INSIDE], NAMES)
    assert [v.name for v in chosen] == ["holdout-mX1200_mY300"]
    with pytest.raises(PnnError, match="choose among points mX1000_mY90, mX1200_mY300"):
        study.select_variants(variants, "holdout", [(500.0, 90.0)], NAMES)
    methods = study.Methods(grid, "pnn", networks={v.name: v.name for v in variants}, names=NAMES)
    assert methods.at(INSIDE) == {"pnn": ("pnn", True), "pnn_holdout": ("holdout-mX1200_mY300", False)}
    assert methods.at(OFFGRID) == {"pnn": ("pnn", False)}


def test_conditioning_copy_changes_only_the_conditioning(small_toy) -> None:
    cfg = load_config(small_toy, {"output_dir": "elsewhere"})
    other = study.with_conditioning(cfg, study.other_conditioning(cfg))
    assert (cfg.training.conditioning, other.training.conditioning) == ("concat", "affine")
    assert other.command("train") == cfg.command("train") and other.run_dir == cfg.run_dir
    assert other.training.model_dump(exclude={"conditioning"}) == \
        cfg.training.model_dump(exclude={"conditioning"})
    assert study.training_digest(other) != study.training_digest(cfg)
    assert study.conditioning_variant(cfg).name == "conditioning-affine"
    assert study.conditioning_variant(other).name == "conditioning-concat"


def test_conditioning_table_side_by_side_and_the_winner() -> None:
    rows = []
    for (mX, mY, trained), gaps in {(1000.0, 300.0, True): (0.03, 0.01),
                                    (1300.0, 500.0, False): (0.05, 0.02)}.items():
        for kind, gap, ratio in zip(study.CONDITIONINGS, gaps, (0.80, 0.90), strict=True):
            rows.append({"mX": mX, "mY": mY, "trained": trained, "conditioning": kind,
                         "auc": 0.95 - gap, "z": 3 * ratio, "auc_gap": gap, "z_ratio": ratio})
    table = pd.DataFrame(rows)
    wide = study.conditioning_wide(table)
    assert list(wide.columns) == ["mX", "mY", "trained", "auc_concat", "auc_affine", "z_concat",
                                  "z_affine", "auc_gap_concat", "auc_gap_affine",
                                  "z_ratio_concat", "z_ratio_affine"]
    assert wide["auc_gap_affine"].tolist() == pytest.approx([0.01, 0.02])
    line = study.conditioning_conclusion(table)
    assert line == ("affine conditioning wins on average over the 2 points (1 never trained on): "
                    "mean AUC gap to the optimum 0.0150 against 0.0400 for concat (0.0250 "
                    "smaller), mean Z/Zopt 0.900 against 0.800 (+0.100)")
    # without the optimum the mean AUC and Z decide
    plain = table.assign(auc_gap=np.nan, z_ratio=np.nan)
    assert study.conditioning_conclusion(plain).startswith(
        "affine conditioning wins on average over the 2 points (1 never trained on): mean AUC "
        "0.9350 against 0.9100 for concat (+0.0250)")


def _run(runner: CliRunner, *args: str) -> str:
    res = runner.invoke(main, list(args))
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture(scope="module")
def trained_2d(tmp_path_factory) -> str:
    """A config of a tiny X -> Y H toy over a triangle with an inside point, one point off
    the grid, PNN trained."""
    tmp = tmp_path_factory.mktemp("toy2d")
    data = tmp / "ntuples"
    toy2d.write(data, [*TRIANGLE, INSIDE, OFFGRID], 800, 8000, 140.0, seed=3)
    grid = "|".join(f"{x:g}_mY{y:g}" for x, y in [*TRIANGLE, INSIDE])
    regex = r"XtoYH_mX(?P<mX>[\d.]+)_mY(?P<mY>[\d.]+)"
    cfg = {
        "name": "plane", "output_dir": str(tmp / "runs"), "seed": 5, "parameters": NAMES,
        "samples": {
            "signal": [
                {"name": "{tree}", "files": str(data / "signal.root"),
                 "tree_regex": f"XtoYH_mX({grid})", "parameter_regex": regex},
                {"name": "{tree}", "files": str(data / "signal.root"),
                 "tree_regex": "XtoYH_mX{:g}_mY{:g}".format(*OFFGRID), "parameter_regex": regex,
                 "train": False}],
            "background": [{"name": p.name, "files": str(data / "background.root"),
                            "tree": p.name} for p in toy2d.BACKGROUNDS]},
        "features": list(toy2d.BRANCHES), "event_number": "EventNumber",
        "training": TINY_TRAINING,
        "evaluation": {"window_branch": {"mX": "FourBodyMass", "mY": "TwoBodyMass"}},
        "study": {"jobs": 1},
    }
    path = str(write_config(tmp / "plane.yaml", cfg))
    runner = CliRunner()
    for verb in ("ingest", "train"):
        _run(runner, "-q", verb, path)
    return path


def test_interpolation_over_two_parameters(trained_2d) -> None:
    runner = CliRunner()
    out_text = _run(runner, "-q", "study", "interpolation", trained_2d)
    assert "PNN with mX = 1200, mY = 300 GeV held out: AUC" in out_text
    out = load_config(trained_2d).run_dir / "study"
    rows = pd.DataFrame(json.loads((out / "interpolation.json").read_text()))
    assert list(rows.columns[:3]) == ["mX", "mY", "trained"] and "mass" not in rows
    assert set(rows.method) == {"pnn", "pnn_holdout", "window", "optimal"}
    held = rows[rows.method == "pnn_holdout"]
    assert list(zip(held.mX, held.mY, strict=True)) == [INSIDE]
    assert not held.trained_at_mass.any() and held.trained.all()
    off = rows[(rows.mX == OFFGRID[0]) & (rows.mY == OFFGRID[1])]
    assert not off.trained.any() and set(off.method) == {"pnn", "window", "optimal"}
    assert len(rows[rows.method == "pnn"]) == 5 and np.isfinite(rows.auc).all()
    assert (out / "interpolation.png").is_file()
    assert not (out / "networks" / "nonparametric").exists()
    md = (out / "study.md").read_text()
    assert "## Scope with several parameters" in md and "Held out (mX, mY): (1200, 300) GeV" in md
    assert "| mX | mY |" in md
    # detuning is a one-parameter study: skipped, not failed
    skipped = _run(runner, "study", "detuning", trained_2d)
    assert "detuning: skipped" in skipped and not (out / "detuning.csv").exists()
    bad = runner.invoke(main, ["study", "dedicated", trained_2d])
    assert bad.exit_code == 2 and "one-parameter baseline" in bad.output


def test_conditioning_study_over_two_parameters(trained_2d) -> None:
    text = _run(CliRunner(), "-q", "study", "conditioning", trained_2d)
    assert "conditioning wins on average over the 5 points (1 never trained on)" in text \
        or "conditioning tie on average" in text
    out = load_config(trained_2d).run_dir / "study"
    table = pd.read_csv(out / "conditioning.csv")
    assert list(table.columns[:4]) == ["mX", "mY", "trained", "conditioning"]
    assert len(table) == 10
    per_point = table.groupby(["mX", "mY"])["conditioning"].apply(sorted)
    assert all(c == ["affine", "concat"] for c in per_point)
    assert set(table.loc[table.conditioning == "affine", "network"]) == {"conditioning-affine"}
    assert set(table.loc[table.conditioning == "concat", "network"]) == {"pnn"}
    assert np.isfinite(table[["auc", "auc_gap", "z_ratio"]]).all().all()
    meta = json.loads((out / "networks" / "conditioning-affine" / "model" / "metadata.json").read_text())
    assert meta["conditioning"] == "affine" and meta["parameters"] == NAMES
    md = (out / "study.md").read_text()
    assert "## Conditioning: concat against affine" in md and "auc_gap_affine" in md


def test_conditioning_study_with_one_parameter(tmp_path) -> None:
    cfg = toy_config(tmp_path, signal_events=800, background_events=8000,
                     training=TINY_TRAINING, study={"jobs": 1})
    g = cfg["generate"]
    toy.write(g["output"], g["masses"] + g["offgrid_masses"], g["signal_events"],
              g["background_events"], 140.0, cfg["seed"])
    path = str(write_config(tmp_path / "c.yaml", cfg))
    runner = CliRunner()
    for verb in ("ingest", "train"):
        _run(runner, "-q", verb, path)
    _run(runner, "-q", "study", "conditioning", path)
    out = tmp_path / "runs" / "small" / "study"
    table = pd.read_csv(out / "conditioning.csv")
    assert list(table.columns[:3]) == ["mass", "trained", "conditioning"]
    assert table.groupby("mass")["conditioning"].apply(sorted).to_dict() == {
        m: ["affine", "concat"] for m in (500.0, 750.0, 1000.0, 1500.0)}
    assert not table.loc[table.mass == 750.0, "trained"].any()
    assert np.isfinite(table[["auc", "z", "auc_gap", "z_ratio"]]).all().all()
    md = (out / "study.md").read_text()
    assert "## Conditioning: concat against affine" in md and "| mass | trained |" in md
    # the other network is reused: a rerun trains nothing
    again = runner.invoke(main, ["study", "conditioning", path])
    assert again.exit_code == 0 and "training 1 study networks" not in again.output
