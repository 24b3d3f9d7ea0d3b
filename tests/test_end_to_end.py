"""The whole chain through the CLI on a small toy: generate -> ingest -> train -> evaluate -> report."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pnn.cli import main
from pnn.core.config import load_config
from tests.conftest import toy_config, write_config

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"mass", "trained", "auc", "auc_optimal", "auc_window", "z", "z_optimal", "z_window",
        "bkg_eff_sig80", "bkg_eff_sig95"}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    # pnn run ends with the limits; one method keeps the fixture quick
    path = write_config(tmp / "config.yaml", toy_config(tmp, epochs=10, limits={"methods": ["pnn"]}))
    result = CliRunner().invoke(main, ["run", str(path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return path, result.output


def test_run_writes_summary_with_every_mass(finished_run) -> None:
    path, output = finished_run
    cfg = load_config(path)
    rows = json.loads((cfg.run_dir / "summary.json").read_text())
    assert [r["mass"] for r in rows] == [500, 750, 1000, 1500]
    assert [r["trained"] for r in rows] == [True, False, True, True]
    for r in rows:
        assert set(r) >= KEYS
        assert 0.8 < r["auc"] <= 1.0
        assert r["auc"] <= r["auc_optimal"] + 0.01  # nothing beats the likelihood ratio
        assert r["auc"] > r["auc_window"]
        assert 0 < r["bkg_eff_sig80"] < r["bkg_eff_sig95"] < 1
        assert r["limit_pnn"] > 0  # pnn run includes the limits, and the summary shows them
    assert "| mass | trained | auc |" in output
    csv = (cfg.run_dir / "summary.csv").read_text().splitlines()
    assert csv[0].startswith("mass,trained,auc,auc_optimal") and len(csv) == 5


def test_run_writes_models_scalers_and_plots(finished_run) -> None:
    cfg = load_config(finished_run[0])
    model = cfg.run_dir / "model"
    meta = json.loads((model / "metadata.json").read_text())
    assert meta["folds"] == 2 and meta["masses"] == [500, 1000, 1500]
    assert meta["features"] == cfg.features and meta["config_digest"] == cfg.digest()
    assert "tensorflow" in meta["versions"]
    for i in (0, 1):
        assert (model / f"fold{i}.keras").is_file()
        scaler = json.loads((model / f"fold{i}.scaler.json").read_text())
        assert scaler["parameter_min"] == [500] and scaler["parameter_max"] == [1500]
        assert (model / f"fold{i}.history.csv").read_text().startswith("epoch,loss,val_loss")
        assert (model / f"fold{i}.loss.png").stat().st_size > 1000
    for m in ("m500", "m750", "m1000", "m1500"):
        d = cfg.run_dir / "evaluate" / m
        metrics = json.loads((d / "metrics.json").read_text())
        assert set(metrics["methods"]) == {"pnn", "optimal", "window"}
        assert 0 <= metrics["ks_signal"] <= 1
        for plot in ("scores.png", "roc.png", "significance.png"):
            assert (d / plot).stat().st_size > 1000
    assert (cfg.run_dir / "summary.png").is_file()
    assert not list(cfg.run_dir.rglob(".*tmp*"))


def _events_copy(run_dir: Path, tmp_path: Path) -> Path:
    """The run's events table (and its record) under ``tmp_path``, as ``-o tmp_path`` reads it."""
    copy = tmp_path / run_dir.name
    copy.mkdir()
    for name in ("events.parquet", "events.json"):
        shutil.copy(run_dir / name, copy / name)
    return copy


def test_points_evaluated_by_workers_match_in_place_and_a_failing_one_spares_the_rest(
        finished_run, tmp_path) -> None:
    """Two worker processes evaluate the points; one without signal fails the command (exit 2)
    while the others are published whole, with the numbers an in-process evaluation gives."""
    from pnn.io import ingest
    from pnn.learn.model import FoldModels
    from pnn.stats import evaluate

    path, _ = finished_run
    cfg = load_config(path)
    copy = _events_copy(cfg.run_dir, tmp_path)
    shutil.copytree(cfg.run_dir / "model", copy / "model")
    res = CliRunner().invoke(main, ["evaluate", str(path), "-o", str(tmp_path), "--mass", "500",
                                    "--mass", "1000", "--mass", "1234"])
    assert res.exit_code == 2 and "no signal events at mass 1234 GeV" in res.output
    assert "Traceback" not in res.output
    assert not (copy / "evaluate" / "m1234").exists()
    assert not list(copy.rglob(".*tmp*"))
    here = load_config(path, {"output_dir": str(tmp_path / "in_place")})
    shutil.copytree(copy, here.run_dir)
    events, meta = ingest.load_events(here, columns=evaluate.event_columns(here))
    models = FoldModels.load(here.run_dir)
    for m in (500.0, 1000.0):
        folder = copy / "evaluate" / f"m{m:g}"
        assert (folder / "roc.png").stat().st_size > 1000
        got = json.loads((folder / "metrics.json").read_text())["methods"]
        ref = evaluate.evaluate_mass(here, events, models, m, meta["toy"]).methods
        for method, numbers in got.items():
            for key, value in numbers.items():
                assert value == pytest.approx(getattr(ref[method], key), rel=1e-6, nan_ok=True)


def test_evaluation_in_workers_starts_no_tensorflow_in_the_command(finished_run, tmp_path) -> None:
    """With worker processes the command itself reads only the model's metadata: the
    workers, forked from a server that imported TensorFlow once, load the networks."""
    path, _ = finished_run
    cfg = load_config(path)
    copy = _events_copy(cfg.run_dir, tmp_path)
    shutil.copytree(cfg.run_dir / "model", copy / "model")
    argv = ["evaluate", str(path), "-o", str(tmp_path), "--mass", "500", "--mass", "1000"]
    code = ("import sys; from pnn.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
            "assert 'tensorflow' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for m in (500, 1000):
        assert (copy / "evaluate" / f"m{m}" / "metrics.json").is_file()
    assert json.loads((copy / "evaluate" / "sanity.json").read_text())  # the checks ran too


def test_evaluate_one_mass_and_refuse_extrapolation(finished_run) -> None:
    path, _ = finished_run
    runner = CliRunner()
    res = runner.invoke(main, ["evaluate", str(path), "--mass", "750"])
    assert res.exit_code == 0 and "m = 750 GeV" in res.output and "m = 500" not in res.output
    res = runner.invoke(main, ["evaluate", str(path), "--mass", "2000"])
    assert res.exit_code == 2
    assert "outside the trained range" in res.output and "--allow-extrapolation" in res.output
    assert "Traceback" not in res.output


def test_training_is_reproducible(finished_run, tmp_path) -> None:
    """Same config and seed: identical weights (and so identical numbers)."""
    import keras

    path, _ = finished_run
    cfg = load_config(path)
    first = keras.saving.load_model(cfg.run_dir / "model" / "fold0.keras").get_weights()
    _events_copy(cfg.run_dir, tmp_path)
    res = CliRunner().invoke(main, ["train", str(path), "--output-dir", str(tmp_path),
                                    "--fold", "0"])
    assert res.exit_code == 0, res.output
    again = keras.saving.load_model(tmp_path / "small" / "model" / "fold0.keras").get_weights()
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c.update(typo=1), "unknown key 'typo'"),
        (lambda c: c["samples"]["signal"][0].update(files="/nonexistent/x.root"), "no file matches"),
        (lambda c: c["features"].append("NoSuchBranch"), "no branch 'NoSuchBranch'"),
        (lambda c: c["samples"]["background"][0].update(tree="nope"), "has no tree 'nope'"),
        (lambda c: c.update(selection="FourBodyMass < 0"), "selection keeps no events"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(small_toy, mutate, message) -> None:
    import yaml

    raw = yaml.safe_load(small_toy.read_text())
    mutate(raw)
    small_toy.write_text(yaml.safe_dump(raw))
    res = CliRunner().invoke(main, ["ingest", str(small_toy)])
    assert res.exit_code == 2
    assert message in res.output
    assert "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1


@pytest.mark.parametrize("argv", [["--help"], ["export", "--help"], ["study", "all", "--help"],
                                  ["apply", "--help"], ["submit", "--help"]])
def test_help_imports_nothing_heavy(argv) -> None:
    code = ("import sys; from pnn.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            "heavy = {'tensorflow', 'keras', 'uproot', 'matplotlib', 'onnx', 'onnxruntime'}\n"
            "assert not heavy & set(sys.modules), heavy & set(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_folds_trained_one_at_a_time_make_a_complete_model(finished_run, tmp_path) -> None:
    path, _ = finished_run
    cfg = load_config(path)
    copy = _events_copy(cfg.run_dir, tmp_path)
    runner = CliRunner()
    assert runner.invoke(main, ["train", str(path), "-o", str(tmp_path), "--fold", "1"]).exit_code == 0
    res = runner.invoke(main, ["evaluate", str(path), "-o", str(tmp_path), "--mass", "500"])
    assert res.exit_code == 2 and "the model of fold 0 is missing" in res.output
    assert res.output.rstrip().endswith(f"-o {tmp_path} --fold 0'")
    assert runner.invoke(main, ["train", str(path), "-o", str(tmp_path), "--fold", "0"]).exit_code == 0
    meta = json.loads((copy / "model" / "metadata.json").read_text())
    assert [r["fold"] for r in meta["fold_results"]] == [0, 1]
    res = runner.invoke(main, ["evaluate", str(path), "-o", str(tmp_path), "--mass", "500"])
    assert res.exit_code == 0, res.output


def test_interrupted_ingest_leaves_no_table(small_toy, monkeypatch) -> None:
    from pnn.io import ntuple

    real = ntuple.iterate
    calls = []

    def interrupted(*args, **kwargs):
        for chunk in real(*args, **kwargs):
            calls.append(1)
            if len(calls) > 2:  # two chunks are already in the table being written
                raise KeyboardInterrupt
            yield chunk

    monkeypatch.setattr(ntuple, "iterate", interrupted)
    res = CliRunner().invoke(main, ["ingest", str(small_toy)])
    assert res.exit_code == 130 and "interrupted" in res.output
    assert len(calls) == 3
    run_dir = load_config(small_toy).run_dir
    assert not list(run_dir.glob("*.parquet")) and not list(run_dir.rglob("*.tmp-*"))


def test_toy_objects_config_trains_from_jagged_branches(tmp_path) -> None:
    import yaml

    from pnn.io import ingest

    raw = yaml.safe_load((ROOT / "configs" / "toy_objects.yaml").read_text())
    data = tmp_path / "ntuples"
    raw["output_dir"] = str(tmp_path / "runs")
    raw["generate"].update(output=str(data), masses=[500, 1000], offgrid_masses=[750],
                           signal_events=600, background_events=6000)
    raw["samples"]["signal"] = [
        {**s, "files": str(data / "signal.root"),
         "tree_regex": "Xtohh(500|1000)" if s.get("train", True) else "Xtohh750"}
        for s in raw["samples"]["signal"]]
    for s in raw["samples"]["background"]:
        s["files"] = str(data / "background.root")
    raw["training"].update(epochs=2, patience=2, batch_size=256)
    path = write_config(tmp_path / "objects.yaml", raw)
    for verb in ("generate", "ingest", "train"):
        res = CliRunner().invoke(main, [verb, str(path)], catch_exceptions=False)
        assert res.exit_code == 0, res.output
    cfg = load_config(path)
    events, _ = ingest.load_events(cfg)
    np.testing.assert_array_equal(events["lead_jet_pt"], events["Jet0CorrTLV"])
    np.testing.assert_allclose(events["jet_ht"], events["sTNoMet"], rtol=1e-4)
    np.testing.assert_array_equal(events["n_btag"], events["Btag"])
    assert sorted(events.loc[events.label == 1, "mass"].unique()) == [500, 750, 1000]
    meta = json.loads((cfg.run_dir / "model" / "metadata.json").read_text())
    assert meta["features"] == ["FourBodyMass", "lead_jet_pt", "jet_ht", "sT", "n_btag"]
    assert meta["masses"] == [500, 1000]  # the off-grid sample stays out of training
