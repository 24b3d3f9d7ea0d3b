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
    ["__import__('os')", "a.__class__", "a.real()", "lambda: 1", "[1, 2]", "open('f')", "'text'", "a[b]"],
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


@pytest.mark.parametrize(("expr", "message"), [
    ("9**9**9", "a power needs a number exponent"),
    ("x**65", "a power needs a number exponent"),
    ("x**(y**2)", "a power needs a number exponent"),
    ("(9**9)**9", "a power needs a number exponent"),
    ("x * 1e301", "a number beyond 1e"),
    ("(pi * 1e10)**64", "a number beyond 1e"),
    ("x + 1 / (2 - 2)", "divides a number by zero"),
    ("x" + "+x" * 10_000, "longer than the 10000 allowed"),
    ("-" * 3000 + "x", "nested more than 100 levels"),
    ("(" * 500 + "x" + ")" * 500, "nested more than 100 levels"),
    ("hypot(x)", r"hypot\(\) takes 2 argument"),
    ("pi(2)", "'pi' is a constant"),
])
def test_limits_are_checked_at_parse_time(expr: str, message: str) -> None:
    with pytest.raises(PnnError, match=message) as err:
        expressions.parse(expr)
    assert "\n" not in str(err.value) and len(str(err.value)) < 400


def test_small_powers_branch_exponents_and_flat_sums_are_fine() -> None:
    arrays = {"x": np.array([1.0, 2.0]), "y": np.array([2.0, 3.0])}
    assert expressions.evaluate("x**2 + x**-1 + x**y", arrays).tolist() == [3.0, 12.5]
    assert expressions.evaluate(" + ".join(["x"] * 90), arrays).tolist() == [90.0, 180.0]


def test_errors_name_the_key_or_the_first_60_characters() -> None:
    long = "x + " * 30 + "1/0"
    with pytest.raises(PnnError, match=r"^expression 'x \+ x .{54}\.\.\.': divides"):
        expressions.parse(long)
    with pytest.raises(PnnError, match=r"^key 'selection' \('1/0'\): divides"):
        expressions.parse("1/0", key="selection")
    with pytest.raises(PnnError, match=r"^key 'weight' \('c \+ 1'\): unknown branch 'c'"):
        expressions.evaluate("c + 1", {"a": np.zeros(2)}, key="weight")


def test_string_branches_are_taken_as_they_are_but_never_computed_with() -> None:
    import awkward as ak

    arrays = {"Type": np.array(["GT", "TT"], dtype=object), "U": np.array(["a", "b"]),
              "S": ak.Array(["a", "bb"]), "x": np.zeros(2)}
    assert expressions.evaluate("Type", arrays).tolist() == ["GT", "TT"]
    for name in ("Type", "U", "S"):
        with pytest.raises(PnnError, match=f"branch '{name}' holds strings: it cannot be used "
                                           f"in '{name} == 1'"):
            expressions.evaluate(f"{name} == 1", arrays)


def test_type_errors_of_numpy_become_one_line() -> None:
    with pytest.raises(PnnError, match=r"cannot be computed \(Integers to negative"):
        expressions.evaluate("n ** -1", {"n": np.array([1, 2])})


def test_expressions_at_the_nesting_limit_still_evaluate() -> None:
    arrays = {"x": np.array([1.0, 4.0])}
    assert expressions.evaluate("-" * 99 + "x", arrays).tolist() == [-1.0, -4.0]
    assert expressions.evaluate(" + ".join(["x"] * 100), arrays).tolist() == [100.0, 400.0]
    assert expressions.evaluate("abs(" * 98 + "x" + ")" * 98, arrays).tolist() == [1.0, 4.0]
    assert expressions.unreduced(" + ".join(["x"] * 100), {"x"}) == "x"
