"""Embedded two-parameter toy search, X -> Y(bb) H(bb), with closed-form densities.

A heavy resonance X of mass mX decays to a lighter scalar Y of mass mY and a Higgs boson;
the signal depends on the point (mX, mY). Two backgrounds, ``ttbar`` (NLO-like, with a few
percent of negative weights) and ``multijet``. Every event has the branches

* ``FourBodyMass`` (M4): reconstructed X mass,
* ``TwoBodyMass`` (M2): reconstructed Y mass,
* ``LeadPt`` (pT): leading-object transverse momentum,
* ``HT``: scalar sum of the objects' pT, ``HT = pT + R``,
* ``Btag``: number of b-tagged objects (0, 1 or 2),
* ``EventNumber`` and ``weight``; the signal trees also carry the truth ``mX`` and ``mY``
  (constant per tree), so a config may read the parameters from branches.

The densities are products of standard distributions (all GeV):

=====================  ====================================  ==================================
quantity               signal at (mX, mY)                    background process j
=====================  ====================================  ==================================
M4                     Normal(mX, 0.08 mX)                   Gamma(k_j, theta_j): smooth fall
M2 given M4            Normal(mY, 0.10 mY)                   Gamma(a_j, c_j M4)
u = pT / M4            Beta(4, 8)                            Beta(4, 8)
R = HT - pT            Gamma(3, 0.12 mX)                     Gamma(k_j, theta_j)
Btag                   Categorical(0.10, 0.35, 0.55)         Categorical(pi_j)
=====================  ====================================  ==================================

with the background processes

==========  ==========  ==============  ===========  ===============  ================  ========
process     sigma (fb)  (k, theta) M4   (a, c) M2    (k, theta) of R  pi (Btag 0/1/2)   negative
==========  ==========  ==============  ===========  ===============  ================  ========
ttbar       800         (3.0, 150)      (2.0, 0.15)  (3.0, 100)       0.25, 0.45, 0.30  3 %
multijet    2000        (2.5, 150)      (1.2, 0.20)  (2.0, 90)        0.55, 0.33, 0.12  none
==========  ==========  ==============  ===========  ===============  ================  ========

In the signal M4 and M2 are independent; in the background the Y candidate's mass scales
with the event's (M2 / M4 ~ Gamma(a_j, c_j), so M2 falls smoothly at every M4 and rarely
exceeds it). Every density is positive for M4, M2 > 0, 0 < pT < M4 and HT > pT, so the
likelihood ratio is finite wherever the events lie. The change of variables
(M4, M2, u, R) -> (M4, M2, pT, HT) has Jacobian 1/M4, so

    p(M4, M2, pT, HT, Btag) = p(M4) * p(M2 | M4) * Beta(pT / M4) / M4 * p_R(HT - pT) * P(Btag)

The leading object carries the same share of M4 in signal and background, so pT is
correlated with M4 but tells the classes apart only through M4 itself.

The background density is the mixture of the processes weighted by their cross-sections,
so :func:`log_likelihood_ratio` returns the exact log p_s(x|mX, mY) / p_b(x), the
Neyman-Pearson optimal classifier at that point. M4 and HT scale with mX and M2 with mY, so a
classifier that ignores either parameter loses across the plane.

The benchmark signal cross-section (:func:`signal_xsec_fb`) falls as 1/mX, as in the
one-parameter toy (5 fb at mX = 500 GeV), and is the same for every mY: limits on X -> YH
are quoted per point against one reference. Weights are cross-section x luminosity /
generated events (signed for ``ttbar``), so the weights of a sample add up to its expected
yield. Each background process is generated in ``SLICES`` of M4 (lower edge, upper edge,
share of the events), each slice weighted by cross-section x luminosity x P(slice) / (net
signed events in the slice), with M2 drawn given M4: the weighted distribution is exactly the
unsliced mixture, while the high-M4 tail gets enough MC events to measure its background.

Points are keyed to 0.1 GeV in both masses (generator seeds and event-number blocks), so
two points must differ by at least that much.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats

from pnn.core.atomic import write_json
from pnn.core.errors import PnnError
from pnn.io import ntuple, toy
from pnn.io.toy import MANIFEST, _event_numbers, _log_btag

GENERATOR = "pnn.io.toy2d"
PARAMETERS = ("mX", "mY")
BRANCHES = ("FourBodyMass", "TwoBodyMass", "LeadPt", "HT", "Btag")

Point = tuple[float, float]

M4_RESOLUTION = 0.08
M2_RESOLUTION = 0.10
SIGNAL_U = toy.SIGNAL_U
SIGNAL_R_SHAPE, SIGNAL_R_SCALE_PER_GEV = toy.SIGNAL_R_SHAPE, toy.SIGNAL_R_SCALE_PER_GEV
SIGNAL_BTAG = (0.10, 0.35, 0.55)
HIGGS_MASS = 125.0
SLICES = toy.SLICES
GRID_MX = (500.0, 750.0, 1000.0, 1250.0, 1500.0)
GRID_MY = (90.0, 200.0, 350.0, 550.0, 800.0)
OFFGRID = ((625.0, 150.0), (875.0, 275.0), (1125.0, 450.0), (1375.0, 675.0))
TREE_PATTERN = re.compile(r"XtoYH_mX(?P<mX>[\d.]+)_mY(?P<mY>[\d.]+)")


@dataclass(frozen=True)
class Process:
    """One background process: shapes, cross-section (fb) and negative-weight fraction.

    ``mass`` is the Gamma (shape, scale) of M4, ``pair`` the Gamma (shape, scale per GeV of
    M4) of M2 given M4.
    """

    name: str
    xsec_fb: float
    mass: tuple[float, float]
    pair: tuple[float, float]
    u: tuple[float, float]
    r: tuple[float, float]
    btag: tuple[float, float, float]
    negative_fraction: float = 0.0


BACKGROUNDS: tuple[Process, ...] = (
    Process("ttbar", 800.0, (3.0, 150.0), (2.0, 0.15), (4.0, 8.0), (3.0, 100.0),
            (0.25, 0.45, 0.30), negative_fraction=0.03),
    Process("multijet", 2000.0, (2.5, 150.0), (1.2, 0.20), (4.0, 8.0), (2.0, 90.0),
            (0.55, 0.33, 0.12)),
)


def _point(point: Iterable[float]) -> Point:
    mX, mY = (float(v) for v in point)
    if not (np.isfinite(mX) and np.isfinite(mY) and 0 < mY < mX):
        raise PnnError(f"point (mX={mX:g}, mY={mY:g}): need 0 < mY < mX (GeV)")
    return mX, mY


def signal_xsec_fb(point: Iterable[float]) -> float:
    """Benchmark signal cross-section after preselection: falls as 1/mX, flat in mY."""
    mX, _ = _point(point)
    return toy.signal_xsec_fb(mX)


def background_fractions() -> np.ndarray:
    """Share of each background process in the total (net) background yield."""
    xs = np.array([p.xsec_fb for p in BACKGROUNDS])
    return xs / xs.sum()


def default_grid() -> list[Point]:
    """Training points: mX in GRID_MX by mY in GRID_MY with mY < mX - mH (22 points)."""
    return [(mX, mY) for mX in GRID_MX for mY in GRID_MY if mY < mX - HIGGS_MASS]


def default_offgrid() -> list[Point]:
    """Held-out points strictly inside the grid's convex hull, on none of its lines."""
    return list(OFFGRID)


def signal_tree_name(point: Iterable[float]) -> str:
    """Tree name of a signal point (``XtoYH_mX1000_mY300``); :data:`TREE_PATTERN` reads it."""
    mX, mY = _point(point)
    return f"XtoYH_mX{mX:g}_mY{mY:g}"


def parse_tree_name(name: str) -> Point | None:
    """The (mX, mY) of a signal tree name, or None if ``name`` is not one."""
    match = TREE_PATTERN.fullmatch(name)
    return None if match is None else (float(match["mX"]), float(match["mY"]))


def _columns(events: pd.DataFrame | dict) -> tuple[np.ndarray, ...]:
    def get(k):
        return np.asarray(events[k], dtype=np.float64)

    M4, M2, pt, ht = (get(k) for k in BRANCHES[:4])
    btag = np.asarray(events["Btag"]).astype(np.int64)
    return M4, M2, pt, ht - pt, btag


def _log_common(M4, pt, r, btag, u_ab, r_kt, btag_p) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return (
            stats.beta.logpdf(pt / M4, *u_ab) - np.log(M4)
            + stats.gamma.logpdf(r, r_kt[0], scale=r_kt[1])
            + _log_btag(btag, btag_p)
        )


def signal_logpdf(events: pd.DataFrame | dict, point: Iterable[float]) -> np.ndarray:
    """log p_s(x | mX, mY) of every event for a signal at ``point`` (GeV)."""
    mX, mY = _point(point)
    M4, M2, pt, r, btag = _columns(events)
    return (
        stats.norm.logpdf(M4, mX, M4_RESOLUTION * mX)
        + stats.norm.logpdf(M2, mY, M2_RESOLUTION * mY)
        + _log_common(M4, pt, r, btag, SIGNAL_U, (SIGNAL_R_SHAPE, SIGNAL_R_SCALE_PER_GEV * mX),
                      SIGNAL_BTAG)
    )


def background_logpdf(events: pd.DataFrame | dict) -> np.ndarray:
    """log p_b(x): cross-section-weighted mixture of the background processes."""
    M4, M2, pt, r, btag = _columns(events)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = [
            np.log(f) + stats.gamma.logpdf(M4, p.mass[0], scale=p.mass[1])
            + stats.gamma.logpdf(M2, p.pair[0], scale=p.pair[1] * M4)
            + _log_common(M4, pt, r, btag, p.u, p.r, p.btag)
            for f, p in zip(background_fractions(), BACKGROUNDS, strict=True)
        ]
    return special.logsumexp(np.vstack(terms), axis=0)


def log_likelihood_ratio(events: pd.DataFrame | dict, point: Iterable[float]) -> np.ndarray:
    """Exact log p_s(x|mX, mY) / p_b(x): the optimal classifier at ``point``."""
    return signal_logpdf(events, point) - background_logpdf(events)


def _kinematics(rng, M4, M2, u_ab, r_kt, btag_p) -> dict[str, np.ndarray]:
    n = len(M4)
    pt = M4 * rng.beta(*u_ab, size=n)
    ht = pt + rng.gamma(r_kt[0], r_kt[1], size=n)
    return {
        "FourBodyMass": M4.astype(np.float32),
        "TwoBodyMass": M2.astype(np.float32),
        "LeadPt": pt.astype(np.float32),
        "HT": ht.astype(np.float32),
        "Btag": rng.choice(3, size=n, p=btag_p).astype(np.int32),
    }


def generate_signal(
    rng: np.random.Generator, point: Iterable[float], n: int, luminosity: float, offset: int
) -> dict[str, np.ndarray]:
    """Signal events at ``point``; weights add up to sigma(mX, mY) x L."""
    mX, mY = _point(point)
    M4 = rng.normal(mX, M4_RESOLUTION * mX, size=n)
    M2 = rng.normal(mY, M2_RESOLUTION * mY, size=n)
    out = _kinematics(rng, M4, M2, SIGNAL_U, (SIGNAL_R_SHAPE, SIGNAL_R_SCALE_PER_GEV * mX),
                      SIGNAL_BTAG)
    out["EventNumber"] = _event_numbers(rng, n, offset)
    out["weight"] = np.full(n, signal_xsec_fb((mX, mY)) * luminosity / n)
    out["mX"] = np.full(n, mX, dtype=np.float32)
    out["mY"] = np.full(n, mY, dtype=np.float32)
    return out


def generate_background(
    rng: np.random.Generator, process: Process, n: int, luminosity: float, offset: int
) -> dict[str, np.ndarray]:
    """Background events of one process in M4 slices; signed weights add up to sigma x L.

    Within each slice M4 is drawn by inverting the Gamma survival function, so the slice
    sizes are exact; M2 is then drawn given M4, which keeps the weighted joint density.
    """
    M4, weight = toy.sliced_gamma(rng, process.mass, n, process.xsec_fb * luminosity,
                                  process.negative_fraction)
    M2 = M4 * rng.gamma(process.pair[0], process.pair[1], size=n)
    out = _kinematics(rng, M4, M2, process.u, process.r, process.btag)
    out["EventNumber"] = _event_numbers(rng, n, offset)
    out["weight"] = weight
    return out


def _key(point: Point) -> tuple[int, int]:
    return round(point[0] * 10), round(point[1] * 10)


def generate(
    points: Iterable[Iterable[float]], signal_events: int, background_events: int,
    luminosity: float, seed: int,
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict[str, np.ndarray]]]:
    """All trees of the toy: (signal trees by name, background trees by name).

    Each tree gets its own generator seeded by (seed, kind, point or process), so a tree does
    not change when other points are added. Event numbers are unique across all trees: each
    tree owns a block of numbers (a power of ten above the tree size) indexed by its point's
    masses in units of 0.1 GeV; the background blocks come before every signal block.
    """
    unique = sorted({_point(p) for p in points})
    keys = [_key(p) for p in unique]
    if len(set(keys)) < len(keys):
        raise PnnError("two signal points agree to 0.1 GeV in both masses: keep one of them")
    n_bkg = np.round(background_fractions() * background_events).astype(int)
    n_bkg[-1] = background_events - n_bkg[:-1].sum()
    block = 10 ** int(np.ceil(np.log10(max(signal_events, background_events) + 1)))
    if keys and not (min(keys)[0] >= 1 and (max(keys)[0] + 1) * 10**6 * block < 2**63):
        raise PnnError(f"mX from {unique[0][0]:g} to {unique[-1][0]:g}: give the masses in GeV, "
                       "between 0.1 GeV and 100 TeV, for unique event numbers")
    signal: dict[str, dict[str, np.ndarray]] = {}
    for point, (kx, ky) in zip(unique, keys, strict=True):
        rng = np.random.default_rng([seed, 1, kx, ky])
        signal[signal_tree_name(point)] = generate_signal(
            rng, point, signal_events, luminosity, offset=(kx * 10**6 + ky) * block
        )
    background: dict[str, dict[str, np.ndarray]] = {}
    for j, (proc, n) in enumerate(zip(BACKGROUNDS, n_bkg, strict=True)):
        rng = np.random.default_rng([seed, 2, j])
        background[proc.name] = generate_background(rng, proc, int(n), luminosity, offset=j * block)
    return signal, background


def write(output: str | Path, points: Iterable[Iterable[float]], signal_events: int,
          background_events: int, luminosity: float, seed: int) -> dict[str, Path]:
    """Generate the toy and write ``signal.root`` and ``background.root`` into ``output``.

    A ``toy.json`` manifest beside them (generator ``pnn.io.toy2d``) tells later stages that
    the exact likelihood ratio is available for these samples and lists the points.
    """
    unique = sorted({_point(p) for p in points})
    signal, background = generate(unique, signal_events, background_events, luminosity, seed)
    out = Path(output)
    paths = {"signal": out / "signal.root", "background": out / "background.root"}
    ntuple.write_trees(paths["signal"], signal)
    ntuple.write_trees(paths["background"], background)
    manifest: dict[str, Any] = {
        "generator": GENERATOR, "seed": seed, "luminosity_fb": luminosity,
        "parameters": list(PARAMETERS), "points": [list(p) for p in unique],
        "signal_events": signal_events, "background_events": background_events,
        "signal_trees": list(signal), "background_trees": list(background),
        "branches": list(BRANCHES),
        "signal_xsec_fb": {signal_tree_name(p): signal_xsec_fb(p) for p in unique},
    }
    write_json(out / MANIFEST, manifest)
    return paths


def is_toy2d_file(path: str | Path) -> bool:
    """True if ``path`` sits beside a manifest written by :func:`write` (never a URL)."""
    from pnn.io import exact

    return exact.generator_of(path) == GENERATOR
