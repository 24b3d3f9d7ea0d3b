"""Score templates for the limit fit: the binning, the weighted histograms, and the split of a
systematic variation into a yield factor and a shape.

The automatic binning is the ATLAS HH->bbtautau "transformation D": walking down from the
highest score, a bin closes once z_s x (its share of the signal) + z_b x (its share of the
background) reaches 1, provided its background is well enough simulated. Edges come from
simulation only; the data are binned with them afterwards.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import hist
import numpy as np

from pnn.core.errors import PnnError

log = logging.getLogger(__name__)


def _as_array(values: np.ndarray | None, size: int, what: str) -> np.ndarray:
    """``values`` as a float array of length ``size`` (ones when None)."""
    if values is None:
        return np.ones(size)
    out = np.asarray(values, dtype=float).ravel()
    if out.size != size:
        raise ValueError(f"{what}: {out.size} entries for {size} events")
    return out


def _finite(values: np.ndarray, what: str) -> np.ndarray:
    out = np.asarray(values, dtype=float).ravel()
    if not np.all(np.isfinite(out)):
        raise PnnError(f"{what} contain NaN or infinite values: fix the scores before binning")
    return out


FIRST_WINDOW = 4096  # value groups a bin's closing point is first looked for among


def auto_edges(
    sig_values: np.ndarray,
    sig_weights: np.ndarray | None,
    bkg_values: np.ndarray,
    bkg_weights: np.ndarray | None,
    bkg_mc_count_weights: np.ndarray | None = None,
    *,
    z_s: float = 10.0,
    z_b: float = 10.0,
    min_mc: int = 10,
    max_stat_error: float = 0.2,
    max_bins: int | None = None,
    low: float | None = None,
    high: float | None = None,
) -> np.ndarray:
    """Bin edges of the discriminant by transformation D, built from the high-score end down.

    A bin closes once ``z_s * s_share + z_b * b_share >= 1`` (shares of the signed totals), it
    holds at least ``min_mc`` raw background MC events (``bkg_mc_count_weights``: how many raw
    events each background entry stands for, default 1), its background sum of weights is
    positive and its relative MC error sqrt(sum w^2)/sum w is at most ``max_stat_error``.
    What is left at the low end joins the lowest bin. Equal values never straddle an edge.
    ``max_bins`` merges the lowest-score bins first, so the signal-rich end is kept as it is.
    Returns increasing edges from ``low`` to ``high`` (default: the range of all values).
    """
    sv = _finite(sig_values, "signal scores")
    bv = _finite(bkg_values, "background scores")
    sw = _as_array(sig_weights, sv.size, "signal weights")
    bw = _as_array(bkg_weights, bv.size, "background weights")
    mc = _as_array(bkg_mc_count_weights, bv.size, "background MC counts")
    every = np.concatenate([sv, bv])
    if every.size == 0:
        raise PnnError("no simulated events to bin: check the selection and the mass")
    lo = float(every.min()) if low is None else float(low)
    hi = float(every.max()) if high is None else float(high)
    if low is not None and high is not None and not hi > lo:
        raise PnnError(f"binning range [{lo}, {hi}] is empty: give low < high")
    if not hi > lo:  # every value equal: one bin around it
        lo, hi = lo - 0.5, hi + 0.5

    # Group equal values, highest first, so a tie is one indivisible step of the walk.
    uniq, inverse = np.unique(every, return_inverse=True)
    n = uniq.size
    inv_s, inv_b = inverse[: sv.size], inverse[sv.size:]
    s_tot, b_tot = float(sw.sum()), float(bw.sum())
    s_share = np.bincount(inv_s, sw, n) / s_tot if s_tot > 0 else np.zeros(n)
    b_share = np.bincount(inv_b, bw, n) / b_tot if b_tot > 0 else np.zeros(n)
    cum = {
        key: np.concatenate([[0.0], np.cumsum(arr[::-1])])
        for key, arr in {
            "s": s_share, "b": b_share, "w": np.bincount(inv_b, bw, n),
            "w2": np.bincount(inv_b, bw**2, n), "mc": np.bincount(inv_b, mc, n),
        }.items()
    }
    values = uniq[::-1]

    def passes(start: int, stop: int | None = None, upto: int = n) -> np.ndarray:
        """Rule of a bin from value group ``start`` down to each later group before ``upto``
        (or to ``stop`` alone)."""
        part = {key: (c[start + 1:upto + 1] if stop is None else c[stop:stop + 1]) - c[start]
                for key, c in cum.items()}
        return (
            (z_s * part["s"] + z_b * part["b"] >= 1.0)
            & (part["mc"] >= min_mc)
            & (part["w"] > 0)
            & (np.sqrt(np.clip(part["w2"], 0.0, None)) <= max_stat_error * part["w"])
        )

    def first_closing(start: int) -> int | None:
        """The first group that closes a bin opened at ``start``, searched in windows that
        grow fourfold: a bin spans a small part of the groups, the rest need not be tested."""
        size = FIRST_WINDOW
        while True:
            upto = min(n, start + size)
            hits = np.flatnonzero(passes(start, upto=upto))
            if hits.size:
                return start + int(hits[0])
            if upto == n:
                return None
            size *= 4

    closed: list[int] = []  # index (highest first) of the lowest value group of each bin
    start = 0
    while start < n:
        end = first_closing(start)
        if end is None:
            break
        closed.append(end)
        start = end + 1
    # The remainder joins the lowest closed bin; should that spoil it (a few heavy events),
    # the lowest bin takes in the one above until it passes again.
    closed = closed[:-1]
    while closed and not passes(closed[-1] + 1, n)[0]:
        closed.pop()

    # An edge sits halfway between a bin's lowest value and the next lower one (bins are [a, b)).
    inner = []
    for j in closed:
        above, below = values[j], values[j + 1]
        mid = below + (above - below) / 2
        inner.append(mid if below < mid <= above else above)
    inner = sorted(e for e in inner if lo < e < hi)
    if max_bins is not None and len(inner) + 1 > max_bins:
        log.info("binning: %d bins capped at %d by merging the lowest-score bins",
                 len(inner) + 1, max_bins)
        inner = inner[len(inner) - (max_bins - 1):] if max_bins > 1 else []
    edges = np.array([lo, *inner, hi], dtype=float)
    log.info("binning: %d bins from transformation D (z_s=%g, z_b=%g)", edges.size - 1, z_s, z_b)
    return edges


def _bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value, bins [a, b); values outside the edges go to the first or last bin."""
    return np.clip(np.searchsorted(edges, values, side="right") - 1, 0, edges.size - 2)


def histogram(values: np.ndarray, weights: np.ndarray | None, edges: np.ndarray) -> hist.Hist:
    """Weighted histogram (sum of weights and of squared weights) of ``values`` on ``edges``.

    Values below the first or above the last edge are counted in the first or last bin, so no
    event is lost from the template.
    """
    edges = np.asarray(edges, dtype=float)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise PnnError("bin edges must be at least two increasing numbers")
    v = _finite(values, "scores")
    w = _as_array(weights, v.size, "weights")
    centres = (edges[:-1] + edges[1:]) / 2
    h = hist.Hist(hist.axis.Variable(edges), storage=hist.storage.Weight())
    h.fill(centres[_bin_index(v, edges)], weight=w)
    return h


def counts_variances(
    values: np.ndarray, weights: np.ndarray | None, edges: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin sum of weights and sum of squared weights as numpy arrays (see :func:`histogram`)."""
    h = histogram(values, weights, edges)
    return np.asarray(h.values(), dtype=float), np.asarray(h.variances(), dtype=float)


@dataclass(frozen=True)
class NormShape:
    """A variation split into HistFactory's yield factors and shapes at the nominal yield."""

    hi: float
    lo: float
    hi_data: np.ndarray
    lo_data: np.ndarray


def split_normsys_histosys(
    nominal: np.ndarray, up: np.ndarray, down: np.ndarray | None, *, label: str = "variation"
) -> NormShape:
    """Yield factors sum(var)/sum(nominal) and shapes scaled back to the nominal yield.

    ``down=None`` is a one-sided variation: it is symmetrised bin by bin
    (down = 2 nominal - up, so the down factor is 2 - hi). ``label`` names it in messages.
    """
    nom = np.asarray(nominal, dtype=float)
    up = np.asarray(up, dtype=float)
    total = float(nom.sum())
    if total <= 0:
        raise PnnError("nominal template has no yield: a variation cannot be normalised to it")
    if down is None:
        log.info("%s is one-sided: symmetrised (down = 2 x nominal - up)", label)
        down = 2 * nom - up
    down = np.asarray(down, dtype=float)
    if up.shape != nom.shape or down.shape != nom.shape:
        raise ValueError("nominal, up and down templates need the same bins")
    up_sum, down_sum = float(up.sum()), float(down.sum())
    for side, value in (("up", up_sum), ("down", down_sum)):
        if value <= 0:
            raise PnnError(f"{label}: the {side} variation has no yield (sum {value:g}): check it, or give "
                           "an explicit down variation if symmetrising a large up one")
    return NormShape(hi=up_sum / total, lo=down_sum / total,
                     hi_data=up * (total / up_sum), lo_data=down * (total / down_sum))


def clamp(counts: np.ndarray, *, sample: str, systematic: str, floor: float = 1e-6) -> np.ndarray:
    """A copy of ``counts`` with negative or zero bins set to ``floor`` (Poisson means must be
    positive). Negative bins (from negative weights) get one warning naming the sample, the
    systematic and the bins; empty bins, common at the far end of a signal template, are
    only logged at debug level."""
    out = np.array(counts, dtype=float)
    negative = np.flatnonzero(out < 0)
    if negative.size:
        log.warning("sample '%s', %s: bin(s) %s are negative, set to %g",
                    sample, systematic, negative.tolist(), floor)
    empty = np.flatnonzero(~(out > 0))
    if empty.size > negative.size:
        log.debug("sample '%s', %s: empty bin(s) %s set to %g", sample, systematic,
                  sorted(set(empty.tolist()) - set(negative.tolist())), floor)
    out[empty] = floor
    return out
