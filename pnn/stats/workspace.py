"""HistFactory workspaces (pyhf JSON) from binned templates: one channel, signal strength ``mu``,
MC statistical uncertainties, normalisation and shape systematics, luminosity."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyhf

from pnn.core.errors import PnnError
from pnn.stats.templates import clamp, split_normsys_histosys

log = logging.getLogger(__name__)


@dataclass
class SampleTemplate:
    """One simulated sample binned on the discriminant, with its systematic variations.

    ``variations``: weight/tree systematics, name -> (up counts, down counts or None for a
    one-sided variation). ``factors``: normsys systematics, name -> (up factor, down factor).
    """

    name: str
    counts: np.ndarray
    variances: np.ndarray
    is_signal: bool = False
    variations: dict[str, tuple[np.ndarray, np.ndarray | None]] = field(default_factory=dict)
    factors: dict[str, tuple[float, float]] = field(default_factory=dict)


def _floats(values: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(values, dtype=float)]


def _modifiers(s: SampleTemplate, nominal: np.ndarray, *, staterror: str | None,
               lumi: float | None, poi: str) -> list[dict[str, Any]]:
    """The HistFactory modifiers of one sample."""
    both = set(s.factors) & set(s.variations)
    if lumi is not None:
        both |= {"lumi"} & (set(s.factors) | set(s.variations))
    if both:
        raise PnnError(f"sample '{s.name}': systematic(s) {sorted(both)} given twice; give each name once")
    mods: list[dict[str, Any]] = []
    if s.is_signal:
        mods.append({"name": poi, "type": "normfactor", "data": None})
    if staterror is not None:
        sigma = np.sqrt(np.clip(np.asarray(s.variances, dtype=float), 0.0, None))
        mods.append({"name": staterror, "type": "staterror", "data": _floats(sigma)})
    if lumi is not None:
        mods.append({"name": "lumi", "type": "normsys",
                     "data": {"hi": 1.0 + lumi, "lo": 1.0 - lumi}})
    for name, (up, down) in s.factors.items():
        if not (up > 0 and down > 0):
            raise PnnError(f"normsys '{name}' of sample '{s.name}': factors must be positive, "
                           f"got up={up}, down={down}")
        mods.append({"name": name, "type": "normsys", "data": {"hi": float(up), "lo": float(down)}})
    for name, (up, down) in s.variations.items():
        if np.shape(up) != nominal.shape or (down is not None and np.shape(down) != nominal.shape):
            raise ValueError(f"variation '{name}' of sample '{s.name}' has other bins than nominal")
        up_c = clamp(up, sample=s.name, systematic=f"{name} up")
        down_c = None if down is None else clamp(down, sample=s.name, systematic=f"{name} down")
        split = split_normsys_histosys(nominal, up_c, down_c,
                                       label=f"sample '{s.name}', systematic '{name}'")
        mods.append({"name": name, "type": "normsys", "data": {"hi": split.hi, "lo": split.lo}})
        mods.append({"name": name, "type": "histosys", "data": {
            "hi_data": _floats(clamp(split.hi_data, sample=s.name, systematic=f"{name} up shape")),
            "lo_data": _floats(clamp(split.lo_data, sample=s.name, systematic=f"{name} down shape")),
        }})
    return mods


def build_spec(
    samples: list[SampleTemplate],
    *,
    observations: np.ndarray | None,
    lumi: dict[str, float] | None = None,
    staterror: bool = True,
    mu_max: float = 10.0,
    channel: str = "SR",
    poi: str = "mu",
) -> dict[str, Any]:
    """A pyhf workspace spec (validated against the HistFactory schema) for one channel.

    Signal samples scale with ``poi`` in [0, mu_max]; weight/tree variations become a normsys
    (the yield change) plus a histosys (the shape at nominal yield) of the same name; ``lumi``
    maps sample names to the relative luminosity uncertainty. ``observations=None`` puts the
    pre-fit background-only Asimov counts (the summed background) in as data.
    """
    if not samples:
        raise PnnError("no templates to build a workspace from")
    nbins = np.asarray(samples[0].counts).size
    names = [s.name for s in samples]
    if len(set(names)) != len(names):
        raise PnnError(f"sample names must be unique in a workspace, got {names}")
    for s in samples:
        if np.asarray(s.counts).shape != (nbins,) or np.asarray(s.variances).shape != (nbins,):
            raise ValueError(f"sample '{s.name}': counts and variances need {nbins} bins")
    lumi = dict(lumi or {})
    unknown = sorted(set(lumi) - set(names))
    if unknown:
        raise PnnError(f"lumi uncertainty given for unknown sample(s) {unknown}; known: {names}")
    for name, value in lumi.items():
        if not 0 < value < 1:
            raise PnnError(f"lumi uncertainty of '{name}' must be in (0, 1), e.g. 0.017; got {value}")
    if not mu_max > 0:
        raise PnnError(f"mu_max must be positive, got {mu_max}")

    for kind, is_signal in (("background", False), ("signal", True)):
        group = [s for s in samples if s.is_signal == is_signal]
        if not group or sum(float(np.sum(s.counts)) for s in group) <= 0:
            raise PnnError(f"{kind} template is empty at this mass: no simulated {kind} in any bin "
                           "(check the selection, the mass and the binning)")

    stat_name = f"staterror_{channel}" if staterror else None
    spec_samples, background = [], np.zeros(nbins)
    for s in samples:
        if float(np.max(s.counts)) <= 0:
            log.warning("sample '%s' has no positive bin at this mass: left out of the workspace",
                        s.name)
            continue
        nominal = clamp(s.counts, sample=s.name, systematic="nominal")
        if not s.is_signal:
            background += nominal
        spec_samples.append({
            "name": s.name,
            "data": _floats(nominal),
            "modifiers": _modifiers(s, nominal, staterror=stat_name, lumi=lumi.get(s.name), poi=poi),
        })

    if observations is None:
        observed = background
    else:
        observed = np.asarray(observations, dtype=float)
        if observed.shape != (nbins,):
            raise ValueError(f"observations need {nbins} bins, got shape {observed.shape}")
        if not np.all(np.isfinite(observed)) or np.any(observed < 0):
            raise PnnError("observed counts must be finite and non-negative")

    parameter: dict[str, Any] = {"name": poi, "bounds": [[0.0, float(mu_max)]]}
    if mu_max <= 1.0:
        parameter["inits"] = [float(mu_max) / 2]
    spec = {
        "channels": [{"name": channel, "samples": spec_samples}],
        "observations": [{"name": channel, "data": _floats(observed)}],
        "measurements": [{"name": "meas", "config": {"poi": poi, "parameters": [parameter]}}],
        "version": "1.0.0",
    }
    try:
        pyhf.Workspace(spec)
    except pyhf.exceptions.InvalidSpecification as exc:
        raise PnnError(f"the workspace does not follow the HistFactory schema: {exc}") from None
    return spec
