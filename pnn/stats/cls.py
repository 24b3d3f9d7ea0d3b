"""CLs upper limits on the signal strength from a HistFactory workspace, asymptotic formulae.

Expected limits use the q~_mu statistic on pre-fit background-only Asimov data (Cowan, Cranmer,
Gross, Vitells, EPJC 71 (2011) 1554). For a b-only fluctuation of N standard deviations the
limit is mu_up(N) = sigma (Phi^-1(1 - alpha Phi(N)) + N), with sigma(mu) = mu / sqrt(q_mu,A(mu))
taken at the limit itself; equivalently sqrt(q_mu,A(mu_up)) = Phi^-1(1 - alpha Phi(N)) + N,
solved by a few constrained Asimov fits instead of a full CLs scan (it agrees with pyhf's
root-finding ``upper_limit`` on the same Asimov data, which needs many more fits).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyhf
from scipy.optimize import brentq
from scipy.stats import norm

from pnn.core.errors import PnnError

log = logging.getLogger(__name__)

SIGMAS = (-2, -1, 0, 1, 2)
BAND_KEYS = ("minus2", "minus1", "median", "plus1", "plus2")


@dataclass(frozen=True)
class ExpectedBand:
    """Expected upper limits on mu (median and the +-1, +-2 sigma edges) and their cost."""

    minus2: float
    minus1: float
    median: float
    plus1: float
    plus2: float
    seconds: float
    fits: int

    def as_tuple(self) -> tuple[float, float, float, float, float]:
        """The five limits, -2 sigma first."""
        return (self.minus2, self.minus1, self.median, self.plus1, self.plus2)


@contextmanager
def _numpy_backend() -> Iterator[None]:
    """pyhf with the numpy backend and the scipy optimizer, the caller's backend restored after."""
    previous = pyhf.get_backend()
    pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer())
    try:
        yield
    finally:
        pyhf.set_backend(*previous)


class _Fitter:
    """The model of a workspace and counted maximum-likelihood fits on it."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.model = pyhf.Workspace(spec).model()
        cfg = self.model.config
        self.poi = cfg.poi_index
        self.init = np.asarray(cfg.suggested_init(), dtype=float)
        self.bounds = [tuple(b) for b in cfg.suggested_bounds()]
        self.fixed = cfg.suggested_fixed()
        self.fits = 0

    def full_data(self, main: np.ndarray) -> np.ndarray:
        """Channel counts followed by the auxiliary data of the constraints."""
        main = np.asarray(main, dtype=float).ravel()
        nbins = self.model.config.nmaindata
        if main.size != nbins:
            raise ValueError(f"data need {nbins} bins, got {main.size}")
        return np.concatenate([main, np.asarray(self.model.config.auxdata, dtype=float)])

    def prefit(self, mu: float) -> np.ndarray:
        """Parameters at their pre-fit values with the signal strength set to ``mu``."""
        pars = self.init.copy()
        pars[self.poi] = mu
        return pars

    def twice_nll(self, pars: np.ndarray, data: np.ndarray) -> float:
        return float(np.ravel(-2 * self.model.logpdf(pars, data))[0])

    def _bounds(self, mu: float) -> list[tuple[float, float]]:
        """Model bounds with the POI range stretched to contain ``mu``."""
        bounds = list(self.bounds)
        lo, hi = bounds[self.poi]
        bounds[self.poi] = (min(lo, mu), max(hi, 2 * mu))
        return bounds

    def fit(self, data: np.ndarray, mu: float | None = None,
            init: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        """Best-fit parameters and -2 ln L; the POI fixed at ``mu`` unless it is None."""
        starts = [self.init.copy()] if init is None else [np.asarray(init, dtype=float), self.init.copy()]
        bounds = self._bounds(0.0 if mu is None else mu)
        error: Exception | None = None
        for start in starts:
            start = np.clip(start, [b[0] for b in bounds], [b[1] for b in bounds])
            self.fits += 1
            try:
                if mu is None:
                    pars, val = pyhf.infer.mle.fit(data, self.model, init_pars=start.tolist(),
                                                   par_bounds=bounds, fixed_params=self.fixed,
                                                   return_fitted_val=True)
                else:
                    pars, val = pyhf.infer.mle.fixed_poi_fit(
                        mu, data, self.model, init_pars=start.tolist(), par_bounds=bounds,
                        fixed_params=self.fixed, return_fitted_val=True)
                return np.asarray(pars, dtype=float), float(np.ravel(val)[0])
            except pyhf.exceptions.FailedMinimization as exc:
                error = exc
        where = "the free fit" if mu is None else f"the fit at mu={mu:g}"
        raise PnnError(f"{where} did not converge ({error}): check the templates for empty bins "
                       "or extreme systematic variations")


def _k(n_sigma: float, alpha: float) -> float:
    """sqrt(q_mu,A) at the expected limit for a b-only fluctuation of ``n_sigma``."""
    return float(norm.ppf(1 - alpha * norm.cdf(n_sigma)) + n_sigma)


class _AsimovScan:
    """sqrt(q_mu,A(mu)) on pre-fit b-only Asimov data, each point one constrained fit."""

    def __init__(self, fitter: _Fitter) -> None:
        self.f = fitter
        self.data = fitter.model.expected_data(fitter.prefit(0.0))
        # On these data the unconditional minimum is the generating point itself: mu_hat = 0 and
        # every nuisance parameter at its pre-fit value (each Poisson term is largest where its
        # mean equals the count, each constraint where the parameter equals its auxdata).
        self.nll_hat = fitter.twice_nll(fitter.prefit(0.0), self.data)
        self.points: dict[float, tuple[float, np.ndarray]] = {0.0: (0.0, fitter.prefit(0.0))}

    def root_q(self, mu: float) -> float:
        if mu not in self.points:
            near = min(self.points, key=lambda m: abs(m - mu))
            pars, val = self.f.fit(self.data, mu=mu, init=self.points[near][1])
            self.points[mu] = (float(np.sqrt(max(val - self.nll_hat, 0.0))), pars)
        return self.points[mu][0]

    def guess(self, k: float, sigma0: float) -> float:
        """Where sqrt(q_A) = k: mu as a polynomial in sqrt(q_A) through the (up to three) known
        points nearest to k, the origin included; ``k * sigma0`` before any fit."""
        known = sorted((r, m) for m, (r, _) in self.points.items() if m == 0 or r > 0)
        if len(known) < 2:
            return k * sigma0
        near: list[tuple[float, float]] = []
        for point in sorted(known, key=lambda p: abs(p[0] - k)):
            if len(near) < 3 and all(abs(point[0] - q[0]) > 1e-9 for q in near):
                near.append(point)
        if len(near) < 2:
            return k * sigma0
        r, m = np.array(near).T
        mu = float(np.polyval(np.polyfit(r, m, len(near) - 1), k))
        if not mu > 0:  # a bad extrapolation: fall back to mu = k sigma at the nearest point
            r0, m0 = max(near, key=lambda p: p[0])
            mu = k * m0 / r0
        return mu

    def solve(self, k: float, sigma0: float, rtol: float = 2e-3, max_fits: int = 12) -> float:
        """mu with sqrt(q_mu,A(mu)) = k, by secant steps on the fitted points (a first step
        mu -> k mu / sqrt(q_A(mu)), i.e. mu_up = k sigma(mu))."""
        mu = self.guess(k, sigma0)
        for _ in range(max_fits):
            r = self.root_q(mu)
            if r <= 1e-9:  # no sensitivity this low: go up fast
                mu *= 10
                continue
            new = self.guess(k, sigma0)
            if abs(new - mu) <= rtol * mu:
                return new
            mu = new
        raise PnnError(f"the expected limit did not converge (last mu={mu:g}): check that the "
                       "signal template is not empty and the systematics are sensible")


def _fisher_sigma(fitter: _Fitter) -> float:
    """Rough sigma of mu from the nominal templates, sum s^2/b, without nuisance parameters."""
    b = np.asarray(fitter.model.expected_actualdata(fitter.prefit(0.0)), dtype=float)
    s = np.asarray(fitter.model.expected_actualdata(fitter.prefit(1.0)), dtype=float) - b
    info = float(np.sum(s[b > 0] ** 2 / b[b > 0]))
    if not info > 0:
        raise PnnError("the signal template is empty: no limit on mu can be set")
    return 1.0 / np.sqrt(info)


def _alpha(cl: float) -> float:
    if not 0 < cl < 1:
        raise PnnError(f"confidence level must lie between 0 and 1 (e.g. 0.95), got {cl}")
    return 1.0 - cl


def _band(scan: _AsimovScan, alpha: float) -> dict[int, float]:
    """The expected limits for b-only fluctuations of -2..+2 sigma, solved on ``scan``."""
    sigma0 = _fisher_sigma(scan.f)
    return {n: scan.solve(_k(n, alpha), sigma0) for n in (0, 1, -1, 2, -2)}


def expected_limits(spec: dict[str, Any], cl: float = 0.95) -> ExpectedBand:
    """Expected CLs upper limits on mu (median, +-1 and +-2 sigma) from pre-fit b-only Asimov data."""
    return expected_limits_and_scan(spec, cl, scan_points=0)[0]


def expected_limits_and_scan(spec: dict[str, Any], cl: float = 0.95, scan_points: int = 8
                             ) -> tuple[ExpectedBand, dict[str, np.ndarray]]:
    """:func:`expected_limits` and the expected CLs curve for its plot, from the same fits.

    The curve takes every mu that the limit search fitted, plus points of an even grid of
    ``scan_points`` up to 1.4 times the +2 sigma limit where the search left a gap: a third
    of the fits of a separate :func:`cls_scan`, with the same values at each mu.
    """
    start = time.perf_counter()
    alpha = _alpha(cl)
    with _numpy_backend():
        fitter = _Fitter(spec)
        scan = _AsimovScan(fitter)
        limits = _band(scan, alpha)
        band = ExpectedBand(*(float(limits[n]) for n in SIGMAS),
                            seconds=time.perf_counter() - start, fits=fitter.fits)
        curve: dict[str, np.ndarray] = {}
        if scan_points:
            grid = np.linspace(0.0, 1.4 * band.plus2, scan_points + 1)[1:]
            mus = _curve_points(sorted(m for m in scan.points if m > 0), grid)
            curve = _expected_cls(scan, mus)
    log.info("expected limits on mu: median %.4g, band [%.4g, %.4g] (%d fits, %.2f s)",
             band.median, band.minus2, band.plus2, band.fits, band.seconds)
    return band, curve


def _curve_points(fitted: list[float], grid: np.ndarray) -> np.ndarray:
    """The fitted mus (those within 2 % of a kept one dropped) and the grid points farther
    than half a grid step from all of them."""
    kept: list[float] = []
    for mu in fitted:
        if not kept or mu > 1.02 * kept[-1]:
            kept.append(mu)
    step = float(grid[1] - grid[0]) if len(grid) > 1 else float(grid[0])
    fill = [g for g in grid if all(abs(g - m) > step / 2 for m in kept)]
    return np.array(sorted({*[m for m in kept if m <= grid[-1]], *fill}))


def _expected_cls(scan: _AsimovScan, mus: np.ndarray) -> dict[str, np.ndarray]:
    """Expected CLs (median and bands) at ``mus`` from sqrt(q_mu,A) on ``scan``."""
    r = np.array([scan.root_q(float(mu)) for mu in mus])
    out: dict[str, np.ndarray] = {"mu": np.asarray(mus, dtype=float)}
    for key, n in zip(BAND_KEYS, SIGMAS, strict=True):
        out[key] = norm.sf(r - n) / norm.cdf(n)
    return out


def _observed_cls(fitter: _Fitter, mu: float, data: np.ndarray) -> float:
    """Observed CLs at ``mu`` with pyhf's asymptotic q~_mu calculator."""
    fitter.fits += 4  # pyhf's asymptotic calculator: free and fixed fits on data and on Asimov
    cls = pyhf.infer.hypotest(mu, data, fitter.model, par_bounds=fitter._bounds(mu),
                              fixed_params=fitter.fixed, test_stat="qtilde")
    return float(np.ravel(cls)[0])


def observed_limit(spec: dict[str, Any], data: np.ndarray, cl: float = 0.95,
                   guess: float | None = None) -> float:
    """Observed CLs upper limit on mu for the channel counts ``data`` (root of CLs = 1 - cl).

    ``guess`` (e.g. the expected median) starts the bracket near the answer, which saves
    most of the CLs evaluations; without it the bracket starts at the upper bound of mu.
    """
    alpha = _alpha(cl)
    with _numpy_backend():
        fitter = _Fitter(spec)
        full = fitter.full_data(data)

        def excess(mu: float) -> float:
            return _observed_cls(fitter, mu, full) - alpha

        top = fitter.bounds[fitter.poi][1]
        hi = min(2.0 * guess, top) if guess and guess > 0 else top
        for _ in range(12):
            if excess(hi) < 0:
                break
            hi *= 2
        else:
            raise PnnError(f"the observed limit lies above mu={hi:g}: check the data and the "
                           "signal normalisation")
        lo = hi / 2
        while excess(lo) < 0:
            hi, lo = lo, lo / 2
            if lo < 1e-9 * top:
                raise PnnError("CLs is below 1 - cl even at mu ~ 0: check the data")
        limit = float(brentq(excess, lo, hi, rtol=1e-4))
    log.info("observed limit on mu: %.4g", limit)
    return limit


def local_significance(spec: dict[str, Any], data: np.ndarray) -> tuple[float, float]:
    """Local p0 and significance Z of the discovery test q0 (mu_hat >= 0), asymptotic."""
    with _numpy_backend():
        fitter = _Fitter(spec)
        full = fitter.full_data(data)
        _, free = fitter.fit(full)
        _, background_only = fitter.fit(full, mu=0.0)
    q0 = max(background_only - free, 0.0)
    z = float(np.sqrt(q0))
    return float(norm.sf(z)), z


def cls_scan(spec: dict[str, Any], mus: np.ndarray, data: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """CLs at each ``mu``: the expected median and +-1, +-2 sigma values (pre-fit b-only Asimov,
    the same formulae as :func:`expected_limits`) and, with ``data``, the observed CLs.

    Keys: ``mu``, ``minus2``, ``minus1``, ``median``, ``plus1``, ``plus2`` and ``observed``.
    """
    mus = np.asarray(mus, dtype=float).ravel()
    if np.any(mus <= 0):
        raise PnnError("CLs scan points must be positive values of mu")
    with _numpy_backend():
        fitter = _Fitter(spec)
        out = _expected_cls(_AsimovScan(fitter), mus)
        if data is not None:
            out["observed"] = _observed_curve(fitter, mus, data)
    return out


def observed_cls(spec: dict[str, Any], mus: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Observed CLs at each ``mu`` for the channel counts ``data``."""
    with _numpy_backend():
        return _observed_curve(_Fitter(spec), np.asarray(mus, dtype=float).ravel(), data)


def _observed_curve(fitter: _Fitter, mus: np.ndarray, data: np.ndarray) -> np.ndarray:
    full = fitter.full_data(data)
    return np.array([_observed_cls(fitter, float(mu), full) for mu in mus])
