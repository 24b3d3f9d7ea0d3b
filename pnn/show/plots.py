"""Plots (matplotlib with the mplhep ROOT style), each saved atomically as PNG."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mplhep
import numpy as np
import pandas as pd

from pnn.core.atomic import atomic_path

log = logging.getLogger(__name__)


class Roc(Protocol):
    """What a ROC plot reads: efficiencies and the area (``pnn.stats.metrics.Roc`` has them)."""

    sig_eff: np.ndarray
    bkg_eff: np.ndarray
    auc: float


class CutScan(Protocol):
    """What a significance plot reads (``pnn.stats.metrics.CutScan`` has them)."""

    thresholds: np.ndarray
    s: np.ndarray
    z: np.ndarray
    n_bkg: np.ndarray
# The ROOT style names a cursive font that most machines lack; matplotlib falls back quietly.
logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)

COLOURS = {"pnn": "C0", "optimal": "k", "window": "C1"}
LABELS = {"pnn": "PNN", "optimal": "optimal (likelihood ratio)", "window": "mass window"}


def _save(fig: plt.Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _finish(fig: plt.Figure, ax: plt.Axes, title: str, path: Path) -> None:
    """Title, legend and atomic save, common to every single-panel plot."""
    ax.set_title(title)
    ax.legend(fontsize="small")
    _save(fig, path)


def _figure() -> tuple[plt.Figure, plt.Axes]:
    with plt.style.context(mplhep.style.ROOT):
        fig, ax = plt.subplots(figsize=(7, 5.5))
    return fig, ax


def loss_curve(history: pd.DataFrame, path: Path, title: str = "") -> None:
    """Training and validation loss against epoch, the kept (best) epoch marked."""
    fig, ax = _figure()
    ax.plot(history["epoch"], history["loss"], "o-", label="training")
    ax.plot(history["epoch"], history["val_loss"], "s-", label="validation")
    best = history["epoch"].iloc[int(history["val_loss"].to_numpy().argmin())]
    ax.axvline(best, color="0.5", ls=":", label=f"best epoch {best} (weights kept)")
    later = history[["loss", "val_loss"]].to_numpy()[1:]
    if len(later) > 2:  # the first epoch would squash the rest of the curve
        lo, hi = float(later.min()), float(later.max())
        ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
    ax.set_xlabel("epoch")
    ax.set_ylabel("weighted binary cross-entropy")
    _finish(fig, ax, title, path)


def score_distributions(
    train: Mapping[str, tuple[np.ndarray, np.ndarray]],
    test: Mapping[str, tuple[np.ndarray, np.ndarray]],
    ks: Mapping[str, float], path: Path, title: str,
) -> None:
    """TMVA-style overtraining check: test as filled histograms, train as points.

    ``train``/``test`` map "signal"/"background" to (scores, weights).
    """
    bins = np.linspace(0, 1, 41)
    centres = 0.5 * (bins[1:] + bins[:-1])
    fig, ax = _figure()
    for cls, colour in (("signal", "C0"), ("background", "C3")):
        s, w = test[cls]
        ax.hist(s, bins=bins, weights=w, density=True, histtype="stepfilled", alpha=0.35,
                color=colour, label=f"{cls} (test)")
        s, w = train[cls]
        h, _ = np.histogram(s, bins=bins, weights=w, density=True)
        ax.plot(centres, h, "o", color=colour, ms=4,
                label=f"{cls} (train), KS p = {ks[cls]:.3g}")
    ax.set_yscale("log")
    ax.set_xlabel("PNN score")
    ax.set_ylabel("normalised")
    _finish(fig, ax, title, path)


def roc_curves(rocs: Mapping[str, Roc], path: Path, title: str) -> None:
    """Background efficiency (log) against signal efficiency for each method."""
    fig, ax = _figure()
    for name, r in rocs.items():
        ax.plot(r.sig_eff, np.clip(r.bkg_eff, 1e-6, None), color=COLOURS.get(name),
                label=f"{LABELS.get(name, name)}: AUC {r.auc:.4f}")
    ax.set_yscale("log")
    ax.set_ylim(1e-5, 1.5)
    ax.set_xlabel("signal efficiency")
    ax.set_ylabel("background efficiency")
    _finish(fig, ax, title, path)


def significance_vs_cut(cs: CutScan, chosen: tuple[float, float], min_bkg_events: int,
                        path: Path, title: str) -> None:
    """Asimov Z against the signal efficiency of the score cut, chosen cuts marked.

    Efficiency spreads out the region near a score of 1 where the cuts of a good
    classifier sit. Cuts that keep fewer than ``min_bkg_events`` background MC events
    are drawn grey: their background yield is not measured.
    """
    total = cs.s[-1] if len(cs.s) and cs.s[-1] > 0 else 1.0
    eff = cs.s / total
    ok = cs.n_bkg >= min_bkg_events
    fig, ax = _figure()
    ax.plot(eff[~ok], cs.z[~ok], color="0.7", label=f"< {min_bkg_events} background MC events")
    ax.plot(eff[ok], cs.z[ok], color="C0", label="Asimov Z (all test events)")
    for cut, style, which in zip(chosen, ("--", ":"), ("first", "second"), strict=True):
        if np.isfinite(cut):
            i = max(int(np.searchsorted(-cs.thresholds, -cut, side="right")) - 1, 0)
            ax.axvline(eff[i], color="C3", ls=style,
                       label=f"cut {cut:.5f} chosen on {which} half")
    ax.set_xlabel("signal efficiency of the cut on the PNN score")
    ax.set_ylabel("Z")
    _finish(fig, ax, title, path)


def summary(table: pd.DataFrame, path: Path) -> None:
    """AUC and Z against mass for the PNN, the optimum and the mass window."""
    with plt.style.context(mplhep.style.ROOT):
        fig, axes = plt.subplots(1, 2, figsize=(14, 5.5))
    fig.subplots_adjust(wspace=0.3)
    for ax, key, ylabel in ((axes[0], "auc", "ROC AUC"), (axes[1], "z", "Asimov Z")):
        for method, suffix in (("pnn", ""), ("optimal", "_optimal"), ("window", "_window")):
            col = key + suffix
            if col in table and table[col].notna().any():
                ax.plot(table["mass"], table[col], "o-", color=COLOURS[method],
                        label=LABELS[method])
        off = table[~table["trained"]]
        if len(off):
            ax.plot(off["mass"], off[key], "o", mfc="none", mec="C3", ms=12,
                    label="not trained on")
        ax.set_xlabel("mass hypothesis [GeV]")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize="small")
    _save(fig, path)


def interpolation(table: pd.DataFrame, labels: Mapping[str, str], held_out: list[float],
                  path: Path) -> None:
    """AUC and Z against mass, one line per method; held-out masses marked."""
    with plt.style.context(mplhep.style.ROOT):
        fig, axes = plt.subplots(1, 2, figsize=(15, 6))
    fig.subplots_adjust(wspace=0.3)
    styles = {"pnn": dict(color="#1f77b4", lw=2.5), "pnn_holdout": dict(color="#ff7f0e", ls="none",
                                                                       marker="*", ms=16),
              "dedicated": dict(color="#2ca02c"),
              "dedicated_below": dict(color="#7f7f7f", ls=":", marker="v"),
              "dedicated_above": dict(color="#7f7f7f", ls=":", marker="^"),
              "nonparametric": dict(color="#9467bd"), "bdt": dict(color="#8c564b"),
              "bdt_holdout": dict(color="#e377c2", ls="none", marker="X", ms=10),
              "window": dict(color="#d62728", ls="-."), "optimal": dict(color="k", ls="--", marker="")}
    for ax, key, ylabel in ((axes[0], "auc", "ROC AUC"), (axes[1], "z", "Asimov Z")):
        for method, label in labels.items():
            rows = table[table["method"] == method].sort_values("mass")
            if len(rows):
                ax.plot(rows["mass"], rows[key], **({"marker": "o"} | styles.get(method, {})),
                        label=label)
        for i, m in enumerate(held_out):
            ax.axvline(m, color="0.6", ls=":", lw=1, label="held out" if i == 0 else None)
        ax.set_xlabel("mass hypothesis [GeV]")
        ax.set_ylabel(ylabel)
    axes[0].legend(fontsize="x-small", loc="lower right")
    _save(fig, path)


def detuning(table: pd.DataFrame, path: Path) -> None:
    """Z against the hypothesised mass, one curve per true signal mass (marked dashed)."""
    fig, ax = _figure()
    for i, (m, curve) in enumerate(table.groupby("true_mass")):
        curve = curve.sort_values("hypothesis")
        line, = ax.plot(curve["hypothesis"], curve["z"], "o-", ms=3, color=f"C{i % 10}",
                        label=f"signal at {m:g} GeV")
        ax.axvline(m, color=line.get_color(), ls="--", lw=1)
    ax.set_xlabel("hypothesised mass fed to the PNN [GeV]")
    ax.set_ylabel("Asimov Z")
    _finish(fig, ax, "detuning", path)


def importance(table: pd.DataFrame, path: Path) -> None:
    """Permutation importance (drop in AUC) of each feature against mass."""
    fig, ax = _figure()
    for feat, rows in table.groupby("feature", sort=False):
        rows = rows.sort_values("mass")
        ax.errorbar(rows["mass"], rows["auc_drop"], yerr=rows["auc_drop_std"], marker="o",
                    capsize=3, label=feat)
    ax.set_xlabel("mass hypothesis [GeV]")
    ax.set_ylabel("drop in AUC when permuted")
    _finish(fig, ax, "permutation importance", path)
