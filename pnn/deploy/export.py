"""Export: the fold models as ONNX graphs that take raw features and the raw mass in GeV.

Each fold model becomes one ONNX file. Its single input ``inputs`` is a float32 tensor
[N, n_features + 1]: the features in the order of the model metadata (the config's
``features``), unscaled, then the mass hypothesis in GeV. The graph subtracts the
RobustScaler centres and the lower end of the trained mass range, then divides by the
RobustScaler scales and the trained mass span, as two explicit ``Sub``/``Div`` nodes (easy
to audit with any ONNX viewer) computed in double precision like :class:`InputScaler`
(between two ``Cast`` nodes), then runs the Dense layers as ``MatMul`` + ``Add`` plus
their activations. The output ``score`` is [N, 1] in [0, 1].

A JSON sidecar ``pnn_onnx.json`` next to the models names the inputs in order, their
units, the fold rule, the trained masses and the file of every fold.
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
FORMAT = "pnn-onnx/1"

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


def dense_layers(model: Any) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """``(kernel, bias, activation)`` of every Dense layer, in order; refuse anything else."""
    import keras

    out = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if not isinstance(layer, keras.layers.Dense):
            raise PnnError(f"cannot export layer '{layer.name}' ({type(layer).__name__}): only "
                           "Dense layers are supported; retrain with the pnn architecture")
        if not layer.use_bias:
            raise PnnError(f"cannot export layer '{layer.name}': Dense layers without bias are "
                           "not supported; retrain with the pnn architecture")
        kernel, bias = (np.asarray(w, np.float32) for w in layer.get_weights())
        act = _activation_name(layer)
        if act not in ACTIVATIONS:
            raise PnnError(f"cannot export activation '{act}' of layer '{layer.name}': supported "
                           f"are {', '.join(sorted(ACTIVATIONS))}; set training.activation to one "
                           "of them and retrain")
        out.append((kernel, bias, act))
    if not out:
        raise PnnError("the model has no Dense layer to export: retrain with 'pnn train'")
    return out


def scaling_constants(scaler: InputScaler) -> tuple[np.ndarray, np.ndarray]:
    """Offset and divisor such that (raw - offset) / divisor are the network inputs.

    The features use the RobustScaler centre and scale, the mass the trained range
    (a zero span divides by 1, as :meth:`InputScaler.scale_mass` does).
    """
    span = scaler.mass_max - scaler.mass_min
    offset = np.append(scaler.center, scaler.mass_min)
    divisor = np.append(scaler.scale, span if span > 0 else 1.0)
    return offset, divisor


def build_onnx(model: Any, scaler: InputScaler, *, fold: int, doc: str = "") -> onnx.ModelProto:
    """One fold model as an ONNX graph: raw inputs -> Sub/Div scaling -> Dense layers -> score."""
    layers = dense_layers(model)
    n_inputs = len(scaler.features) + 1
    if layers[0][0].shape[0] != n_inputs:
        raise PnnError(f"the model of fold {fold} takes {layers[0][0].shape[0]} inputs but its "
                       f"scaler has {len(scaler.features)} features plus the mass: the model "
                       "directory is inconsistent, rerun 'pnn train'")
    if layers[-1][0].shape[1] != 1:
        raise PnnError(f"the model of fold {fold} has {layers[-1][0].shape[1]} outputs, not one "
                       "score: rerun 'pnn train'")
    g = _Graph()
    offset, divisor = scaling_constants(scaler)
    # scaled in double precision, as InputScaler does, then handed to the float32 network
    x = g.op("Cast", INPUT, to=TensorProto.DOUBLE)
    x = g.op("Sub", x, g.const("scaling_offset", offset, exact=True, dtype=np.float64))
    x = g.op("Div", x, g.const("scaling_divisor", divisor, exact=True, dtype=np.float64))
    x = g.op("Cast", x, to=TensorProto.FLOAT, out="scaled_inputs")
    for i, (kernel, bias, act) in enumerate(layers):
        x = g.op("Add", g.op("MatMul", x, g.const(f"kernel{i}", kernel)), g.const(f"bias{i}", bias))
        x = ACTIVATIONS[act](g, x)
    g.op("Identity", x, out=OUTPUT)
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
    helper.set_model_props(proto, {
        "pnn_fold": str(fold),
        "pnn_inputs": json.dumps([*scaler.features, MASS_INPUT]),
        "pnn_mass_range_gev": json.dumps([scaler.mass_min, scaler.mass_max]),
    })
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


def sidecar(fm: FoldModels, files: list[Path], expressions: dict[str, str] | None = None) -> dict:
    """The description a C++ user needs: input order and units, the expression behind each
    input (aliases resolved), fold rule, masses, files."""
    meta = fm.metadata
    features = fm.features
    k = fm.k
    ev = meta.get("event_number", "EventNumber")
    return {
        "format": FORMAT,
        "pnn_version": pnn.__version__,
        "config_digest": meta.get("config_digest"),
        "opset": OPSET,
        "input": {"name": INPUT, "type": "float32", "shape": ["N", len(features) + 1]},
        "inputs": [*features, MASS_INPUT],
        "expressions": {f: (expressions or {}).get(f, f) for f in features},
        "units": {**{f: "as in the ntuple (raw, unscaled)" for f in features}, MASS_INPUT: "GeV"},
        "output": {"name": OUTPUT, "type": "float32", "shape": ["N", 1],
                   "meaning": "signal score in [0, 1] at the given mass hypothesis"},
        "scaling": "inside the graph: (inputs - scaling_offset) / scaling_divisor, explicit "
                   "Sub and Div nodes in double precision (RobustScaler centre/scale for the "
                   "features, trained mass range for the mass)",
        "event_number": ev,
        "folds": k,
        "fold_rule": fold_rule(ev, k),
        "masses": fm.trained_masses,
        "models": [
            {"fold": i, "file": p.name, "applies_to": f"{ev} % {k} == {i}",
             "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
             "mass_range_gev": [s.mass_min, s.mass_max]}
            for i, (p, s) in enumerate(zip(files, fm.scalers, strict=True))
        ],
    }


def export(cfg: Config) -> ExportResult:
    """Write ``export/fold<i>.onnx`` for every fold of the trained run and the JSON sidecar.

    The sidecar is written last, so its presence means every model it lists is complete.
    """
    require_model(cfg, check_events=False)
    fm = FoldModels.load(cfg.run_dir)
    for i, s in enumerate(fm.scalers):
        if s.features != fm.features:
            raise PnnError(f"the scaler of fold {i} has features {s.features} but the model "
                           f"metadata lists {fm.features}: rerun 'pnn train'")
    out = export_dir(cfg.run_dir)
    files = []
    for i, (model, scaler) in enumerate(zip(fm.models, fm.scalers, strict=True)):
        doc = (f"pnn fold {i}: inputs = [{', '.join([*fm.features, 'mass [GeV]'])}], raw; "
               f"use for events with {fold_rule(fm.metadata.get('event_number', 'EventNumber'), fm.k)}")
        proto = build_onnx(model, scaler, fold=i, doc=doc)
        path = out / model_file(i)
        with atomic_path(path) as tmp:
            onnx.save_model(proto, str(tmp))
        log.info("fold %d: wrote %s", i, path)
        files.append(path)
    side = out / SIDECAR
    write_json(side, sidecar(fm, files, {f: cfg.expression(f) for f in fm.features}))
    return ExportResult(out, files, side)


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

    def score(self, X: np.ndarray, mass: np.ndarray | float, event_number: np.ndarray) -> np.ndarray:
        """Score every event at ``mass`` with the fold model that did not train on it.

        ``X`` holds the raw features in the sidecar's order, ``mass`` is in GeV (one value
        or one per event).
        """
        X = np.asarray(X, dtype=np.float64)
        n_features = len(self.inputs) - 1
        if X.ndim != 2 or X.shape[1] != n_features:
            raise PnnError(f"expected raw features of shape [N, {n_features}] "
                           f"({', '.join(self.inputs[:-1])}), got {list(X.shape)}")
        mass = np.broadcast_to(np.asarray(mass, dtype=np.float64), (len(X),))
        rows = np.column_stack([X, mass]).astype(np.float32)
        fold = folds(event_number, self.k)
        scores = np.empty(len(X))
        for i, session in enumerate(self.sessions):
            sel = fold == i
            if sel.any():
                scores[sel] = session.run([OUTPUT], {INPUT: rows[sel]})[0].ravel()
        return scores


def score(directory: Path, X: np.ndarray, mass: np.ndarray | float,
          event_number: np.ndarray) -> np.ndarray:
    """Scores of raw features ``X`` at ``mass`` (GeV) from the ONNX export in ``directory``,
    each event by the model of fold ``event_number % k``."""
    return OnnxModels.load(directory).score(X, mass, event_number)
