"""HistFactory workspace specs built from templates."""

import logging

import numpy as np
import pyhf
import pytest

from pnn.core.errors import PnnError
from pnn.stats.workspace import SampleTemplate, build_spec

SIG = np.array([0.5, 2.0, 6.0])
BKG = np.array([50.0, 20.0, 4.0])


def _samples(**bkg_extra) -> list[SampleTemplate]:
    return [
        SampleTemplate("signal", SIG, SIG * 0.01, is_signal=True, factors={"xsec": (1.1, 0.92)}),
        SampleTemplate("ttbar", BKG, BKG * 0.05, **bkg_extra),
    ]


def _modifiers(spec, sample):
    (channel,) = spec["channels"]
    (found,) = [s for s in channel["samples"] if s["name"] == sample]
    return {(m["name"], m["type"]): m["data"] for m in found["modifiers"]}


def test_spec_validates_and_has_the_histfactory_pieces() -> None:
    up = BKG * np.array([1.2, 1.1, 1.0])
    down = BKG * np.array([0.9, 0.95, 1.0])
    spec = build_spec(_samples(variations={"jes": (up, down)}), observations=None,
                      lumi={"signal": 0.017, "ttbar": 0.017}, mu_max=25.0)
    pyhf.schema.validate(spec, "workspace.json")
    ws = pyhf.Workspace(spec)
    model = ws.model()
    assert model.config.poi_name == "mu"
    assert model.config.suggested_bounds()[model.config.poi_index] == [0.0, 25.0]
    assert [m["name"] for m in spec["measurements"]] == ["meas"]

    sig = _modifiers(spec, "signal")
    assert sig[("mu", "normfactor")] is None
    assert sig[("xsec", "normsys")] == {"hi": 1.1, "lo": 0.92}
    assert sig[("lumi", "normsys")] == {"hi": pytest.approx(1.017), "lo": pytest.approx(0.983)}
    np.testing.assert_allclose(sig[("staterror_SR", "staterror")], np.sqrt(SIG * 0.01))

    bkg = _modifiers(spec, "ttbar")
    assert ("mu", "normfactor") not in bkg
    np.testing.assert_allclose(bkg[("staterror_SR", "staterror")], np.sqrt(BKG * 0.05))
    assert bkg[("jes", "normsys")]["hi"] == pytest.approx(up.sum() / BKG.sum())
    assert bkg[("jes", "normsys")]["lo"] == pytest.approx(down.sum() / BKG.sum())
    hist_up = np.array(bkg[("jes", "histosys")]["hi_data"])
    assert hist_up.sum() == pytest.approx(BKG.sum())
    np.testing.assert_allclose(hist_up / hist_up.sum(), up / up.sum())

    # Without observations the data are the pre-fit background: the model's own b-only expectation.
    np.testing.assert_allclose(ws.data(model, include_auxdata=False), BKG)
    np.testing.assert_allclose(model.expected_actualdata(model.config.suggested_init()), SIG + BKG)
    assert set(model.config.parameters) == {"mu", "xsec", "lumi", "jes", "staterror_SR"}


def test_observations_and_no_staterror() -> None:
    spec = build_spec(_samples(), observations=np.array([48.0, 25.0, 9.0]), staterror=False)
    np.testing.assert_allclose(spec["observations"][0]["data"], [48.0, 25.0, 9.0])
    assert all(m["type"] != "staterror" for s in spec["channels"][0]["samples"]
               for m in s["modifiers"])


def test_one_sided_variation_is_symmetrised_and_logged(caplog) -> None:
    up = BKG * np.array([1.3, 1.0, 0.9])
    with caplog.at_level(logging.INFO):
        spec = build_spec(_samples(variations={"jes": (up, None)}), observations=None)
    bkg = _modifiers(spec, "ttbar")
    hi, lo = bkg[("jes", "normsys")]["hi"], bkg[("jes", "normsys")]["lo"]
    assert lo == pytest.approx(2 - hi)
    lo_data = np.array(bkg[("jes", "histosys")]["lo_data"])
    np.testing.assert_allclose(lo_data * lo, 2 * BKG - up)
    assert "sample 'ttbar', systematic 'jes' is one-sided: symmetrised" in caplog.text


def test_negative_bins_are_clamped_with_a_warning(caplog) -> None:
    counts = np.array([50.0, -1.5, 4.0])
    up = np.array([52.0, 0.5, -0.2])
    samples = [SampleTemplate("signal", SIG, SIG * 0.01, is_signal=True),
               SampleTemplate("fakes", counts, np.abs(counts), variations={"ff": (up, None)})]
    with caplog.at_level(logging.WARNING):
        spec = build_spec(samples, observations=None)
    data = spec["channels"][0]["samples"][1]["data"]
    assert data[1] == pytest.approx(1e-6) and data[0] == 50.0
    messages = [r.getMessage() for r in caplog.records]
    assert any("'fakes'" in m and "nominal" in m and "[1]" in m for m in messages)
    assert any("'fakes'" in m and "ff up" in m and "[2]" in m for m in messages)
    pyhf.Workspace(spec).model()


def test_empty_background_template_is_an_error() -> None:
    samples = [SampleTemplate("signal", SIG, SIG, is_signal=True),
               SampleTemplate("ttbar", np.zeros(3), np.zeros(3))]
    with pytest.raises(PnnError, match="background template is empty at this mass"):
        build_spec(samples, observations=None)


def test_empty_signal_and_unknown_lumi_sample_are_errors() -> None:
    samples = [SampleTemplate("signal", np.zeros(3), np.zeros(3), is_signal=True),
               SampleTemplate("ttbar", BKG, BKG)]
    with pytest.raises(PnnError, match="signal template is empty"):
        build_spec(samples, observations=None)
    with pytest.raises(PnnError, match="unknown sample"):
        build_spec(_samples(), observations=None, lumi={"wjets": 0.02})


def test_a_systematic_named_twice_on_a_sample_is_an_error() -> None:
    samples = _samples(variations={"jes": (BKG * 1.1, None)}, factors={"jes": (1.1, 0.9)})
    with pytest.raises(PnnError, match=r"\['jes'\] given twice"):
        build_spec(samples, observations=None)
