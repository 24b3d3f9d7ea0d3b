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

Systematic variations (``write(..., systematics=True)``) model the two leading uncertainties
of such a search:

* Jet energy scale: every tree ``<tree>`` gets ``<tree>__1up`` and ``<tree>__1down``, the
  same events (EventNumber, weight, EventFlavour, Btag, ``mass`` unchanged) with the
  energy-like branches ``FourBodyMass``, ``Jet0CorrTLV``, ``sTNoMet``, ``sT`` (and the jagged
  ``Jet_pt``) multiplied by ``1 + jes`` and ``1 - jes`` respectively (computed in double
  precision, stored as float32). The whole event scales coherently, MET included, so ratios
  such as pT / M stay as they are and the variation moves the mass peak and the falling
  background by the same relative amount.
* Background modelling: the background trees (nominal and varied) carry the multiplicative
  weight factors ``weight_scale_up = 1 + delta(M)`` and ``weight_scale_down = 1 - delta(M)``
  with ``delta(M) = 0.05 + 0.10 * M / 1 TeV`` (nominal ``FourBodyMass``), capped at 0.5: a 5 %
  normalisation uncertainty plus a shape uncertainty that grows into the tail where the
  generator is extrapolated. The varied weight is ``weight * weight_scale_up``.

Pseudo-data (``write(..., data=True)``, :func:`generate_data`) are drawn fresh from the same
densities, not resampled from the MC: a Poisson number of events around the expected total
background yield sum_j sigma_j x L (the summed MC weights), each from process j with
probability sigma_j / sum sigma, M from the full (unsliced) Gamma density, weight 1, no
negative weights. An injected signal adds Poisson(sigma_inj x L) events from the signal
density at the injected mass; the background events do not change when a signal is injected.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats

from pnn.core.atomic import write_json
from pnn.core.errors import PnnError
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


def _draw_signal(rng: np.random.Generator, mass: float, n: int) -> dict[str, np.ndarray]:
    M = rng.normal(mass, RESOLUTION * mass, size=n)
    out = _kinematics(rng, n, M, SIGNAL_U, (SIGNAL_R_SHAPE, SIGNAL_R_SCALE_PER_GEV * mass),
                      SIGNAL_MET, SIGNAL_BTAG)
    out["EventFlavour"] = np.full(n, 5, dtype=np.int32)
    return out


def _draw_background(rng: np.random.Generator, process: Process, M: np.ndarray) -> dict[str, np.ndarray]:
    n = len(M)
    out = _kinematics(rng, n, M, process.u, process.r, process.met, process.btag)
    out["EventFlavour"] = rng.choice(FLAVOURS, size=n, p=process.flavour).astype(np.int32)
    return out


def generate_signal(
    rng: np.random.Generator, mass: float, n: int, luminosity: float, offset: int
) -> dict[str, np.ndarray]:
    """Signal events at true mass ``mass``; weights add up to sigma(m) x L."""
    out = _draw_signal(rng, mass, n)
    out["EventNumber"] = _event_numbers(rng, n, offset)
    out["weight"] = np.full(n, signal_xsec_fb(mass) * luminosity / n)
    out["mass"] = np.full(n, mass, dtype=np.float32)
    return out


def sliced_gamma(rng: np.random.Generator, shape_scale: tuple[float, float], n: int,
                 expected: float, negative_fraction: float = 0.0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` values of a Gamma(k, theta) drawn in :data:`SLICES` and their signed weights,
    which add up to ``expected`` (sigma x L) and keep the weighted density exactly Gamma.

    Within each slice the value is drawn by inverting the Gamma survival function, so the
    slice sizes are exact; a ``negative_fraction`` of the events carry negative weights.
    """
    k, theta = shape_scale
    sizes = [round(n * share) for _, _, share in SLICES]
    sizes[0] = n - sum(sizes[1:])
    values = np.empty(n)
    weight = np.empty(n)
    sign = np.where(rng.random(n) < negative_fraction, -1.0, 1.0)
    start = 0
    for (lo, hi, _), size in zip(SLICES, sizes, strict=True):
        part = slice(start, start + size)
        sf_lo, sf_hi = stats.gamma.sf([lo, hi], k, scale=theta)
        values[part] = stats.gamma.isf(sf_hi + rng.random(size) * (sf_lo - sf_hi), k, scale=theta)
        weight[part] = sign[part] * expected * (sf_lo - sf_hi) / sign[part].sum()
        start += size
    return values, weight


def generate_background(
    rng: np.random.Generator, process: Process, n: int, luminosity: float, offset: int
) -> dict[str, np.ndarray]:
    """Background events of one process in mass slices; signed weights add up to sigma x L.

    Within each slice the true M is drawn by inverting the Gamma survival function, so the
    slice sizes are exact.
    """
    M, weight = sliced_gamma(rng, process.mass, n, process.xsec_fb * luminosity,
                             process.negative_fraction)
    out = _draw_background(rng, process, M)
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


ENERGY_BRANCHES = BRANCHES[:4]
VARIATIONS = ("__1up", "__1down")
WEIGHT_SCALE_NORM, WEIGHT_SCALE_SLOPE_PER_TEV, WEIGHT_SCALE_MAX = 0.05, 0.10, 0.5
DATA_FILE, DATA_TREE = "data.root", "data"
DATA_EVENT_OFFSET = 10**15  # above every MC event number while a tree has < 10^8 events


def weight_scale(mass: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Background-modelling weight factors (up, down) = 1 +- delta(M) at reconstructed mass M.

    delta = 0.05 + 0.10 x M / TeV, capped at 0.5: a normalisation uncertainty plus a shape
    uncertainty growing into the extrapolated tail. Both factors stay positive.
    """
    m = np.asarray(mass, dtype=np.float64)
    delta = np.clip(WEIGHT_SCALE_NORM + WEIGHT_SCALE_SLOPE_PER_TEV * m / 1000.0, 0.0, WEIGHT_SCALE_MAX)
    return 1.0 + delta, 1.0 - delta


def shift_energy(tree: Mapping[str, Any], factor: float) -> dict[str, Any]:
    """A copy of ``tree`` with the energy-like branches (and jagged jet pT) times ``factor``.

    Products are taken in double precision and stored as float32, like the nominal branches;
    every other branch is shared with the nominal tree.
    """
    out = dict(tree)
    for k in ENERGY_BRANCHES:
        out[k] = (np.asarray(tree[k], dtype=np.float64) * factor).astype(np.float32)
    if "Jet" in tree:
        import awkward as ak

        jets = tree["Jet"]
        pt = ak.values_astype(ak.values_astype(jets.pt, np.float64) * factor, np.float32)
        out["Jet"] = ak.with_field(jets, pt, "pt")
    return out


def add_systematics(
    trees: Mapping[str, Mapping[str, Any]], jes: float, background: bool
) -> dict[str, dict[str, Any]]:
    """Each tree followed by its ``__1up``/``__1down`` jet-energy-scale variations.

    With ``background`` the trees first get ``weight_scale_up``/``weight_scale_down`` from
    the nominal mass, so a varied tree carries the same factors as its nominal events.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, nominal in trees.items():
        tree = dict(nominal)
        if background:
            tree["weight_scale_up"], tree["weight_scale_down"] = weight_scale(tree["FourBodyMass"])
        out[name] = tree
        out[name + VARIATIONS[0]] = shift_energy(tree, 1.0 + jes)
        out[name + VARIATIONS[1]] = shift_energy(tree, 1.0 - jes)
    return out


def expected_background(luminosity: float) -> float:
    """Expected total background yield sum_j sigma_j x L (= the summed MC weights)."""
    return float(sum(p.xsec_fb for p in BACKGROUNDS) * luminosity)


def generate_data(
    luminosity: float, seed: int, inject_mass: float | None = None,
    inject_xsec_fb: float | None = None, objects: bool = False,
) -> dict[str, Any]:
    """Pseudo-data drawn fresh from the toy densities, weight 1, in random order.

    Poisson(sum_j sigma_j x L) background events, each from process j with probability
    sigma_j / sum sigma; with ``inject_mass`` also Poisson(sigma_inj x L) signal events at
    that mass (sigma_inj: ``inject_xsec_fb``, else the benchmark :func:`signal_xsec_fb`).
    Background, signal, ordering and jet objects use separate children of
    ``default_rng(seed)``, so injecting a signal leaves the background events as they were.
    """
    bkg_rng, sig_rng, mix_rng, obj_rng = np.random.default_rng(seed).spawn(4)
    n = int(bkg_rng.poisson(expected_background(luminosity)))
    counts = bkg_rng.multinomial(n, background_fractions())
    parts = [
        _draw_background(rng, p, rng.gamma(p.mass[0], p.mass[1], size=int(k)))
        for rng, p, k in zip(bkg_rng.spawn(len(BACKGROUNDS)), BACKGROUNDS, counts, strict=True)
    ]
    if inject_mass is not None:
        xsec = signal_xsec_fb(inject_mass) if inject_xsec_fb is None else inject_xsec_fb
        parts.append(_draw_signal(sig_rng, inject_mass, int(sig_rng.poisson(xsec * luminosity))))
    total = sum(len(part["FourBodyMass"]) for part in parts)
    order = mix_rng.permutation(total)
    events: dict[str, Any] = {b: np.concatenate([part[b] for part in parts])[order] for b in parts[0]}
    events["EventNumber"] = _event_numbers(mix_rng, total, DATA_EVENT_OFFSET)
    events["weight"] = np.ones(total)
    log.info("pseudo-data: %d events (%.1f background expected%s)", total,
             expected_background(luminosity),
             "" if inject_mass is None else f", signal injected at {inject_mass:g} GeV")
    return add_objects(obj_rng, events) if objects else events


MANIFEST = "toy.json"


def write(output: str | Path, masses: list[float], signal_events: int, background_events: int,
          luminosity: float, seed: int, objects: bool = False, *, systematics: bool = False,
          jes: float = 0.02, data: bool = False, data_seed: int = 1234,
          inject_mass: float | None = None, inject_xsec_fb: float | None = None) -> dict[str, Path]:
    """Generate the toy and write ``signal.root`` and ``background.root`` into ``output``.

    With ``objects`` every tree also gets jagged jet branches (:func:`add_objects`), drawn
    from their own generator so the flat branches stay the same. With ``systematics`` the
    files also hold the ``__1up``/``__1down`` trees and the backgrounds the weight factors
    (:func:`add_systematics`); with ``data`` pseudo-data go to ``data.root``, tree ``data``
    (:func:`generate_data`). With both off the files are exactly those of earlier versions.

    A ``toy.json`` manifest beside them tells later stages that the exact likelihood ratio
    is available for these samples, and records the variations and pseudo-data written.
    """
    if systematics and not 0 < jes < 1:
        raise PnnError(f"jes={jes}: the jet-energy-scale shift must lie between 0 and 1, e.g. 0.02")
    if data and inject_mass is None and inject_xsec_fb is not None:
        raise PnnError("inject_xsec_fb is set without inject_mass: set generate.inject_mass to "
                       "the mass (GeV) of the injected signal, or drop inject_xsec_fb")
    if data and inject_mass is not None and inject_mass <= 0:
        raise PnnError(f"inject_mass={inject_mass}: give the injected signal mass in GeV (> 0)")
    if not data and (inject_mass is not None or inject_xsec_fb is not None):
        log.warning("generate.inject_mass/inject_xsec_fb ignored: set generate.data: true to "
                    "write pseudo-data with an injected signal")
    signal, background = generate(masses, signal_events, background_events, luminosity, seed)
    if objects:
        for j, trees in enumerate((signal, background)):
            for i, name in enumerate(list(trees)):
                trees[name] = add_objects(np.random.default_rng([seed, 3, j, i]), trees[name])
    out = Path(output)
    manifest: dict[str, Any] = {
        "generator": "pnn.io.toy", "seed": seed, "luminosity_fb": luminosity,
        "masses": sorted(masses), "signal_events": signal_events,
        "background_events": background_events, "objects": objects,
        "signal_trees": list(signal), "background_trees": list(background),
    }
    if systematics:
        signal = add_systematics(signal, jes, background=False)
        background = add_systematics(background, jes, background=True)
        manifest["systematics"] = {
            "jes": jes, "variations": list(VARIATIONS),
            "scaled_branches": [*ENERGY_BRANCHES, *(["Jet_pt"] if objects else [])],
            "weight_scale": f"1 +- min({WEIGHT_SCALE_NORM} + {WEIGHT_SCALE_SLOPE_PER_TEV} * "
                            f"FourBodyMass / 1000, {WEIGHT_SCALE_MAX}) on the backgrounds",
        }
    paths = {"signal": out / "signal.root", "background": out / "background.root"}
    ntuple.write_trees(paths["signal"], signal)
    ntuple.write_trees(paths["background"], background)
    if data:
        events = generate_data(luminosity, data_seed, inject_mass, inject_xsec_fb, objects)
        paths["data"] = out / DATA_FILE
        ntuple.write_trees(paths["data"], {DATA_TREE: events})
        xsec = None if inject_mass is None else (
            signal_xsec_fb(inject_mass) if inject_xsec_fb is None else inject_xsec_fb)
        manifest["data"] = {
            "file": DATA_FILE, "tree": DATA_TREE, "seed": data_seed,
            "events": len(events["weight"]),
            "expected_background": expected_background(luminosity),
            "inject_mass": inject_mass, "inject_xsec_fb": xsec,
            "expected_signal": None if xsec is None else xsec * luminosity,
        }
    elif (out / DATA_FILE).exists():
        log.warning("%s is left from an earlier run and not described by %s: delete it or set "
                    "generate.data: true", out / DATA_FILE, MANIFEST)
    write_json(out / MANIFEST, manifest)
    return paths


def is_toy_file(path: str | Path) -> bool:
    """True if ``path`` sits beside a manifest written by :func:`write` (never a URL)."""
    from pnn.io import exact

    return exact.generator_of(path) == "pnn.io.toy"
