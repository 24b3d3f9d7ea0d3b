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


def _significance(cuts: list[float], results: list[tuple[float, float, int]],
                  bkg_uncertainty: float) -> Significance:
    """The two half-split measurements ``(s, b, raw background)`` at ``cuts``, averaged."""
    s = np.array([r[0] for r in results])
    b = np.array([r[1] for r in results])
    z = asimov_z(s, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        sosb = np.where(b > 0, s / np.sqrt(np.where(b > 0, b, 1.0)), np.nan)
    z_unc = asimov_z_uncertain(s, b, bkg_uncertainty)
    return Significance(cuts[0], cuts[1], float(z.mean()), float(s.mean()), float(b.mean()),
                        float(sosb.mean()), min(r[2] for r in results), float(z_unc.mean()))


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
    return _significance(cuts, results, bkg_uncertainty)


# --- every figure of merit from one descending sort, and their bootstrap ----------------------

BOOTSTRAP_BINS = 2000  # cut candidates per ladder (background ranks, signal ranks) in replicates
_POISSON_BITS = 16


@dataclass(frozen=True)
class CutBins:
    """The events of one discriminant grouped into bins of descending score for the bootstrap.

    ``code`` is, per event in the caller's order, ``4 * bin + 2 * is_background + in_second_half``;
    ``n_bkg`` the raw background MC count per bin of each half (shape (2, bins)). Bin edges
    never split equal scores and are dense where cuts sit: at every background rank of a
    geometric ladder from the top, and at even steps of signal rank.
    """

    code: np.ndarray
    n_bkg: np.ndarray

    @property
    def bins(self) -> int:
        return self.n_bkg.shape[1]


@dataclass(frozen=True)
class Summary:
    """Every figure of merit of one discriminant, from one sort of its scores.

    ``roc`` and ``scan`` hold every distinct score, or about ``points`` of them when thinned
    for drawing; ``auc`` and the background efficiencies are always from every score.
    """

    roc: Roc
    scan: CutScan
    significance: Significance
    bins: CutBins
    bkg_eff_sig80: float
    bkg_eff_sig95: float


def _cum(mask: np.ndarray, values: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Cumulative sum of ``values`` where ``mask``, read at the tie-group ends."""
    out = np.where(mask, values, 0.0)
    np.cumsum(out, out=out)
    return out[ends]


def _count(mask: np.ndarray, ends: np.ndarray) -> np.ndarray:
    return np.cumsum(mask, dtype=np.int64)[ends]


def thin(n: int, curves: list[np.ndarray], points: int) -> np.ndarray:
    """At most about ``points`` indices of ``n`` points, dense along every curve given (each
    increasing, in [0, 1], linear and logarithmic steps): enough to draw millions of points."""
    if n <= points:
        return np.arange(n)
    per = max(points // (2 * len(curves)), 2)
    picks = [np.array([0, n - 1])]
    for c in curves:
        picks.append(np.searchsorted(c, np.linspace(0.0, 1.0, per)))
        picks.append(np.searchsorted(c, np.geomspace(1e-7, 1.0, per)))
    return np.unique(np.clip(np.concatenate(picks), 0, n - 1))


BLOCK = 1 << 20  # elements of the cut scan handled at once, to bound temporaries


def summarise(score: np.ndarray, label: np.ndarray, weight: np.ndarray, half: np.ndarray,
              min_bkg_events: int, bkg_uncertainty: float = 0.0,
              bins: int = BOOTSTRAP_BINS, points: int | None = None) -> Summary:
    """ROC, the scan over all cuts and :func:`best_cut` from one descending sort.

    The same numbers as :func:`roc`, :func:`scan` and :func:`best_cut` (up to the order of
    floating-point additions) without their copies, so it scales to tens of millions of events:
    cumulative yields of each class and half are read at the last event of each distinct score,
    one at a time. ``points`` thins the returned curves for drawing.
    """
    score = np.asarray(score, dtype=np.float64)
    order = np.argsort(-score, kind="stable")
    sc = score[order]
    ends = np.flatnonzero(np.r_[sc[1:] != sc[:-1], True])
    thresholds = sc[ends]
    del sc
    is_sig = np.asarray(label)[order] == 1
    w = np.asarray(weight, dtype=np.float64)[order]
    first = np.asarray(half, bool)[order]
    sig = _split_significance(thresholds, ends, is_sig, w, first, min_bkg_events, bkg_uncertainty)

    s_all, b_all = _cum(is_sig, w, ends), _cum(~is_sig, w, ends)
    del w
    n_all = _count(~is_sig, ends)
    with np.errstate(divide="ignore", invalid="ignore"):
        tpr = np.r_[0.0, s_all / s_all[-1]]
        fpr = np.r_[0.0, b_all / b_all[-1]]
    r = Roc(fpr, tpr, np.r_[np.inf, thresholds], float(np.trapezoid(tpr, fpr)))
    effs = bkg_eff_at(r, 0.80), bkg_eff_at(r, 0.95)
    cs = CutScan(thresholds, s_all, b_all, n_all)
    if points is not None:
        i = thin(len(tpr), [tpr, fpr], points)
        r = Roc(fpr[i], tpr[i], r.thresholds[i], r.auc)
        total = s_all[-1] if len(s_all) and s_all[-1] > 0 else 1.0
        j = thin(len(s_all), [np.maximum.accumulate(s_all / total)], points)
        cs = CutScan(thresholds[j], s_all[j], b_all[j], n_all[j])
    del tpr, fpr, s_all, b_all, n_all, thresholds
    code, n_bins = _bin_code(is_sig, first, ends, order, bins)
    n_bkg = np.bincount(code, minlength=4 * n_bins).reshape(n_bins, 4)[:, 2:].T
    return Summary(r, cs, sig, CutBins(code, n_bkg.astype(np.int64)), *effs)


def _split_significance(thresholds, ends, is_sig, w, first, min_bkg_events,
                        bkg_uncertainty) -> Significance:
    """:func:`best_cut` on events sorted by descending score (``ends``: last event of each
    distinct score), holding the cumulative yields of one half at a time."""
    parts = (first, ~first)
    totals = [(float(w[is_sig & p].sum()), float(w[~is_sig & p].sum())) for p in parts]
    s_tot = totals[0][0] + totals[1][0]
    b_tot = totals[0][1] + totals[1][1]
    cuts, results = [], []
    for c, m in ((0, 1), (1, 0)):
        ss = s_tot / totals[c][0] if totals[c][0] > 0 else np.nan
        sb = b_tot / totals[c][1] if totals[c][1] > 0 else np.nan
        s_c = _cum(is_sig & parts[c], w, ends)
        b_c = _cum(~is_sig & parts[c], w, ends)
        n_c = _count(~is_sig & parts[c], ends)
        best, i = -np.inf, -1
        for lo in range(0, len(ends), BLOCK):
            hi = lo + BLOCK
            z = asimov_z(s_c[lo:hi] * ss, b_c[lo:hi] * sb)
            z[~((n_c[lo:hi] >= min_bkg_events) & (b_c[lo:hi] * sb > 0))] = np.nan
            if np.all(np.isnan(z)):
                continue
            k = int(np.nanargmax(z))
            if z[k] > best:
                best, i = float(z[k]), lo + k
        del s_c, b_c, n_c
        if i < 0:
            return Significance(np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, 0)
        cuts.append(float(thresholds[i]))
        above = slice(0, ends[i] + 1)
        ms = s_tot / totals[m][0] if totals[m][0] > 0 else np.nan
        mb = b_tot / totals[m][1] if totals[m][1] > 0 else np.nan
        sel_s = is_sig[above] & parts[m][above]
        sel_b = ~is_sig[above] & parts[m][above]
        results.append((float(w[above][sel_s].sum() * ms), float(w[above][sel_b].sum() * mb),
                        int(sel_b.sum())))
    return _significance(cuts, results, bkg_uncertainty)


def _bin_code(is_sig: np.ndarray, first: np.ndarray, ends: np.ndarray, order: np.ndarray,
              bins: int) -> tuple[np.ndarray, int]:
    """Per event (caller's order) the :class:`CutBins` code of its bin, class and half, and
    the number of bins."""
    n = len(order)
    if n == 0:
        return np.zeros(0, np.intp), 1
    pos_b = np.flatnonzero(~is_sig)
    pos_s = np.flatnonzero(is_sig)
    marks = [np.array([n - 1])]
    if len(pos_b):
        marks.append(pos_b[np.unique(np.geomspace(1, len(pos_b), bins).astype(np.int64)) - 1])
    if len(pos_s):
        marks.append(pos_s[np.unique(np.linspace(1, len(pos_s), bins).astype(np.int64)) - 1])
    del pos_b, pos_s
    # Snap every mark to the end of its tie group, so equal scores share a bin.
    cut_ends = np.unique(ends[np.searchsorted(ends, np.concatenate(marks))])
    code_sorted = np.repeat(np.arange(len(cut_ends), dtype=np.intp) * 4,
                            np.diff(np.r_[-1, cut_ends]))
    code_sorted += 2 * (~is_sig)
    code_sorted += ~first
    code = np.empty(n, np.intp)
    code[order] = code_sorted
    return code, len(cut_ends)


def poisson_table(bits: int = _POISSON_BITS) -> np.ndarray:
    """Poisson(1) by inversion: entry u of 2**bits is the k with CDF(k-1) <= u / 2**bits < CDF(k)."""
    from scipy.stats import poisson

    cdf = poisson.cdf(np.arange(32), 1.0) * 2**bits
    return np.searchsorted(cdf, np.arange(2**bits), side="right").astype(np.uint8)


def bootstrap(methods: dict[str, CutBins], weight: np.ndarray, min_bkg_events: int,
              replicates: int, rng: np.random.Generator) -> dict[str, dict[str, np.ndarray]]:
    """Figures of merit of every method in ``replicates`` Poisson(1) reweightings of the events.

    Every event gets one Poisson(1) weight per replicate, shared by all methods, so their
    differences and ratios are resampled jointly; negative weights stay negative. In each
    replicate the cut is chosen again (on one half, measured on the other, both ways) among the
    bin edges of :class:`CutBins`. Work is one pass over the events per replicate and method;
    memory is a few arrays of the events, whatever ``replicates``.
    Returns per method the arrays (one value per replicate) ``auc``, ``z``,
    ``bkg_eff_sig80`` and ``bkg_eff_sig95``.
    """
    table = poisson_table()
    weight = np.asarray(weight, dtype=np.float64)
    sums = {name: np.empty((replicates, 4 * b.bins)) for name, b in methods.items()}
    for r in range(replicates):
        draws = table[rng.integers(0, 2**_POISSON_BITS, len(weight), dtype=np.uint16)]
        wp = weight * draws
        del draws
        for name, b in methods.items():
            sums[name][r] = np.bincount(b.code, weights=wp, minlength=4 * b.bins)
    return {name: _replicate_metrics(sums[name].reshape(replicates, -1, 4), methods[name].n_bkg,
                                     min_bkg_events) for name in methods}


def _replicate_metrics(sums: np.ndarray, n_bkg: np.ndarray, min_bkg_events: int) -> dict[str, np.ndarray]:
    """Figures of merit of each replicate (row) from its per-bin yields (replicate, bin, code)."""
    s_half = sums[:, :, 0:2]  # signal, first and second half
    b_half = sums[:, :, 2:4]
    s, b = s_half.sum(2), b_half.sum(2)
    cs, cb = np.cumsum(s, 1), np.cumsum(b, 1)
    s_tot, b_tot = cs[:, -1], cb[:, -1]
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = ((cs - s / 2) * b).sum(1) / (s_tot * b_tot)
        tpr = cs / s_tot[:, None]
        fpr = cb / b_tot[:, None]
    out = {"auc": auc}
    rows = np.arange(len(s))
    for key, eff in (("bkg_eff_sig80", 0.80), ("bkg_eff_sig95", 0.95)):
        reach = tpr >= eff
        i = np.argmax(reach, 1)
        out[key] = np.where(reach.any(1), fpr[rows, i], np.nan)
    cum_s, cum_b = np.cumsum(s_half, 1), np.cumsum(b_half, 1)
    n_cum = np.cumsum(n_bkg, 1)
    zs = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for c, m in ((0, 1), (1, 0)):
            ss = (s_tot / cum_s[:, -1, c])[:, None]
            sb = (b_tot / cum_b[:, -1, c])[:, None]
            z = asimov_z(cum_s[:, :, c] * ss, cum_b[:, :, c] * sb)
            ok = (n_cum[c] >= min_bkg_events)[None, :] & (cum_b[:, :, c] * sb > 0) & np.isfinite(z)
            i = np.argmax(np.where(ok, z, -np.inf), 1)
            s_m = cum_s[rows, i, m] * s_tot / cum_s[:, -1, m]
            b_m = cum_b[rows, i, m] * b_tot / cum_b[:, -1, m]
            zs.append(np.where(ok.any(1), asimov_z(s_m, b_m), np.nan))
    out["z"] = (zs[0] + zs[1]) / 2
    return out


def spread(values: np.ndarray) -> float:
    """Standard deviation of bootstrap replicates (NaN ones left out); NaN when fewer than two."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(np.std(v, ddof=1)) if len(v) >= 2 else float("nan")
