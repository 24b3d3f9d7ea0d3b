"""Figures of merit: weighted ROC, background efficiency at fixed signal efficiency, Asimov
significance at a cut chosen on one half of the events and measured on the other.

Negative weights stay in: the weighted ROC is built with ``sklearn.metrics.roc_curve`` and
integrated with the trapezoid rule, which is exact for signed weights (where the ROC path
may step backwards) and equals the weighted Mann-Whitney statistic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_curve


@dataclass(frozen=True)
class Roc:
    bkg_eff: np.ndarray
    sig_eff: np.ndarray
    thresholds: np.ndarray
    auc: float


def roc(score: np.ndarray, label: np.ndarray, weight: np.ndarray) -> Roc:
    """Weighted ROC curve and its area."""
    fpr, tpr, thr = roc_curve(label, score, sample_weight=weight, drop_intermediate=False)
    return Roc(fpr, tpr, thr, float(np.trapezoid(tpr, fpr)))


def bkg_eff_at(r: Roc, sig_eff: float) -> float:
    """Background efficiency of the loosest cut that reaches ``sig_eff`` signal efficiency."""
    idx = np.flatnonzero(r.sig_eff >= sig_eff)
    return float(r.bkg_eff[idx[0]]) if len(idx) else float("nan")


def asimov_z(s: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """Asimov significance sqrt(2((s+b) ln(1+s/b) - s)); NaN where b <= 0."""
    s = np.asarray(s, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        z2 = 2.0 * ((s + b) * np.log1p(s / b) - s)
        return np.where((b > 0) & (s >= 0), np.sqrt(np.clip(z2, 0, None)), np.nan)


def asimov_z_uncertain(s: np.ndarray | float, b: np.ndarray | float,
                       rel_unc: float) -> np.ndarray:
    """Asimov discovery significance with a background known to a relative uncertainty.

    Z = sqrt(2 ((s+b) ln[(s+b)(b+v) / (b^2 + (s+b)v)] - (b^2/v) ln[1 + v s / (b(b+v))]))
    with v = (rel_unc * b)^2 (G. Cowan, "Discovery sensitivity for a counting experiment with
    background uncertainty", 2012). At rel_unc = 0 it is :func:`asimov_z` exactly.
    """
    if rel_unc == 0:
        return asimov_z(s, b)
    s = np.asarray(s, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    var = (rel_unc * b) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        first = (s + b) * np.log((s + b) * (b + var) / (b * b + (s + b) * var))
        second = (b * b / var) * np.log1p(var * s / (b * (b + var)))
        z2 = 2.0 * (first - second)
        return np.where((b > 0) & (s >= 0), np.sqrt(np.clip(z2, 0, None)), np.nan)


@dataclass(frozen=True)
class CutScan:
    """Yields above each threshold (cut: score >= threshold), highest threshold first."""

    thresholds: np.ndarray
    s: np.ndarray
    b: np.ndarray
    n_bkg: np.ndarray

    @property
    def z(self) -> np.ndarray:
        return asimov_z(self.s, self.b)


def scan(score: np.ndarray, label: np.ndarray, weight: np.ndarray, scale_sig: float = 1.0,
         scale_bkg: float = 1.0) -> CutScan:
    """Cumulative weighted yields and raw background counts above every distinct score."""
    order = np.argsort(-score, kind="stable")
    sc, lab, w = score[order], label[order], weight[order]
    s = np.cumsum(np.where(lab == 1, w, 0.0)) * scale_sig
    b = np.cumsum(np.where(lab == 0, w, 0.0)) * scale_bkg
    nb = np.cumsum(lab == 0)
    last = np.r_[sc[1:] != sc[:-1], True]  # last position of each distinct score
    return CutScan(sc[last], s[last], b[last], nb[last])


def _scales(label, weight, part):
    out = []
    for cls in (1, 0):
        total = weight[label == cls].sum()
        sub = weight[(label == cls) & part].sum()
        out.append(total / sub if sub > 0 else np.nan)
    return out


@dataclass(frozen=True)
class Significance:
    """Z at a cut chosen on one half of the events and measured on the other, both ways.

    ``threshold`` is the cut chosen on the first half, ``threshold_other`` the one chosen on
    the second. ``z``, ``s``, ``b`` and ``s_over_sqrt_b`` average the two measurements, each
    made on the half that did not choose its cut; ``n_bkg`` is the smaller raw background
    count that passed.
    """

    threshold: float
    threshold_other: float
    z: float
    s: float
    b: float
    s_over_sqrt_b: float
    n_bkg: int
    z_uncertain: float = float("nan")  # the same, background known to a relative uncertainty


def _choose(score, label, weight, part, min_bkg_events) -> float:
    ss, sb = _scales(label, weight, part)
    cs = scan(score[part], label[part], weight[part], ss, sb)
    z = np.where((cs.n_bkg >= min_bkg_events) & (cs.b > 0), cs.z, np.nan)
    if np.all(np.isnan(z)):
        return float("nan")
    return float(cs.thresholds[int(np.nanargmax(z))])


def _measure(score, label, weight, part, threshold) -> tuple[float, float, int]:
    ms, mb = _scales(label, weight, part)
    above = part & (score >= threshold)
    s = float(weight[above & (label == 1)].sum() * ms)
    b = float(weight[above & (label == 0)].sum() * mb)
    return s, b, int((above & (label == 0)).sum())


def best_cut(score: np.ndarray, label: np.ndarray, weight: np.ndarray, half: np.ndarray,
             min_bkg_events: int, bkg_uncertainty: float = 0.0) -> Significance:
    """Choose the cut with the best Z on one half and measure it on the other, both ways.

    The choice never sees the events that measure it, so Z is not biased upwards by
    fluctuations; averaging the two directions halves the variance. Yields of each half are
    scaled to the full sample, so Z is quoted at the full luminosity. The cut must keep
    ``min_bkg_events`` raw background MC events in the choosing half, so the background
    yield is measured rather than guessed. ``z_uncertain`` is Z at the same cuts with the
    background known to ``bkg_uncertainty`` (relative); at 0 it equals ``z``.
    """
    score = np.asarray(score, dtype=np.float64)
    label = np.asarray(label)
    weight = np.asarray(weight, dtype=np.float64)
    first = np.asarray(half, bool)
    cuts, results = [], []
    for choose, measure in ((first, ~first), (~first, first)):
        thr = _choose(score, label, weight, choose, min_bkg_events)
        cuts.append(thr)
        if np.isnan(thr):
            return Significance(np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, 0)
        results.append(_measure(score, label, weight, measure, thr))
    s = np.array([r[0] for r in results])
    b = np.array([r[1] for r in results])
    z = asimov_z(s, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        sosb = np.where(b > 0, s / np.sqrt(np.where(b > 0, b, 1.0)), np.nan)
    z_unc = asimov_z_uncertain(s, b, bkg_uncertainty)
    return Significance(cuts[0], cuts[1], float(z.mean()), float(s.mean()), float(b.mean()),
                        float(sosb.mean()), min(r[2] for r in results), float(z_unc.mean()))
