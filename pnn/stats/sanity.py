"""Sanity checks that ``pnn evaluate`` runs and the report prints as warnings.

Each guards against a fault that leaves a PNN looking fine while being wrong:

* mass leak: if background masses are assigned wrongly, the mass input alone tells signal
  from background, and the network learns that instead of the physics;
* ignored mass: a network (or a sentinel-mass bug) whose score does not change with the
  mass input, seen as identical scores, or identical AUC, at every mass;
* overtraining: train and test score distributions differ (KS p-value);
* statistics: too few signal or background MC events, raw or effective, to quote a number.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier

from pnn.core.config import Config
from pnn.learn.preprocess import MassPrior, cut_halves, training_weights
from pnn.stats import metrics

log = logging.getLogger(__name__)

SCORE_SPREAD_MIN = 1e-6  # smallest change of any score over the mass range that counts
SENSITIVITY_EVENTS = 5000


@dataclass
class Check:
    """Outcome of one run-level check; ``warning`` is empty when it passed."""

    name: str
    value: float
    passed: bool
    warning: str = ""


def effective_events(weight: np.ndarray) -> float:
    """Kish effective number of events (sum w)^2 / sum w^2: what the weights are worth."""
    w = np.asarray(weight, dtype=np.float64)
    w2 = float(np.sum(w * w))
    return float(np.sum(w)) ** 2 / w2 if w2 > 0 else 0.0


def training_masses(cfg: Config, train_events: pd.DataFrame,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, masses and loss weights as training sees them: background masses are drawn
    from the signal mass points exactly as one training epoch draws them."""
    pre = cfg.preprocessing
    y = train_events["label"].to_numpy()
    mass = train_events["mass"].to_numpy(np.float64).copy()
    w = training_weights(y, mass, train_events["weight"].to_numpy(), balance_signal=pre.balance_signal,
                         drop_negative=pre.drop_negative_weights)
    sig = y == 1
    prior = MassPrior.from_signal(mass[sig], w[sig])
    mass[~sig] = prior.draw(rng, int((~sig).sum()))
    return y, mass, w


def mass_leak(cfg: Config, train_events: pd.DataFrame, tolerance: float) -> Check:
    """AUC of a classifier that sees only the mass input; it must be 0.5 within ``tolerance``.

    A gradient-boosted classifier learns P(signal | mass) on one half of the training events
    and is scored on the other half, with the training weights.
    """
    y, mass, w = training_masses(cfg, train_events, np.random.default_rng([cfg.seed, 13]))
    keep = w != 0
    half = cut_halves(train_events["event_number"].to_numpy(), cfg.preprocessing.folds)
    fit, test = half & keep, ~half & keep
    clf = HistGradientBoostingClassifier(max_iter=30, early_stopping=False, random_state=cfg.seed)
    clf.fit(mass[fit, None], y[fit], sample_weight=w[fit])
    score = clf.predict_proba(mass[test, None])[:, 1]
    auc = metrics.roc(score, y[test], w[test]).auc
    ok = abs(auc - 0.5) <= tolerance
    warning = "" if ok else (
        f"mass leak: a classifier given only the mass input reaches AUC {auc:.3f} on the "
        "training events (expected 0.5): background masses are not drawn like the signal masses"
    )
    return Check("mass_leak", auc, ok, warning)


def mass_sensitivity(score_at: dict[float, np.ndarray]) -> Check:
    """Largest change of any event's score over the masses; zero means the mass is ignored.

    ``score_at`` maps each mass to the scores of the same events at that mass.
    """
    if len(score_at) < 2:
        return Check("mass_sensitivity", float("nan"), True)
    stacked = np.vstack(list(score_at.values()))
    spread = float(np.max(np.ptp(stacked, axis=0))) if stacked.shape[1] else 0.0
    ok = spread > SCORE_SPREAD_MIN
    warning = "" if ok else (
        f"ignored mass: the PNN gives every event the same score at all {len(score_at)} masses "
        "(the mass input does not reach the network)"
    )
    return Check("mass_sensitivity", spread, ok, warning)


def identical_auc(aucs: dict[float, float]) -> Check:
    """Fires when every evaluated mass has the same AUC: the mass hypothesis changed nothing."""
    values = np.array(list(aucs.values()), dtype=np.float64)
    if len(values) < 2:
        return Check("identical_auc", float("nan"), True)
    spread = float(np.ptp(values))
    ok = spread > 1e-9
    warning = "" if ok else (
        f"ignored mass: the AUC is {values[0]:.6f} at every one of the {len(values)} masses"
    )
    return Check("identical_auc", spread, ok, warning)


def overtraining(ks: dict[str, float], threshold: float) -> list[str]:
    """Warnings for classes whose train and test score distributions differ (KS p-value)."""
    return [f"overtraining check: KS p-value {p:.2g} for {cls} is below {threshold:g}"
            for cls, p in ks.items() if p < threshold]


def statistics(label: np.ndarray, weight: np.ndarray, n_bkg_passing: int, *,
               min_signal_events: int, min_effective_events: float,
               min_background_events: int) -> list[str]:
    """Warnings when the MC at one mass is too thin, raw or weighted, to quote a number."""
    sig = np.asarray(label) == 1
    w = np.asarray(weight, dtype=np.float64)
    out = []
    n_sig = int(sig.sum())
    if n_sig < min_signal_events:
        out.append(f"statistics: only {n_sig} signal MC events (need {min_signal_events})")
    for cls, sel in (("signal", sig), ("background", ~sig)):
        n_eff = effective_events(w[sel])
        if n_eff < min_effective_events:
            out.append(f"statistics: {cls} weights are worth only {n_eff:.1f} effective events "
                       f"(need {min_effective_events:g})")
        if w[sel].sum() <= 0:
            out.append(f"statistics: the {cls} yield is not positive ({w[sel].sum():.3g})")
    if n_bkg_passing < min_background_events:
        out.append(f"statistics: only {n_bkg_passing} background MC events pass the best cut "
                   f"(need {min_background_events})")
    return out
