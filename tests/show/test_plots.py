"""The plots of the statistical interpretation: Brazil plot, prefit templates, CLs scan."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from matplotlib.patches import StepPatch

from pnn.show import plots

MASSES = np.array([1000.0, 500.0, 750.0, 1500.0, 1250.0])  # unsorted on purpose
TRAINED = np.array([True, True, False, True, False])
MEDIAN = np.array([0.4, 1.2, 0.7, 0.15, 0.25])
BAND = {"minus2": MEDIAN * 0.5, "minus1": MEDIAN * 0.7, "median": MEDIAN,
        "plus1": MEDIAN * 1.4, "plus2": MEDIAN * 2.0}
EXPECTED = {"window": MEDIAN * 1.8, "optimal": MEDIAN * 0.8}
OBSERVED = MEDIAN * np.array([1.1, 0.9, 1.3, 0.8, 1.0])
ORDER = np.argsort(MASSES)

EDGES = np.array([0.0, 0.5, 0.8, 0.95, 0.99, 1.0])  # flattened-score binning: very uneven
BACKGROUNDS = {
    "ttbar": (np.array([900.0, 300.0, 80.0, 20.0, 4.0]), np.array([9.0, 4.0, 2.0, 1.0, 0.5])),
    "QCD": (np.array([400.0, 90.0, 10.0, 2.0, 0.0]), np.array([100.0, 40.0, 9.0, 4.0, 0.0])),
    "diboson": (np.array([20.0, 10.0, 5.0, 2.0, 1.0]), np.array([0.2, 0.1, 0.1, 0.05, 0.05])),
}
SIGNAL = (np.array([1.0, 3.0, 8.0, 15.0, 20.0]), np.array([0.01, 0.03, 0.08, 0.15, 0.2]))
DATA = np.array([1310.0, 395.0, 100.0, 21.0, 6.0])

MUS = np.linspace(0, 3, 31)
CLS = np.exp(-2 * MUS)
CLS_BANDS = {k: np.exp(-s * MUS) for k, s in
             (("minus2", 3.2), ("minus1", 2.6), ("plus1", 1.5), ("plus2", 1.1))}


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def _only_png(folder: Path, name: str) -> None:
    """The folder holds the PNG and nothing else (no temporary file left behind)."""
    assert sorted(p.name for p in folder.iterdir()) == [name]
    head = (folder / name).read_bytes()[:8]
    assert head == b"\x89PNG\r\n\x1a\n"
    assert (folder / name).stat().st_size > 10_000


def _line(ax: plt.Axes, label: str):
    found = [line for line in ax.get_lines() if line.get_label() == label]
    assert len(found) == 1, f"no single line labelled {label!r}"
    return found[0]


@pytest.mark.parametrize("observed", [None, OBSERVED])
def test_brazil_writes_only_a_png(tmp_path: Path, observed) -> None:
    plots.brazil(MASSES, EXPECTED, BAND, TRAINED, tmp_path / "limits.png", observed=observed,
                 title="limits")
    _only_png(tmp_path, "limits.png")


def test_brazil_with_the_experiment_label(tmp_path: Path) -> None:
    plots.brazil(MASSES, EXPECTED, BAND, TRAINED, tmp_path / "limits.png", observed=OBSERVED,
                 unit="fb", lumi=140.0)
    _only_png(tmp_path, "limits.png")


def test_brazil_median_band_and_log_axis() -> None:
    fig = plots._brazil_figure(MASSES, EXPECTED, BAND, TRAINED)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    median = _line(ax, "PNN expected")
    assert median.get_linestyle() == "--"
    np.testing.assert_allclose(median.get_xdata(), MASSES[ORDER])
    np.testing.assert_allclose(median.get_ydata(), MEDIAN[ORDER])
    window = _line(ax, f"{plots.LABELS['window']} expected")
    np.testing.assert_allclose(window.get_ydata(), EXPECTED["window"][ORDER])
    assert window.get_color() == plots.COLOURS["window"]
    bands = [c for c in ax.collections if "sigma" in c.get_label()]
    assert len(bands) == 2
    colours = {c.get_label(): to_hex(c.get_facecolor()[0]) for c in bands}
    assert colours == {r"PNN expected $\pm 2\sigma$": plots.YELLOW,
                       r"PNN expected $\pm 1\sigma$": plots.GREEN}
    assert "observed" not in [line.get_label() for line in ax.get_lines()]
    assert "mu" in ax.get_ylabel() and ax.get_xlabel() == r"$m_X$ [GeV]"


@pytest.mark.parametrize("trained", [TRAINED, np.array([500.0, 1000.0, 1500.0])])
def test_brazil_marks_trained_and_interpolated_masses_differently(trained) -> None:
    ax = plots._brazil_figure(MASSES, EXPECTED, BAND, trained).axes[0]
    on = _line(ax, "trained mass")
    off = _line(ax, "interpolated mass")
    np.testing.assert_allclose(on.get_xdata(), [500.0, 1000.0, 1500.0])
    np.testing.assert_allclose(off.get_xdata(), [750.0, 1250.0])
    np.testing.assert_allclose(off.get_ydata(), [0.7, 0.25])
    assert on.get_markerfacecolor() != off.get_markerfacecolor()
    labels = ax.get_legend_handles_labels()[1]
    assert "trained mass" in labels and "interpolated mass" in labels


def test_brazil_observed_is_a_solid_black_line_in_fb() -> None:
    ax = plots._brazil_figure(MASSES, {}, BAND, TRAINED, observed=OBSERVED, unit="fb").axes[0]
    observed = _line(ax, "observed")
    assert observed.get_linestyle() == "-" and observed.get_color() == "k"
    np.testing.assert_allclose(observed.get_ydata(), OBSERVED[ORDER])
    assert "[fb]" in ax.get_ylabel()


def test_brazil_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unit"):
        plots.brazil(MASSES, EXPECTED, BAND, TRAINED, tmp_path / "x.png", unit="pb")
    with pytest.raises(ValueError, match="plus2"):
        plots.brazil(MASSES, EXPECTED, {k: v for k, v in BAND.items() if k != "plus2"}, TRAINED,
                     tmp_path / "x.png")
    with pytest.raises(ValueError, match="window"):
        plots.brazil(MASSES, {"window": MEDIAN[:3]}, BAND, TRAINED, tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_stack_sums_the_backgrounds_smallest_first() -> None:
    names, rows, total, unc = plots._stack(BACKGROUNDS, 5)
    assert names == ["diboson", "QCD", "ttbar"]
    np.testing.assert_allclose(rows[0], BACKGROUNDS["diboson"][0])
    np.testing.assert_allclose(total, [1320.0, 400.0, 95.0, 24.0, 5.0])
    np.testing.assert_allclose(unc, np.sqrt([109.2, 44.1, 11.1, 5.05, 0.55]))


@pytest.mark.parametrize("data", [None, DATA])
def test_stacked_templates_writes_only_a_png(tmp_path: Path, data) -> None:
    plots.stacked_templates(EDGES, BACKGROUNDS, SIGNAL, tmp_path / "templates.png",
                            signal_label="X(1000)", data=data, title="m = 1000 GeV")
    _only_png(tmp_path, "templates.png")


@pytest.mark.parametrize("data", [None, DATA])
def test_stacked_total_is_the_sum_of_backgrounds_in_each_bin(data) -> None:
    fig = plots._templates_figure(EDGES, BACKGROUNDS, SIGNAL, signal_label="X", data=data)
    ax, rax = fig.axes
    assert ax.get_yscale() == "log"
    layers = {p.get_label(): p.get_data() for p in ax.patches if isinstance(p, StepPatch)}
    total = sum(b[0] for b in BACKGROUNDS.values())
    top = max((layers[name] for name in BACKGROUNDS), key=lambda d: d.values.sum())
    np.testing.assert_allclose(top.values, total)
    np.testing.assert_allclose(layers["diboson"].values, BACKGROUNDS["diboson"][0])
    unc = np.sqrt(sum(b[1] for b in BACKGROUNDS.values()))
    np.testing.assert_allclose(layers["bkg. MC stat. unc."].values, total + unc)
    np.testing.assert_allclose(layers["bkg. MC stat. unc."].baseline, total - unc)
    np.testing.assert_allclose(layers["X"].values, SIGNAL[0])
    assert rax.get_ylabel() == ("data / bkg." if data is not None else "(bkg. + sig.) / bkg.")


def test_data_points_carry_poisson_errors() -> None:
    ax = plots._templates_figure(EDGES, BACKGROUNDS, SIGNAL, signal_label="X", data=DATA).axes[0]
    points = [c for c in ax.containers if c.get_label() == "data"]
    assert len(points) == 1
    np.testing.assert_allclose(points[0].lines[0].get_ydata(), DATA)
    lo, hi = plots._poisson_interval(np.array([0.0, 1.0, 100.0]))
    np.testing.assert_allclose(lo, [0.0, 0.1727, 90.0], atol=0.2)
    np.testing.assert_allclose(hi, [1.8410, 3.2995, 111.0], atol=0.2)


def test_uneven_bins_are_drawn_against_their_index() -> None:
    rax = plots._templates_figure(EDGES, BACKGROUNDS, SIGNAL, signal_label="X").axes[1]
    assert rax.get_xlim() == (0.0, 5.0)
    assert [t.get_text() for t in rax.get_xticklabels()] == ["0", "0.5", "0.8", "0.95", "0.99", "1"]
    even = np.linspace(0, 1, 6)
    rax = plots._templates_figure(even, BACKGROUNDS, SIGNAL, signal_label="X").axes[1]
    assert rax.get_xlim() == (0.0, 1.0)
    rax = plots._templates_figure(EDGES, BACKGROUNDS, SIGNAL, signal_label="X",
                                  by_index=False).axes[1]
    assert rax.get_xlim() == (0.0, 1.0)


@pytest.mark.parametrize("observed", [None, np.exp(-1.8 * MUS)])
def test_cls_scan_writes_only_a_png(tmp_path: Path, observed) -> None:
    plots.cls_scan(MUS, CLS, tmp_path / "cls.png", bands=CLS_BANDS, cls_observed=observed,
                   limit=1.66)
    _only_png(tmp_path, "cls.png")


def test_cls_scan_draws_the_threshold_and_the_limit() -> None:
    ax = plots._cls_figure(MUS, CLS, bands=CLS_BANDS, cls_observed=CLS * 1.1, cl=0.9,
                           limit=1.2).axes[0]
    expected = _line(ax, r"expected $\mathrm{CL_s}$")
    assert expected.get_linestyle() == "--"
    np.testing.assert_allclose(expected.get_ydata(), CLS)
    assert _line(ax, r"observed $\mathrm{CL_s}$").get_linestyle() == "-"
    threshold = _line(ax, r"$\mathrm{CL_s} = 0.1$")
    np.testing.assert_allclose(threshold.get_ydata(), [0.1, 0.1])
    limit = [line for line in ax.get_lines() if line.get_label().startswith("upper limit")]
    np.testing.assert_allclose(limit[0].get_xdata(), [1.2, 1.2])
    assert len([c for c in ax.collections if "sigma" in c.get_label()]) == 2


def test_cls_scan_without_bands_or_limit(tmp_path: Path) -> None:
    ax = plots._cls_figure(MUS, CLS).axes[0]
    assert not ax.collections
    assert not [line for line in ax.get_lines() if line.get_label().startswith("upper limit")]
    with pytest.raises(ValueError, match="plus1"):
        plots.cls_scan(MUS, CLS, tmp_path / "cls.png", bands={"minus1": CLS, "minus2": CLS})


# Plots fit for a talk: experiment label, formats, ratio panels, bounded efficiencies.

from pnn.show.style import Style  # noqa: E402

ATLAS = Style("ATLAS", "Simulation Internal", 13.6, 140.0, ("png",))


def test_formats_are_honoured(tmp_path: Path) -> None:
    both = Style("CMS", "Preliminary", 13.6, None, ("png", "pdf"))
    plots.brazil(MASSES, EXPECTED, BAND, TRAINED, tmp_path / "limits.png", style=both)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["limits.pdf", "limits.png"]
    assert (tmp_path / "limits.pdf").read_bytes()[:5] == b"%PDF-"
    plots.brazil(MASSES, EXPECTED, BAND, TRAINED, tmp_path / "png.png", style=ATLAS)
    assert not (tmp_path / "png.pdf").exists()


def test_the_label_carries_experiment_luminosity_and_energy() -> None:
    fig = plots._brazil_figure(MASSES, EXPECTED, BAND, TRAINED, style=ATLAS)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "ATLAS" in texts and "Simulation Internal" in texts
    assert any("140 fb" in t and "13.6 TeV" in t for t in texts)
    none = Style("none", "Simulation Internal", None, None, ("png",))
    texts = [t.get_text() for t in plots._brazil_figure(MASSES, EXPECTED, BAND, TRAINED,
                                                       style=none).axes[0].texts]
    assert "ATLAS" not in texts and "Simulation Internal" in texts and not any("TeV" in t for t in texts)


def test_style_of_a_config_takes_the_plots_luminosity_first(tmp_path: Path) -> None:
    from pnn.core.config import load_config
    from tests.conftest import toy_config, write_config

    raw = toy_config(tmp_path, luminosity=140.0, plots={"experiment": "CMS", "com": 13.0})
    style = Style.of(load_config(write_config(tmp_path / "a.yaml", raw)))
    assert (style.experiment, style.com, style.luminosity, style.formats) == ("CMS", 13.0, 140.0, ("png",))
    raw["plots"]["luminosity"] = 3.2
    assert Style.of(load_config(write_config(tmp_path / "b.yaml", raw))).luminosity == 3.2


class _Roc:
    def __init__(self, sig, bkg):
        self.sig_eff, self.bkg_eff, self.auc = np.asarray(sig), np.asarray(bkg), 0.9


def test_efficiencies_stay_within_one_and_rounding_is_removed() -> None:
    eff = plots.efficiency(np.array([0.0, 0.3, 1.0 + 1e-13]), 1.0)
    assert eff.max() == 1.0
    # a small sample with positive weights: the ROC axes end at 1 and carry no note
    rng = np.random.default_rng(0)
    w = rng.uniform(0.5, 1.5, 30)
    cum = np.cumsum(w) / w.sum()
    ax = _roc_axes(_Roc(np.linspace(0, 1, 30), cum))
    assert ax.get_xlim()[1] == 1.0 and ax.get_ylim()[1] <= 1.0
    assert not [t for t in ax.texts if "negative" in t.get_text()]


def test_efficiency_above_one_from_negative_weights_is_said_on_the_plot() -> None:
    w = np.array([1.0, 1.0, 1.0, -0.5])  # the event failing the loosest cut weighs negative
    cum = np.cumsum(w) / w.sum()
    assert cum.max() > 1
    ax = _roc_axes(_Roc(np.linspace(0, 1, 4), cum))
    assert [t for t in ax.texts if "negative weights" in t.get_text()]


def _roc_axes(roc) -> plt.Axes:
    captured = {}
    original = plots._save

    def keep(fig, path, style=None, margins=None):
        captured["fig"] = fig

    plots._save = keep
    try:
        plots.roc_curves({"pnn": roc}, Path("unused.png"), "t", ATLAS)
    finally:
        plots._save = original
    return captured["fig"].axes[0]


def test_summary_has_log_auc_and_a_ratio_panel_with_a_band(tmp_path: Path) -> None:
    table = pd.DataFrame({"mass": [500.0, 750.0, 1000.0], "trained": [True, False, True],
                          "auc": [0.95, 0.97, 0.99], "auc_optimal": [0.96, 0.975, 0.992],
                          "auc_window": [0.9, 0.92, 0.95], "z": [2.0, 2.5, 3.0],
                          "z_optimal": [2.1, 2.6, 3.05], "z_window": [1.5, 1.8, 2.0],
                          "z_ratio": [0.95, 0.96, 0.98], "z_ratio_err": [0.02, 0.02, 0.03]})
    captured = {}
    original = plots._save
    plots._save = lambda fig, path, style=None, margins=None: captured.setdefault("fig", fig)
    try:
        plots.summary(table, tmp_path / "s.png", ATLAS)
    finally:
        plots._save = original
    auc_ax, _z_ax, _auc_ratio, z_ratio = captured["fig"].axes
    assert auc_ax.get_yscale() == "log" and "1 - ROC AUC" in auc_ax.get_ylabel()
    pnn_line = next(line for line in auc_ax.get_lines() if line.get_label() == "PNN")
    np.testing.assert_allclose(pnn_line.get_ydata(), [0.05, 0.03, 0.01])
    band = z_ratio.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(0.93) and band.max() == pytest.approx(1.01)
    np.testing.assert_allclose(z_ratio.get_lines()[-1].get_ydata(), [0.95, 0.96, 0.98])


def test_without_errors_the_summary_still_draws(tmp_path: Path) -> None:
    table = pd.DataFrame({"mass": [500.0, 1000.0], "trained": [True, True], "auc": [0.95, 0.99],
                          "auc_optimal": [np.nan, np.nan], "auc_window": [np.nan, np.nan],
                          "z": [2.0, 3.0], "z_optimal": [np.nan, np.nan], "z_window": [np.nan, np.nan]})
    plots.summary(table, tmp_path / "s.png", ATLAS)
    _only_png(tmp_path, "s.png")


def test_score_distributions_have_a_train_over_test_ratio(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    sample = {c: plots.score_histogram(rng.beta(a, b, 500), rng.uniform(0.5, 1.5, 500))
              for c, a, b in (("signal", 5, 1), ("background", 1, 5))}
    plots.score_distributions(sample, sample, {"signal": 1.0, "background": 1.0},
                              tmp_path / "scores.png", "m", ATLAS)
    _only_png(tmp_path, "scores.png")


def test_loss_curve_shows_every_epoch_best_epoch_and_learning_rate(tmp_path: Path) -> None:
    history = pd.DataFrame({"epoch": [1, 2, 3, 4], "loss": [2.0, 0.5, 0.4, 0.45],
                            "val_loss": [1.5, 0.45, 0.42, 0.43],
                            "learning_rate": [0.1, 0.05, 0.03, 0.02]})
    captured = {}
    original = plots._save
    plots._save = lambda fig, path, style=None, margins=None: captured.setdefault("fig", fig)
    try:
        plots.loss_curve(history, tmp_path / "loss.png", "fold 0", ATLAS)
    finally:
        plots._save = original
    ax, lr_ax = captured["fig"].axes
    lo, hi = ax.get_ylim()
    assert lo <= 0.4 and hi >= 2.0  # the first epoch is not clipped
    labels = ax.get_legend().get_texts()
    assert any("best epoch 3 of 4" in t.get_text() for t in labels)
    assert any("learning rate" in t.get_text() for t in labels)
    np.testing.assert_allclose(lr_ax.get_lines()[0].get_ydata(), history["learning_rate"])


def test_detuning_legend_explains_the_width(tmp_path: Path) -> None:
    table = pd.DataFrame({"true_mass": [500.0] * 3 + [1000.0] * 3,
                          "hypothesis": [500.0, 750.0, 1000.0] * 2,
                          "z": [3.0, 2.0, 0.5, 0.4, 1.8, 2.5]})
    captured = {}
    original = plots._save
    plots._save = lambda fig, path, style=None, margins=None: captured.setdefault("fig", fig)
    try:
        plots.detuning(table, tmp_path / "d.png", {500.0: (500.0, 500.0), 1000.0: (750.0, 1000.0)},
                       0.75, ATLAS)
    finally:
        plots._save = original
    texts = [t.get_text() for t in captured["fig"].axes[0].get_legend().get_texts()]
    assert any("width" in t and "75" in t and "peak" in t for t in texts)


def test_weighted_histogram_keeps_every_event_in_range() -> None:
    sumw, sumw2 = plots.weighted_histogram(np.array([0.0, 0.5, 1.0, 2.0, -1.0]),
                                           np.array([1.0, 2.0, 3.0, 4.0, 5.0]), np.array([0, 0.5, 1.0]))
    np.testing.assert_allclose(sumw, [6.0, 9.0])  # below the range to the first bin, 1 and above to the last
    np.testing.assert_allclose(sumw2, [26.0, 29.0])


def test_thinned_curves_keep_the_shape_ends_and_extremes() -> None:
    rng = np.random.default_rng(3)
    score = rng.normal(size=200_000)
    label = (rng.uniform(size=score.size) < 0.3).astype(int)
    weight = rng.uniform(-0.05, 1.0, size=score.size)  # some negative: an efficiency above 1
    from pnn.stats import metrics

    full = metrics.roc(score + label, label, weight)
    thin = plots.thin_roc(full)
    assert 100 < thin.sig_eff.size < full.sig_eff.size / 10
    assert thin.auc == full.auc
    for got, ref in ((thin.sig_eff, full.sig_eff), (thin.bkg_eff, full.bkg_eff)):
        assert got[0] == ref[0] and got[-1] == ref[-1]
        assert got.max() == ref.max() and got.min() == ref.min()
    # every dropped point lies on the drawn curve to within a grid cell
    interp = np.interp(full.sig_eff, thin.sig_eff, thin.bkg_eff)
    assert np.max(np.abs(interp - full.bkg_eff)) < 2e-3

    cs = metrics.scan(score + label, label, weight)
    drawn = plots.thin_scan(cs, min_bkg_events=50)
    assert drawn.s.size < cs.s.size / 2 and drawn.s[-1] == cs.s[-1]
    ok_full, ok_thin = cs.n_bkg >= 50, drawn.n_bkg >= 50
    first = np.flatnonzero(ok_full)[0]
    assert cs.thresholds[first] in drawn.thresholds and ok_thin.any() and not ok_thin.all()


@pytest.mark.parametrize("experiment", ["none", "ATLAS", "CMS"])
def test_the_point_figures_fixed_margins_hold_every_label(experiment: str) -> None:
    """The figures drawn for every point are saved without cropping: their axis labels, tick
    labels and experiment label must all lie inside the figure, in every style."""
    style = Style(experiment, "Simulation Internal", 13.6, 140.0, ("png",))
    rng = np.random.default_rng(2)
    sample = {c: plots.score_histogram(rng.beta(a, b, 2000), rng.uniform(0.5, 1.5, 2000))
              for c, a, b in (("signal", 5, 1), ("background", 1, 5))}
    sig = np.linspace(0, 1, 2000)
    scan = type("Scan", (), {"thresholds": 1 - sig, "s": sig * 100, "z": 150 * sig * (1 - sig),
                             "n_bkg": np.arange(2000.0)})()
    edges = np.array([0, 0.5, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999, 1.0])
    backgrounds = {"ttbar": (np.geomspace(1e5, 1, 10),) * 2, "multijet": (np.geomspace(3e5, 2, 10),) * 2}
    cls = np.exp(-12 * MUS)
    saved = []
    original = plots._save

    def check(fig, path, style=None, margins=None):
        assert margins is not None, path  # these figures are not cropped when saved
        plots._fixed_margins(fig, margins)
        box = fig.get_tightbbox(fig.canvas.get_renderer())
        width, height = fig.get_size_inches()
        assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= width and box.y1 <= height, (path, box)
        saved.append(Path(path).name)
        plt.close(fig)

    plots._save = check
    try:
        title = "mX = 1250, mY = 350 GeV"
        plots.score_distributions(sample, sample, {"signal": 0.5, "background": 1.0},
                                  Path("scores.png"), title, style)
        plots.roc_curves({"pnn": _Roc(sig, sig**8 + 1e-6), "optimal": _Roc(sig, sig**9 + 1e-6)},
                         Path("roc.png"), title, style)
        plots.significance_vs_cut(scan, (0.5, 0.52), 20, Path("significance.png"), title, style)
        plots.stacked_templates(edges, backgrounds, (np.geomspace(1, 300, 10),) * 2,
                                Path("templates.png"), signal_label=f"signal, {title} (mu = 1)",
                                title=title, style=style)
        plots.cls_scan(MUS, cls, Path("cls.png"), bands={k: cls * f for k, f in (
            ("minus2", 0.5), ("minus1", 0.7), ("plus1", 1.3), ("plus2", 1.6))}, limit=0.25,
            title=title, style=style)
    finally:
        plots._save = original
    assert saved == ["scores.png", "roc.png", "significance.png", "templates.png", "cls.png"]
