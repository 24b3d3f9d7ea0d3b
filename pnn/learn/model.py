"""The parametrised network: f(x, m) as a Keras MLP, and the per-fold models that score events."""

from __future__ import annotations

import logging
import os
import weakref
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras

from pnn.core.config import Training
from pnn.core.errors import PnnError
from pnn.learn.metadata import ModelInfo, read_model_metadata
from pnn.learn.preprocess import InputScaler, folds

log = logging.getLogger(__name__)

PREDICT_BATCH = 16_384  # rows per call: larger ones fall out of the CPU caches
STEPS_PER_EXECUTION = 64  # training steps per compiled call
# What keras.saving.load_model raises for a truncated, overwritten or incomplete .keras file.
MODEL_LOAD_ERRORS = (ValueError, OSError, KeyError, TypeError, EOFError, zipfile.BadZipFile,
                     zlib.error)


def build_model(n_inputs: int, layers: list[int], activation: str, seed: int, *,
                n_parameters: int = 1, conditioning: str = "concat") -> keras.Model:
    """Dense hidden layers and a sigmoid output; initial weights fixed by ``seed``.

    The input row holds the scaled features followed by ``n_parameters`` scaled signal
    parameters theta. ``concat`` feeds that row to the first layer as it is (Baldi et al.).
    ``affine`` (Anzalone et al.) feeds only the features to the first layer and changes every
    hidden layer's pre-activation h to (1 + gamma(theta)) * h + beta(theta), with gamma and
    beta linear in theta and starting near zero, so that no point starts with its
    activations switched off. It is built from stock Keras layers only (the features and
    theta are picked out of the input row by fixed, non-trainable Dense layers), so
    ``load_model`` restores it without custom code.
    """
    inputs = keras.Input(shape=(n_inputs,), name="inputs")
    if conditioning == "affine" and n_parameters > 0:
        x, theta = _split_inputs(inputs, n_inputs, n_parameters)
    else:
        x, theta = inputs, None
    for i, width in enumerate(layers):
        init = keras.initializers.GlorotUniform(seed=seed + i)
        if theta is None:
            x = keras.layers.Dense(width, activation=activation, name=f"dense_{i}",
                                   kernel_initializer=init)(x)
            continue
        h = keras.layers.Dense(width, name=f"dense_{i}", kernel_initializer=init)(x)
        small = keras.initializers.RandomNormal(stddev=0.01, seed=seed + 100 + i)
        scale = keras.layers.Dense(width, name=f"gamma_{i}", kernel_initializer=small,
                                   bias_initializer="ones")(theta)  # 1 + gamma(theta)
        shift = keras.layers.Dense(width, name=f"beta_{i}", kernel_initializer=keras.initializers
                                   .RandomNormal(stddev=0.01, seed=seed + 200 + i))(theta)
        h = keras.layers.Multiply(name=f"film_scale_{i}")([h, scale])
        h = keras.layers.Add(name=f"film_shift_{i}")([h, shift])
        x = keras.layers.Activation(activation, name=f"act_{i}")(h)
    out = keras.layers.Dense(
        1, activation="sigmoid", name="score",
        kernel_initializer=keras.initializers.GlorotUniform(seed=seed + len(layers)),
    )(x)
    return keras.Model(inputs, out, name="pnn")


def _split_inputs(inputs: keras.KerasTensor, n_inputs: int, n_parameters: int
                  ) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """The features and the parameters of the input row, each through a fixed 0/1 Dense."""
    n_features = n_inputs - n_parameters
    out = []
    for name, cols in (("features", range(n_features)),
                       ("parameters", range(n_features, n_inputs))):
        layer = keras.layers.Dense(len(cols), use_bias=False, trainable=False,
                                   kernel_initializer="zeros", name=f"select_{name}")
        picked = layer(inputs)
        pick = np.zeros((n_inputs, len(cols)), dtype=np.float32)
        pick[list(cols), range(len(cols))] = 1.0
        layer.set_weights([pick])
        out.append(picked)
    return out[0], out[1]


def compile_model(model: keras.Model, training: Training) -> None:
    """SGD with momentum and Nesterov on weighted BCE, with the configured schedule.

    ``inverse_time`` decays the rate as lr / (1 + decay t) per step; ``plateau`` starts at a
    constant rate that :func:`pnn.learn.train.train_fold` lowers between epochs. Many steps
    run in one compiled call: the numbers are the same, the Python overhead per step is gone.
    """
    if training.schedule == "inverse_time":
        rate: float | keras.optimizers.schedules.LearningRateSchedule = (
            keras.optimizers.schedules.InverseTimeDecay(
                training.learning_rate, decay_steps=1, decay_rate=training.decay))
    else:
        rate = training.learning_rate
    ema = {"use_ema": True, "ema_momentum": training.ema} if training.ema > 0 else {}
    optimizer = keras.optimizers.SGD(
        learning_rate=rate, momentum=training.momentum, nesterov=training.nesterov, **ema
    )
    model.compile(optimizer=optimizer, loss="binary_crossentropy",
                  steps_per_execution=STEPS_PER_EXECUTION)


def learning_rate(model: keras.Model) -> float:
    """The optimizer's current learning rate (the schedule's value after the steps taken)."""
    return float(np.asarray(model.optimizer.learning_rate))


def set_learning_rate(model: keras.Model, rate: float) -> None:
    """Set a new constant learning rate (the plateau schedule)."""
    model.optimizer.learning_rate = rate


def restart_from(model: keras.Model, weights: list[np.ndarray]) -> None:
    """Go back to ``weights`` after the training diverged: the optimizer's momenta are zeroed
    and its moving averages (``training.ema``) set to those weights, since both may hold
    NaN or infinities by then."""
    model.set_weights(weights)
    opt = model.optimizer
    for v in getattr(opt, "momentums", None) or []:
        v.assign(np.zeros(v.shape, dtype=v.dtype))
    averages = getattr(opt, "_model_variables_moving_average", None) or []
    for avg, var in zip(averages, model.trainable_variables, strict=False):
        avg.assign(var)


_BODIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _body(model: keras.Model):
    """The network up to its sigmoid output layer ``score``, as one compiled function of a
    batch (None for another design).

    Traced once for any batch length: on two cores this scores six times faster than the
    eager call, whose per-layer dispatch dominated.
    """
    if model not in _BODIES:
        import tensorflow as tf

        try:
            head = model.get_layer("score")
        except ValueError:
            head = None
        ok = (isinstance(head, keras.layers.Dense) and head.units == 1
              and head.activation is keras.activations.sigmoid)
        fn = None
        if ok:
            body = keras.Model(model.inputs[0], head.input)
            spec = tf.TensorSpec([None, body.inputs[0].shape[-1]], tf.float32)
            fn = tf.function(lambda x: body(x, training=False), input_signature=[spec])
        _BODIES[model] = fn
    return _BODIES[model]


def predict(model: keras.Model, X: np.ndarray) -> np.ndarray:
    """Scores in [0, 1] for the rows of ``X``, in batches.

    The output layer's logit is taken in float64 and put through the sigmoid there: in float32
    every score above 1 - 6e-8 rounds to one of a few values or to 1 itself, which ties the
    most signal-like events exactly where high-mass cuts and the top template bins sit.
    """
    if len(X) == 0:
        return np.zeros(0)
    body = _body(model)
    X = np.asarray(X, dtype=np.float32)
    if body is None:
        out = [np.asarray(model(X[i:i + PREDICT_BATCH], training=False)).ravel()
               for i in range(0, len(X), PREDICT_BATCH)]
        return np.concatenate(out).astype(np.float64)
    kernel, bias = (np.asarray(w, dtype=np.float64) for w in model.get_layer("score").get_weights())
    logits = [np.asarray(body(X[i:i + PREDICT_BATCH]), dtype=np.float64) @ kernel
              for i in range(0, len(X), PREDICT_BATCH)]
    return expit(np.concatenate(logits).ravel() + bias[0])


def _check_fold(path: Path, model: keras.Model, scaler: InputScaler, metadata: dict,
                fix: str) -> None:
    """Refuse a fold whose model, scaler and metadata do not belong together."""
    if scaler.features != list(metadata["features"]):
        raise PnnError(f"the scaler of '{path}' has features {scaler.features} but the model "
                       f"metadata lists {metadata['features']}: {fix}")
    if scaler.parametric != bool(metadata.get("parametric", True)):
        raise PnnError(f"the scaler of '{path}' is {'' if scaler.parametric else 'not '}"
                       f"parametric but the model metadata says otherwise: {fix}")
    width = model.input_shape[-1] if isinstance(model.input_shape, tuple) else None
    if width != scaler.n_inputs:
        raise PnnError(f"'{path}' takes {width} inputs but its scaler gives {scaler.n_inputs}: "
                       f"{fix}")


class FoldModels(ModelInfo):
    """The k fold models of a run with their scalers; scores each event with the right one."""

    def __init__(self, models: list[keras.Model], scalers: list[InputScaler], metadata: dict,
                 mdir: Path | None = None):
        super().__init__(metadata, mdir)
        self.models = models
        self.scalers = scalers
        self.k = len(models)

    @classmethod
    def load_dir(cls, mdir: Path) -> FoldModels:
        """Fold models saved by :func:`pnn.learn.train.train` in ``mdir``."""
        mdir = Path(mdir)
        metadata = read_model_metadata(mdir)
        models, scalers = [], []
        for i in range(metadata["folds"]):
            path = mdir / f"fold{i}.keras"
            if not path.is_file():
                raise PnnError(f"the model of fold {i} is missing in '{mdir}': "
                               f"run 'pnn train --fold {i}'")
            fix = f"rerun 'pnn train --fold {i}'"
            try:
                model = keras.saving.load_model(path, compile=False)
            except MODEL_LOAD_ERRORS as exc:
                raise PnnError(f"model file '{path}' is damaged and cannot be loaded "
                               f"({type(exc).__name__}): {fix}") from None
            scaler = InputScaler.load(mdir / f"fold{i}.scaler.json", fix)
            _check_fold(path, model, scaler, metadata, fix)
            models.append(model)
            scalers.append(scaler)
        return cls(models, scalers, metadata, mdir)

    def histories(self) -> dict[int, pd.DataFrame]:
        """Each fold's training history (epoch, loss, val_loss, learning_rate), where readable."""
        out: dict[int, pd.DataFrame] = {}
        if self.model_dir is None:
            return out
        for i in range(self.k):
            path = self.model_dir / f"fold{i}.history.csv"
            try:
                out[i] = pd.read_csv(path)
            except (OSError, ValueError):
                log.warning("the training history '%s' is not readable", path)
        return out

    def score(self, X: np.ndarray, mass: np.ndarray | float | tuple, event_number: np.ndarray,
              *, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
        """Score events at ``mass`` (a point for every event, or one per event: masses, or an
        (events, parameters) array) and return ``(scores, mask)``.

        ``split="test"``: every event is scored once, by the model that did not train on it.
        ``split="train"``: every event is scored by each model that did train on it; the
        result holds one entry per (event, model) pair and ``mask`` is an index array.
        """
        fold = folds(event_number, self.k)
        mass = self.scalers[0].point_matrix(mass, len(X))
        if split == "test":
            scores = np.empty(len(X))
            for i, (model, scaler) in enumerate(zip(self.models, self.scalers, strict=True)):
                sel = fold == i
                scores[sel] = predict(model, scaler.transform(X[sel], mass[sel]))
            return scores, np.ones(len(X), dtype=bool)
        parts, index = [], []
        for i, (model, scaler) in enumerate(zip(self.models, self.scalers, strict=True)):
            sel = np.flatnonzero(fold != i)
            parts.append(predict(model, scaler.transform(X[sel], mass[sel])))
            index.append(sel)
        return np.concatenate(parts), np.concatenate(index)
