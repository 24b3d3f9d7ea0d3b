"""The plots of the statistical interpretation: Brazil plot, prefit templates, CLs scan."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
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
