"""The weighted two-sample KS test of the overtraining check."""

import numpy as np
import pytest
from scipy import stats

from pnn.stats.ks import ks_2samp_weighted


@pytest.mark.parametrize("shift", [0.0, 0.1, 0.4])
def test_unit_weights_agree_with_scipy(shift: float) -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 1, 700), rng.normal(shift, 1, 450)
    ours = ks_2samp_weighted(a, b)
    ref = stats.ks_2samp(a, b, method="asymp")
    assert ours.statistic == pytest.approx(ref.statistic, abs=1e-12)
    assert ours.pvalue == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-15)


def test_integer_weights_equal_repeated_events() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.exponential(1, 300), rng.exponential(1.2, 200)
    wa = rng.integers(1, 4, len(a)).astype(float)
    weighted = ks_2samp_weighted(a, b, wa, None)
    repeated = stats.ks_2samp(np.repeat(a, wa.astype(int)), b)
    assert weighted.statistic == pytest.approx(repeated.statistic, abs=1e-12)


def test_weights_change_the_answer_and_use_effective_sizes() -> None:
    rng = np.random.default_rng(5)
    a = rng.uniform(0, 1, 2000)
    b = rng.uniform(0, 1, 2000)
    # weight the upper half of a up: its weighted distribution moves right
    wa = np.where(a > 0.5, 3.0, 1.0)
    unweighted, weighted = ks_2samp_weighted(a, b), ks_2samp_weighted(a, b, wa, None)
    assert weighted.statistic > 0.15 > unweighted.statistic
    assert weighted.pvalue < 1e-6 < unweighted.pvalue
    assert weighted.n_effective[0] < 2000 and weighted.n_effective[1] == pytest.approx(2000)


def test_empty_or_non_positive_weights_give_nan() -> None:
    assert np.isnan(ks_2samp_weighted([], [1.0, 2.0]).pvalue)
    assert np.isnan(ks_2samp_weighted([1.0], [2.0], [-1.0], [1.0]).pvalue)
    with pytest.raises(ValueError, match="one weight per value"):
        ks_2samp_weighted([1.0, 2.0], [1.0], [1.0], None)
