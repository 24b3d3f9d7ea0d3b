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
from scipy.stats import chi2

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
    title: str = "", lumi: float | None = None,
) -> plt.Figure:
    """The figure drawn by :func:`brazil`, returned unsaved so that it can be inspected."""
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

    with plt.style.context(mplhep.style.ROOT):
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
        if lumi is not None:
            mplhep.label.exp_label(exp="pnn", data=obs is not None, lumi=lumi, ax=ax)
        ax.set_title(title, pad=40 if lumi is not None else None)
        ax.legend(fontsize="x-small", ncol=2, loc="upper right")
    return fig


def brazil(
    masses: np.ndarray, expected: Mapping[str, np.ndarray], band: Mapping[str, np.ndarray],
    trained: np.ndarray, path: Path, *, observed: np.ndarray | None = None, unit: str = "mu",
    title: str = "", lumi: float | None = None,
) -> None:
    """Expected (and observed) 95% CL upper limits against mass: the Brazil plot.

    ``band`` holds the PNN's "minus2", "minus1", "median", "plus1", "plus2" limits, drawn as
    the yellow and green bands around a dashed median; ``expected`` maps other methods (e.g.
    "window", "optimal") to their median expected limits, drawn as lines to compare with.
    ``trained`` is a boolean mask over ``masses`` (or the trained masses themselves): those
    get filled markers on the PNN median, interpolated masses open ones. ``unit`` is "mu"
    (signal strength) or "fb" (cross section times branching ratio). The mplhep experiment
    label is drawn only when ``lumi`` (in fb^-1) is given.
    """
    _save(_brazil_figure(masses, expected, band, trained, observed=observed, unit=unit,
                         title=title, lumi=lumi), path)


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
) -> plt.Figure:
    """The figure drawn by :func:`stacked_templates`, returned unsaved."""
    edges = np.asarray(edges, dtype=float)
    n = len(edges) - 1
    names, rows, total, unc = _stack(backgrounds, n)
    sig = _arrays({"signal": signal[0]}, ("signal",), n, "templates")["signal"]
    obs = None if data is None else _arrays({"data": data}, ("data",), n, "templates")["data"]
    index = _by_index(edges) if by_index is None else by_index
    x = np.arange(n + 1, dtype=float) if index else edges
    down = np.clip(total - unc, 0, None)

    with plt.style.context(mplhep.style.ROOT):
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
        ax.set_title(title)
        ax.legend(fontsize="x-small", ncol=2, loc="upper right")
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
    by_index: bool | None = None,
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
    _save(_templates_figure(edges, backgrounds, signal, signal_label=signal_label, data=data,
                            title=title, xlabel=xlabel, by_index=by_index), path)


def _cls_figure(
    mus: np.ndarray, cls_expected: np.ndarray, *, bands: Mapping[str, np.ndarray] | None = None,
    cls_observed: np.ndarray | None = None, cl: float = 0.95, limit: float | None = None,
    title: str = "",
) -> plt.Figure:
    """The figure drawn by :func:`cls_scan`, returned unsaved."""
    mus = np.asarray(mus, dtype=float)
    n = len(mus)
    given = {"expected": cls_expected} | ({} if cls_observed is None else {"observed": cls_observed})
    cls = _arrays(given, tuple(given), n, "cls")
    b = None if bands is None else _arrays(bands, ("minus2", "minus1", "plus1", "plus2"), n, "bands")

    with plt.style.context(mplhep.style.ROOT):
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
        ax.set_title(title)
        ax.legend(fontsize="x-small", loc="upper right")
    return fig


def cls_scan(
    mus: np.ndarray, cls_expected: np.ndarray, path: Path, *,
    bands: Mapping[str, np.ndarray] | None = None, cls_observed: np.ndarray | None = None,
    cl: float = 0.95, limit: float | None = None, title: str = "",
) -> None:
    """CLs against the signal strength, to show how the limit is read off the scan.

    The expected CLs is dashed, with its "minus2"/"minus1"/"plus1"/"plus2" ``bands`` in
    yellow and green, the observed solid; the limit is where the scan crosses the line at
    1 - ``cl``, marked at ``limit`` when given.
    """
    _save(_cls_figure(mus, cls_expected, bands=bands, cls_observed=cls_observed, cl=cl,
                      limit=limit, title=title), path)
