"""Plots (matplotlib with the mplhep styles), each labelled with the experiment of the
config's ``plots`` section and saved atomically as PNG (and PDF on request)."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import matplotlib

matplotlib.use("Agg")
import hist
import matplotlib.pyplot as plt
import mplhep
import numpy as np
import pandas as pd
from matplotlib.collections import PatchCollection
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from scipy.stats import chi2

from pnn.core.atomic import atomic_path
from pnn.show.style import Style, current

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

# Fixed colours, so that a method looks the same in every experiment style.
COLOURS = {"pnn": "#1f77b4", "optimal": "k", "window": "#ff7f0e"}
SIGNAL_COLOUR, BACKGROUND_COLOUR, MARK_COLOUR = "#1f77b4", "#d62728", "#d62728"
LABELS = {"pnn": "PNN", "optimal": "optimal (likelihood ratio)", "window": "mass window"}
# Efficiencies are ratios of weight sums: with all weights positive they lie in [0, 1] up to
# rounding; beyond that only negative weights can take them above 1.
ROUNDING = 1e-9
NEGATIVE_WEIGHTS_NOTE = ("efficiency > 1: below the cut, events with negative weights\n"
                         "outweigh the positive ones (legitimate with signed weights)")
MPLHEP_STYLES = {"ATLAS": mplhep.style.ATLAS, "CMS": mplhep.style.CMS}


def _style(style: Style | None) -> Style:
    return current() if style is None else style


def _context(style: Style):
    """The mplhep style of the experiment (ROOT's without one), for drawing and saving."""
    return plt.style.context(MPLHEP_STYLES.get(style.experiment, mplhep.style.ROOT))


def experiment_label(ax: plt.Axes, style: Style, *, lumi: float | None = None) -> None:
    """The experiment label above the axes: name and text left, luminosity and energy right,
    sized to the axes so the two never overlap."""
    if lumi is not None:
        style = replace(style, luminosity=lumi)
    exp = "" if style.experiment == "none" else style.experiment
    width = ax.get_position().width * ax.figure.get_figwidth()  # inches
    size = float(np.clip(2.9 * width, 12, 22))
    canvas = ax.figure.canvas
    # mplhep draws the whole figure before placing each label text, to measure it; the
    # renderer measures text exactly without that draw, and saving draws the figure anyway,
    # so the draw is skipped (it doubled the cost of every plot).
    canvas.draw = lambda *args, **kwargs: None
    try:
        mplhep.label.exp_label(exp=exp, llabel=style.label, rlabel=style.right_label(), loc=0,
                               ax=ax, fontsize=size)
    finally:
        del canvas.draw


# A log axis over more decades than this gets no minor ticks: eight per decade are too dense
# to read there, and drawing them cost a third of the time of each such figure.
MINOR_TICK_DECADES = 4


def _thin_log_minor_ticks(fig: plt.Figure) -> None:
    """No minor ticks on the log axes of ``fig`` that span more than MINOR_TICK_DECADES."""
    for ax in fig.axes:
        for axis, limits in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            lo, hi = sorted(limits)
            if axis.get_scale() == "log" and lo > 0 and np.log10(hi / lo) > MINOR_TICK_DECADES:
                axis.set_minor_locator(matplotlib.ticker.NullLocator())


# Fixed margins (inches: left, bottom, right, top) of the figures drawn for every point. They
# hold the axis labels and tick labels of the ROOT, ATLAS and CMS styles with room to spare,
# so those figures are drawn once when saved; a tight bounding box drew each of them twice.
POINT_MARGINS = (1.25, 1.0, 0.3, 0.5)


def _fixed_margins(fig: plt.Figure, margins: tuple[float, float, float, float]) -> None:
    """Place the axes of ``fig`` within ``margins`` (inches) of its edges."""
    left, bottom, right, top = margins
    width, height = fig.get_size_inches()
    fig.subplots_adjust(left=left / width, bottom=bottom / height, right=1 - right / width,
                        top=1 - top / height)


def _save(fig: plt.Figure, path: Path, style: Style | None = None,
          margins: tuple[float, float, float, float] | None = None) -> None:
    """Save ``path`` (PNG) and the same figure in every other format of the style: cropped
    to what is drawn, or with the fixed ``margins`` (inches) when given."""
    path = Path(path)
    _thin_log_minor_ticks(fig)
    if margins is not None:
        _fixed_margins(fig, margins)
    for fmt in _style(style).formats:
        target = path if path.suffix == f".{fmt}" else path.with_suffix(f".{fmt}")
        with atomic_path(target) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches=None if margins else "tight")
    plt.close(fig)


def _finish(fig: plt.Figure, ax: plt.Axes, title: str, path: Path, style: Style,
            margins: tuple[float, float, float, float] | None = None) -> None:
    """Label, legend (titled) and save, common to every single-panel plot."""
    experiment_label(ax, style)
    ax.legend(fontsize="small", title=title or None, title_fontsize="small")
    _save(fig, path, style, margins)


def efficiency(passed: np.ndarray, total: float) -> np.ndarray:
    """``passed / total``, rounding above 1 (or below 0) removed; a real excursion beyond
    [0, 1] (negative weights) is kept so that the plot can say so."""
    eff = np.asarray(passed, dtype=np.float64) / (total if total != 0 else 1.0)
    near = (np.abs(eff - 1) < ROUNDING) | (np.abs(eff) < ROUNDING)
    return np.where(near, np.clip(eff, 0.0, 1.0), eff)


def drawn(x: np.ndarray, y: np.ndarray, *, log_y: bool = False, cells: int = 4000) -> np.ndarray:
    """Indices of the points of a curve worth drawing: of each run of consecutive points that
    fall in one cell of a ``cells`` x ``cells`` grid over the curve's range (in log y when
    ``log_y``), the first and the last. A ROC curve has a point per event (hundreds of
    thousands); what is left is the same picture at far below a pixel, drawn many times faster.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.size <= 2 * cells:
        return np.arange(x.size)
    if log_y:
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.where(y > 0, np.log10(np.where(y > 0, y, 1.0)), np.nan)

    def cell(v: np.ndarray) -> np.ndarray:
        finite = np.isfinite(v)
        if not finite.any():
            return np.zeros(v.size, dtype=np.int64)
        lo, hi = float(v[finite].min()), float(v[finite].max())
        scaled = (v - lo) / (hi - lo) * cells if hi > lo else np.zeros_like(v)
        return np.where(finite, np.floor(scaled), -1).astype(np.int64)

    key = cell(x) * (cells + 2) + cell(y)
    change = np.flatnonzero(key[1:] != key[:-1])
    keep = np.zeros(x.size, dtype=bool)
    keep[[0, -1]] = True
    keep[change] = True  # the last point of a run
    keep[change + 1] = True  # the first point of the next
    for v in (x, y):  # the extremes exactly, so that range checks see what the data reach
        if np.isfinite(v).any():
            keep[[np.nanargmin(v), np.nanargmax(v)]] = True
    return np.flatnonzero(keep)


@dataclass(frozen=True)
class DrawnRoc:
    """A ROC curve thinned to what a plot shows (see :func:`drawn`)."""

    sig_eff: np.ndarray
    bkg_eff: np.ndarray
    auc: float


def thin_roc(r: Roc) -> DrawnRoc:
    """``r`` with only the points worth drawing, for a figure drawn elsewhere."""
    keep = drawn(r.sig_eff, r.bkg_eff, log_y=True)
    return DrawnRoc(np.asarray(r.sig_eff)[keep], np.asarray(r.bkg_eff)[keep], float(r.auc))


@dataclass(frozen=True)
class DrawnScan:
    """A cut scan thinned to what a plot shows; the last entry (every event) is kept."""

    thresholds: np.ndarray
    s: np.ndarray
    z: np.ndarray
    n_bkg: np.ndarray


def thin_scan(cs: CutScan, min_bkg_events: int) -> DrawnScan:
    """``cs`` with only the points worth drawing, and those where the MC count crosses
    ``min_bkg_events`` (where the drawn line changes colour)."""
    s, z, n_bkg = np.asarray(cs.s), np.asarray(cs.z), np.asarray(cs.n_bkg)
    keep = np.zeros(s.size, dtype=bool)
    if s.size:
        keep[drawn(s, z)] = True
        ok = n_bkg >= min_bkg_events
        edge = np.flatnonzero(ok[1:] != ok[:-1])
        keep[edge] = keep[edge + 1] = True
    return DrawnScan(np.asarray(cs.thresholds)[keep], s[keep], z[keep], n_bkg[keep])


def _bounded(ax: plt.Axes, effs: list[np.ndarray], axis: str) -> bool:
    """Keep an efficiency axis within [0, 1], or note on the plot why it cannot be."""
    top = max((float(np.nanmax(e)) for e in effs if len(e)), default=1.0)
    beyond = top > 1 + ROUNDING
    if beyond:
        ax.text(0.03, 0.03, NEGATIVE_WEIGHTS_NOTE, transform=ax.transAxes, fontsize="xx-small",
                color=MARK_COLOUR, va="bottom")
    if axis == "x":
        ax.set_xlim(0, max(1.0, top))
    return beyond


def weighted_histogram(values: np.ndarray, weights: np.ndarray,
                       edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum of weights and of squared weights per bin (hist, Weight storage);
    values outside the edges count in the first or last bin, so no event is lost."""
    edges = np.asarray(edges, dtype=np.float64)
    h = hist.Hist(hist.axis.Variable(edges), storage=hist.storage.Weight())
    inside = np.clip(np.asarray(values, dtype=np.float64), edges[0],
                     np.nextafter(edges[-1], edges[0]))
    h.fill(inside, weight=np.asarray(weights, dtype=np.float64))
    view = h.view()
    return np.asarray(view.value), np.asarray(view.variance)


SCORE_BINS = np.linspace(0.0, 1.0, 41)


def score_histogram(values: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum of weights and of squared weights of scores in the bins of the score plots."""
    return weighted_histogram(values, weights, SCORE_BINS)


def _normalised(sumw: np.ndarray, sumw2: np.ndarray,
                edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A weighted histogram as a density (unit area) and its statistical uncertainty."""
    area = sumw.sum() * np.diff(edges)
    area = np.where(area != 0, area, 1.0)
    return sumw / area, np.sqrt(sumw2) / np.abs(area)


def loss_curve(history: pd.DataFrame, path: Path, title: str = "", style: Style | None = None,
               best_epoch: int | None = None) -> None:
    """Training and validation loss against epoch over their full range (log axis), the kept
    (best) epoch marked, and the learning rate on a second axis when the history has it."""
    style = _style(style)
    epochs = history["epoch"].to_numpy()
    val = history["val_loss"].to_numpy(np.float64)
    if best_epoch is None:
        best_epoch = int(epochs[int(np.nanargmin(val))])
    with _context(style):
        fig, ax = plt.subplots(figsize=(11, 7))
        ax.plot(epochs, history["loss"], "o-", ms=3, label="training")
        ax.plot(epochs, val, "s-", ms=3, label="validation")
        at = np.flatnonzero(epochs == best_epoch)
        ax.axvline(best_epoch, color=MARK_COLOUR, ls=":",
                   label=f"best epoch {best_epoch} of {int(epochs.max())} (weights kept)")
        if len(at):
            ax.plot(best_epoch, val[at[0]], "*", color=MARK_COLOUR, ms=16)
        shown = history[["loss", "val_loss"]].to_numpy(np.float64).ravel()
        shown = shown[np.isfinite(shown) & (shown > 0)]
        if len(shown):  # every epoch, the first included, on a log axis
            ax.set_yscale("log")
            ax.set_ylim(shown.min() / 1.1, shown.max() * 1.1)
        ax.set_xlabel("epoch")
        ax.set_ylabel("weighted binary cross-entropy")
        handles, labels = ax.get_legend_handles_labels()
        if "learning_rate" in history:
            lr_ax = ax.twinx()
            line, = lr_ax.plot(epochs, history["learning_rate"], color="#2ca02c", ls="--",
                               label="learning rate (right axis)")
            lr = history["learning_rate"].to_numpy(np.float64)
            if np.all(lr > 0) and lr.max() > 10 * lr.min():
                lr_ax.set_yscale("log")
            else:  # plain numbers: an offset text would sit on the experiment label
                lr_ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:.4g}"))
            lr_ax.set_ylabel("learning rate", color="#2ca02c")
            handles.append(line)
            labels.append(line.get_label())
        experiment_label(ax, style)
        ax.legend(handles, labels, fontsize="x-small", title=title or None, title_fontsize="x-small")
        _save(fig, path, style)


def score_distributions(
    train: Mapping[str, tuple[np.ndarray, np.ndarray]],
    test: Mapping[str, tuple[np.ndarray, np.ndarray]],
    ks: Mapping[str, float], path: Path, title: str, style: Style | None = None,
) -> None:
    """TMVA-style overtraining check: test as filled histograms, train as points with their
    statistical errors, the train/test ratio below; the legend gives the weighted KS p-values.

    ``train``/``test`` map "signal"/"background" to their :func:`score_histogram`.
    """
    style = _style(style)
    bins = SCORE_BINS
    centres = 0.5 * (bins[1:] + bins[:-1])
    with _context(style):
        fig, (ax, rax) = plt.subplots(2, 1, figsize=(9, 9), sharex=True,
                                      gridspec_kw={"height_ratios": (3, 1), "hspace": 0.06})
        for i, (cls, colour) in enumerate((("signal", SIGNAL_COLOUR),
                                           ("background", BACKGROUND_COLOUR))):
            h_test, e_test = _normalised(*test[cls], bins)
            ax.stairs(h_test, bins, fill=True, alpha=0.35, color=colour, label=f"{cls} (test)")
            h_train, e_train = _normalised(*train[cls], bins)
            ax.errorbar(centres, h_train, yerr=e_train, fmt="o", color=colour, ms=4,
                        label=f"{cls} (train), weighted KS p = {ks[cls]:.3g}")
            ratio = _ratio(h_train, h_test)
            err = np.abs(ratio) * np.sqrt(_ratio(e_train, h_train) ** 2
                                          + _ratio(e_test, h_test) ** 2)
            rax.errorbar(centres + (i - 0.5) * 0.006, ratio, yerr=err, fmt="o", color=colour, ms=3)
        rax.axhline(1, color="0.3", lw=1)
        rax.set_ylim(0.5, 1.5)
        rax.set_ylabel("train / test", fontsize="small")
        rax.set_xlabel("PNN score")
        rax.set_xlim(0, 1)
        ax.set_yscale("log")
        ax.set_ylabel("normalised")
        _finish(fig, ax, title, path, style, POINT_MARGINS)


def roc_curves(rocs: Mapping[str, Roc], path: Path, title: str, style: Style | None = None) -> None:
    """Background efficiency (left) and background rejection 1/eff_b (right, both log)
    against signal efficiency, for each method."""
    style = _style(style)
    with _context(style):
        fig, (ax, rax) = plt.subplots(1, 2, figsize=(16, 6.5))
        fig.subplots_adjust(wspace=0.3)
        effs_s, effs_b = [], []
        for name, r in rocs.items():
            sig, bkg = efficiency(r.sig_eff, 1.0), efficiency(r.bkg_eff, 1.0)
            effs_s.append(sig)
            effs_b.append(bkg)
            kw = {"color": COLOURS.get(name), "label": f"{LABELS.get(name, name)}: AUC {r.auc:.4f}"}
            sig, bkg = sig[bkg > 0], bkg[bkg > 0]
            keep = drawn(sig, bkg, log_y=True)
            ax.plot(sig[keep], bkg[keep], **kw)
            rax.plot(sig[keep], 1 / bkg[keep], **kw)
        positive = np.concatenate([b[b > 0] for b in effs_b]) if effs_b else np.ones(1)
        beyond = _bounded(ax, effs_s, "x") | _bounded(ax, effs_b, "y")
        top = max(1.0, float(positive.max())) if beyond else 1.0
        ax.set_yscale("log")
        ax.set_ylim(max(positive.min(), 1e-6) / 2, top * 1.05 if beyond else 1.0)
        rax.set_yscale("log")
        rax.set_ylim(1 / top if beyond else 1.0, 2 / max(positive.min(), 1e-6))
        rax.set_xlim(*ax.get_xlim())
        for a, ylabel in ((ax, r"background efficiency $\varepsilon_b$"),
                          (rax, r"background rejection $1/\varepsilon_b$")):
            a.set_xlabel(r"signal efficiency $\varepsilon_s$")
            a.set_ylabel(ylabel)
            experiment_label(a, style)
        ax.legend(fontsize="small", title=title or None, title_fontsize="small")
        _save(fig, path, style, POINT_MARGINS)


def significance_vs_cut(cs: CutScan, chosen: tuple[float, float], min_bkg_events: int,
                        path: Path, title: str, style: Style | None = None) -> None:
    """Asimov Z against the signal efficiency of the score cut, chosen cuts marked.

    Efficiency spreads out the region near a score of 1 where the cuts of a good
    classifier sit. Cuts that keep fewer than ``min_bkg_events`` background MC events
    are drawn grey: their background yield is not measured.
    """
    style = _style(style)
    total = cs.s[-1] if len(cs.s) and cs.s[-1] > 0 else 1.0
    eff = efficiency(cs.s, total)
    ok = cs.n_bkg >= min_bkg_events
    with _context(style):
        fig, ax = plt.subplots(figsize=(9, 6.5))
        for part, kw in ((~ok, {"color": "0.7", "label": f"< {min_bkg_events} background MC events"}),
                         (ok, {"color": COLOURS["pnn"], "label": "Asimov Z (all test events)"})):
            x, z = eff[part], cs.z[part]
            keep = drawn(x, z)
            ax.plot(x[keep], z[keep], **kw)
        for cut, ls, which in zip(chosen, ("--", ":"), ("first", "second"), strict=True):
            if np.isfinite(cut):
                i = max(int(np.searchsorted(-cs.thresholds, -cut, side="right")) - 1, 0)
                ax.axvline(eff[i], color=MARK_COLOUR, ls=ls,
                           label=f"cut {cut:.5f} chosen on {which} half")
        _bounded(ax, [eff], "x")
        ax.set_xlabel("signal efficiency of the cut on the PNN score")
        ax.set_ylabel("Z")
        _finish(fig, ax, title, path, style, POINT_MARGINS)


@dataclass(frozen=True)
class MassFigures:
    """What the figures of one mass are drawn from: score histograms (train, test), weighted
    KS p-values, thinned ROC curves and cut scan, the chosen cuts, the title and the look."""

    train: Mapping[str, tuple[np.ndarray, np.ndarray]]
    test: Mapping[str, tuple[np.ndarray, np.ndarray]]
    ks: Mapping[str, float]
    rocs: Mapping[str, Roc]
    scan: CutScan
    cuts: tuple[float, float]
    min_bkg_events: int
    title: str
    style: Style


def mass_figures(figures: MassFigures, folder: Path) -> None:
    """Draw the score distributions, ROC curves and significance scan of one mass into
    ``folder`` (scores.png, roc.png, significance.png); a worker process may call it."""
    folder = Path(folder)
    f = figures
    score_distributions(f.train, f.test, f.ks, folder / "scores.png", f.title, f.style)
    roc_curves(f.rocs, folder / "roc.png", f.title, f.style)
    significance_vs_cut(f.scan, f.cuts, f.min_bkg_events, folder / "significance.png", f.title,
                        f.style)


def _points(ax: plt.Axes, x: np.ndarray, y: np.ndarray, err: np.ndarray | None, **kw) -> None:
    """A line with markers, with error bars when ``err`` is given."""
    if err is not None and np.isfinite(err).any():
        ax.errorbar(x, y, yerr=np.nan_to_num(err), fmt="o-", capsize=3, **kw)
    else:
        ax.plot(x, y, "o-", **kw)


def _column(table: pd.DataFrame, name: str) -> np.ndarray | None:
    """A column as floats, or None when absent or all missing."""
    if name not in table or not table[name].notna().any():
        return None
    return table[name].to_numpy(np.float64)


def summary(table: pd.DataFrame, path: Path, style: Style | None = None) -> None:
    """1 - AUC (log) and Z against mass for the PNN, the optimum and the mass window, with
    ratio panels PNN / optimal below; statistical uncertainties from the ``<name>_err``
    columns when the table has them."""
    style = _style(style)
    mass = table["mass"].to_numpy(np.float64)
    has_optimal = _column(table, "z_optimal") is not None
    with _context(style):
        fig, axes = plt.subplots(2, 2, figsize=(16, 9), sharex="col", squeeze=False,
                                 gridspec_kw={"height_ratios": (3, 1), "hspace": 0.06,
                                              "wspace": 0.28})
        for col, key in enumerate(("auc", "z")):
            ax, rax = axes[0, col], axes[1, col]
            for method, suffix in (("pnn", ""), ("optimal", "_optimal"), ("window", "_window")):
                y = _column(table, key + suffix)
                if y is None:
                    continue
                err = _column(table, f"{key}{suffix}_err")
                if key == "auc":
                    y = 1 - y
                _points(ax, mass, y, err, color=COLOURS[method], label=LABELS[method])
            trained = table["trained"].to_numpy(bool)
            y = (1 - table["auc"].to_numpy(np.float64)) if key == "auc" else table["z"].to_numpy(np.float64)
            if (~trained).any():
                ax.plot(mass[~trained], y[~trained], "o", mfc="none", mec=MARK_COLOUR, ms=14,
                        label="not trained on")
            if key == "auc":
                ax.set_yscale("log")
                ax.set_ylabel("1 - ROC AUC")
            else:
                ax.set_ylabel("Asimov Z")
            experiment_label(ax, style)
            handles, labels = ax.get_legend_handles_labels()  # error bars would come last
            order = [*LABELS.values(), "not trained on"]
            pairs = sorted(zip(handles, labels, strict=True), key=lambda hl: order.index(hl[1]))
            ax.legend(*zip(*pairs, strict=True), fontsize="x-small")
            _ratio_panel(rax, table, key, mass, has_optimal)
            rax.set_xlabel("mass hypothesis [GeV]")
        _save(fig, path, style)


def _ratio_panel(rax: plt.Axes, table: pd.DataFrame, key: str, mass: np.ndarray,
                 has_optimal: bool) -> None:
    """PNN / optimal below a summary panel: Z ratio with its band (``z_ratio_err`` when the
    table has it, else the two errors combined), (1 - AUC) ratio likewise."""
    rax.axhline(1, color="0.3", lw=1)
    if not has_optimal:
        rax.text(0.5, 0.5, "no optimal classifier", transform=rax.transAxes, ha="center",
                 va="center", fontsize="x-small", color="0.4")
        return
    if key == "z":
        num, den = table["z"].to_numpy(np.float64), table["z_optimal"].to_numpy(np.float64)
        ratio = _column(table, "z_ratio")
        ratio = _ratio(num, den) if ratio is None else ratio
        err = _column(table, "z_ratio_err")
        if err is None:
            err = _combined(ratio, num, den, _column(table, "z_err"), _column(table, "z_optimal_err"))
        ylabel = "Z PNN / optimal"
    else:
        num = 1 - table["auc"].to_numpy(np.float64)
        den = 1 - table["auc_optimal"].to_numpy(np.float64)
        ratio = _ratio(num, den)
        err = _combined(ratio, num, den, _column(table, "auc_err"), _column(table, "auc_optimal_err"))
        ylabel = "(1-AUC) PNN / opt."
    order = np.argsort(mass)
    if err is not None:
        rax.fill_between(mass[order], (ratio - err)[order], (ratio + err)[order],
                         color=COLOURS["pnn"], alpha=0.3, lw=0, label=r"$\pm 1\sigma$ (stat.)")
    rax.plot(mass[order], ratio[order], "o-", color=COLOURS["pnn"], ms=5)
    finite = ratio[np.isfinite(ratio)]
    if len(finite):  # the points and 1 in view; a wide band may leave the panel
        lo, hi = min(finite.min(), 1.0), max(finite.max(), 1.0)
        pad = 0.4 * (hi - lo) + 0.05
        rax.set_ylim(lo - pad, hi + pad)
    rax.set_ylabel(ylabel, fontsize="x-small")
    if err is not None:
        rax.legend(fontsize="xx-small", loc="best")


def _combined(ratio: np.ndarray, num: np.ndarray, den: np.ndarray, num_err: np.ndarray | None,
              den_err: np.ndarray | None) -> np.ndarray | None:
    """Error of ``num / den`` from their errors added in quadrature (None without any)."""
    if num_err is None and den_err is None:
        return None
    rel = np.zeros_like(ratio)
    if num_err is not None:
        rel = rel + _ratio(num_err, num) ** 2
    if den_err is not None:
        rel = rel + _ratio(den_err, den) ** 2
    return np.abs(ratio) * np.sqrt(rel)


def interpolation(table: pd.DataFrame, labels: Mapping[str, str], held_out: list[float],
                  path: Path, style: Style | None = None) -> None:
    """AUC and Z against mass, one line per method; held-out masses marked."""
    style = _style(style)
    styles = {"pnn": dict(color="#1f77b4", lw=2.5), "pnn_holdout": dict(color="#ff7f0e", ls="none",
                                                                       marker="*", ms=16),
              "dedicated": dict(color="#2ca02c"),
              "dedicated_below": dict(color="#7f7f7f", ls=":", marker="v"),
              "dedicated_above": dict(color="#7f7f7f", ls=":", marker="^"),
              "nonparametric": dict(color="#9467bd"), "bdt": dict(color="#8c564b"),
              "bdt_holdout": dict(color="#e377c2", ls="none", marker="X", ms=10),
              "window": dict(color="#d62728", ls="-."), "optimal": dict(color="k", ls="--", marker="")}
    with _context(style):
        fig, axes = plt.subplots(1, 2, figsize=(15, 6))
        fig.subplots_adjust(wspace=0.3)
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
            experiment_label(ax, style)
        axes[0].legend(fontsize="x-small", loc="lower right")
        _save(fig, path, style)


def detuning(table: pd.DataFrame, path: Path, widths: Mapping[float, tuple[float, float]] | None = None,
             fraction: float | None = None, style: Style | None = None) -> None:
    """Z against the hypothesised mass, one curve per true signal mass (marked dashed).

    ``widths`` maps each true mass to the range of hypotheses whose Z stays at or above
    ``fraction`` of the peak; it is drawn as a bar at that height and explained in the legend.
    """
    style = _style(style)
    with _context(style):
        fig, ax = plt.subplots(figsize=(10, 7))
        for i, (m, curve) in enumerate(table.groupby("true_mass")):
            curve = curve.sort_values("hypothesis")
            line, = ax.plot(curve["hypothesis"], curve["z"], "o-", ms=3, color=f"C{i % 10}",
                            label=f"signal at {m:g} GeV")
            ax.axvline(m, color=line.get_color(), ls="--", lw=1)
            if widths and fraction is not None and m in widths:
                lo, hi = widths[m]
                ax.plot([lo, hi], [fraction * curve["z"].max()] * 2, "|-", color=line.get_color(),
                        lw=4, ms=12, alpha=0.6)
        if widths and fraction is not None:
            ax.plot([], [], "|-", color="0.4", lw=4, ms=12, alpha=0.6,
                    label=f"width: hypotheses with Z $\\geq$ {fraction:.0%} of the peak".replace("%", r"\%"))
            ax.plot([], [], "--", color="0.4", lw=1, label="true mass")
        ax.set_xlabel("hypothesised mass fed to the PNN [GeV]")
        ax.set_ylabel("Asimov Z")
        _finish(fig, ax, "detuning", path, style)


def importance(table: pd.DataFrame, path: Path, style: Style | None = None) -> None:
    """Permutation importance (drop in AUC) of each feature against mass."""
    style = _style(style)
    with _context(style):
        fig, ax = plt.subplots(figsize=(9, 6.5))
        for feat, rows in table.groupby("feature", sort=False):
            rows = rows.sort_values("mass")
            ax.errorbar(rows["mass"], rows["auc_drop"], yerr=rows["auc_drop_std"], marker="o",
                        capsize=3, label=feat)
        ax.set_xlabel("mass hypothesis [GeV]")
        ax.set_ylabel("drop in AUC when permuted")
        _finish(fig, ax, "permutation importance", path, style)


# Statistical interpretation: limits against mass, prefit templates, CLs scans.
# These are drawn wholly inside the ROOT style at its own figure size, so that its large
# fonts keep their proportions.

GREEN = "#00cc00"
YELLOW = "#ffcc00"
BAND_KEYS = ("minus2", "minus1", "median", "plus1", "plus2")
LIMIT_LABELS = {"mu": r"95% CL upper limit on $\mu$",
                "fb": r"95% CL upper limit on $\sigma \times \mathcal{B}$ [fb]"}
BACKGROUND_COLOURS = ("#92dadd", "#e8a33d", "#a96b59", "#94a4a2", "#717581", "#b9ac70",
                      "#3f90da", "#bd1f01", "#832db6")
UNEVEN_BINS = 3.0  # widest / narrowest bin above which templates are drawn against bin index


def _arrays(values: Mapping[str, np.ndarray], keys: tuple[str, ...], n: int,
            what: str) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of ``values`` as floats, each checked to have ``n`` entries."""
    missing = [k for k in keys if k not in values]
    if missing:
        raise ValueError(f"{what} lacks {', '.join(missing)}")
    out = {k: np.asarray(values[k], dtype=float) for k in keys}
    for k, a in out.items():
        if a.shape != (n,):
            raise ValueError(f"{what}[{k!r}] has shape {a.shape}, expected ({n},)")
    return out


def _trained_mask(masses: np.ndarray, trained: np.ndarray) -> np.ndarray:
    """``trained`` as a boolean mask over ``masses``: given as a mask or as the trained masses."""
    trained = np.asarray(trained)
    if trained.dtype == bool:
        if trained.shape != masses.shape:
            raise ValueError(f"trained mask has shape {trained.shape}, masses {masses.shape}")
        return trained
    return np.isclose(masses[:, None], trained.astype(float)[None, :]).any(axis=1)


def _plain_log_labels(ax: plt.Axes) -> None:
    """Label a log y axis 0.1, 1, 10 rather than 10^-1, and 0.2, 0.5, 2, 5 too when it spans
    few decades, so that limits can be read off; call after the limits are set."""
    lo, hi = ax.get_ylim()

    def minor(v: float, _: int) -> str:
        lead = round(v / 10 ** np.floor(np.log10(v) + 1e-9))
        return f"{v:g}" if lead in (2, 5) else ""

    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(minor) if np.log10(hi / lo) < 3
                                 else matplotlib.ticker.NullFormatter())


def _brazil_figure(
    masses: np.ndarray, expected: Mapping[str, np.ndarray], band: Mapping[str, np.ndarray],
    trained: np.ndarray, *, observed: np.ndarray | None = None, unit: str = "mu",
    title: str = "", lumi: float | None = None, style: Style | None = None,
) -> plt.Figure:
    """The figure drawn by :func:`brazil`, returned unsaved so that it can be inspected."""
    style = _style(style)
    if unit not in LIMIT_LABELS:
        raise ValueError(f"unit must be one of {sorted(LIMIT_LABELS)}, not {unit!r}")
    masses = np.asarray(masses, dtype=float)
    order = np.argsort(masses)
    m = masses[order]
    n = len(m)
    b = {k: a[order] for k, a in _arrays(band, BAND_KEYS, n, "band").items()}
    others = {k: a[order] for k, a in _arrays(expected, tuple(expected), n, "expected").items()}
    on_grid = _trained_mask(masses, trained)[order]
    obs = None
    if observed is not None:
        obs = _arrays({"observed": observed}, ("observed",), n, "limits")["observed"][order]

    with _context(style):
        fig, ax = plt.subplots(figsize=(12, 8))
        ax.fill_between(m, b["minus2"], b["plus2"], color=YELLOW, lw=0,
                        label=r"PNN expected $\pm 2\sigma$")
        ax.fill_between(m, b["minus1"], b["plus1"], color=GREEN, lw=0,
                        label=r"PNN expected $\pm 1\sigma$")
        ax.plot(m, b["median"], ls="--", color=COLOURS["pnn"], lw=2.5, label="PNN expected")
        ax.plot(m[on_grid], b["median"][on_grid], "o", ls="none", color=COLOURS["pnn"], ms=9,
                label="trained mass")
        ax.plot(m[~on_grid], b["median"][~on_grid], "o", ls="none", mfc="white",
                mec=COLOURS["pnn"], mew=2, ms=9, label="interpolated mass")
        styles = {"optimal": ":", "window": "-."}
        for name, values in others.items():
            ax.plot(m, values, ls=styles.get(name, "-"), lw=2.5, color=COLOURS.get(name),
                    label=f"{LABELS.get(name, name)} expected")
        if obs is not None:
            ax.plot(m, obs, "o-", color="k", lw=2.5, ms=6, label="observed")
        ax.set_yscale("log")
        shown = np.concatenate([b["minus2"], b["plus2"], *others.values(),
                                *([] if obs is None else [obs])])
        shown = shown[np.isfinite(shown) & (shown > 0)]
        if len(shown):  # the data in the lower two thirds, the legend above
            lo, hi = 0.8 * shown.min(), 1.25 * shown.max()
            ax.set_ylim(lo, lo * (hi / lo) ** 1.5)
        _plain_log_labels(ax)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(6))
        ax.set_xlabel(r"$m_X$ [GeV]")
        ax.set_ylabel(LIMIT_LABELS[unit])
        experiment_label(ax, style, lumi=lumi)
        ax.legend(fontsize="x-small", ncol=2, loc="upper right", title=title or None,
                  title_fontsize="x-small")
    return fig


def brazil(
    masses: np.ndarray, expected: Mapping[str, np.ndarray], band: Mapping[str, np.ndarray],
    trained: np.ndarray, path: Path, *, observed: np.ndarray | None = None, unit: str = "mu",
    title: str = "", lumi: float | None = None, style: Style | None = None,
) -> None:
    """Expected (and observed) 95% CL upper limits against mass: the Brazil plot.

    ``band`` holds the PNN's "minus2", "minus1", "median", "plus1", "plus2" limits, drawn as
    the yellow and green bands around a dashed median; ``expected`` maps other methods (e.g.
    "window", "optimal") to their median expected limits, drawn as lines to compare with.
    ``trained`` is a boolean mask over ``masses`` (or the trained masses themselves): those
    get filled markers on the PNN median, interpolated masses open ones. ``unit`` is "mu"
    (signal strength) or "fb" (cross section times branching ratio). The mplhep experiment
    label carries ``lumi`` (in fb^-1) when given, else the style's luminosity.
    """
    _save(_brazil_figure(masses, expected, band, trained, observed=observed, unit=unit,
                         title=title, lumi=lumi, style=style), path, style)


def _stack(backgrounds: Mapping[str, tuple[np.ndarray, np.ndarray]],
           n: int) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """What the template plot stacks: names smallest yield first (so each stays visible on a
    log axis), their counts (one row per name), the total and its MC stat uncertainty."""
    if not backgrounds:
        raise ValueError("no backgrounds to stack")
    counts, variances = {}, {}
    for name, (c, v) in backgrounds.items():
        counts[name], variances[name] = np.asarray(c, dtype=float), np.asarray(v, dtype=float)
        if counts[name].shape != (n,) or variances[name].shape != (n,):
            raise ValueError(f"background {name!r} needs {n} counts and {n} variances")
    names = sorted(counts, key=lambda k: counts[k].sum())
    rows = np.array([counts[k] for k in names])
    unc = np.sqrt(np.sum([variances[k] for k in names], axis=0))
    return names, rows, rows.sum(axis=0), unc


def _by_index(edges: np.ndarray) -> bool:
    """Whether the bins are too uneven to draw against the score itself."""
    widths = np.diff(edges)
    return bool(widths.max() > UNEVEN_BINS * widths.min())


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den``, NaN where the denominator is not positive."""
    out = np.full(np.shape(num), np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _poisson_interval(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Central 68% (Garwood) interval of Poisson counts, for the data error bars."""
    counts = np.asarray(counts, dtype=float)
    alpha = 1 - 0.682689492
    lo = np.where(counts > 0, chi2.ppf(alpha / 2, 2 * counts) / 2, 0.0)
    hi = chi2.ppf(1 - alpha / 2, 2 * (counts + 1)) / 2
    return lo, hi


def _templates_figure(
    edges: np.ndarray, backgrounds: Mapping[str, tuple[np.ndarray, np.ndarray]],
    signal: tuple[np.ndarray, np.ndarray], *, signal_label: str, data: np.ndarray | None = None,
    title: str = "", xlabel: str = "PNN score bin", by_index: bool | None = None,
    style: Style | None = None,
) -> plt.Figure:
    """The figure drawn by :func:`stacked_templates`, returned unsaved."""
    style = _style(style)
    edges = np.asarray(edges, dtype=float)
    n = len(edges) - 1
    names, rows, total, unc = _stack(backgrounds, n)
    sig = _arrays({"signal": signal[0]}, ("signal",), n, "templates")["signal"]
    obs = None if data is None else _arrays({"data": data}, ("data",), n, "templates")["data"]
    index = _by_index(edges) if by_index is None else by_index
    x = np.arange(n + 1, dtype=float) if index else edges
    down = np.clip(total - unc, 0, None)

    with _context(style):
        fig, (ax, rax) = plt.subplots(2, 1, figsize=(10, 10), sharex=True,
                                      gridspec_kw={"height_ratios": (3, 1), "hspace": 0.07})
        colours = [BACKGROUND_COLOURS[i % len(BACKGROUND_COLOURS)] for i in range(len(names))]
        mplhep.histplot(list(rows), bins=x, stack=True, histtype="fill", label=names,
                        color=colours, edgecolor="0.3", lw=0.5, ax=ax)
        ax.stairs(total + unc, x, baseline=down, fill=True, facecolor="none", edgecolor="0.3",
                  hatch="////", lw=0, label="bkg. MC stat. unc.")
        ax.stairs(sig, x, color="C3", lw=2.5, label=signal_label)
        rax.stairs(_ratio(total + unc, total), x, baseline=_ratio(down, total), fill=True,
                   facecolor="none", edgecolor="0.3", hatch="////", lw=0)
        rax.axhline(1, color="0.3", lw=1)
        centres = 0.5 * (x[1:] + x[:-1])
        if obs is not None:
            lo, hi = _poisson_interval(obs)
            ax.errorbar(centres, obs, yerr=(obs - lo, hi - obs), fmt="o", color="k", ms=6,
                        label="data")
            rax.errorbar(centres, _ratio(obs, total),
                         yerr=(_ratio(obs - lo, total), _ratio(hi - obs, total)),
                         fmt="o", color="k", ms=6)
            rax.set_ylabel("data / bkg.", fontsize="small")
        else:
            rax.stairs(_ratio(total + sig, total), x, color="C3", lw=2.5)
            rax.set_ylabel("(bkg. + sig.) / bkg.", fontsize="x-small")
        shown = np.concatenate([total[total > 0], sig[sig > 0]])
        ax.set_yscale("log")
        if len(shown):  # room above the tallest bin for the legend
            ax.set_ylim(0.3 * shown.min(), shown.max() * (shown.max() / (0.3 * shown.min())) ** 0.45)
        ax.set_ylabel("events / bin")
        experiment_label(ax, style)
        ax.legend(fontsize="x-small", ncol=2, loc="upper right", title=title or None,
                  title_fontsize="x-small")
        if index:
            step = max(1, int(np.ceil((n + 1) / 11)))
            ticks = np.arange(0, n + 1, step)
            rax.set_xticks(ticks, [f"{e:.4g}" for e in edges[ticks]], rotation=45,
                           fontsize="x-small")
            rax.set_xlabel(f"{xlabel} (drawn equal width)")
        else:
            rax.set_xlabel(xlabel)
        rax.set_xlim(x[0], x[-1])
    return fig


def stacked_templates(
    edges: np.ndarray, backgrounds: Mapping[str, tuple[np.ndarray, np.ndarray]],
    signal: tuple[np.ndarray, np.ndarray], path: Path, *, signal_label: str,
    data: np.ndarray | None = None, title: str = "", xlabel: str = "PNN score bin",
    by_index: bool | None = None, style: Style | None = None,
) -> None:
    """Prefit templates: backgrounds stacked, signal as a line, data as points; ratio below.

    Each template is (counts, variances) per bin; backgrounds are stacked smallest yield
    first. The hatched band is the total background MC stat. uncertainty; the ratio panel
    shows it around 1 with data / background (Garwood errors), or (background + signal) /
    background without data. Binnings that flatten the score are very uneven (narrow bins
    near 1 would vanish), so unless ``by_index`` says otherwise, when the widest bin is more
    than ``UNEVEN_BINS`` times the narrowest the bins are drawn at equal width against their
    index with the edges as tick labels; even binnings are drawn against the score.
    """
    # the bin edges, written as tick labels, need a deeper bottom margin
    left, bottom, right, top = POINT_MARGINS
    _save(_templates_figure(edges, backgrounds, signal, signal_label=signal_label, data=data,
                            title=title, xlabel=xlabel, by_index=by_index, style=style), path, style,
          (left, bottom + 0.35, right, top))


def _cls_figure(
    mus: np.ndarray, cls_expected: np.ndarray, *, bands: Mapping[str, np.ndarray] | None = None,
    cls_observed: np.ndarray | None = None, cl: float = 0.95, limit: float | None = None,
    title: str = "", style: Style | None = None,
) -> plt.Figure:
    """The figure drawn by :func:`cls_scan`, returned unsaved."""
    style = _style(style)
    mus = np.asarray(mus, dtype=float)
    n = len(mus)
    given = {"expected": cls_expected} | ({} if cls_observed is None else {"observed": cls_observed})
    cls = _arrays(given, tuple(given), n, "cls")
    b = None if bands is None else _arrays(bands, ("minus2", "minus1", "plus1", "plus2"), n, "bands")

    with _context(style):
        fig, ax = plt.subplots(figsize=(10, 8))
        if b is not None:
            ax.fill_between(mus, b["minus2"], b["plus2"], color=YELLOW, lw=0,
                            label=r"expected $\pm 2\sigma$")
            ax.fill_between(mus, b["minus1"], b["plus1"], color=GREEN, lw=0,
                            label=r"expected $\pm 1\sigma$")
        ax.plot(mus, cls["expected"], "k--", lw=2.5, label=r"expected $\mathrm{CL_s}$")
        if "observed" in cls:
            ax.plot(mus, cls["observed"], "k-", lw=2.5, label=r"observed $\mathrm{CL_s}$")
        ax.axhline(1 - cl, color="C3", lw=2, label=rf"$\mathrm{{CL_s}} = {1 - cl:.2g}$")
        if limit is not None:
            ax.axvline(limit, color="C0", ls=":", lw=2.5, label=rf"upper limit $\mu = {limit:.3g}$")
        ax.set_xlim(mus.min(), mus.max())
        ax.set_ylim(0, 1.05)
        ax.set_xlabel(r"signal strength $\mu$")
        ax.set_ylabel(r"$\mathrm{CL_s}$")
        experiment_label(ax, style)
        ax.legend(fontsize="x-small", loc="upper right", title=title or None,
                  title_fontsize="x-small")
    return fig


def cls_scan(
    mus: np.ndarray, cls_expected: np.ndarray, path: Path, *,
    bands: Mapping[str, np.ndarray] | None = None, cls_observed: np.ndarray | None = None,
    cl: float = 0.95, limit: float | None = None, title: str = "", style: Style | None = None,
) -> None:
    """CLs against the signal strength, to show how the limit is read off the scan.

    The expected CLs is dashed, with its "minus2"/"minus1"/"plus1"/"plus2" ``bands`` in
    yellow and green, the observed solid; the limit is where the scan crosses the line at
    1 - ``cl``, marked at ``limit`` when given.
    """
    _save(_cls_figure(mus, cls_expected, bands=bands, cls_observed=cls_observed, cl=cl,
                      limit=limit, title=title, style=style), path, style, POINT_MARGINS)


# Input diagnostics (pnn inspect): feature distributions, correlations, separation.

def feature_distribution(
    edges: np.ndarray, backgrounds: Mapping[str, tuple[np.ndarray, np.ndarray]],
    signals: Mapping[float, tuple[np.ndarray, np.ndarray]], path: Path, *, xlabel: str,
    data: np.ndarray | None = None, shown: np.ndarray | None = None, style: Style | None = None,
) -> None:
    """One input feature: backgrounds stacked (per process, with their MC stat. band), the
    signal of every mass overlaid as a line, data as points in the bins ``shown`` (the rest
    blinded, said in the legend). Each histogram is (sum of weights, sum of squared weights)."""
    style = _style(style)
    edges = np.asarray(edges, dtype=float)
    n = len(edges) - 1
    names, rows, total, unc = _stack(backgrounds, n)
    with _context(style):
        fig, ax = plt.subplots(figsize=(10, 8))
        colours = [BACKGROUND_COLOURS[i % len(BACKGROUND_COLOURS)] for i in range(len(names))]
        mplhep.histplot(list(rows), bins=edges, stack=True, histtype="fill", label=names,
                        color=colours, edgecolor="0.3", lw=0.5, ax=ax)
        ax.stairs(total + unc, edges, baseline=np.clip(total - unc, 0, None), fill=True,
                  facecolor="none", edgecolor="0.3", hatch="////", lw=0, label="bkg. MC stat. unc.")
        cmap = plt.get_cmap("viridis")
        for i, (mass, (counts, _)) in enumerate(sorted(signals.items())):
            ax.stairs(counts, edges, color=cmap(i / max(len(signals) - 1, 1)), lw=2,
                      label=f"signal {_point_text(mass)}")
        if data is not None:
            shown = np.ones(n, bool) if shown is None else np.asarray(shown, bool)
            centres = 0.5 * (edges[1:] + edges[:-1])
            lo, hi = _poisson_interval(data)
            ax.errorbar(centres[shown], data[shown], yerr=((data - lo)[shown], (hi - data)[shown]),
                        fmt="o", color="k", ms=4, label="data")
            if not shown.all():
                ax.plot([], [], " ", label=f"data blinded in {int((~shown).sum())} signal bins")
        positive = np.concatenate([total[total > 0]] + [c[c > 0] for c, _ in signals.values()])
        ax.set_yscale("log")
        if len(positive):  # room above the tallest bin for the legend
            low = max(positive.min(), positive.max() * 1e-6)
            ax.set_ylim(0.5 * low, positive.max() * (positive.max() / (0.5 * low)) ** 0.6)
        ax.set_xlim(edges[0], edges[-1])
        ax.set_xlabel(xlabel)
        ax.set_ylabel("events / bin")
        experiment_label(ax, style)
        ax.legend(fontsize="xx-small", ncol=3, loc="upper right")
        _save(fig, path, style)


def correlation_matrix(matrix: np.ndarray, names: list[str], path: Path, *, title: str,
                       style: Style | None = None) -> None:
    """A linear correlation matrix in percent, TMVA style: coloured cells with their values."""
    style = _style(style)
    m = 100 * np.asarray(matrix, dtype=float)
    k = len(names)
    with _context(style):
        fig, ax = plt.subplots(figsize=(2.2 + 1.3 * k, 1.6 + 1.2 * k))
        image = ax.imshow(m, cmap="RdBu_r", vmin=-100, vmax=100, origin="lower")
        for i in range(k):
            for j in range(k):
                if np.isfinite(m[i, j]):
                    ax.text(j, i, f"{m[i, j]:.0f}", ha="center", va="center", fontsize="x-small",
                            color="white" if abs(m[i, j]) > 60 else "black")
        ax.set_xticks(range(k), names, rotation=45, ha="right", fontsize="x-small")
        ax.set_yticks(range(k), names, fontsize="x-small")
        ax.minorticks_off()
        fig.colorbar(image, ax=ax, label=title)
        experiment_label(ax, style)
        _save(fig, path, style)


def separation_map(table: pd.DataFrame, path: Path, *, style: Style | None = None) -> None:
    """TMVA separation <S^2> of each feature (rows) at each mass (columns), with its value."""
    style = _style(style)
    wide = table.pivot(index="feature", columns="mass", values="separation")
    wide = wide.reindex(list(dict.fromkeys(table["feature"])))
    values = wide.to_numpy(dtype=float)
    with _context(style):
        fig, ax = plt.subplots(figsize=(3 + 1.1 * values.shape[1], 2 + 0.9 * values.shape[0]))
        image = ax.imshow(values, cmap="viridis", vmin=0, vmax=max(np.nanmax(values), 1e-3),
                          aspect="auto")
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                ax.text(j, i, f"{values[i, j]:.3f}", ha="center", va="center", fontsize="xx-small",
                        color="white" if values[i, j] < 0.6 * np.nanmax(values) else "black")
        ax.set_xticks(range(values.shape[1]), [_point_text(m, unit="") for m in wide.columns],
                      fontsize="x-small", rotation=0 if _numeric(wide.columns) else 90)
        ax.set_yticks(range(values.shape[0]), list(wide.index), fontsize="x-small")
        ax.minorticks_off()
        ax.set_xlabel("signal mass [GeV]" if _numeric(wide.columns) else "signal point")
        fig.colorbar(image, ax=ax, label=r"separation $\langle S^2 \rangle$")
        experiment_label(ax, style)
        _save(fig, path, style)


def _point_text(key: float | str, unit: str = " GeV") -> str:
    """A signal hypothesis in a legend or tick: a mass (``1000 GeV``) or a point's name."""
    return str(key) if isinstance(key, str) else f"{key:g}{unit}"


def _numeric(keys) -> bool:
    return all(not isinstance(k, str) for k in keys)


# Signals with two parameters (e.g. X -> Y H over a grid of (m_X, m_Y)): metrics over the
# parameter plane. The grid is irregular (often triangular, m_Y < m_X - m_H) and may carry
# points off the grid that were not trained on.

NO_VALUE_COLOUR = "0.82"
OFF_GRID_EDGE = {"edgecolor": "k", "linewidth": 2.5, "linestyle": (0, (3, 2))}
OFF_GRID_SIZE = 0.55  # side of an off-grid square, as a fraction of the grid cell it sits in
LEGEND_BOX = (0.34, 0.2)  # width, height (axes fractions) kept free of cells for a legend
VALUE_LABELS = {"auc": "ROC AUC", "auc_optimal": "ROC AUC (optimal)", "z": "Asimov Z",
                "z_optimal": "Asimov Z (optimal)", "z_ratio": "Z PNN / Z optimal",
                "limit_pnn": "PNN expected 95% CL upper limit",
                "limit_optimal": "optimal expected 95% CL upper limit",
                "limit_window": "mass-window expected 95% CL upper limit"}


def parameter_label(name: str, units: str | None = None) -> str:
    """A signal parameter as TeX: ``mX`` and ``m_X`` become ``$m_{X}$`` (a lower-case letter
    followed by a subscript starting with a capital or a digit); any other name is kept as
    it is. ``units`` is appended in brackets."""
    match = re.fullmatch(r"([a-z])_?([A-Z0-9][A-Za-z0-9]*)", name)
    text = f"${match[1]}_{{{match[2]}}}$" if match else name
    return f"{text} [{units}]" if units else text


def _trained_column(table: pd.DataFrame) -> np.ndarray:
    """The ``trained`` column as a mask (every point trained on when the table lacks it)."""
    if "trained" not in table:
        return np.ones(len(table), bool)
    return table["trained"].eq(True).to_numpy(bool)


class _GridAxis:
    """One parameter drawn against the index of its grid values, linearly in between and
    beyond the ends: an uneven grid (m_Y = 60, 100, 200, 400, ...) gets cells of one size,
    an even one is drawn as on a linear axis. A single grid value spans +-10% per cell."""

    def __init__(self, values: np.ndarray) -> None:
        g = np.unique(values[np.isfinite(values)])
        self.ticks = g
        if len(g) == 0:
            g = np.array([0.0])
        if len(g) == 1:
            g = np.array([g[0], g[0] + (0.2 * abs(g[0]) or 1.0)])
        self.grid, self.index = g, np.arange(len(g), dtype=np.float64)

    @staticmethod
    def _map(v: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=np.float64)
        out = np.interp(v, src, dst)
        out = np.where(v < src[0], dst[0] + (v - src[0]) * (dst[1] - dst[0]) / (src[1] - src[0]), out)
        return np.where(v > src[-1], dst[-1] + (v - src[-1]) * (dst[-1] - dst[-2]) / (src[-1] - src[-2]),
                        out)

    def forward(self, v: np.ndarray) -> np.ndarray:
        return self._map(v, self.grid, self.index)

    def inverse(self, i: np.ndarray) -> np.ndarray:
        return self._map(i, self.index, self.grid)

    def cells(self, values: np.ndarray, on_grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Low edge and width of the cell of each point: a grid point (``on_grid``) fills
        the cell around it, up to midway to its neighbours on the drawn axis, so that the
        grid tiles the plane; any other point gets a smaller square centred on it."""
        half = np.where(on_grid, 0.5, OFF_GRID_SIZE / 2)
        centre = self.forward(values)
        low, high = self.inverse(centre - half), self.inverse(centre + half)
        return low, high - low

    def use(self, ax: plt.Axes, which: str) -> None:
        """Draw ``which`` ("x" or "y") of ``ax`` on this scale, ticked at the grid values."""
        getattr(ax, f"set_{which}scale")("function", functions=(self.forward, self.inverse))
        axis = getattr(ax, f"{which}axis")
        step = max(1, int(np.ceil(len(self.ticks) / 10)))
        axis.set_ticks(self.ticks[::step], [f"{v:g}" for v in self.ticks[::step]])
        axis.set_minor_locator(matplotlib.ticker.NullLocator())


def _value_text(value: float, err: float | None) -> str:
    """A value for a cell: to the second significant digit of its error (on a second line,
    after a plain "±": dozens of cells typeset as maths took seconds) when the error is
    finite and positive, else three significant digits, trailing zeros
    kept (whole numbers from 1000, powers of ten below 0.001)."""
    if err is not None and np.isfinite(err) and err > 0:
        decimals = max(0, 1 - int(np.floor(np.log10(err))))
        return f"{value:.{decimals}f}\n\u00b1{err:.{decimals}f}"  # plain text, not mathtext
    size = abs(value)
    if size == 0:
        return "0"
    if size < 1e-3:
        return f"{value:.2e}"
    return f"{value:.{max(0, 2 - int(np.floor(np.log10(size))))}f}"


def _norm(values: np.ndarray, log: bool, center: float | None) -> matplotlib.colors.Normalize:
    """Colour scale over the finite values (positive ones on a log scale), symmetric about
    ``center`` when given (in ratio on a log scale)."""
    finite = values[np.isfinite(values) & ((values > 0) if log else True)]
    if log:
        lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.1, 10.0)
        if center is not None:
            reach = max(hi / center, center / lo)
            lo, hi = center / reach, center * reach
        if lo == hi:
            lo, hi = lo / 1.5, hi * 1.5
        return matplotlib.colors.LogNorm(lo, hi)
    lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    if center is not None:
        reach = max(abs(hi - center), abs(lo - center)) or 1e-3 * (abs(center) or 1.0)
        lo, hi = center - reach, center + reach
    return matplotlib.colors.Normalize(lo, hi)


def _free_corner(boxes: np.ndarray) -> str | None:
    """The first corner of the axes where a legend box of ``LEGEND_BOX`` meets no cell
    (``boxes`` rows are x0, y0, x1, y1 as drawn, the axes spanning them all), None if every
    corner is taken."""
    fx = (boxes[:, [0, 2]] - boxes[:, 0].min()) / np.ptp(boxes[:, [0, 2]])
    fy = (boxes[:, [1, 3]] - boxes[:, 1].min()) / np.ptp(boxes[:, [1, 3]])
    w, h = LEGEND_BOX
    for loc, (cx0, cx1), (cy0, cy1) in (("upper left", (0, w), (1 - h, 1)),
                                        ("upper right", (1 - w, 1), (1 - h, 1)),
                                        ("lower right", (1 - w, 1), (0, h)),
                                        ("lower left", (0, w), (0, h))):
        hits = (fx[:, 0] < cx1) & (fx[:, 1] > cx0) & (fy[:, 0] < cy1) & (fy[:, 1] > cy0)
        if not hits.any():
            return loc
    return None


def _heatmap_figure(
    table: pd.DataFrame, x: str, y: str, value: str, *, label: str, style: Style | None = None,
    err: str | None = None, cmap: str | None = None, log: bool = False,
    center: float | None = None, units: str = "GeV",
) -> plt.Figure:
    """The figure drawn by :func:`parameter_heatmap`, returned unsaved.

    The grid cells form a ``PatchCollection`` with gid "trained", the off-grid squares one
    with gid "not trained"; the value annotations are texts with gid "value".
    """
    style = _style(style)
    xs, ys = table[x].to_numpy(np.float64), table[y].to_numpy(np.float64)
    values = table[value].to_numpy(np.float64)
    errs = table[err].to_numpy(np.float64) if err is not None and err in table else None
    on_grid = _trained_column(table)
    grid_x = _GridAxis(xs[on_grid] if on_grid.any() else xs)
    grid_y = _GridAxis(ys[on_grid] if on_grid.any() else ys)
    x0, width = grid_x.cells(xs, on_grid)
    y0, height = grid_y.cells(ys, on_grid)
    norm = _norm(values, log, center)
    colours = plt.get_cmap(cmap or ("RdBu_r" if center is not None else "viridis"))
    colours = colours.with_extremes(bad=NO_VALUE_COLOUR)

    with _context(style):
        nx = len(grid_x.ticks)
        fig, ax = plt.subplots(figsize=(float(np.clip(4.5 + 1.5 * nx, 11, 16)), 9))
        grid_x.use(ax, "x")
        grid_y.use(ax, "y")
        for mask, gid, edge in ((on_grid, "trained", {"edgecolor": "white", "linewidth": 1.5}),
                                (~on_grid, "not trained", OFF_GRID_EDGE)):
            if not mask.any():
                continue
            cells = PatchCollection([Rectangle((a, b), w, h) for a, b, w, h in
                                     zip(x0[mask], y0[mask], width[mask], height[mask],
                                         strict=True)],
                                    cmap=colours, norm=norm, gid=gid, zorder=2 if gid == "trained" else 3,
                                    **edge)
            cells.set_array(np.ma.masked_invalid(values[mask]))
            ax.add_collection(cells)
        boxes = np.column_stack([x0, y0, x0 + width, y0 + height])
        xlim = (float(boxes[:, 0].min()), float(boxes[:, 2].max()))
        ylim = (float(boxes[:, 1].min()), float(boxes[:, 3].max()))
        handles = []
        if (~on_grid).any():
            handles.append(Patch(facecolor="none", label="not trained on", **OFF_GRID_EDGE))
        if (~np.isfinite(values)).any():
            handles.append(Patch(facecolor=NO_VALUE_COLOUR, edgecolor="white", label="no value"))
        drawn = np.column_stack([grid_x.forward(boxes[:, 0]), grid_y.forward(boxes[:, 1]),
                                 grid_x.forward(boxes[:, 2]), grid_y.forward(boxes[:, 3])])
        loc = _free_corner(drawn) if handles else None
        if handles and loc is None:  # every corner taken: room above the cells
            top = drawn[:, 3].max()
            top += (top - drawn[:, 1].min()) * LEGEND_BOX[1] / (1 - LEGEND_BOX[1])
            ylim = (ylim[0], float(grid_y.inverse(top)))
            loc = "upper left"
        ax.set_xlim(*xlim)
        ax.set_ylim(*ylim)
        ax.set_xlabel(parameter_label(x, units))
        ax.set_ylabel(parameter_label(y, units))
        fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=colours), ax=ax, label=label,
                     pad=0.02)
        # Annotations sized to the cells (the colour bar has taken its share of the width):
        # a grid cell spans one unit of the drawn axes.
        box = ax.get_position()
        cell_w = 72 * box.width * fig.get_figwidth() / np.ptp(drawn[:, [0, 2]])
        cell_h = 72 * box.height * fig.get_figheight() / np.ptp(grid_y.forward(np.array(ylim)))
        lines = 1 if errs is None else 2
        size = float(np.clip(min(0.12 * cell_w, 0.32 * cell_h / lines), 6, 16))
        for i in np.flatnonzero(np.isfinite(values)):
            rgba = colours(norm(values[i]))
            dark = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2] < 0.5
            ax.text(xs[i], ys[i], _value_text(values[i], None if errs is None else errs[i]),
                    ha="center", va="center", fontsize=size, linespacing=1.0,
                    color="white" if dark else "black", zorder=4, gid="value")
        experiment_label(ax, style)
        if handles:
            ax.legend(handles=handles, loc=loc, fontsize="small", handlelength=2.0,
                      handleheight=1.0)
    return fig


def parameter_heatmap(
    table: pd.DataFrame, x: str, y: str, value: str, path: Path, *, label: str,
    style: Style | None = None, err: str | None = None, cmap: str | None = None,
    log: bool = False, center: float | None = None, units: str = "GeV",
) -> None:
    """A metric over the plane of two signal parameters, one row of ``table`` per point.

    The grid points (``trained``) tile the plane as cells between their neighbours, each
    coloured by ``value`` and annotated with it (and its error from the ``err`` column when
    finite); points off the grid are smaller squares with a dashed outline ("not trained
    on"); missing values are grey and left unannotated. The colour bar is labelled
    ``label``; ``log`` makes its scale logarithmic, ``center`` symmetric about that value
    (a diverging map, "RdBu_r" unless ``cmap`` says otherwise, e.g. for ratios about 1).
    """
    style = _style(style)
    fig = _heatmap_figure(table, x, y, value, label=label, style=style, err=err, cmap=cmap,
                          log=log, center=center, units=units)
    with _context(style):  # the style's fonts are looked up when the figure is drawn
        _save(fig, path, style)


def _standard_maps(table: pd.DataFrame) -> tuple[pd.DataFrame, list[tuple[str, str, dict]]]:
    """The table with the derived columns, and the (file stem, column, options) of each
    standard map it can fill; a column that is missing or all NaN gives no map."""
    table = table.copy()

    def has(*names: str) -> bool:
        return all(_column(table, n) is not None for n in names)

    if has("auc", "auc_optimal"):
        table["auc_gap"] = table["auc_optimal"] - table["auc"]
    if has("limit_pnn", "limit_optimal"):
        table["limit_ratio"] = _ratio(table["limit_pnn"].to_numpy(np.float64),
                                      table["limit_optimal"].to_numpy(np.float64))
    maps = [("heatmap_auc", "auc", {"label": "ROC AUC (PNN)", "err": "auc_err"}),
            ("heatmap_auc_gap", "auc_gap", {"label": "ROC AUC optimal $-$ PNN", "err": "auc_err"}),
            ("heatmap_z_ratio", "z_ratio", {"label": VALUE_LABELS["z_ratio"], "err": "z_ratio_err",
                                            "center": 1.0, "cmap": "RdBu"}),
            ("heatmap_limit", "limit_pnn", {"label": VALUE_LABELS["limit_pnn"], "log": True}),
            ("heatmap_limit_ratio", "limit_ratio", {"label": "expected limit PNN / optimal",
                                                    "center": 1.0, "cmap": "RdBu_r"})]
    return table, [(stem, col, kw) for stem, col, kw in maps if has(col)]


def parameter_heatmaps(table: pd.DataFrame, x: str, y: str, out_dir: Path, *,
                       style: Style | None = None, units: str = "GeV") -> list[Path]:
    """The standard maps over the (``x``, ``y``) plane that ``table`` can fill, written to
    ``out_dir``; returns their PNG paths.

    heatmap_auc: the PNN's ROC AUC (error ``auc_err``); heatmap_auc_gap: ``auc_optimal -
    auc`` (error ``auc_err``, the optimum's being correlated with it); heatmap_z_ratio:
    ``z_ratio`` (error ``z_ratio_err``) about 1, red where the PNN falls short; heatmap_limit:
    ``limit_pnn`` on a log scale; heatmap_limit_ratio: ``limit_pnn / limit_optimal`` about 1,
    red where the PNN's limit is weaker. A map whose columns are missing or all NaN is left
    out.
    """
    table, maps = _standard_maps(table)
    written = []
    for stem, column, kw in maps:
        path = Path(out_dir) / f"{stem}.png"
        parameter_heatmap(table, x, y, column, path, style=style, units=units, **kw)
        written.append(path)
    return written


def _slices_figure(table: pd.DataFrame, x: str, y: str, value: str, err: str | None = None,
                   *, style: Style | None = None, units: str = "GeV") -> plt.Figure | None:
    """The figure drawn by :func:`parameter_slices`, returned unsaved (None without values).

    Each slice's trained points are a line labelled with its ``y`` value, its off-grid
    points open markers (gid "not trained") of the same colour.
    """
    style = _style(style)
    if _column(table, value) is None:
        return None
    values = table[value].to_numpy(np.float64)
    errs = _column(table, err) if err is not None else None
    xs, ys = table[x].to_numpy(np.float64), table[y].to_numpy(np.float64)
    on_grid = _trained_column(table)
    finite = np.isfinite(values)
    slices = [v for v in np.unique(ys[finite]) if np.isfinite(v)]
    span = np.ptp(xs[finite]) if finite.any() else 0.0
    cmap = plt.get_cmap("viridis")
    with _context(style):
        fig, ax = plt.subplots(figsize=(11, 8))
        for i, level in enumerate(slices):
            colour = cmap(0.9 * i / max(len(slices) - 1, 1))
            dodge = (i - (len(slices) - 1) / 2) * 0.004 * span  # error bars side by side
            rows = np.flatnonzero(ys == level)  # a missing value breaks the line
            rows = rows[np.argsort(xs[rows])]
            name = f"{parameter_label(y)} = {level:g} {units}".rstrip()
            for mask, gid, kw in ((on_grid[rows], "trained", {"fmt": "o-"}),
                                  (~on_grid[rows], "not trained",
                                   {"fmt": "o", "mfc": "white", "mew": 2, "ms": 9})):
                r = rows[mask]
                if not np.isfinite(values[r]).any():
                    continue
                yerr = None if errs is None else np.nan_to_num(errs[r])
                bars = ax.errorbar(xs[r] + dodge, values[r], yerr=yerr, color=colour, capsize=3,
                                   label=name, **kw)
                bars.lines[0].set_gid(gid)
                name = None  # one legend entry per slice
        handles, labels = ax.get_legend_handles_labels()
        if (~on_grid[finite]).any():
            handles.append(Line2D([], [], ls="none", marker="o", mfc="white", mec="0.4", mew=2,
                                  ms=9))
            labels.append("not trained on")
        if "ratio" in value:
            ax.axhline(1, color="0.3", lw=1)
        low = values - (0 if errs is None else np.nan_to_num(errs))
        high = values + (0 if errs is None else np.nan_to_num(errs))
        lo, hi = np.nanmin(low[finite]), np.nanmax(high[finite])
        if "ratio" in value:
            lo, hi = min(lo, 1.0), max(hi, 1.0)
        pad = 0.05 * (hi - lo) or 0.05 * (abs(hi) or 1.0)
        ax.set_ylim(lo - pad, hi + pad + 0.6 * (hi - lo + 2 * pad))  # room for the legend
        ax.set_xlabel(parameter_label(x, units))
        ax.set_ylabel(VALUE_LABELS.get(value, value))
        experiment_label(ax, style)
        ax.legend(handles, labels, fontsize="x-small", ncol=2, loc="upper right")
    return fig


def parameter_slices(table: pd.DataFrame, x: str, y: str, out_dir: Path, *,
                     value: str = "z_ratio", err: str | None = "z_ratio_err",
                     style: Style | None = None, units: str = "GeV") -> list[Path]:
    """``value`` against ``x``, one line per distinct ``y`` (all in one figure), with error
    bars from ``err`` when the table has it; points not trained on are open markers, and
    neighbouring slices are shifted apart by a fraction of a percent of the ``x`` range so
    that their error bars stay apart. Writes ``slices_<value>.png`` into ``out_dir`` and
    returns its path in a list, empty when the column is missing or all NaN."""
    fig = _slices_figure(table, x, y, value, err, style=style, units=units)
    if fig is None:
        return []
    path = Path(out_dir) / f"slices_{value}.png"
    with _context(_style(style)):  # the style's fonts are looked up when the figure is drawn
        _save(fig, path, style)
    return [path]
