"""Export: the fold models as ONNX graphs that take raw features and the raw signal point.

Each fold model becomes one ONNX file. Its single input ``inputs`` is a float32 tensor
[N, n_features + n_parameters]: the features in the order of the model metadata (the
config's ``features``), unscaled, then each signal parameter in GeV in the order of the
config's ``parameters`` (the mass alone, or e.g. m_X then m_Y). The graph subtracts the
RobustScaler centres and the lower end of each parameter's trained range, then divides by
the RobustScaler scales and each parameter's trained span, as two explicit ``Sub``/``Div``
nodes (easy to audit with any ONNX viewer) computed in double precision like
:class:`InputScaler` (between two ``Cast`` nodes), then runs the network layer by layer:
``concat`` conditioning is a chain of Dense layers (``MatMul`` + ``Add`` plus their
activations); ``affine`` conditioning picks the features and the parameters out of the
scaled row (``Gather``) and computes every hidden layer as
``act((x W + b) * (1 + gamma(theta)) + beta(theta))`` with ``MatMul``/``Add``/``Mul``. The
output ``score`` is [N, 1] in [0, 1].

A JSON sidecar ``pnn_onnx.json`` next to the models names every input in order with its
unit, the parameters, the conditioning, the trained points and parameter ranges, the fold
rule and the file of every fold.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import pnn
from pnn.core.atomic import atomic_path, write_json
from pnn.core.config import Config
from pnn.core.errors import PnnError
from pnn.learn.model import FoldModels
from pnn.learn.preprocess import InputScaler, folds
from pnn.learn.train import require_model

log = logging.getLogger(__name__)

OPSET = 17  # ONNX Runtime 1.13 (2022) and later run it
INPUT = "inputs"
OUTPUT = "score"
MASS_INPUT = "mass"
SIDECAR = "pnn_onnx.json"
FORMAT = "pnn-onnx/2"
FORMATS = ("pnn-onnx/1", FORMAT)  # sidecars this version reads
PARAMETER_UNIT = "GeV"
FEATURE_UNIT = "as in the ntuple (raw, unscaled)"

# Keras' own constants for selu (tf.nn.selu), so the export matches to float precision.
SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805


def export_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "export"


def model_file(fold: int) -> str:
    return f"fold{fold}.onnx"


@dataclass
class _Graph:
    """Nodes and constants of the graph being built; every value gets a fresh name."""

    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    count: int = 0

    def _name(self, stem: str) -> str:
        self.count += 1
        return f"{stem}_{self.count}"

    def const(self, stem: str, value: Any, *, exact: bool = False, dtype: type = np.float32) -> str:
        name = stem if exact else self._name(stem)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs: Any) -> str:
        out = out or self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out


def _gelu(g: _Graph, x: str) -> str:
    """Exact GELU, x * (1 + erf(x / sqrt 2)) / 2, as Keras' default (approximate=False)."""
    erf = g.op("Erf", g.op("Mul", x, g.const("inv_sqrt2", 1 / np.sqrt(2.0))))
    return g.op("Mul", g.op("Mul", x, g.const("half", 0.5)), g.op("Add", erf, g.const("one", 1.0)))


# Keras activation name -> ONNX nodes. Anything else is refused rather than approximated.
ACTIVATIONS: dict[str, Callable[[_Graph, str], str]] = {
    "linear": lambda g, x: x,
    "relu": lambda g, x: g.op("Relu", x),
    "sigmoid": lambda g, x: g.op("Sigmoid", x),
    "tanh": lambda g, x: g.op("Tanh", x),
    "elu": lambda g, x: g.op("Elu", x, alpha=1.0),
    "selu": lambda g, x: g.op("Selu", x, alpha=SELU_ALPHA, gamma=SELU_SCALE),
    "softplus": lambda g, x: g.op("Softplus", x),
    "softsign": lambda g, x: g.op("Softsign", x),
    "exponential": lambda g, x: g.op("Exp", x),
    "leaky_relu": lambda g, x: g.op("LeakyRelu", x, alpha=0.2),
    "relu6": lambda g, x: g.op("Clip", x, g.const("zero", 0.0), g.const("six", 6.0)),
    "hard_sigmoid": lambda g, x: g.op("HardSigmoid", x, alpha=1 / 6, beta=0.5),
    "silu": lambda g, x: g.op("Mul", x, g.op("Sigmoid", x)),
    "hard_silu": lambda g, x: g.op("Mul", x, g.op("HardSigmoid", x, alpha=1 / 6, beta=0.5)),
    "gelu": _gelu,
    "mish": lambda g, x: g.op("Mul", x, g.op("Tanh", g.op("Softplus", x))),
}
ALIASES = {"swish": "silu", "hard_swish": "hard_silu"}


def _activation_name(layer: Any) -> str:
    import keras

    name = keras.activations.serialize(layer.activation)
    if not isinstance(name, str):  # a custom or parametrised activation
        name = getattr(layer.activation, "__name__", repr(layer.activation))
    return ALIASES.get(name, name)


def _checked_activation(layer: Any) -> str:
    act = _activation_name(layer)
    if act not in ACTIVATIONS:
        raise PnnError(f"cannot export activation '{act}' of layer '{layer.name}': supported "
                       f"are {', '.join(sorted(ACTIVATIONS))}; set training.activation to one "
                       "of them and retrain")
    return act


def _selection(kernel: np.ndarray) -> np.ndarray | None:
    """The input column each output column copies, when ``kernel`` is a 0/1 selection (one 1
    per column: the fixed layers that split the affine network's input row), else None."""
    if kernel.ndim != 2 or not np.isin(kernel, (0.0, 1.0)).all():
        return None
    if not (kernel.sum(axis=0) == 1).all():
        return None
    return np.argmax(kernel, axis=0).astype(np.int64)


# Keras layer classes the export translates; anything else is refused.
SUPPORTED_LAYERS = ("InputLayer", "Dense", "Multiply", "Add", "Activation")


def _inbound(layer: Any) -> list[str]:
    """Names of the layers whose outputs ``layer`` takes (a functional model, no sharing)."""
    nodes = getattr(layer, "_inbound_nodes", None)
    if nodes is None or len(nodes) != 1:
        raise PnnError(f"cannot export layer '{layer.name}': it is called "
                       f"{len(nodes or [])} times; retrain with the pnn architecture")
    return [t._keras_history.operation.name for t in nodes[0].input_tensors]


def _layer_nodes(g: _Graph, layer: Any, args: list[str]) -> str:
    """The ONNX nodes of one Keras layer applied to ``args``; returns its output's name."""
    import keras

    out = f"{layer.name}_output"
    if isinstance(layer, keras.layers.Dense):
        weights = [np.asarray(w, np.float32) for w in layer.get_weights()]
        kernel = weights[0]
        act = _checked_activation(layer)
        pick = None if (layer.use_bias or layer.trainable or act != "linear") else _selection(kernel)
        if pick is not None:  # a fixed 0/1 kernel: the columns it copies, exactly
            return g.op("Gather", args[0], g.const(f"{layer.name}_columns", pick, dtype=np.int64),
                        axis=1, out=out)
        x = g.op("MatMul", args[0], g.const(f"{layer.name}_kernel", kernel))
        if layer.use_bias:
            x = g.op("Add", x, g.const(f"{layer.name}_bias", weights[1]))
        return g.op("Identity", ACTIVATIONS[act](g, x), out=out)
    if isinstance(layer, keras.layers.Activation):
        return g.op("Identity", ACTIVATIONS[_checked_activation(layer)](g, args[0]), out=out)
    if isinstance(layer, keras.layers.Multiply | keras.layers.Add):
        op = "Mul" if isinstance(layer, keras.layers.Multiply) else "Add"
        x = args[0]
        for other in args[1:-1]:
            x = g.op(op, x, other)
        return g.op(op, x, args[-1], out=out) if len(args) > 1 else g.op("Identity", x, out=out)
    raise PnnError(f"cannot export layer '{layer.name}' ({type(layer).__name__}): only "
                   f"{', '.join(SUPPORTED_LAYERS[1:])} layers are supported; retrain with the "
                   "pnn architecture")


def network_nodes(g: _Graph, model: Any, x: str) -> str:
    """Every layer of the Keras functional ``model`` as ONNX nodes on the scaled input ``x``,
    in the order the layers depend on each other; returns the name of the model's output."""
    import keras

    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise PnnError("cannot export a model with several inputs or outputs: retrain with "
                       "the pnn architecture")
    values = {model.inputs[0]._keras_history.operation.name: x}
    pending = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    while pending:
        ready = [layer for layer in pending if all(n in values for n in _inbound(layer))]
        if not ready:
            raise PnnError(f"cannot export layer '{pending[0].name}': its inputs "
                           f"{_inbound(pending[0])} are not layers of the model; retrain with "
                           "the pnn architecture")
        for layer in ready:
            values[layer.name] = _layer_nodes(g, layer, [values[n] for n in _inbound(layer)])
        pending = [layer for layer in pending if layer.name not in values]
    final = model.outputs[0]._keras_history.operation.name
    if final not in values:
        raise PnnError(f"the output layer '{final}' of the model is not exportable: retrain "
                       "with the pnn architecture")
    return values[final]


def conditioning_of(model: Any) -> str:
    """``affine`` when the network multiplies by a function of the parameters, else ``concat``."""
    import keras

    return "affine" if any(isinstance(layer, keras.layers.Multiply) for layer in model.layers) \
        else "concat"


def parameter_names(scaler: InputScaler) -> list[str]:
    """The parameter inputs of a scaler's network (none for a non-parametric network)."""
    return list(scaler.parameters) if scaler.parametric else []


def scaling_constants(scaler: InputScaler) -> tuple[np.ndarray, np.ndarray]:
    """Offset and divisor such that (raw - offset) / divisor are the network inputs.

    The features use the RobustScaler centre and scale, each parameter its trained range
    (a zero span divides by 1, as :meth:`InputScaler.scale_points` does).
    """
    offset, divisor = np.asarray(scaler.center), np.asarray(scaler.scale)
    if scaler.parametric:
        offset = np.append(offset, scaler.param_min)
        divisor = np.append(divisor, scaler.span)
    return offset, divisor


def parameter_ranges(scaler: InputScaler) -> dict[str, list[float]]:
    """Each parameter's trained range in GeV, the one the graph scales it over."""
    return {n: [float(lo), float(hi)] for n, lo, hi in
            zip(parameter_names(scaler), scaler.param_min, scaler.param_max, strict=False)}


def input_units(features: list[str], parameters: list[str]) -> dict[str, str]:
    return {**{f: FEATURE_UNIT for f in features}, **{p: PARAMETER_UNIT for p in parameters}}


def build_onnx(model: Any, scaler: InputScaler, *, fold: int, doc: str = "",
               conditioning: str | None = None,
               trained_points: list[tuple[float, ...]] | None = None) -> onnx.ModelProto:
    """One fold model as an ONNX graph: raw inputs -> Sub/Div scaling -> network -> score.

    ``conditioning`` and ``trained_points`` go into the file's metadata (the conditioning is
    read off the network when not given).
    """
    names = parameter_names(scaler)
    n_inputs = len(scaler.features) + len(names)
    width = model.input_shape[-1] if isinstance(model.input_shape, tuple) else None
    if width != n_inputs:
        what = f" plus the parameters {', '.join(names)}" if names else ""
        raise PnnError(f"the model of fold {fold} takes {width} inputs but its scaler has "
                       f"{len(scaler.features)} features{what}: the model directory is "
                       "inconsistent, rerun 'pnn train'")
    if model.output_shape[-1] != 1:
        raise PnnError(f"the model of fold {fold} has {model.output_shape[-1]} outputs, not one "
                       "score: rerun 'pnn train'")
    g = _Graph()
    offset, divisor = scaling_constants(scaler)
    # scaled in double precision, as InputScaler does, then handed to the float32 network
    x = g.op("Cast", INPUT, to=TensorProto.DOUBLE)
    x = g.op("Sub", x, g.const("scaling_offset", offset, exact=True, dtype=np.float64))
    x = g.op("Div", x, g.const("scaling_divisor", divisor, exact=True, dtype=np.float64))
    x = g.op("Cast", x, to=TensorProto.FLOAT, out="scaled_inputs")
    g.op("Identity", network_nodes(g, model, x), out=OUTPUT)
    graph = helper.make_graph(
        g.nodes, f"pnn_fold{fold}",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", n_inputs])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N", 1])],
        initializer=g.initializers, doc_string=doc,
    )
    proto = helper.make_model_gen_version(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="pnn",
        producer_version=pnn.__version__, doc_string=doc,
    )
    ranges = parameter_ranges(scaler)
    props = {
        "pnn_format": FORMAT,
        "pnn_fold": str(fold),
        "pnn_inputs": json.dumps([*scaler.features, *names]),
        "pnn_units": json.dumps(input_units(scaler.features, names)),
        "pnn_parameters": json.dumps(names),
        "pnn_conditioning": conditioning or conditioning_of(model),
        "pnn_parameter_ranges_gev": json.dumps(ranges),
    }
    if trained_points is not None:
        props["pnn_trained_points"] = json.dumps([list(p) for p in trained_points])
    if len(names) == 1:
        props["pnn_mass_range_gev"] = json.dumps(ranges[names[0]])
    helper.set_model_props(proto, props)
    onnx.checker.check_model(proto, full_check=True)
    return proto


@dataclass
class ExportResult:
    directory: Path
    models: list[Path]
    sidecar: Path


def fold_rule(event_number: str, k: int) -> str:
    return (f"score an event with the model of fold f = {event_number} % {k} (event number as a "
            f"signed 64-bit integer, remainder taken non-negative); model f was trained on the "
            f"events with {event_number} % {k} != f, so it never saw the events it scores")


def _exported_parameters(fm: FoldModels) -> list[str]:
    return fm.parameters if fm.parametric else []


def sidecar(fm: FoldModels, files: list[Path], expressions: dict[str, str] | None = None) -> dict:
    """The description a C++ user needs: every input in order with its unit and the
    expression behind it (aliases resolved), the parameters, trained points and ranges, the
    conditioning, the fold rule and the files."""
    meta = fm.metadata
    features = fm.features
    names = _exported_parameters(fm)
    inputs = [*features, *names]
    k = fm.k
    ev = meta.get("event_number", "EventNumber")
    trained = fm.trained_points if names else []
    exprs = {f: (expressions or {}).get(f, f) for f in features}
    columns = [{"index": i, "name": f, "kind": "feature", "unit": FEATURE_UNIT,
                "expression": exprs[f]} for i, f in enumerate(features)]
    columns += [{"index": len(features) + j, "name": p, "kind": "parameter",
                 "unit": PARAMETER_UNIT} for j, p in enumerate(names)]
    ranges = {n: [min(p[j] for p in trained), max(p[j] for p in trained)]
              for j, n in enumerate(names)} if trained else {}
    hull = ("outside the trained range" if len(names) == 1 else
            "outside the convex hull of the trained points (not merely their bounding box)")
    info: dict[str, Any] = {
        "format": FORMAT,
        "pnn_version": pnn.__version__,
        "config_digest": meta.get("config_digest"),
        "opset": OPSET,
        "input": {"name": INPUT, "type": "float32", "shape": ["N", len(inputs)]},
        "inputs": inputs,
        "input_columns": columns,
        "expressions": exprs,
        "units": input_units(features, names),
        "parameters": names,
        "conditioning": meta.get("conditioning", "concat"),
        "output": {"name": OUTPUT, "type": "float32", "shape": ["N", 1],
                   "meaning": "signal score in [0, 1] at the given signal point"},
        "scaling": "inside the graph: (inputs - scaling_offset) / scaling_divisor, explicit "
                   "Sub and Div nodes in double precision (RobustScaler centre/scale for the "
                   "features, each parameter's trained range for the parameters)",
        "event_number": ev,
        "folds": k,
        "fold_rule": fold_rule(ev, k),
        "trained_points": [list(p) for p in trained],
        "parameter_ranges": ranges,
        "extrapolation": f"a point {hull} is an extrapolation the network was never shown"
                         if names else "the network has no parameter input",
    }
    if len(names) == 1:
        info["masses"] = [p[0] for p in trained]  # the one-parameter key of format 1
    info["models"] = []
    for i, (p, s) in enumerate(zip(files, fm.scalers, strict=True)):
        entry = {"fold": i, "file": p.name, "applies_to": f"{ev} % {k} == {i}",
                 "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
                 "parameter_ranges": parameter_ranges(s)}
        if len(names) == 1:
            entry["mass_range_gev"] = [s.mass_min, s.mass_max]
        info["models"].append(entry)
    return info


def export(cfg: Config) -> ExportResult:
    """Write ``export/fold<i>.onnx`` for every fold of the trained run and the JSON sidecar.

    The sidecar is written last, so its presence means every model it lists is complete.
    """
    require_model(cfg, check_events=False)
    fm = FoldModels.load(cfg.run_dir)
    names = _exported_parameters(fm)
    for i, s in enumerate(fm.scalers):
        if s.features != fm.features:
            raise PnnError(f"the scaler of fold {i} has features {s.features} but the model "
                           f"metadata lists {fm.features}: rerun 'pnn train'")
        if parameter_names(s) != names:
            raise PnnError(f"the scaler of fold {i} has parameters {parameter_names(s)} but the "
                           f"model metadata lists {names}: rerun 'pnn train'")
    out = export_dir(cfg.run_dir)
    conditioning = fm.metadata.get("conditioning", "concat")
    trained = fm.trained_points if names else []
    ev = fm.metadata.get("event_number", "EventNumber")
    listed = [*fm.features, *(f"{n} [{PARAMETER_UNIT}]" for n in names)]
    files = []
    for i, (model, scaler) in enumerate(zip(fm.models, fm.scalers, strict=True)):
        doc = (f"pnn fold {i}: inputs = [{', '.join(listed)}], raw; {conditioning} "
               f"conditioning; use for events with {fold_rule(ev, fm.k)}")
        proto = build_onnx(model, scaler, fold=i, doc=doc, conditioning=conditioning,
                           trained_points=trained)
        path = out / model_file(i)
        with atomic_path(path) as tmp:
            onnx.save_model(proto, str(tmp))
        log.info("fold %d: wrote %s", i, path)
        files.append(path)
    side = out / SIDECAR
    write_json(side, sidecar(fm, files, {f: cfg.expression(f) for f in fm.features}))
    return ExportResult(out, files, side)


def point_rows(theta: Any, n: int, names: list[str]) -> np.ndarray:
    """``theta`` as an (n, parameters) array: one point for every event (a number for one
    parameter, a sequence of one value per parameter for several) or one point per event
    (n values for one parameter, an (n, parameters) array for several)."""
    d = len(names)
    if d == 0:
        return np.zeros((n, 0))
    arr = np.asarray(theta, dtype=np.float64)
    if arr.ndim == 0 and d == 1:
        return np.full((n, 1), float(arr))
    if arr.ndim == 1 and d > 1 and len(arr) == d:
        return np.broadcast_to(arr, (n, d))
    if arr.ndim == 1 and d == 1 and len(arr) in (1, n):
        return np.broadcast_to(arr[:, None], (n, 1))
    if arr.ndim == 2 and arr.shape[1] == d and arr.shape[0] in (1, n):
        return np.broadcast_to(arr, (n, d))
    raise PnnError(f"expected one point ({', '.join(names)}) or one per event ([{n}, {d}]), "
                   f"got an array of shape {list(arr.shape)}: give the parameters in the "
                   "sidecar's order")


class OnnxModels:
    """The exported fold models as ONNX Runtime sessions, with the sidecar that describes them."""

    def __init__(self, info: dict, sessions: list[Any]) -> None:
        self.info = info
        self.sessions = sessions
        self.k = int(info["folds"])

    @classmethod
    def load(cls, directory: Path) -> OnnxModels:
        import onnxruntime as ort

        directory = Path(directory)
        path = directory / SIDECAR
        if not path.is_file():
            raise PnnError(f"no ONNX export in '{directory}': run 'pnn export' first")
        info = json.loads(path.read_text())
        if info.get("format") not in FORMATS:
            raise PnnError(f"'{path}' has format {info.get('format')!r}, not one of "
                           f"{', '.join(FORMATS)}: rerun 'pnn export' with this pnn")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        sessions = []
        for m in info["models"]:
            file = directory / m["file"]
            if not file.is_file():
                raise PnnError(f"'{file}' listed in '{path}' is missing: rerun 'pnn export'")
            sessions.append(ort.InferenceSession(str(file), opts, providers=["CPUExecutionProvider"]))
        return cls(info, sessions)

    @property
    def inputs(self) -> list[str]:
        return list(self.info["inputs"])

    @property
    def parameters(self) -> list[str]:
        """The parameter inputs, after the features (format 1: the mass alone)."""
        return list(self.info.get("parameters", [MASS_INPUT]))

    @property
    def features(self) -> list[str]:
        return self.inputs[:len(self.inputs) - len(self.parameters)]

    def score(self, X: np.ndarray, theta: Any, event_number: np.ndarray) -> np.ndarray:
        """Score every event at ``theta`` with the fold model that did not train on it.

        ``X`` holds the raw features in the sidecar's order; ``theta`` is the signal point in
        GeV: one for every event (a mass, or one value per parameter) or one per event
        (masses, or an (events, parameters) array), parameters in the sidecar's order.
        """
        X = np.asarray(X, dtype=np.float64)
        features = self.features
        if X.ndim != 2 or X.shape[1] != len(features):
            raise PnnError(f"expected raw features of shape [N, {len(features)}] "
                           f"({', '.join(features)}), got {list(X.shape)}")
        rows = np.column_stack([X, point_rows(theta, len(X), self.parameters)]).astype(np.float32)
        fold = folds(event_number, self.k)
        scores = np.empty(len(X))
        for i, session in enumerate(self.sessions):
            sel = fold == i
            if sel.any():
                scores[sel] = session.run([OUTPUT], {INPUT: rows[sel]})[0].ravel()
        return scores


def score(directory: Path, X: np.ndarray, theta: Any, event_number: np.ndarray) -> np.ndarray:
    """Scores of raw features ``X`` at the signal point ``theta`` (GeV; one point, or one per
    event) from the ONNX export in ``directory``, each event by the model of fold
    ``event_number % k``."""
    return OnnxModels.load(directory).score(X, theta, event_number)
