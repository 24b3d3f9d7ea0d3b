import numpy as np
import pytest

from pnn import expressions
from pnn.errors import PnnError


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
