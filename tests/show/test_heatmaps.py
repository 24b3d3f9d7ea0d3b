"""Plots over the plane of two signal parameters: heatmaps of the summary metrics and 1-D
slices through them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import LogNorm, to_rgba

from pnn.show import plots
from pnn.show.style import Style

MX = (300.0, 500.0, 700.0, 900.0, 1100.0)
MY = (60.0, 100.0, 200.0, 400.0, 800.0)  # uneven on purpose
OFF_GRID = ((600.0, 150.0), (1000.0, 600.0))
MISSING = 4  # the row whose Z ratio is NaN
PNG = b"\x89PNG\r\n\x1a\n"


def _table() -> pd.DataFrame:
    """A triangular grid (m_Y < m_X - 125: 18 points) and two points off it."""
    grid = [(mx, my, True) for mx in MX for my in MY if my < mx - 125]
    rows = grid + [(mx, my, False) for mx, my in OFF_GRID]
    t = pd.DataFrame(rows, columns=["mX", "mY", "trained"])
    n = len(t)
    k = np.arange(n, dtype=float)
    t["auc"] = 0.90 + 0.004 * k
    t["auc_optimal"] = t["auc"] + 0.001 * (1 + k % 4)
    t["auc_err"] = 0.002 + 0.0001 * k
    t["z"] = 2.0 + 0.1 * k
    t["z_optimal"] = t["z"] / (0.82 + 0.008 * k)
    t["z_ratio"] = t["z"] / t["z_optimal"]
    t.loc[MISSING, "z_ratio"] = np.nan
    t["z_ratio_err"] = 0.01 + 0.001 * k
    t["limit_pnn"] = 3.0 * np.exp(-t["mX"] / 300)
    t["limit_optimal"] = t["limit_pnn"] / (1.05 + 0.01 * k)
    t["limit_window"] = 1.5 * t["limit_pnn"]
    return t


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> dict[str, plt.Figure]:
    """The figures the writers would save, by file name, instead of saving them."""
    figures: dict[str, plt.Figure] = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path, style=None, margins=None:
                        figures.update({Path(path).name: fig}))
    return figures


def _values(fig: plt.Figure) -> list[plt.Text]:
    return [t for t in fig.axes[0].texts if t.get_gid() == "value"]


def _cells(fig: plt.Figure, gid: str):
    found = [c for c in fig.axes[0].collections if c.get_gid() == gid]
    assert len(found) == 1, f"no single collection {gid!r}"
    return found[0]


def _is_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG
    assert path.stat().st_size > 20_000


def test_parameter_names_become_tex_with_units() -> None:
    assert plots.parameter_label("mX") == "$m_{X}$"
    assert plots.parameter_label("m_Y", "GeV") == "$m_{Y}$ [GeV]"
    assert plots.parameter_label("mH1") == "$m_{H1}$"
    assert plots.parameter_label("mass", "GeV") == "mass [GeV]"
    assert plots.parameter_label("MY") == "MY"


def test_heatmaps_write_the_standard_set(tmp_path: Path) -> None:
    written = plots.parameter_heatmaps(_table(), "mX", "mY", tmp_path / "maps")
    names = ["heatmap_auc.png", "heatmap_auc_gap.png", "heatmap_z_ratio.png", "heatmap_limit.png",
             "heatmap_limit_ratio.png"]
    assert [p.name for p in written] == names
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == sorted(names)  # nothing else
    for path in written:
        _is_png(path)


def test_pdf_too_when_the_style_asks(tmp_path: Path) -> None:
    style = Style(experiment="CMS", luminosity=140.0, formats=("png", "pdf"))
    written = plots.parameter_heatmaps(_table()[["mX", "mY", "trained", "auc", "auc_err"]], "mX",
                                       "mY", tmp_path, style=style)
    assert [p.name for p in written] == ["heatmap_auc.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["heatmap_auc.pdf", "heatmap_auc.png"]


@pytest.mark.parametrize(("drop", "nan", "expected"), [
    (["limit_pnn", "limit_optimal", "limit_window"], [], ["auc", "auc_gap", "z_ratio"]),
    ([], ["limit_optimal"], ["auc", "auc_gap", "z_ratio", "limit"]),
    (["auc_optimal", "z_ratio"], [], ["auc", "limit", "limit_ratio"]),
    (["auc", "z_ratio", "limit_pnn"], [], []),
])
def test_maps_whose_columns_are_missing_or_all_nan_are_skipped(tmp_path: Path, drop, nan,
                                                                expected) -> None:
    table = _table().drop(columns=drop)
    table[nan] = np.nan
    written = plots.parameter_heatmaps(table, "mX", "mY", tmp_path)
    assert [p.name for p in written] == [f"heatmap_{e}.png" for e in expected]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)


def test_gap_map_shows_optimal_minus_pnn_auc(tmp_path: Path, drawn) -> None:
    table = _table()
    plots.parameter_heatmaps(table, "mX", "mY", tmp_path)
    fig = drawn["heatmap_auc_gap.png"]
    on, off = table["trained"].to_numpy(bool), ~table["trained"].to_numpy(bool)
    gap = (table["auc_optimal"] - table["auc"]).to_numpy()
    np.testing.assert_allclose(_cells(fig, "trained").get_array(), gap[on])
    np.testing.assert_allclose(_cells(fig, "not trained").get_array(), gap[off])
    texts = _values(fig)
    assert len(texts) == len(table)
    err = table["auc_err"].to_numpy()
    assert {t.get_text() for t in texts} == {plots._value_text(g, e) for g, e in zip(gap, err, strict=True)}
    assert all("\u00b1" in t.get_text() and "$" not in t.get_text() for t in texts)
    assert fig.axes[1].get_ylabel() == "ROC AUC optimal $-$ PNN"


def test_nan_is_neither_annotated_nor_in_the_colour_limits() -> None:
    table = _table()
    table.loc[7, "auc"] = np.nan
    fig = plots._heatmap_figure(table, "mX", "mY", "auc", label="ROC AUC", err="auc_err")
    finite = table["auc"].dropna()
    texts = _values(fig)
    assert len(texts) == len(finite) == len(table) - 1
    assert not any("nan" in t.get_text().lower() for t in texts)
    cells = _cells(fig, "trained")
    cells.update_scalarmappable()  # the colours of the values, as drawing sets them
    assert cells.get_clim() == pytest.approx((finite.min(), finite.max()))
    grey = [tuple(c) for c in cells.get_facecolors() if tuple(c) == to_rgba(plots.NO_VALUE_COLOUR)]
    assert len(grey) == 1  # the missing cell, drawn grey, not as a colour of the scale
    assert "no value" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_ratio_map_is_centred_on_one_and_skips_its_missing_value() -> None:
    table = _table()
    fig = plots._heatmap_figure(table, "mX", "mY", "z_ratio", label="Z ratio", err="z_ratio_err",
                                center=1.0)
    assert len(_values(fig)) == table["z_ratio"].notna().sum() == len(table) - 1
    lo, hi = _cells(fig, "trained").get_clim()
    assert np.isfinite([lo, hi]).all()
    assert (lo + hi) / 2 == pytest.approx(1.0)
    assert lo == pytest.approx(table["z_ratio"].min())  # the farthest value sets the reach


def test_off_grid_points_are_drawn_apart_and_named_in_the_legend() -> None:
    fig = plots._heatmap_figure(_table(), "mX", "mY", "auc", label="ROC AUC")
    off = _cells(fig, "not trained")
    assert len(off.get_paths()) == len(OFF_GRID)
    assert off.get_linestyle() != _cells(fig, "trained").get_linestyle()  # dashed outline
    assert "not trained on" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert fig.axes[0].get_xlabel() == "$m_{X}$ [GeV]"
    assert fig.axes[0].get_ylabel() == "$m_{Y}$ [GeV]"


def test_limit_map_has_a_log_colour_scale(tmp_path: Path, drawn) -> None:
    table = _table()
    plots.parameter_heatmaps(table, "mX", "mY", tmp_path)
    cells = _cells(drawn["heatmap_limit.png"], "trained")
    assert isinstance(cells.norm, LogNorm)
    assert cells.get_clim() == pytest.approx((table["limit_pnn"].min(), table["limit_pnn"].max()))
    ratio = drawn["heatmap_limit_ratio.png"]
    np.testing.assert_allclose(_cells(ratio, "trained").get_array(),
                               (table["limit_pnn"] / table["limit_optimal"])[table["trained"]])


def test_uneven_grid_is_drawn_as_cells_of_one_size() -> None:
    axis = plots._GridAxis(np.array(MY))
    np.testing.assert_allclose(axis.forward(np.array(MY)), np.arange(len(MY)))
    np.testing.assert_allclose(axis.inverse(axis.forward(np.array([30.0, 150.0, 1000.0]))),
                               [30.0, 150.0, 1000.0])  # beyond the ends too
    low, width = axis.cells(np.array(MY), np.ones(len(MY), bool))
    np.testing.assert_allclose((low + width)[:-1], low[1:])  # neighbours touch, no gap
    np.testing.assert_allclose(np.diff(axis.forward(np.append(low, low[-1] + width[-1]))), 1.0)


def test_annotations_of_a_five_by_five_grid_do_not_overlap() -> None:
    style = Style(experiment="CMS", luminosity=140.0)
    table = pd.DataFrame([(mx, my, True) for mx in MX for my in MY], columns=["mX", "mY", "trained"])
    table["z_ratio"] = np.linspace(0.812345, 0.998765, len(table))
    table["z_ratio_err"] = 0.0234
    fig = plots._heatmap_figure(table, "mX", "mY", "z_ratio", label="Z ratio", err="z_ratio_err",
                                center=1.0, style=style)
    with plots._context(style):
        fig.canvas.draw()
        boxes = [t.get_window_extent() for t in _values(fig)]
    assert len(boxes) == 25
    frame = fig.axes[0].get_window_extent()
    for i, a in enumerate(boxes):
        assert frame.x0 < a.x0 and a.x1 < frame.x1 and frame.y0 < a.y0 and a.y1 < frame.y1
        assert a.height > 10  # legible: at least ten pixels high
        assert not any(a.overlaps(b) for b in boxes[i + 1:])


def test_slices_one_line_per_mass_with_off_grid_points_open(tmp_path: Path, drawn) -> None:
    table = _table()
    written = plots.parameter_slices(table, "mX", "mY", tmp_path)
    assert [p.name for p in written] == ["slices_z_ratio.png"]
    ax = drawn["slices_z_ratio.png"].axes[0]
    trained = [line for line in ax.get_lines() if line.get_gid() == "trained"]
    assert len(trained) == len(MY)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "$m_{Y}$ = 60 GeV" in labels and labels[-1] == "not trained on"
    slices = {c.get_label(): c.lines[0] for c in ax.containers if c.lines[0] in trained}
    assert len(slices) == len(MY)
    for level in MY:  # each slice in order of m_X, broken at the missing value
        line = slices[f"$m_{{Y}}$ = {level:g} GeV"]
        rows = table[(table["mY"] == level) & table["trained"]].sort_values("mX")
        np.testing.assert_allclose(line.get_ydata(), rows["z_ratio"])
        assert np.isnan(line.get_ydata()).any() == rows["z_ratio"].isna().any()
    assert np.isnan(slices[f"$m_{{Y}}$ = {table['mY'][MISSING]:g} GeV"].get_ydata()).any()
    off = [line for line in ax.get_lines() if line.get_gid() == "not trained"]
    assert len(off) == len(OFF_GRID)
    assert all(line.get_markerfacecolor() == "white" for line in off)


def test_slices_write_a_png_or_nothing(tmp_path: Path) -> None:
    [path] = plots.parameter_slices(_table(), "mX", "mY", tmp_path, value="auc", err="auc_err")
    assert path.name == "slices_auc.png"
    _is_png(path)
    assert plots.parameter_slices(_table().drop(columns="z_ratio"), "mX", "mY", tmp_path) == []
    table = _table()
    table["z_ratio"] = np.nan
    assert plots.parameter_slices(table, "mX", "mY", tmp_path) == []
    assert [p.name for p in tmp_path.iterdir()] == ["slices_auc.png"]
