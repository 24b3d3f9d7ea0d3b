"""The exact likelihood ratio is taken from the toy that wrote the files, by its manifest."""

import json
from pathlib import Path

import numpy as np

from pnn.io import exact, toy, toy2d


def test_the_manifest_names_the_generator(tmp_path: Path) -> None:
    one = toy.write(tmp_path / "one", [500.0, 1000.0], 200, 2000, 140.0, 1)
    two = toy2d.write(tmp_path / "two", [(500.0, 90.0), (1000.0, 350.0)], 200, 2000, 140.0, 1)
    assert exact.generator_of(one["signal"]) == "pnn.io.toy"
    assert exact.generator_of(two["signal"]) == "pnn.io.toy2d"
    assert exact.common_generator([str(one["signal"]), str(one["background"])]) == "pnn.io.toy"
    assert exact.common_generator([str(one["signal"]), str(two["signal"])]) is None
    assert exact.generator_of(tmp_path / "elsewhere.root") is None
    assert exact.generator_of("root://localhost//data/signal.root") is None
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / exact.MANIFEST).write_text(json.dumps({"generator": "os.system"}))
    assert exact.generator_of(tmp_path / "odd" / "x.root") is None  # only the listed toys


def test_the_ratio_is_the_toys_own_at_the_point() -> None:
    rng = np.random.default_rng(3)
    one = toy.generate_signal(rng, 750.0, 500, 140.0, offset=0)
    assert np.array_equal(exact.log_likelihood_ratio("pnn.io.toy", one, 750.0),
                          toy.log_likelihood_ratio(one, 750.0))
    assert np.array_equal(exact.log_likelihood_ratio(True, one, (750.0,)),
                          toy.log_likelihood_ratio(one, 750.0))
    two = toy2d.generate_signal(rng, (1000.0, 350.0), 500, 140.0, offset=0)
    assert np.array_equal(exact.log_likelihood_ratio("pnn.io.toy2d", two, (1000.0, 350.0)),
                          toy2d.log_likelihood_ratio(two, (1000.0, 350.0)))
    assert exact.branches(False) == () and exact.branches("pnn.io.toy2d") == toy2d.BRANCHES


def test_a_background_density_computed_once_gives_the_same_ratio_at_every_point() -> None:
    rng = np.random.default_rng(5)
    for generator, module, events, pts in (
            ("pnn.io.toy", toy, toy.generate_signal(rng, 750.0, 400, 140.0, offset=0),
             [500.0, 750.0, 1250.0]),
            ("pnn.io.toy2d", toy2d, toy2d.generate_signal(rng, (1000.0, 350.0), 400, 140.0, offset=0),
             [(500.0, 90.0), (1000.0, 350.0), (1500.0, 800.0)])):
        background = exact.background_log_density(generator, events)
        assert np.array_equal(background, module.background_logpdf(events))
        for p in pts:
            alone = exact.log_likelihood_ratio(generator, events, p)
            np.testing.assert_allclose(exact.log_likelihood_ratio(generator, events, p, background),
                                       alone, rtol=1e-12, atol=1e-12)
            assert not np.array_equal(exact.log_likelihood_ratio(generator, events, p, background + 1),
                                      alone)
