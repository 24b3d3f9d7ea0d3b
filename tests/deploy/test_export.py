"""ONNX export: the exported graphs, fed raw features and the signal point in GeV, give the Keras
scores, for one parameter or several, with concat or affine conditioning."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pnn.cli import main
from pnn.core.config import load_config
from pnn.core.errors import PnnError
from tests.conftest import toy_config, write_config
from tests.deploy import two_parameters

ROOT = Path(__file__).resolve().parents[2]
K = 3  # three folds, so a wrong fold rule cannot pass by symmetry


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny trained run (three folds, two epochs) exported through the CLI."""
    from pnn.io import ingest, toy
    from pnn.learn import train

    tmp = tmp_path_factory.mktemp("export")
    raw = toy_config(tmp, signal_events=1500, background_events=9000, epochs=2,
                     preprocessing={"folds": K})
    raw["training"]["layers"] = [16, 16]
    path = write_config(tmp / "config.yaml", raw)
    g = raw["generate"]
    toy.write(g["output"], g["masses"] + g["offgrid_masses"], g["signal_events"],
              g["background_events"], 140.0, raw["seed"])
    cfg = load_config(path)
    ingest.ingest(cfg)
    events, _ = ingest.load_events(cfg)
    train.train(cfg, events)
    res = CliRunner().invoke(main, ["export", str(path)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "wrote 3 ONNX models" in res.output
    return cfg, events


def test_onnx_scores_equal_keras_for_every_fold_and_mass(exported) -> None:
    from pnn.deploy import export
    from pnn.learn.model import FoldModels
    from pnn.learn.preprocess import folds

    cfg, events = exported
    fm = FoldModels.load(cfg.run_dir)
    X = events[cfg.features].to_numpy(np.float64)
    ev = events["event_number"].to_numpy()
    assert set(folds(ev, K)) == set(range(K))
    onnx_models = export.OnnxModels.load(export.export_dir(cfg.run_dir))
    per_event = np.where(events["label"] == 1, events["mass"], 750.0)
    for mass in (500.0, 750.0, 1500.0, per_event):  # trained, between trained points, per event
        keras_scores, _ = fm.score(X, mass, ev)
        onnx_scores = onnx_models.score(X, mass, ev)
        assert np.std(onnx_scores) > 0.01  # a network that separates, not a constant
        np.testing.assert_allclose(onnx_scores, keras_scores, rtol=0, atol=1e-5)
    # the plain function gives the same as the loaded models
    np.testing.assert_array_equal(export.score(export.export_dir(cfg.run_dir), X, 1000.0, ev),
                                  onnx_models.score(X, 1000.0, ev))


def test_each_event_goes_to_the_model_that_did_not_train_on_it(exported) -> None:
    """Scoring fold f's events with another fold's model gives other numbers."""
    from pnn.deploy import export
    from pnn.learn.preprocess import folds

    cfg, events = exported
    onnx_models = export.OnnxModels.load(export.export_dir(cfg.run_dir))
    X = events[cfg.features].to_numpy(np.float64)
    ev = events["event_number"].to_numpy()
    right = onnx_models.score(X, 1000.0, ev)
    shifted = onnx_models.score(X, 1000.0, ev + 1)  # every event handed to the next fold's model
    assert np.abs(right - shifted).max() > 1e-3
    fold = folds(ev, K)
    rows = np.column_stack([X, np.full(len(X), 1000.0)]).astype(np.float32)
    for i, session in enumerate(onnx_models.sessions):
        own = session.run(["score"], {"inputs": rows[fold == i]})[0].ravel()
        np.testing.assert_array_equal(own, right[fold == i])


def test_sidecar_lists_inputs_in_the_order_the_graph_expects(exported) -> None:
    import onnx
    import onnxruntime as ort

    from pnn.deploy import export
    from pnn.learn.model import FoldModels, predict

    cfg, events = exported
    out = export.export_dir(cfg.run_dir)
    side = json.loads((out / "pnn_onnx.json").read_text())
    assert side["inputs"] == [*cfg.features, "mass"]
    assert side["units"]["mass"] == "GeV"
    assert side["folds"] == K and side["masses"] == [500.0, 1000.0, 1500.0]
    assert side["format"] == "pnn-onnx/2" and side["parameters"] == ["mass"]
    assert side["conditioning"] == "concat"
    assert side["trained_points"] == [[500.0], [1000.0], [1500.0]]
    assert side["parameter_ranges"] == {"mass": [500.0, 1500.0]}
    assert [(c["index"], c["name"], c["kind"], c["unit"]) for c in side["input_columns"]] == [
        *((i, f, "feature", "as in the ntuple (raw, unscaled)") for i, f in enumerate(cfg.features)),
        (len(cfg.features), "mass", "parameter", "GeV")]
    assert side["fold_rule"].startswith(f"score an event with the model of fold f = EventNumber % {K}")
    assert side["config_digest"] == cfg.digest() and side["opset"] == export.OPSET
    fm = FoldModels.load(cfg.run_dir)
    assert [m["fold"] for m in side["models"]] == list(range(K))
    # a table with its columns in another order, read by the sidecar's names
    table = events[list(reversed(cfg.features))].assign(mass=1250.0)
    rows = table[side["inputs"]].to_numpy(np.float32)
    for m in side["models"]:
        path = out / m["file"]
        assert m["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        proto = onnx.load(str(path))
        (inp,) = proto.graph.input
        assert inp.name == side["input"]["name"]
        assert inp.type.tensor_type.shape.dim[1].dim_value == len(side["inputs"])
        assert [n.op_type for n in proto.graph.node[:4]] == ["Cast", "Sub", "Div", "Cast"]
        consts = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
        scaler = fm.scalers[m["fold"]]
        np.testing.assert_allclose(consts["scaling_offset"], [*scaler.center, scaler.mass_min],
                                   rtol=1e-6)
        np.testing.assert_allclose(consts["scaling_divisor"],
                                   [*scaler.scale, scaler.mass_max - scaler.mass_min], rtol=1e-6)
        props = {p.key: p.value for p in proto.metadata_props}
        assert json.loads(props["pnn_inputs"]) == side["inputs"]
        assert json.loads(props["pnn_mass_range_gev"]) == m["mass_range_gev"]
        assert json.loads(props["pnn_parameter_ranges_gev"]) == m["parameter_ranges"] == {
            "mass": m["mass_range_gev"]}
        assert props["pnn_conditioning"] == "concat" and props["pnn_format"] == "pnn-onnx/2"
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run([side["output"]["name"]], {inp.name: rows})[0].ravel()
        i = m["fold"]
        want = predict(fm.models[i], fm.scalers[i].transform(events[cfg.features].to_numpy(), 1250.0))
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
        swapped = rows[:, [1, 0, *range(2, rows.shape[1])]]
        assert np.abs(session.run(None, {inp.name: swapped})[0].ravel() - want).max() > 1e-3


def test_interrupted_export_leaves_no_sidecar(exported, tmp_path, monkeypatch) -> None:
    import onnx

    cfg, _ = exported
    shutil.copytree(cfg.run_dir / "model", tmp_path / cfg.name / "model")
    real, calls = onnx.save_model, []

    def interrupted(proto, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(proto, path, *args, **kwargs)

    monkeypatch.setattr(onnx, "save_model", interrupted)
    config = str(cfg.run_dir.parent.parent / "config.yaml")
    res = CliRunner().invoke(main, ["export", config, "-o", str(tmp_path)])
    assert res.exit_code == 130
    out = tmp_path / cfg.name / "export"
    assert sorted(p.name for p in out.iterdir()) == ["fold0.onnx"]  # no fold1, no sidecar, no temp


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_export_follows_the_model(exported, tmp_path) -> None:
    cfg, _ = exported
    stamp = tmp_path / "installed"
    stamp.touch()
    pnn = Path(sys.executable).with_name("pnn")
    args = ["make", "-C", str(ROOT), f"CONFIG={cfg.run_dir.parent.parent / 'config.yaml'}",
            f"PNN={pnn}", f"INSTALLED={stamp}"]
    assert subprocess.run([*args, "-q", "export"]).returncode == 0  # exported after training
    os.utime(cfg.run_dir / "model" / "metadata.json")  # a retrained model
    plan = subprocess.run([*args, "-n", "export"], capture_output=True, text=True, check=True)
    assert plan.stdout.count(" export ") == 1 and " train " not in plan.stdout


ACTIVATIONS = ["linear", "relu", "sigmoid", "tanh", "elu", "selu", "softplus", "softsign",
               "exponential", "leaky_relu", "relu6", "hard_sigmoid", "silu", "swish", "hard_silu",
               "gelu", "mish"]


def _shaken(net, rng) -> None:
    """Move the affine layers' weights away from their near-identity start, so that the
    parameters change the score a lot."""
    for layer in net.layers:
        if layer.name.startswith(("gamma_", "beta_")):
            layer.set_weights([w + rng.normal(0, 0.2, w.shape).astype(np.float32)
                               for w in layer.get_weights()])


@pytest.mark.parametrize("conditioning", ["concat", "affine"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_supported_activation_matches_keras(activation, conditioning) -> None:
    import onnxruntime as ort

    from pnn.deploy import export
    from pnn.learn.model import build_model, predict
    from pnn.learn.preprocess import InputScaler

    rng = np.random.default_rng(3)
    d = 1 if conditioning == "concat" else 2
    scaler = InputScaler(["a", "b", "c"], [100.0, -2.0, 0.5], [40.0, 3.0, 0.1],
                         [400.0, 100.0][:d], [1600.0, 900.0][:d],
                         parameters=["mass"] if d == 1 else ["mX", "mY"])
    net = build_model(3 + d, [16, 8], activation, seed=5, n_parameters=d,
                      conditioning=conditioning)
    _shaken(net, rng)
    # features up to a few scales out (an exponential network overflows, in Keras too, when
    # the affine layers multiply large activations further)
    spread = 2.0 if conditioning == "concat" else 1.0
    X = scaler.center + scaler.scale * rng.normal(size=(500, 3)) * spread
    span = scaler.param_max - scaler.param_min
    theta = rng.uniform(scaler.param_min - 0.1 * span, scaler.param_max + 0.1 * span, (500, d))
    proto = export.build_onnx(net, scaler, fold=0)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(["score"], {"inputs": np.column_stack([X, theta]).astype(np.float32)})[0]
    want = predict(net, scaler.transform(X, theta))
    assert np.std(want) > 1e-3
    np.testing.assert_allclose(got.ravel(), want, rtol=0, atol=1e-5)


def test_unsupported_activation_is_refused_with_the_fix() -> None:
    from pnn.deploy import export
    from pnn.learn.model import build_model
    from pnn.learn.preprocess import InputScaler

    scaler = InputScaler(["a"], [0.0], [1.0], 500.0, 1500.0)
    with pytest.raises(PnnError, match=r"cannot export activation 'softmax'.*training.activation"):
        export.build_onnx(build_model(2, [4], "softmax", seed=1), scaler, fold=0)


def test_export_without_model_is_one_line_exit_2(tmp_path) -> None:
    path = write_config(tmp_path / "config.yaml", toy_config(tmp_path))
    res = CliRunner().invoke(main, ["export", str(path)])
    assert res.exit_code == 2
    assert "model" in res.output and "metadata.json" in res.output and "pnn train" in res.output
    assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output
    assert not (tmp_path / "runs" / "small" / "export").exists()


def test_missing_export_is_a_clear_error(tmp_path) -> None:
    from pnn.deploy import export

    with pytest.raises(PnnError, match="run 'pnn export' first"):
        export.score(tmp_path, np.zeros((1, 5)), 500.0, np.zeros(1, np.int64))


def test_onnx_scores_equal_pnn_apply(exported, tmp_path) -> None:
    """The ONNX models, fed the raw branches of an ntuple, give the scores pnn apply writes."""
    import uproot

    from pnn.deploy import export

    cfg, _ = exported
    config = Path(cfg.output_dir).parent / "config.yaml"
    signal = Path(cfg.generate.output) / "signal.root"
    res = CliRunner().invoke(main, ["apply", str(config), "--input", str(signal), "--tree",
                                    "Xtohh1000", "--mass", "750", "--mass", "1000",
                                    "-o", str(tmp_path)])
    assert res.exit_code == 0, res.output
    with uproot.open(tmp_path / "signal_pnn.root") as f:
        friend = f["Xtohh1000"].arrays(library="np")
    with uproot.open(signal) as f:
        raw = f["Xtohh1000"].arrays([*cfg.features, "EventNumber"], library="np")
    X = np.column_stack([raw[c] for c in cfg.features]).astype(np.float64)
    onnx_models = export.OnnxModels.load(export.export_dir(cfg.run_dir))
    for mass in (750.0, 1000.0):
        written = friend[f"pnn_score_m{mass:g}"]
        assert len(written) == len(X) and np.std(written) > 0.01
        np.testing.assert_allclose(written, onnx_models.score(X, mass, raw["EventNumber"]),
                                   rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def exported_affine(tmp_path_factory):
    """A tiny one-parameter run with affine conditioning (three folds), exported."""
    from pnn.io import ingest, toy
    from pnn.learn import train

    tmp = tmp_path_factory.mktemp("export_affine")
    raw = toy_config(tmp, signal_events=600, background_events=4000, epochs=2,
                     preprocessing={"folds": K})
    raw["training"].update(layers=[16, 16], conditioning="affine")
    path = write_config(tmp / "config.yaml", raw)
    g = raw["generate"]
    toy.write(g["output"], g["masses"] + g["offgrid_masses"], g["signal_events"],
              g["background_events"], 140.0, raw["seed"])
    cfg = load_config(path)
    ingest.ingest(cfg)
    events, _ = ingest.load_events(cfg)
    train.train(cfg, events)
    res = CliRunner().invoke(main, ["export", str(path)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return cfg, events


def test_affine_onnx_scores_equal_keras_with_one_parameter(exported_affine) -> None:
    import onnx

    from pnn.deploy import export
    from pnn.learn.model import FoldModels

    cfg, events = exported_affine
    fm = FoldModels.load(cfg.run_dir)
    assert fm.metadata["conditioning"] == "affine"
    X = events[cfg.features].to_numpy(np.float64)
    ev = events["event_number"].to_numpy()
    out = export.export_dir(cfg.run_dir)
    onnx_models = export.OnnxModels.load(out)
    per_event = np.where(events["label"] == 1, events["mass"], 750.0)
    for mass in (500.0, 750.0, 1500.0, per_event):
        keras_scores, _ = fm.score(X, mass, ev)
        onnx_scores = onnx_models.score(X, mass, ev)
        assert np.std(onnx_scores) > 0.01
        np.testing.assert_allclose(onnx_scores, keras_scores, rtol=0, atol=1e-5)
    side = json.loads((out / "pnn_onnx.json").read_text())
    assert side["conditioning"] == "affine" and side["inputs"] == [*cfg.features, "mass"]
    assert side["masses"] == [500.0, 1000.0, 1500.0]
    assert all(m["mass_range_gev"] == [500.0, 1500.0] for m in side["models"])
    ops = [n.op_type for n in onnx.load(str(out / "fold0.onnx")).graph.node]
    assert ops[:6] == ["Cast", "Sub", "Div", "Cast", "Gather", "Gather"]
    assert ops.count("Mul") >= 2  # one (1 + gamma) per hidden layer


@pytest.mark.parametrize("conditioning", ["concat", "affine"])
def test_onnx_scores_equal_keras_with_two_parameters(two_parameter_run, conditioning) -> None:
    from pnn.deploy import export
    from pnn.io import ingest
    from pnn.learn.model import FoldModels
    from pnn.learn.preprocess import folds, parameter_matrix

    path, cfg = two_parameter_run(conditioning)
    res = CliRunner().invoke(main, ["export", str(path)], catch_exceptions=False)
    assert res.exit_code == 0 and "wrote 3 ONNX models" in res.output, res.output
    events, _ = ingest.load_events(cfg)
    fm = FoldModels.load(cfg.run_dir)
    assert fm.parameters == ["mX", "mY"] and fm.metadata["conditioning"] == conditioning
    X = events[cfg.features].to_numpy(np.float64)
    ev = events["event_number"].to_numpy()
    assert set(folds(ev, K)) == set(range(K))
    onnx_models = export.OnnxModels.load(export.export_dir(cfg.run_dir))
    assert onnx_models.parameters == ["mX", "mY"] and onnx_models.features == cfg.features
    sig = (events["label"] == 1).to_numpy()[:, None]
    per_event = np.where(sig, parameter_matrix(events, cfg.parameters), [1200.0, 400.0])
    for point in (*two_parameters.TRIANGLE, (1200.0, 400.0), per_event):
        keras_scores, _ = fm.score(X, point, ev)
        onnx_scores = onnx_models.score(X, point, ev)
        assert np.std(onnx_scores) > 0.01
        np.testing.assert_allclose(onnx_scores, keras_scores, rtol=0, atol=1e-5)
    # the parameters reach the score: another point gives other numbers
    a, b = (onnx_models.score(X, p, ev) for p in two_parameters.TRIANGLE[1:])
    assert np.abs(a - b).max() > 1e-3
    # one point as a list, and one point per event as a one-row array, mean the same
    np.testing.assert_array_equal(onnx_models.score(X, [1500.0, 100.0], ev), a)
    np.testing.assert_array_equal(onnx_models.score(X, np.array([[1500.0, 100.0]]), ev), a)
    np.testing.assert_array_equal(export.score(export.export_dir(cfg.run_dir), X,
                                               (1500.0, 100.0), ev), a)
    with pytest.raises(PnnError, match=r"one point \(mX, mY\) or one per event"):
        onnx_models.score(X, 1000.0, ev)  # a lone number is not a point of two parameters


def test_sidecar_lists_two_parameters_after_the_features(two_parameter_run) -> None:
    import onnx
    import onnxruntime as ort

    from pnn.deploy import export
    from pnn.io import ingest
    from pnn.learn.model import FoldModels, predict

    path, cfg = two_parameter_run("affine")
    res = CliRunner().invoke(main, ["export", str(path)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    out = export.export_dir(cfg.run_dir)
    side = json.loads((out / "pnn_onnx.json").read_text())
    assert side["format"] == "pnn-onnx/2"
    assert side["inputs"] == ["x0", "x1", "x2", "mX", "mY"]
    assert side["input"]["shape"] == ["N", 5]
    assert [(c["index"], c["name"], c["kind"], c["unit"]) for c in side["input_columns"]] == [
        (0, "x0", "feature", "as in the ntuple (raw, unscaled)"),
        (1, "x1", "feature", "as in the ntuple (raw, unscaled)"),
        (2, "x2", "feature", "as in the ntuple (raw, unscaled)"),
        (3, "mX", "parameter", "GeV"), (4, "mY", "parameter", "GeV")]
    assert side["units"] == {"x0": "as in the ntuple (raw, unscaled)",
                             "x1": "as in the ntuple (raw, unscaled)",
                             "x2": "as in the ntuple (raw, unscaled)", "mX": "GeV", "mY": "GeV"}
    assert side["parameters"] == ["mX", "mY"] and side["conditioning"] == "affine"
    assert side["trained_points"] == [list(p) for p in two_parameters.TRIANGLE]
    assert side["parameter_ranges"] == {"mX": [500.0, 1500.0], "mY": [100.0, 1300.0]}
    assert "convex hull" in side["extrapolation"]
    assert "masses" not in side  # a one-parameter reader must not take points for masses
    fm = FoldModels.load(cfg.run_dir)
    events, _ = ingest.load_events(cfg)
    table = events[list(reversed(cfg.features))].assign(mY=400.0, mX=1200.0)
    rows = table[side["inputs"]].to_numpy(np.float32)  # read by the sidecar's names
    for m in side["models"]:
        assert "mass_range_gev" not in m
        assert m["parameter_ranges"] == {"mX": [500.0, 1500.0], "mY": [100.0, 1300.0]}
        proto = onnx.load(str(out / m["file"]))
        (inp,) = proto.graph.input
        assert inp.type.tensor_type.shape.dim[1].dim_value == 5
        props = {p.key: p.value for p in proto.metadata_props}
        assert json.loads(props["pnn_inputs"]) == side["inputs"]
        assert json.loads(props["pnn_parameters"]) == ["mX", "mY"]
        assert json.loads(props["pnn_units"]) == side["units"]
        assert json.loads(props["pnn_parameter_ranges_gev"]) == m["parameter_ranges"]
        assert json.loads(props["pnn_trained_points"]) == side["trained_points"]
        assert props["pnn_conditioning"] == "affine" and "pnn_mass_range_gev" not in props
        consts = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
        scaler = fm.scalers[m["fold"]]
        np.testing.assert_allclose(consts["scaling_offset"], [*scaler.center, 500.0, 100.0])
        np.testing.assert_allclose(consts["scaling_divisor"], [*scaler.scale, 1000.0, 1200.0])
        session = ort.InferenceSession(str(out / m["file"]), providers=["CPUExecutionProvider"])
        got = session.run(["score"], {"inputs": rows})[0].ravel()
        i = m["fold"]
        want = predict(fm.models[i], fm.scalers[i].transform(
            events[cfg.features].to_numpy(), (1200.0, 400.0)))
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
        swapped = rows[:, [0, 1, 2, 4, 3]]  # mY and mX exchanged
        assert np.abs(session.run(None, {"inputs": swapped})[0].ravel() - want).max() > 1e-3


def test_onnx_scores_equal_pnn_apply_with_two_parameters(two_parameter_run, tmp_path) -> None:
    import uproot

    from pnn.deploy import export

    path, cfg = two_parameter_run("affine")
    assert CliRunner().invoke(main, ["export", str(path)]).exit_code == 0
    background = Path(cfg.output_dir).parent / "ntuples" / "background.root"
    res = CliRunner().invoke(main, ["apply", str(path), "-i", str(background), "--point",
                                    "mX=1200,mY=400", "-o", str(tmp_path)])
    assert res.exit_code == 0, res.output
    with uproot.open(tmp_path / "background_pnn.root") as f:
        written = f["bkg"]["pnn_score_mX1200_mY400"].array(library="np")
    with uproot.open(background) as f:
        raw = f["bkg"].arrays([*cfg.features, "EventNumber"], library="np")
    X = np.column_stack([raw[c] for c in cfg.features])
    onnx_models = export.OnnxModels.load(export.export_dir(cfg.run_dir))
    np.testing.assert_allclose(written, onnx_models.score(X, (1200.0, 400.0), raw["EventNumber"]),
                               rtol=0, atol=1e-5)


def test_a_format_1_sidecar_is_still_read(exported, tmp_path) -> None:
    """An export of the previous format (no parameters listed: the mass alone) still scores."""
    from pnn.deploy import export

    cfg, events = exported
    old = tmp_path / "old"
    shutil.copytree(export.export_dir(cfg.run_dir), old)
    side = json.loads((old / "pnn_onnx.json").read_text())
    for key in ("parameters", "input_columns", "trained_points", "parameter_ranges"):
        side.pop(key)
    side["format"] = "pnn-onnx/1"
    (old / "pnn_onnx.json").write_text(json.dumps(side))
    X = events[cfg.features].to_numpy(np.float64)
    ev = events["event_number"].to_numpy()
    np.testing.assert_array_equal(export.score(old, X, 1000.0, ev),
                                  export.score(export.export_dir(cfg.run_dir), X, 1000.0, ev))
    side["format"] = "pnn-onnx/9"
    (old / "pnn_onnx.json").write_text(json.dumps(side))
    with pytest.raises(PnnError, match="rerun 'pnn export'"):
        export.OnnxModels.load(old)
