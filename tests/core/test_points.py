"""Signal points: names, parsing, selection, and the hull that separates interpolation from
extrapolation."""

import numpy as np
import pytest

from pnn.core import points
from pnn.core.errors import PnnError

TRIANGLE = [(500.0, 100.0), (1500.0, 100.0), (1500.0, 1300.0), (1000.0, 100.0), (1500.0, 700.0),
            (1000.0, 600.0)]


def test_labels_name_a_mass_as_before_and_a_point_by_its_parameters() -> None:
    assert points.label(["mass"], (500.0,)) == "m500"
    assert points.label(["mX", "mY"], (1000.0, 300.0)) == "mX1000_mY300"
    assert points.branch_label(["mX", "mY"], (1000.5, 300.0)) == "mX1000p5_mY300"
    for names, p in ((["mass"], (172.5,)), (["mX", "mY"], (1000.0, 62.5))):
        assert points.from_label(points.label(names, p), names) == p
    assert points.from_label("mX1000", ["mX", "mY"]) is None
    assert points.from_label("sanity.json", ["mass"]) is None


@pytest.mark.parametrize("text", ["mX=1000,mY=300", "1000,300", "mY=300, mX=1000", "mX1000_mY300"])
def test_parse_reads_every_form_of_a_point(text: str) -> None:
    assert points.parse(text, ["mX", "mY"]) == (1000.0, 300.0)


@pytest.mark.parametrize(("text", "fix"), [("1000", "give one each"), ("mZ=1,mY=2", "no parameter 'mZ'"),
                                           ("mX=a,mY=2", "not a number"), ("mX=1,mX=2", "no value for 'mY'"),
                                           ("mX=nan,mY=2", "finite")])
def test_parse_refuses_bad_points_with_the_fix(text: str, fix: str) -> None:
    with pytest.raises(PnnError, match=fix):
        points.parse(text, ["mX", "mY"])


def test_mask_selects_whole_points_and_never_nan() -> None:
    theta = np.array([[1000.0, 300.0], [1000.0, 200.0], [1000.0000001, 300.0], [np.nan, np.nan]])
    assert points.mask(theta, (1000.0, 300.0)).tolist() == [True, False, True, False]
    assert points.unique(theta) == [(1000.0, 200.0), (1000.0, 300.0)]
    assert points.index(theta, [(1000.0, 200.0)]).tolist() == [-1, 0, -1, -1]


def test_a_point_inside_the_bounding_box_but_outside_the_hull_is_extrapolation() -> None:
    inside_box_outside_hull = (600.0, 1200.0)
    interior = (1250.0, 400.0)
    on_edge = (1000.0, 100.0)
    assert points.outside([inside_box_outside_hull, interior, on_edge], TRIANGLE) == [
        inside_box_outside_hull]
    assert points.outside([(1600.0, 200.0)], TRIANGLE) == [(1600.0, 200.0)]


def test_one_parameter_uses_the_trained_range() -> None:
    assert points.outside([(400.0,), (750.0,), (1500.0,)], [(500.0,), (1000.0,), (1500.0,)]) == [
        (400.0,)]


def test_collinear_grid_holds_only_its_segment() -> None:
    line = [(500.0, 100.0), (1000.0, 100.0), (1500.0, 100.0)]
    assert points.outside([(750.0, 100.0), (750.0, 150.0)], line) == [(750.0, 150.0)]
