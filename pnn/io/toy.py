"""Embedded toy resonance search with closed-form densities.

Signal X -> hh at a true mass m (GeV) and two backgrounds, ``ttbar`` (NLO-like, with a few
percent of negative weights) and ``multijet``. Every event has the branches

* ``FourBodyMass`` (M): reconstructed resonance mass,
* ``Jet0CorrTLV`` (pT): leading-jet transverse momentum,
* ``sTNoMet``: scalar sum of jet pT, ``sT = sTNoMet + MET``,
* ``Btag``: number of b-tagged jets (0, 1 or 2),
* ``EventFlavour``: truth bookkeeping (never a feature), ``EventNumber`` and ``weight``.

The densities are products of standard distributions (all GeV):

=====================  ====================================  ==================================
quantity               signal at mass m                      background process j
=====================  ====================================  ==================================
M                      Normal(m, RESOLUTION * m)             Gamma(k_j, theta_j): smooth fall
u = pT / M             Beta(4, 8)                            Beta(4, 8)
R = sTNoMet - pT       Gamma(3, 0.12 m)                      Gamma(k_j, theta_j)
MET = sT - sTNoMet     Gamma(2, 30)                          Gamma(k_j, theta_j)
Btag                   Categorical(0.20, 0.40, 0.40)         Categorical(pi_j)
=====================  ====================================  ==================================

The change of variables (M, u, R, MET) -> (M, pT, sTNoMet, sT) has Jacobian 1/M, so

    p(M, pT, sTNoMet, sT, Btag) = p(M) * Beta(pT / M) / M * p_R(sTNoMet - pT) * p_MET(sT - sTNoMet) * P(Btag)

The leading jet carries the same share of the reconstructed mass in signal and background,
so pT is correlated with M but tells the classes apart only through M itself.

The background density is the mixture of the processes weighted by their cross-sections,
so :func:`log_likelihood_ratio` returns the exact log p_s(x|m) / p_b(x), the Neyman-Pearson
optimal classifier at mass m. The signal mass, pT and sTNoMet all scale with m, so a
classifier that ignores the mass hypothesis loses at the ends of the mass range.

Weights are cross-section x luminosity / generated events (signed for ``ttbar``), so the
weights of a sample add up to its expected yield. As real MC is produced in slices of a
generator-level quantity, each background process is generated in ``SLICES`` of M
(lower edge, upper edge, share of the events), each slice weighted by
cross-section x luminosity x P(slice) / events in the slice. The weighted distribution (and
so the likelihood ratio) is unchanged, while the high-mass tail, where a 1.5 TeV search
lives, gets enough MC events to measure its background.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import special, stats

from pnn.core.atomic import write_json
from pnn.io import ntuple

log = logging.getLogger(__name__)

RESOLUTION = 0.10
SIGNAL_U = (4.0, 8.0)
SIGNAL_R_SHAPE, SIGNAL_R_SCALE_PER_GEV = 3.0, 0.12
SIGNAL_MET = (2.0, 30.0)
SIGNAL_BTAG = (0.20, 0.40, 0.40)
SIGNAL_XSEC_FB_AT_500 = 5.0
SLICES = ((0.0, 700.0, 0.4), (700.0, 1100.0, 0.3), (1100.0, np.inf, 0.3))


@dataclass(frozen=True)
class Process:
    """One background process: shapes, cross-section (fb) and negative-weight fraction."""

    name: str
    xsec_fb: float
    mass: tuple[float, float]
    u: tuple[float, float]
    r: tuple[float, float]
    met: tuple[float, float]
    btag: tuple[float, float, float]
    flavour: tuple[float, float, float]
    negative_fraction: float = 0.0


BACKGROUNDS: tuple[Process, ...] = (
    Process("ttbar", 800.0, (3.0, 150.0), (4.0, 8.0), (3.0, 100.0), (2.0, 35.0),
            (0.25, 0.45, 0.30), (0.0, 0.0, 1.0), negative_fraction=0.03),
    Process("multijet", 2000.0, (2.5, 150.0), (4.0, 8.0), (2.0, 90.0), (1.5, 20.0),
            (0.55, 0.33, 0.12), (0.80, 0.12, 0.08)),
)
FLAVOURS = np.array([0, 4, 5], dtype=np.int32)
BRANCHES = ("FourBodyMass", "Jet0CorrTLV", "sTNoMet", "sT", "Btag")


def signal_xsec_fb(mass: float) -> float:
    """Benchmark signal cross-section after preselection, falling as 1/m."""
    return SIGNAL_XSEC_FB_AT_500 * (500.0 / mass)


def background_fractions() -> np.ndarray:
    """Share of each background process in the total (net) background yield."""
    xs = np.array([p.xsec_fb for p in BACKGROUNDS])
    return xs / xs.sum()


def _columns(events: pd.DataFrame | dict) -> tuple[np.ndarray, ...]:
    def get(k):
        return (np.asarray(events[k], dtype=np.float64))
    M, pt, stnm, st = (get(k) for k in BRANCHES[:4])
    btag = np.asarray(events["Btag"]).astype(np.int64)
    return M, pt, stnm - pt, st - stnm, btag


def _log_btag(btag: np.ndarray, probs: tuple[float, float, float]) -> np.ndarray:
    table = np.log(np.asarray(probs))
    out = np.full(btag.shape, -np.inf)
    ok = (btag >= 0) & (btag <= 2)
    out[ok] = table[btag[ok]]
    return out


def _log_common(M, pt, r, met, btag, u_ab, r_kt, met_kt, btag_p) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return (
            stats.beta.logpdf(pt / M, *u_ab) - np.log(M)
            + stats.gamma.logpdf(r, r_kt[0], scale=r_kt[1])
            + stats.gamma.logpdf(met, met_kt[0], scale=met_kt[1])
            + _log_btag(btag, btag_p)
        )


def signal_logpdf(events: pd.DataFrame | dict, mass: float) -> np.ndarray:
    """log p_s(x | m) of every event for a signal of true mass ``mass`` (GeV)."""
    M, pt, r, met, btag = _columns(events)
    return stats.norm.logpdf(M, mass, RESOLUTION * mass) + _log_common(
        M, pt, r, met, btag, SIGNAL_U, (SIGNAL_R_SHAPE, SIGNAL_R_SCALE_PER_GEV * mass),
        SIGNAL_MET, SIGNAL_BTAG,
    )


def background_logpdf(events: pd.DataFrame | dict) -> np.ndarray:
    """log p_b(x): cross-section-weighted mixture of the background processes."""
    M, pt, r, met, btag = _columns(events)
    terms = [
        np.log(f) + stats.gamma.logpdf(M, p.mass[0], scale=p.mass[1])
        + _log_common(M, pt, r, met, btag, p.u, p.r, p.met, p.btag)
        for f, p in zip(background_fractions(), BACKGROUNDS, strict=True)
    ]
    return special.logsumexp(np.vstack(terms), axis=0)


def log_likelihood_ratio(events: pd.DataFrame | dict, mass: float) -> np.ndarray:
    """Exact log p_s(x|m) / p_b(x): the optimal classifier at mass hypothesis ``mass``."""
    return signal_logpdf(events, mass) - background_logpdf(events)


def _kinematics(rng, n, M, u_ab, r_kt, met_kt, btag_p) -> dict[str, np.ndarray]:
    pt = M * rng.beta(*u_ab, size=n)
    stnm = pt + rng.gamma(r_kt[0], r_kt[1], size=n)
    st = stnm + rng.gamma(met_kt[0], met_kt[1], size=n)
    return {
        "FourBodyMass": M.astype(np.float32),
        "Jet0CorrTLV": pt.astype(np.float32),
        "sTNoMet": stnm.astype(np.float32),
        "sT": st.astype(np.float32),
        "Btag": rng.choice(3, size=n, p=btag_p).astype(np.int32),
    }


def _event_numbers(rng: np.random.Generator, n: int, offset: int) -> np.ndarray:
    return (np.uint64(offset) + rng.permutation(n).astype(np.uint64)).astype(np.uint64)


def generate_signal(
    rng: np.random.Generator, mass: float, n: int, luminosity: float, offset: int
) -> dict[str, np.ndarray]:
    """Signal events at true mass ``mass``; weights add up to sigma(m) x L."""
    M = rng.normal(mass, RESOLUTION * mass, size=n)
    out = _kinematics(rng, n, M, SIGNAL_U, (SIGNAL_R_SHAPE, SIGNAL_R_SCALE_PER_GEV * mass),
                      SIGNAL_MET, SIGNAL_BTAG)
    out["EventFlavour"] = np.full(n, 5, dtype=np.int32)
    out["EventNumber"] = _event_numbers(rng, n, offset)
    out["weight"] = np.full(n, signal_xsec_fb(mass) * luminosity / n)
    out["mass"] = np.full(n, mass, dtype=np.float32)
    return out


def generate_background(
    rng: np.random.Generator, process: Process, n: int, luminosity: float, offset: int
) -> dict[str, np.ndarray]:
    """Background events of one process in mass slices; signed weights add up to sigma x L.

    Within each slice the true M is drawn by inverting the Gamma survival function, so the
    slice sizes are exact.
    """
    k, theta = process.mass
    sizes = [round(n * share) for _, _, share in SLICES]
    sizes[0] = n - sum(sizes[1:])
    M = np.empty(n)
    weight = np.empty(n)
    sign = np.where(rng.random(n) < process.negative_fraction, -1.0, 1.0)
    start = 0
    for (lo, hi, _), size in zip(SLICES, sizes, strict=True):
        part = slice(start, start + size)
        sf_lo, sf_hi = stats.gamma.sf([lo, hi], k, scale=theta)
        M[part] = stats.gamma.isf(sf_hi + rng.random(size) * (sf_lo - sf_hi), k, scale=theta)
        weight[part] = sign[part] * process.xsec_fb * luminosity * (sf_lo - sf_hi) / sign[part].sum()
        start += size
    out = _kinematics(rng, n, M, process.u, process.r, process.met, process.btag)
    out["EventFlavour"] = rng.choice(FLAVOURS, size=n, p=process.flavour).astype(np.int32)
    out["EventNumber"] = _event_numbers(rng, n, offset)
    out["weight"] = weight
    return out


JET_BTAG_CUT = 0.5


def add_objects(rng: np.random.Generator, events: dict[str, np.ndarray]) -> dict:
    """NanoAOD-like jets consistent with the flat branches, as an awkward record ``Jet``.

    Jet 0 carries ``Jet0CorrTLV``; the other jets share ``sTNoMet - Jet0CorrTLV`` (at least
    one of them, about one per leading-jet pT of it), so ``sum(Jet_pt) == sTNoMet``. Exactly
    ``Btag`` jets have ``Jet_btag`` above 0.5. Written as ``nJet``, ``Jet_pt[]``,
    ``Jet_eta[]``, ``Jet_phi[]``, ``Jet_btag[]``.
    """
    import awkward as ak

    lead = np.asarray(events["Jet0CorrTLV"], dtype=np.float64)
    rest = np.clip(np.asarray(events["sTNoMet"], dtype=np.float64) - lead, 0, None)
    n = len(lead)
    n_sub = np.maximum(1, np.ceil(rest / np.maximum(lead, 1.0))).astype(np.int64)
    n_sub += rng.integers(0, 2, n)
    counts = n_sub + 1
    total = int(counts.sum())
    starts = np.cumsum(counts) - counts
    # Shares of the remainder: exponential draws normalised per event (a Dirichlet(1) split).
    draws = rng.exponential(1.0, total)
    draws[starts] = 0.0
    per_event = np.add.reduceat(draws, starts)
    pt = draws / np.repeat(per_event, counts) * np.repeat(rest, counts)
    pt[starts] = lead
    nb = np.asarray(events["Btag"]).astype(np.int64)
    rank = np.arange(total) - np.repeat(starts, counts)
    tagged = rank < np.repeat(nb, counts)
    btag = np.where(tagged, rng.uniform(0.6, 1.0, total), rng.uniform(0.0, 0.4, total))
    jets = ak.zip({
        "pt": ak.unflatten(pt.astype(np.float32), counts),
        "eta": ak.unflatten(rng.normal(0.0, 1.5, total).astype(np.float32), counts),
        "phi": ak.unflatten(rng.uniform(-np.pi, np.pi, total).astype(np.float32), counts),
        "btag": ak.unflatten(btag.astype(np.float32), counts),
    })
    return {**events, "Jet": jets}


def signal_tree_name(mass: float) -> str:
    """Tree name of a signal mass point, as in the reference analysis (``Xtohh1000``)."""
    return f"Xtohh{mass:g}"


def generate(
    masses: list[float], signal_events: int, background_events: int, luminosity: float, seed: int
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict[str, np.ndarray]]]:
    """All trees of the toy: (signal trees by name, background trees by name).

    Each tree gets its own generator seeded by (seed, tree), so a tree does not change when
    other mass points are added. Event numbers are unique across all trees: each tree owns a
    block of numbers that starts at a multiple of a power of ten above the tree size.
    """
    n_bkg = np.round(background_fractions() * background_events).astype(int)
    n_bkg[-1] = background_events - n_bkg[:-1].sum()
    block = 10 ** int(np.ceil(np.log10(max(signal_events, background_events) + 1)))
    signal: dict[str, dict[str, np.ndarray]] = {}
    for mass in sorted(masses):
        key = round(mass * 10)
        rng = np.random.default_rng([seed, 1, key])
        signal[signal_tree_name(mass)] = generate_signal(
            rng, mass, signal_events, luminosity, offset=key * block
        )
    background: dict[str, dict[str, np.ndarray]] = {}
    for j, (proc, n) in enumerate(zip(BACKGROUNDS, n_bkg, strict=True)):
        rng = np.random.default_rng([seed, 2, j])
        background[proc.name] = generate_background(
            rng, proc, int(n), luminosity, offset=(10**7 + j) * block
        )
    return signal, background


MANIFEST = "toy.json"


def write(output: str | Path, masses: list[float], signal_events: int, background_events: int,
          luminosity: float, seed: int, objects: bool = False) -> dict[str, Path]:
    """Generate the toy and write ``signal.root`` and ``background.root`` into ``output``.

    With ``objects`` every tree also gets jagged jet branches (:func:`add_objects`), drawn
    from their own generator so the flat branches stay the same.

    A ``toy.json`` manifest beside them tells later stages that the exact likelihood ratio
    is available for these samples.
    """
    signal, background = generate(masses, signal_events, background_events, luminosity, seed)
    if objects:
        for j, trees in enumerate((signal, background)):
            for i, name in enumerate(list(trees)):
                trees[name] = add_objects(np.random.default_rng([seed, 3, j, i]), trees[name])
    out = Path(output)
    paths = {"signal": out / "signal.root", "background": out / "background.root"}
    ntuple.write_trees(paths["signal"], signal)
    ntuple.write_trees(paths["background"], background)
    write_json(out / MANIFEST, {
        "generator": "pnn.io.toy", "seed": seed, "luminosity_fb": luminosity,
        "masses": sorted(masses), "signal_events": signal_events,
        "background_events": background_events, "objects": objects,
        "signal_trees": list(signal), "background_trees": list(background),
    })
    return paths


def is_toy_file(path: str | Path) -> bool:
    """True if ``path`` sits beside a manifest written by :func:`write`."""
    manifest = Path(path).parent / MANIFEST
    if not manifest.is_file():
        return False
    try:
        return json.loads(manifest.read_text()).get("generator") == "pnn.io.toy"
    except (OSError, ValueError):
        return False
