"""Expected and observed CLs limits, local significance and CLs scans."""

import numpy as np
import pyhf
import pytest
from scipy.optimize import brentq

from pnn.core.errors import PnnError
from pnn.stats import cls
from pnn.stats.workspace import SampleTemplate, build_spec

SIG = np.array([1.0, 2.0, 4.0, 6.0, 8.0])
BKG = np.array([100.0, 60.0, 30.0, 12.0, 5.0])
HIGH = np.array([0, 0, 0, 1, 1])


def _spec(*, staterror=True, bkg_norm=True, observations=None):
    up = BKG * np.array([1.1, 1.05, 1.0, 0.95, 0.9])
    samples = [
        SampleTemplate("signal", SIG, SIG * 0.05, is_signal=True, factors={"sig_xs": (1.1, 0.9)}),
        SampleTemplate("ttbar", BKG, BKG * 0.1, variations={"jes": (up, None)},
                       factors={"bkg_norm": (1.05, 0.95)} if bkg_norm else {}),
    ]
    return build_spec(samples, observations=observations, staterror=staterror, mu_max=10.0)


@pytest.fixture(scope="module")
def band() -> cls.ExpectedBand:
    return cls.expected_limits(_spec())


def test_one_bin_median_solves_the_asimov_equation() -> None:
    s, b = 5.0, 20.0
    spec = build_spec([SampleTemplate("signal", np.array([s]), np.array([0.1]), is_signal=True),
                       SampleTemplate("bkg", np.array([b]), np.array([1.0]))],
                      observations=None, staterror=False, mu_max=20.0)
    expected = brentq(lambda mu: 2 * (mu * s - b * np.log(1 + mu * s / b)) - 1.96**2, 1e-3, 100)
    assert cls.expected_limits(spec).median == pytest.approx(expected, rel=0.01)


def test_band_matches_pyhf_upper_limit(band) -> None:
    spec = _spec()
    previous = pyhf.get_backend()
    pyhf.set_backend("numpy")
    try:
        model = pyhf.Workspace(spec).model()
        asimov = pyhf.Workspace(spec).data(model)  # pre-fit b-only counts and the auxdata
        _, expected = pyhf.infer.intervals.upper_limits.upper_limit(
            asimov, model, scan=None, level=0.05, rtol=1e-5, test_stat="qtilde")
    finally:
        pyhf.set_backend(*previous)
    np.testing.assert_allclose(band.as_tuple(), np.ravel(expected), rtol=0.01)
    assert band.minus2 < band.minus1 < band.median < band.plus1 < band.plus2
    assert band.fits > 0 and band.seconds > 0


def test_systematics_raise_and_staterror_off_lowers_the_limit(band) -> None:
    without_norm = cls.expected_limits(_spec(bkg_norm=False))
    without_stat = cls.expected_limits(_spec(staterror=False))
    assert without_norm.median < band.median
    assert without_stat.median < band.median


def test_backend_is_restored() -> None:
    optimizer = pyhf.optimize.scipy_optimizer(tolerance=1e-3)
    pyhf.set_backend("numpy", optimizer)
    try:
        cls.expected_limits(_spec(staterror=False))
        assert pyhf.get_backend()[1] is optimizer
    finally:
        pyhf.set_backend("numpy")


def test_cls_scan_crosses_alpha_at_the_expected_limits(band) -> None:
    mus = np.array([band.minus2, band.minus1, band.median, band.plus1, band.plus2])
    scan = cls.cls_scan(_spec(), mus)
    for i, key in enumerate(cls.BAND_KEYS):
        assert scan[key][i] == pytest.approx(0.05, rel=0.01)
    assert "observed" not in scan
    assert np.all(np.diff(scan["median"]) < 0)


def test_the_curve_for_the_plot_reuses_the_fits_of_the_limits(band, monkeypatch) -> None:
    """The CLs curve comes from the limit search's own fits plus a few to fill the grid: the
    same band, fewer fits than the limits and a separate scan, the same CLs at each mu."""
    calls = []
    real = cls._Fitter.fit
    monkeypatch.setattr(cls._Fitter, "fit", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    together, curve = cls.expected_limits_and_scan(_spec(), scan_points=8)
    shared = len(calls)
    cls.expected_limits(_spec())
    cls.cls_scan(_spec(), np.linspace(0, 1.4 * band.plus2, 9)[1:])
    assert shared < 0.75 * (len(calls) - shared)
    np.testing.assert_allclose(together.as_tuple(), band.as_tuple(), rtol=1e-9)
    mus = curve["mu"]
    assert np.all(np.diff(mus) > 0) and mus[0] > 0
    assert mus[-1] == pytest.approx(1.4 * band.plus2)
    assert np.max(np.diff(np.concatenate([[0.0], mus]))) <= 1.4 * band.plus2 / 8 * 1.5
    separate = cls.cls_scan(_spec(), mus)
    for key in cls.BAND_KEYS:
        np.testing.assert_allclose(curve[key], separate[key], atol=0.01)
    assert np.all(np.diff(curve["median"]) < 0)


def test_injected_signal_is_seen(band) -> None:
    data = BKG + 3 * SIG * HIGH
    observed = cls.observed_limit(_spec(), data)
    assert observed > band.plus2
    p0, z = cls.local_significance(_spec(), data)
    assert z > 2 and p0 == pytest.approx(pyhf_p0(data), rel=1e-3)
    scan = cls.cls_scan(_spec(), np.array([observed / 2, observed]), data)
    assert scan["observed"][1] == pytest.approx(0.05, abs=1e-3)
    assert scan["observed"][0] > 0.05


def pyhf_p0(data) -> float:
    spec = _spec()
    model = pyhf.Workspace(spec).model()
    full = np.concatenate([data, model.config.auxdata])
    return float(pyhf.infer.hypotest(0.0, full, model, test_stat="q0"))


def test_background_only_data_give_a_limit_in_the_band_and_no_excess(band) -> None:
    observed = cls.observed_limit(_spec(), BKG)
    assert observed == pytest.approx(band.median, rel=0.01)
    p0, z = cls.local_significance(_spec(), BKG)
    assert z == pytest.approx(0.0, abs=1e-3) and p0 == pytest.approx(0.5, abs=1e-3)


def test_data_of_the_wrong_length_are_refused() -> None:
    with pytest.raises(ValueError, match="5 bins"):
        cls.local_significance(_spec(), np.ones(3))
    with pytest.raises(PnnError, match="positive"):
        cls.cls_scan(_spec(), np.array([0.0, 1.0]))
