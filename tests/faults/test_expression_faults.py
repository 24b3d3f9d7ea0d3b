"""Hostile or mistaken expressions fail with one line and exit 2, at once, before any data
is read, and never touch an earlier good run."""

from __future__ import annotations

import signal
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from pnn.cli import main
from tests.conftest import write_config
from tests.faults.util import leftovers, one_line_error, snapshot


@contextmanager
def deadline(seconds: int):
    """Fail instead of hanging when the body runs longer than ``seconds``."""

    def expired(signum, frame):
        raise AssertionError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _ingest_bad(good_run, tmp_path: Path, **changes) -> str:
    """``pnn ingest`` with top-level keys changed; one line within seconds, good run intact."""
    cfg, root = good_run
    before = snapshot(root)
    path = write_config(tmp_path / "config.yaml", {**cfg, **changes})
    started = time.monotonic()
    with deadline(20):
        res = CliRunner().invoke(main, ["ingest", str(path)])
    assert time.monotonic() - started < 10
    line = one_line_error(res)
    assert snapshot(root) == before
    assert leftovers(root) == []
    return line


@pytest.mark.parametrize("expr", ["9**9**9", "2**(9*9*9*9*9*9)", "(9**9)**9", "FourBodyMass**100"])
def test_huge_powers_are_refused_before_evaluation(good_run, tmp_path, expr) -> None:
    line = _ingest_bad(good_run, tmp_path, selection=expr)
    assert expr in line and "a power needs a number exponent from -64 to 64" in line


@pytest.mark.parametrize("expr", ["FourBodyMass < 1e301", "FourBodyMass < 1e300 * 1e10",
                                  "FourBodyMass < " + "9" * 400])
def test_huge_constants_are_refused(good_run, tmp_path, expr) -> None:
    line = _ingest_bad(good_run, tmp_path, selection=expr)
    assert "a number beyond 1e+300 is not allowed" in line


def test_twenty_thousand_terms(good_run, tmp_path) -> None:
    expr = "sT + " * 20000 + "sT"
    line = _ingest_bad(good_run, tmp_path, weight=expr)
    assert "100002 characters is longer than the 10000 allowed" in line
    assert f"'{expr[:60]}...'" in line


def test_a_hundred_thousand_unary_minus_signs(good_run, tmp_path) -> None:
    line = _ingest_bad(good_run, tmp_path, weight="-" * 100000 + "sT")
    assert "longer than the 10000 allowed" in line


@pytest.mark.parametrize("expr", ["-" * 5000 + "sT", "(" * 300 + "sT" + ")" * 300,
                                  "-" * 101 + "sT", " + ".join(["sT"] * 150)])
def test_deep_nesting_is_refused(good_run, tmp_path, expr) -> None:
    line = _ingest_bad(good_run, tmp_path, weight=expr)
    assert "nested more than 100 levels deep" in line


def test_too_many_nodes(good_run, tmp_path) -> None:
    group = "(" + "+".join(["a"] * 50) + ")"
    line = _ingest_bad(good_run, tmp_path, weight=" * ".join([group] * 45))
    assert "more than 2000 operands and operators" in line


def test_division_of_constants_by_zero(good_run, tmp_path) -> None:
    line = _ingest_bad(good_run, tmp_path, weight="1 / 0")
    assert "divides a number by zero" in line


def test_wrong_number_of_function_arguments(good_run, tmp_path) -> None:
    line = _ingest_bad(good_run, tmp_path, selection="sqrt(sT, 2) > 1")
    assert "sqrt() takes 1 argument(s), not 2" in line


def test_small_powers_and_long_flat_expressions_still_work(good_run, tmp_path) -> None:
    cfg, _ = good_run
    expr = "sqrt(FourBodyMass**2 + sT**-2) + " + " + ".join(["Btag"] * 40)
    raw = {**cfg, "name": "ok", "aliases": {"combo": expr}, "features": [*cfg["features"], "combo"]}
    res = CliRunner().invoke(main, ["ingest", str(write_config(tmp_path / "ok.yaml", raw))])
    assert res.exit_code == 0, res.output


def _zmumu(tmp_path: Path, path: str, selection: str | None) -> Path:
    sample = {"files": path, "tree": "events"}
    raw = {
        "name": "zmumu", "output_dir": str(tmp_path / "runs"), "event_number": "Event",
        "weight": "1",
        "samples": {"signal": [{**sample, "name": "peak", "mass": 91,
                                "selection": "abs(M - 91) < 10"}],
                    "background": [{**sample, "name": "side", "selection": "abs(M - 91) >= 10"}]},
        "features": ["pt1", "eta1"],
        "spectators": ["Type"],
    }
    if selection:
        raw["selection"] = selection
    return write_config(tmp_path / f"z{bool(selection):d}.yaml", raw)


def test_string_branch_in_a_selection(shared_testdata, tmp_path) -> None:
    path = str(shared_testdata / "uproot-Zmumu.root")
    res = CliRunner().invoke(main, ["ingest", str(_zmumu(tmp_path, path, None))])
    assert res.exit_code == 0, res.output
    before = snapshot(tmp_path / "runs")
    res = CliRunner().invoke(main, ["ingest", str(_zmumu(tmp_path, path, "Type == 1"))])
    line = one_line_error(res)
    assert "branch 'Type' holds strings: it cannot be used in '" in line
    assert "Type == 1" in line
    assert snapshot(tmp_path / "runs") == before
    assert leftovers(tmp_path / "runs") == []
