import numpy as np
import pytest

from pnn.core.errors import PnnError
from pnn.io import expressions


def test_arithmetic_comparison_and_logic() -> None:
    arrays = {"a": np.array([3.0, 4.0, 0.0]), "b": np.array([4.0, 3.0, 1.0])}
    out = expressions.evaluate("sqrt(a**2 + b**2) > 4.9 and not b < 3.5", arrays)
    assert out.tolist() == [True, False, False]
    assert expressions.evaluate("a * 2 - 1", arrays).tolist() == [5.0, 7.0, -1.0]
    assert expressions.evaluate("0 < b <= 3", arrays).tolist() == [False, True, True]


def test_branches_excludes_functions() -> None:
    assert expressions.branches("sqrt(MET_px**2 + MET_py**2) > x") == {"MET_px", "MET_py", "x"}


@pytest.mark.parametrize(
    "expr",
    ["__import__('os')", "a.real", "lambda: 1", "[1, 2]", "open('f')", "'text'", "a[b]"],
)
def test_anything_else_is_refused(expr: str) -> None:
    with pytest.raises(PnnError, match=r"not allowed|not valid"):
        expressions.parse(expr)


def test_unknown_branch() -> None:
    with pytest.raises(PnnError, match="unknown branch 'c'"):
        expressions.evaluate("c + 1", {"a": np.zeros(2)})


def test_constant_index_picks_the_kth_entry_of_every_event() -> None:
    jet = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert expressions.evaluate("x[1]", {"x": jet}).tolist() == [2.0, 4.0]


def test_jagged_reductions_with_awkward() -> None:
    import awkward as ak

    jets = {"Jet_pt": ak.Array([[50.0, 30.0, 20.0], [], [40.0]]),
            "Jet_eta": ak.Array([[0.1, 3.0, -1.0], [], [2.0]])}
    ev = expressions.evaluate
    assert ev("Jet_pt[0]", jets).tolist() == [50.0, 0.0, 40.0]
    assert ev("Jet_pt[1]", jets, fill=-1.0).tolist() == [30.0, -1.0, -1.0]
    assert ev("at(Jet_pt, 2, -9)", jets).tolist() == [20.0, -9.0, -9.0]
    assert ev("count(Jet_pt)", jets).tolist() == [3, 0, 1]
    assert ev("sum(Jet_pt * (abs(Jet_eta) < 2.5))", jets).tolist() == [70.0, 0.0, 40.0]
    assert ev("sum(Jet_pt > 25)", jets).tolist() == [2, 0, 1]
    assert ev("max(Jet_eta)", jets, fill=-5.0).tolist() == [3.0, -5.0, 2.0]
    assert ev("mean(Jet_pt)", jets).tolist() == [pytest.approx(100 / 3), 0.0, 40.0]


def test_fixed_size_array_index_and_reduction() -> None:
    arr = np.arange(6.0).reshape(3, 2)
    assert expressions.evaluate("x[1] + sum(x)", {"x": arr}).tolist() == [2.0, 8.0, 14.0]
    with pytest.raises(PnnError, match="past the 2 entries"):
        expressions.evaluate("x[2]", {"x": arr})


def test_unreduced_collections_are_found() -> None:
    coll = {"Jet_pt", "Jet_eta"}
    assert expressions.unreduced("Jet_pt[0] + count(Jet_eta) + MET", coll) is None
    assert expressions.unreduced("sum(Jet_pt * (abs(Jet_eta) < 2.5))", coll) is None
    assert expressions.unreduced("sqrt(Jet_pt) + MET", coll) == "Jet_pt"
    assert expressions.unreduced("MET > 0 and Jet_eta > 1", coll) == "Jet_eta"


@pytest.mark.parametrize("expr", ["at(x, 1)", "at(x, y, 0)", "count(x, 1)", "x[-1]", "x[0.5]"])
def test_malformed_reductions_are_refused(expr: str) -> None:
    with pytest.raises(PnnError, match=r"at\(collection|takes one collection|non-negative integer"):
        expressions.parse(expr)
