"""The parametrised network: f(x, m) as a Keras MLP, and the per-fold models that score events."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras

from pnn.core.config import Training
from pnn.core.errors import PnnError
from pnn.learn.preprocess import InputScaler, folds

log = logging.getLogger(__name__)

PREDICT_BATCH = 65_536


def build_model(n_inputs: int, layers: list[int], activation: str, seed: int) -> keras.Model:
    """Dense hidden layers and a sigmoid output; initial weights fixed by ``seed``."""
    inputs = keras.Input(shape=(n_inputs,), name="inputs")
    x = inputs
    for i, width in enumerate(layers):
        x = keras.layers.Dense(
            width, activation=activation, name=f"dense_{i}",
            kernel_initializer=keras.initializers.GlorotUniform(seed=seed + i),
        )(x)
    out = keras.layers.Dense(
        1, activation="sigmoid", name="score",
        kernel_initializer=keras.initializers.GlorotUniform(seed=seed + len(layers)),
    )(x)
    return keras.Model(inputs, out, name="pnn")


def compile_model(model: keras.Model, training: Training) -> None:
    """SGD with momentum, Nesterov and 1/(1 + decay t) learning-rate decay, on weighted BCE."""
    schedule = keras.optimizers.schedules.InverseTimeDecay(
        training.learning_rate, decay_steps=1, decay_rate=training.decay
    )
    ema = {"use_ema": True, "ema_momentum": training.ema} if training.ema > 0 else {}
    optimizer = keras.optimizers.SGD(
        learning_rate=schedule, momentum=training.momentum, nesterov=training.nesterov, **ema
    )
    model.compile(optimizer=optimizer, loss="binary_crossentropy")


def predict(model: keras.Model, X: np.ndarray) -> np.ndarray:
    """Scores in [0, 1] for the rows of ``X``, in large batches."""
    if len(X) == 0:
        return np.zeros(0)
    # An eager call: no graph is traced per input shape, and the numbers are the same.
    out = [np.asarray(model(X[i:i + PREDICT_BATCH], training=False)).ravel()
           for i in range(0, len(X), PREDICT_BATCH)]
    return np.concatenate(out).astype(np.float64)


def model_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "model"


class FoldModels:
    """The k fold models of a run with their scalers; scores each event with the right one."""

    def __init__(self, models: list[keras.Model], scalers: list[InputScaler], metadata: dict):
        self.models = models
        self.scalers = scalers
        self.metadata = metadata
        self.k = len(models)

    @classmethod
    def load(cls, run_dir: Path) -> FoldModels:
        """The PNN of a run (``<run>/model``)."""
        return cls.load_dir(model_dir(run_dir))

    @classmethod
    def load_dir(cls, mdir: Path) -> FoldModels:
        """Fold models saved by :func:`pnn.learn.train.train` in ``mdir``."""
        mdir = Path(mdir)
        meta_path = mdir / "metadata.json"
        if not meta_path.is_file():
            raise PnnError(f"no trained model in '{mdir}': run 'pnn train' first")
        metadata = json.loads(meta_path.read_text())
        models, scalers = [], []
        for i in range(metadata["folds"]):
            path = mdir / f"fold{i}.keras"
            if not path.is_file():
                raise PnnError(f"the model of fold {i} is missing in '{mdir}': "
                               f"run 'pnn train --fold {i}'")
            models.append(keras.saving.load_model(path, compile=False))
            scalers.append(InputScaler.load(mdir / f"fold{i}.scaler.json"))
        return cls(models, scalers, metadata)

    @property
    def features(self) -> list[str]:
        return list(self.metadata["features"])

    @property
    def parametric(self) -> bool:
        return bool(self.metadata.get("parametric", True))

    @property
    def trained_masses(self) -> list[float]:
        return list(self.metadata["masses"])

    def score(self, X: np.ndarray, mass: np.ndarray | float, event_number: np.ndarray,
              *, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
        """Score events at ``mass`` and return ``(scores, mask)``.

        ``split="test"``: every event is scored once, by the model that did not train on it.
        ``split="train"``: every event is scored by each model that did train on it; the
        result holds one entry per (event, model) pair and ``mask`` is an index array.
        """
        fold = folds(event_number, self.k)
        mass = np.broadcast_to(np.asarray(mass, dtype=np.float64), (len(X),))
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
