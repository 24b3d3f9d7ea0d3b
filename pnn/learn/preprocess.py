"""Preprocessing: folds, input scaling, training weights and background mass assignment.

* fold = EventNumber % k; the model of fold i trains on the other folds and is evaluated
  and applied on fold i only.
* Features are scaled with a RobustScaler fitted on training events only; each signal
  parameter (the mass, or e.g. m_X and m_Y) is scaled to [0, 1] over the trained points.
  Both are stored as JSON.
* Background events have no signal parameters: each gets a whole point drawn from the
  signal points in proportion to their signal weight, redrawn every epoch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pnn.core import points
from pnn.core.atomic import write_json
from pnn.core.errors import PnnError

SCALER_KEYS = ("features", "robust_center", "robust_scale", "parameters", "parameter_min",
               "parameter_max")


def folds(event_number: np.ndarray, k: int) -> np.ndarray:
    """Fold index of every event: EventNumber % k."""
    return (np.asarray(event_number).astype(np.int64) % k).astype(np.int64)


def cut_halves(event_number: np.ndarray, k: int) -> np.ndarray:
    """Boolean half of every event, independent of its fold: (EventNumber // k) % 2 == 0.

    The evaluation chooses a cut on one half and measures it on the other.
    """
    return (np.asarray(event_number).astype(np.int64) // k) % 2 == 0


class InputScaler:
    """RobustScaler on the features plus min-max scaling of each signal parameter over the
    trained points, to [0, 1].

    A non-parametric scaler (for the baseline networks without a mass input) has no
    parameter columns: :meth:`transform` then ignores the point it is given.
    """

    def __init__(self, features: list[str], center: np.ndarray, scale: np.ndarray,
                 param_min: np.ndarray | float, param_max: np.ndarray | float,
                 parametric: bool = True, parameters: list[str] | None = None) -> None:
        self.features = list(features)
        self.center = np.asarray(center, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        self.param_min = np.atleast_1d(np.asarray(param_min, dtype=np.float64))
        self.param_max = np.atleast_1d(np.asarray(param_max, dtype=np.float64))
        self.parameters = list(parameters or [points.MASS])
        self.parametric = parametric

    @classmethod
    def fit(cls, features: list[str], X: np.ndarray, trained: np.ndarray,
            parametric: bool = True, parameters: list[str] | None = None) -> InputScaler:
        """Fit on training events only: ``X`` their features, ``trained`` the trained points
        (one row per point; a 1-D array for one parameter)."""
        from sklearn.preprocessing import RobustScaler  # only fitting needs scikit-learn (1 s)

        robust = RobustScaler().fit(np.asarray(X, dtype=np.float64))
        pts = points.matrix(trained)
        return cls(features, robust.center_, robust.scale_, pts.min(axis=0), pts.max(axis=0),
                   parametric, parameters)

    @property
    def n_parameters(self) -> int:
        return len(self.parameters) if self.parametric else 0

    @property
    def n_inputs(self) -> int:
        return len(self.features) + self.n_parameters

    @property
    def mass_min(self) -> float:
        return float(self.param_min[0])

    @property
    def mass_max(self) -> float:
        return float(self.param_max[0])

    @property
    def span(self) -> np.ndarray:
        """Trained range of each parameter (1 where it is a single value)."""
        span = self.param_max - self.param_min
        return np.where(span > 0, span, 1.0)

    def scale_points(self, values: np.ndarray) -> np.ndarray:
        """(events, parameters) values scaled to [0, 1] over the trained points."""
        arr = points.matrix(values, len(self.param_min))
        return (arr - self.param_min) / self.span

    def scale_mass(self, mass: np.ndarray | float) -> np.ndarray:
        """One parameter's values scaled to [0, 1] (kept for one-parameter callers)."""
        return (np.asarray(mass, dtype=np.float64) - self.param_min[0]) / self.span[0]

    def point_matrix(self, theta: np.ndarray | float | tuple, n: int) -> np.ndarray:
        """``theta`` as an (n, parameters) array: a point for every event, or one per event.
        A one-parameter point may come as a number or a 1-tuple (``(500.0,)``)."""
        d = len(self.param_min)
        arr = np.asarray(theta, dtype=np.float64)
        if arr.ndim == 0 or (arr.ndim == 1 and len(arr) == d and (d > 1 or n != 1)):
            return np.broadcast_to(np.atleast_1d(arr), (n, d))
        return points.matrix(arr, d)

    def transform(self, X: np.ndarray, theta: np.ndarray | float | tuple) -> np.ndarray:
        """Network inputs: scaled features followed by the scaled parameters, as float32."""
        X = np.asarray(X, dtype=np.float64)
        scaled = (X - self.center) / self.scale
        if not self.parametric:
            return scaled.astype(np.float32)
        p = self.scale_points(self.point_matrix(theta, len(X)))
        return np.column_stack([scaled, p]).astype(np.float32)

    def to_dict(self) -> dict:
        return {
            "features": self.features,
            "robust_center": self.center.tolist(),
            "robust_scale": self.scale.tolist(),
            "parameters": self.parameters,
            "parameter_min": self.param_min.tolist(),
            "parameter_max": self.param_max.tolist(),
            "parametric": self.parametric,
        }

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path, fix: str = "rerun 'pnn train'") -> InputScaler:
        """Read a scaler saved by :meth:`save`, refusing one that would give wrong inputs.

        A file that is not JSON, lacks a key, has lists of the wrong length, a zero or
        non-finite scale, a non-finite centre or (parametric) no usable parameter range is a
        :class:`PnnError` naming the file and ending with ``fix``.
        """
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise PnnError(f"scaler file '{path}' is missing: {fix}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PnnError(f"scaler file '{path}' is not readable JSON "
                           f"({type(exc).__name__}): {fix}") from None
        problem = _scaler_problem(d)
        if problem:
            raise PnnError(f"scaler file '{path}' is damaged: {problem}; {fix}")
        lo, hi = ([v if _is_number(v) else np.nan for v in d[k]]
                  for k in ("parameter_min", "parameter_max"))
        return cls(d["features"], np.array(d["robust_center"], dtype=np.float64),
                   np.array(d["robust_scale"], dtype=np.float64), np.array(lo), np.array(hi),
                   d.get("parametric", True), d["parameters"])


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _scaler_problem(d: object) -> str:
    """What is wrong with a parsed scaler file, or "" when it can be used."""
    if not isinstance(d, dict):
        return f"expected a JSON object, got {type(d).__name__}"
    missing = [k for k in SCALER_KEYS if k not in d]
    if missing:
        return f"key '{missing[0]}' is missing"
    features = d["features"]
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
        return "'features' is not a list of names"
    parametric = d.get("parametric", True)
    if not isinstance(parametric, bool):
        return f"'parametric' is {parametric!r}, not true or false"
    for key in ("robust_center", "robust_scale"):
        values = d[key]
        if not isinstance(values, list) or not all(_is_number(v) for v in values):
            return f"'{key}' is not a list of numbers"
        if len(values) != len(features):
            return f"'{key}' has {len(values)} entries for {len(features)} features"
        bad = [f for f, v in zip(features, values, strict=True) if not np.isfinite(v)]
        if bad:
            return f"'{key}' is NaN or infinite for feature '{bad[0]}'"
    zero = [f for f, v in zip(features, d["robust_scale"], strict=True) if v == 0]
    if zero:
        return f"'robust_scale' is zero for feature '{zero[0]}' (inputs would be divided by zero)"
    names = d["parameters"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        return "'parameters' is not a list of parameter names"
    for key in ("parameter_min", "parameter_max"):
        if not isinstance(d[key], list) or len(d[key]) != len(names):
            return f"'{key}' is not a list of {len(names)} number(s), one per parameter"
    if parametric:
        for name, lo, hi in zip(names, d["parameter_min"], d["parameter_max"], strict=True):
            if not (_is_number(lo) and _is_number(hi) and np.isfinite(lo) and np.isfinite(hi)):
                return (f"the trained range of '{name}' is {lo!r}-{hi!r}, not two finite "
                        "numbers (a parametric model needs it to scale the parameter)")
            if hi < lo:
                return f"the trained range of '{name}' ends at {hi:g}, below its start {lo:g}"
    return ""


def training_weights(
    label: np.ndarray, mass: np.ndarray, weight: np.ndarray, *, balance_signal: bool,
    drop_negative: bool,
) -> np.ndarray:
    """Per-event weights for the loss, normalised to mean 1 over the events that enter it.

    With ``drop_negative`` negative weights become 0 (they stay in every evaluation number).
    With ``balance_signal`` every signal point (``mass``: one row of parameters per event, or
    one mass per event) gets the same total weight and all signal together equals all
    background.
    """
    w = np.asarray(weight, dtype=np.float64).copy()
    if drop_negative:
        w[w < 0] = 0.0
    label = np.asarray(label)
    sig = label == 1
    if balance_signal:
        bkg_total = w[~sig].sum()
        theta = points.matrix(mass)
        pts = points.unique(theta[sig])
        which = points.index(theta, pts)
        for i in range(len(pts)):
            sel = sig & (which == i)
            total = w[sel].sum()
            if total > 0:
                w[sel] *= bkg_total / len(pts) / total
    used = w != 0
    return w / w[used].mean() if used.any() else w


@dataclass(frozen=True)
class PointPrior:
    """Signal points (one row of parameters each) and the probability with which background
    events take each: whole points are drawn, never one parameter at a time."""

    points: np.ndarray
    probabilities: np.ndarray

    @classmethod
    def from_signal(cls, theta: np.ndarray, weight: np.ndarray) -> PointPrior:
        arr = points.matrix(theta)
        pts = np.array(points.unique(arr), dtype=np.float64).reshape(-1, arr.shape[1])
        which = points.index(arr, [tuple(p) for p in pts])
        totals = np.array([weight[which == i].sum() for i in range(len(pts))])
        totals = np.clip(totals, 0, None)
        return cls(pts, totals / totals.sum())

    @property
    def masses(self) -> np.ndarray:
        """The points' first parameter (the mass of a one-parameter search)."""
        return self.points[:, 0]

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` points drawn in proportion to the signal weight, as an (n, parameters) array."""
        return self.points[rng.choice(len(self.points), size=n, p=self.probabilities)]


def feature_matrix(events: pd.DataFrame, features: list[str]) -> np.ndarray:
    return events[features].to_numpy(dtype=np.float64)


def parameter_matrix(events: pd.DataFrame, names: list[str]) -> np.ndarray:
    """The events' signal parameters as an (events, parameters) array (NaN for background)."""
    return events[list(names)].to_numpy(dtype=np.float64)
