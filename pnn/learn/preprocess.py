"""Preprocessing: folds, input scaling, training weights and background mass assignment.

* fold = EventNumber % k; the model of fold i trains on the other folds and is evaluated
  and applied on fold i only.
* Features are scaled with a RobustScaler fitted on training events only; the mass input
  is scaled to [0, 1] over the trained mass range. Both are stored as JSON.
* Background events have no mass: each gets one drawn from the signal mass points in
  proportion to their signal weight, redrawn every epoch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.preprocessing import RobustScaler

from pnn.core.atomic import write_json
from pnn.core.errors import PnnError

MASS_TOLERANCE = 1e-3
SCALER_KEYS = ("features", "robust_center", "robust_scale", "mass_min", "mass_max")


def folds(event_number: np.ndarray, k: int) -> np.ndarray:
    """Fold index of every event: EventNumber % k."""
    return (np.asarray(event_number).astype(np.int64) % k).astype(np.int64)


def cut_halves(event_number: np.ndarray, k: int) -> np.ndarray:
    """Boolean half of every event, independent of its fold: (EventNumber // k) % 2 == 0.

    The evaluation chooses a cut on one half and measures it on the other.
    """
    return (np.asarray(event_number).astype(np.int64) // k) % 2 == 0


def mass_mask(masses: np.ndarray, mass: float) -> np.ndarray:
    """Events whose mass equals ``mass`` within a tolerance (masses are floats)."""
    return np.abs(np.asarray(masses) - mass) < MASS_TOLERANCE


class InputScaler:
    """RobustScaler on the features plus min-max scaling of the mass over the trained range.

    A non-parametric scaler (for the baseline networks without a mass input) has no mass
    column: :meth:`transform` then ignores the mass it is given.
    """

    def __init__(self, features: list[str], center: np.ndarray, scale: np.ndarray,
                 mass_min: float, mass_max: float, parametric: bool = True) -> None:
        self.features = list(features)
        self.center = np.asarray(center, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        self.mass_min = float(mass_min)
        self.mass_max = float(mass_max)
        self.parametric = parametric

    @classmethod
    def fit(cls, features: list[str], X: np.ndarray, masses: np.ndarray,
            parametric: bool = True) -> InputScaler:
        """Fit on training events only: ``X`` their features, ``masses`` the trained masses."""
        robust = RobustScaler().fit(np.asarray(X, dtype=np.float64))
        lo, hi = float(np.min(masses)), float(np.max(masses))
        return cls(features, robust.center_, robust.scale_, lo, hi, parametric)

    @property
    def n_inputs(self) -> int:
        return len(self.features) + int(self.parametric)

    def scale_mass(self, mass: np.ndarray | float) -> np.ndarray:
        span = self.mass_max - self.mass_min
        return (np.asarray(mass, dtype=np.float64) - self.mass_min) / (span if span > 0 else 1.0)

    def transform(self, X: np.ndarray, mass: np.ndarray | float) -> np.ndarray:
        """Network inputs: scaled features followed by the scaled mass, as float32."""
        X = np.asarray(X, dtype=np.float64)
        scaled = (X - self.center) / self.scale
        if not self.parametric:
            return scaled.astype(np.float32)
        m = np.broadcast_to(self.scale_mass(mass), (len(X),))
        return np.column_stack([scaled, m]).astype(np.float32)

    def to_dict(self) -> dict:
        return {
            "features": self.features,
            "robust_center": self.center.tolist(),
            "robust_scale": self.scale.tolist(),
            "mass_min": self.mass_min,
            "mass_max": self.mass_max,
            "parametric": self.parametric,
        }

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path, fix: str = "rerun 'pnn train'") -> InputScaler:
        """Read a scaler saved by :meth:`save`, refusing one that would give wrong inputs.

        A file that is not JSON, lacks a key, has lists of the wrong length, a zero or
        non-finite scale, a non-finite centre or (parametric) no usable mass range is a
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
        lo, hi = (d[k] if _is_number(d[k]) else np.nan for k in ("mass_min", "mass_max"))
        return cls(d["features"], np.array(d["robust_center"], dtype=np.float64),
                   np.array(d["robust_scale"], dtype=np.float64), lo, hi,
                   d.get("parametric", True))


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
    if parametric:
        lo, hi = d["mass_min"], d["mass_max"]
        if not (_is_number(lo) and _is_number(hi) and np.isfinite(lo) and np.isfinite(hi)):
            return (f"the trained mass range is {lo!r}-{hi!r}, not two finite numbers "
                    "(a parametric model needs it to scale the mass)")
        if hi < lo:
            return f"'mass_max' {hi:g} is below 'mass_min' {lo:g}"
    return ""


def training_weights(
    label: np.ndarray, mass: np.ndarray, weight: np.ndarray, *, balance_signal: bool,
    drop_negative: bool,
) -> np.ndarray:
    """Per-event weights for the loss, normalised to mean 1 over the events that enter it.

    With ``drop_negative`` negative weights become 0 (they stay in every evaluation number).
    With ``balance_signal`` every signal mass point gets the same total weight and all signal
    together equals all background.
    """
    w = np.asarray(weight, dtype=np.float64).copy()
    if drop_negative:
        w[w < 0] = 0.0
    label = np.asarray(label)
    sig = label == 1
    if balance_signal:
        bkg_total = w[~sig].sum()
        points = np.unique(mass[sig])
        for m in points:
            sel = sig & (mass == m)
            total = w[sel].sum()
            if total > 0:
                w[sel] *= bkg_total / len(points) / total
    used = w != 0
    return w / w[used].mean() if used.any() else w


@dataclass(frozen=True)
class MassPrior:
    """Signal mass points and the probability with which background events take each."""

    masses: np.ndarray
    probabilities: np.ndarray

    @classmethod
    def from_signal(cls, mass: np.ndarray, weight: np.ndarray) -> MassPrior:
        points = np.unique(mass)
        totals = np.array([weight[mass == m].sum() for m in points])
        totals = np.clip(totals, 0, None)
        return cls(points, totals / totals.sum())

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.choice(self.masses, size=n, p=self.probabilities)


def feature_matrix(events: pd.DataFrame, features: list[str]) -> np.ndarray:
    return events[features].to_numpy(dtype=np.float64)
