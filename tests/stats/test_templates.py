"""Transformation D binning, weighted histograms, variation splitting and clamping."""

import logging

import numpy as np
import pytest

from pnn.core.errors import PnnError
from pnn.stats import templates


def _planted(rng, n_sig=20_000, n_bkg=100_000, negative=0.0):
    """Signal peaking at high score, background falling; optional negative-weight fraction."""
    sig = rng.beta(5, 1, n_sig)
    bkg = rng.beta(1, 4, n_bkg)
    sw = rng.uniform(0.5, 1.5, n_sig) * 0.01
    bw = rng.uniform(0.5, 1.5, n_bkg) * 0.1
    if negative:
        bw *= np.where(rng.random(n_bkg) < negative, -1, 1)
    return sig, sw, bkg, bw


def _reference_bins(sig, sw, bkg, bw, *, z_s=10.0, z_b=10.0, min_mc=10, max_stat_error=0.2):
    """The rule written out plainly: returns, per bin from the top, the set of distinct values."""
    values = np.unique(np.concatenate([sig, bkg]))[::-1]
    s_tot, b_tot = sw.sum(), bw.sum()
    bins, current = [], []
    for v in values:
        current.append(v)
        s_in = sw[np.isin(sig, current)].sum()
        in_b = np.isin(bkg, current)
        w, w2, n = bw[in_b].sum(), (bw[in_b] ** 2).sum(), in_b.sum()
        if (z_s * s_in / s_tot + z_b * w / b_tot >= 1 and n >= min_mc and w > 0
                and np.sqrt(w2) <= max_stat_error * w):
            bins.append(current)
            current = []
    if bins:
        bins[-1] = bins[-1] + current  # the remainder joins the lowest bin
    return bins


def _bin_of(values, edges):
    return np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)


@pytest.mark.parametrize("negative", [0.0, 0.1])
def test_bins_close_where_the_rule_says(negative) -> None:
    rng = np.random.default_rng(5)
    sig, sw, bkg, bw = _planted(rng, n_sig=600, n_bkg=3000, negative=negative)
    sig, bkg = np.round(sig, 3), np.round(bkg, 3)  # a few thousand distinct values, many ties
    edges = templates.auto_edges(sig, sw, bkg, bw)
    ref = _reference_bins(sig, sw, bkg, bw)
    assert len(edges) - 1 == len(ref) > 3
    # Every distinct value lands in the bin the plain rule put it in (top bin = last index).
    for rank, group in enumerate(ref):
        assert set(_bin_of(np.array(group), edges)) == {len(ref) - 1 - rank}


def test_every_bin_is_well_simulated_and_edges_cover_the_range() -> None:
    rng = np.random.default_rng(1)
    sig, sw, bkg, bw = _planted(rng)
    edges = templates.auto_edges(sig, sw, bkg, bw, min_mc=25, max_stat_error=0.1)
    assert np.all(np.diff(edges) > 0)
    every = np.concatenate([sig, bkg])
    assert edges[0] == every.min() and edges[-1] == every.max()
    b, var = templates.counts_variances(bkg, bw, edges)
    n_mc = np.bincount(_bin_of(bkg, edges), minlength=len(edges) - 1)
    assert np.all(n_mc >= 25)
    assert np.all(np.sqrt(var) <= 0.1 * b)
    s, _ = templates.counts_variances(sig, sw, edges)
    assert np.argmax(s / b) == len(b) - 1  # the top bin is the most signal-rich


def test_default_z_gives_at_most_about_twenty_bins_on_a_large_sample() -> None:
    rng = np.random.default_rng(2)
    sig, sw, bkg, bw = _planted(rng, n_sig=100_000, n_bkg=400_000)
    edges = templates.auto_edges(sig, sw, bkg, bw)
    assert 12 <= len(edges) - 1 <= 20


@pytest.mark.parametrize("negative", [0.0, 0.1])
def test_searching_in_growing_windows_finds_the_edges_a_search_over_all_scores_does(
        negative, monkeypatch) -> None:
    """Bins of tens of thousands of value groups outgrow the first search window several
    times over; the edges must be those of one search over every score left."""
    rng = np.random.default_rng(4)
    sig, sw, bkg, bw = _planted(rng, n_sig=100_000, n_bkg=400_000, negative=negative)
    windowed = templates.auto_edges(sig, sw, bkg, bw)
    monkeypatch.setattr(templates, "FIRST_WINDOW", 10**9)  # the whole remainder at once
    np.testing.assert_array_equal(windowed, templates.auto_edges(sig, sw, bkg, bw))


def test_max_bins_merges_the_low_end_and_keeps_the_signal_rich_bins() -> None:
    rng = np.random.default_rng(3)
    sig, sw, bkg, bw = _planted(rng)
    free = templates.auto_edges(sig, sw, bkg, bw)
    capped = templates.auto_edges(sig, sw, bkg, bw, max_bins=5)
    assert len(free) - 1 > 5 and len(capped) - 1 == 5
    np.testing.assert_array_equal(capped[-5:], free[-5:])
    assert capped[0] == free[0]
    s_free, _ = templates.counts_variances(sig, sw, free)
    s_capped, _ = templates.counts_variances(sig, sw, capped)
    assert s_capped[-1] / s_capped.sum() == pytest.approx(s_free[-1] / s_free.sum())
    assert s_capped[-1] / s_capped.sum() < 0.5


def test_ties_stay_in_one_bin() -> None:
    # 300 background and 200 signal events share the top score: the rule would close a bin
    # inside this group if it went event by event; the whole group is one bin instead.
    rng = np.random.default_rng(4)
    sig = np.concatenate([np.full(200, 0.9), rng.uniform(0.0, 0.8, 200)])
    bkg = np.concatenate([np.full(300, 0.9), rng.uniform(0.0, 0.8, 5000)])
    sw, bw = np.ones(sig.size), np.ones(bkg.size)
    edges = templates.auto_edges(sig, sw, bkg, bw)
    below = np.concatenate([sig, bkg])[np.concatenate([sig, bkg]) < 0.9].max()
    assert edges[-1] == 0.9 and below < edges[-2] < 0.9
    b, _ = templates.counts_variances(bkg, bw, edges)
    assert b[-1] == 300
    assert not np.isin(edges[1:-1], np.concatenate([sig, bkg])).any()


def test_tiny_input_gives_one_bin_over_the_range() -> None:
    edges = templates.auto_edges(np.array([0.7, 0.9]), None, np.array([0.1, 0.5, 0.6]), None)
    np.testing.assert_array_equal(edges, [0.1, 0.9])
    edges = templates.auto_edges(np.array([0.7]), None, np.array([0.1]), None, low=0.0, high=1.0)
    np.testing.assert_array_equal(edges, [0.0, 1.0])


def test_nan_scores_are_refused() -> None:
    with pytest.raises(PnnError, match="NaN"):
        templates.auto_edges(np.array([np.nan]), None, np.array([0.1]), None)


def test_histogram_keeps_out_of_range_events_and_squared_weights() -> None:
    edges = np.array([0.0, 0.5, 1.0])
    values = np.array([-1.0, 0.2, 0.5, 1.0, 3.0])
    weights = np.array([1.0, 2.0, 3.0, 4.0, -0.5])
    h = templates.histogram(values, weights, edges)
    np.testing.assert_allclose(h.values(), [3.0, 6.5])
    np.testing.assert_allclose(h.variances(), [5.0, 25.25])
    counts, var = templates.counts_variances(values, weights, edges)
    np.testing.assert_allclose(counts, [3.0, 6.5])
    np.testing.assert_allclose(var, [5.0, 25.25])


def test_split_gives_yield_factors_and_shapes_at_nominal_yield() -> None:
    nominal = np.array([10.0, 20.0, 30.0])
    up = np.array([12.0, 22.0, 32.0])
    down = np.array([9.0, 18.0, 27.0])
    ns = templates.split_normsys_histosys(nominal, up, down)
    assert ns.hi == pytest.approx(66 / 60) and ns.lo == pytest.approx(0.9)
    np.testing.assert_allclose(ns.hi_data, up * 60 / 66)
    np.testing.assert_allclose(ns.lo_data, nominal)
    assert ns.hi_data.sum() == pytest.approx(60)


def test_one_sided_variation_is_symmetrised_and_logged(caplog) -> None:
    nominal = np.array([10.0, 20.0])
    up = np.array([13.0, 19.0])
    with caplog.at_level(logging.INFO, logger="pnn.stats.templates"):
        ns = templates.split_normsys_histosys(nominal, up, None, label="sample 'tt', systematic 'jes'")
    assert ns.lo == pytest.approx(2 - ns.hi)
    np.testing.assert_allclose(ns.lo_data * ns.lo, 2 * nominal - up)
    assert "systematic 'jes' is one-sided: symmetrised" in caplog.text


def test_variation_without_yield_is_refused() -> None:
    with pytest.raises(PnnError, match="up variation has no yield"):
        templates.split_normsys_histosys(np.ones(2), np.zeros(2), np.ones(2))


def test_clamp_warns_once_naming_sample_systematic_and_bins(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="pnn.stats.templates"):
        out = templates.clamp(np.array([1.0, -0.2, 0.0, 3.0]), sample="ttbar", systematic="jes up")
    np.testing.assert_allclose(out, [1.0, 1e-6, 1e-6, 3.0])
    assert len(caplog.records) == 1
    assert "'ttbar'" in caplog.text and "jes up" in caplog.text and "[1]" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pnn.stats.templates"):
        out = templates.clamp(np.array([0.0, 2.0]), sample="signal", systematic="nominal")
    np.testing.assert_allclose(out, [1e-6, 2.0])
    assert caplog.records == []  # an empty bin is no news: only negative bins warn
