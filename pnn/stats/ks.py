"""The two-sample Kolmogorov-Smirnov test with event weights, for the overtraining check.

The histograms of that check are weighted, so the test beside them must be too. The
statistic is the largest distance between the two weighted empirical distribution functions;
its p-value is the asymptotic Kolmogorov one with each sample's Kish effective size
(sum w)^2 / sum w^2 in place of its number of events. With unit weights this is exactly
scipy's ``ks_2samp(..., method="asymp")``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import kstwo


@dataclass(frozen=True)
class KsResult:
    statistic: float
    pvalue: float
    n_effective: tuple[float, float]


def _ecdf(values: np.ndarray, weights: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Weighted empirical distribution function of ``values`` at the points ``at``."""
    order = np.argsort(values, kind="stable")
    v, cum = values[order], np.cumsum(weights[order])
    idx = np.searchsorted(v, at, side="right")
    return np.where(idx > 0, cum[np.maximum(idx - 1, 0)], 0.0) / cum[-1]


def _kish(weights: np.ndarray) -> float:
    return float(weights.sum() ** 2 / np.square(weights).sum())


def ks_2samp_weighted(a: np.ndarray, b: np.ndarray, wa: np.ndarray | None = None,
                      wb: np.ndarray | None = None) -> KsResult:
    """Weighted two-sample KS test (two-sided); NaN when a sample is empty or its weights do
    not sum to a positive number."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    wa = np.ones(len(a)) if wa is None else np.asarray(wa, dtype=np.float64)
    wb = np.ones(len(b)) if wb is None else np.asarray(wb, dtype=np.float64)
    if wa.shape != a.shape or wb.shape != b.shape:
        raise ValueError("each sample needs one weight per value")
    nan = KsResult(float("nan"), float("nan"), (float("nan"), float("nan")))
    if len(a) == 0 or len(b) == 0 or not wa.sum() > 0 or not wb.sum() > 0:
        return nan
    points = np.unique(np.concatenate([a, b]))
    d = float(np.max(np.abs(_ecdf(a, wa, points) - _ecdf(b, wb, points))))
    na, nb = _kish(wa), _kish(wb)
    en = na * nb / (na + nb)
    p = float(kstwo.sf(d, max(int(np.round(en)), 1)))
    return KsResult(d, min(max(p, 0.0), 1.0), (na, nb))
