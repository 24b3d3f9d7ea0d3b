"""Planted faults the sanity checks must report, each as one warning line that names what is
wrong, and checks that must not raise false alarms or claim a pass they did not compute."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pnn.cli import main
from pnn.core.config import load_config
from pnn.io import ingest, toy
from pnn.learn.train import training_events
from pnn.stats import sanity
from tests.conftest import toy_config, write_config


@pytest.fixture(scope="module")
def duplicated(tmp_path_factory) -> tuple[Path, dict]:
    """A tiny toy whose config also reads the 500 GeV signal tree as a background sample."""
    base = tmp_path_factory.mktemp("sanity_faults")
    cfg = toy_config(Path("."), masses=(500, 1000), offgrid=(), signal_events=300,
                     background_events=2000, epochs=1)
    g = cfg["generate"]
    toy.write(base / g["output"], g["masses"], g["signal_events"], g["background_events"],
              140.0, cfg["seed"])
    cfg["samples"]["background"].append(
        {"name": "copy_of_X500", "files": "ntuples/signal.root", "tree": toy.signal_tree_name(500)})
    write_config(base / "config.yaml", cfg)
    with contextlib.chdir(base):
        res = CliRunner().invoke(main, ["ingest", "config.yaml"])
    return base, {"exit_code": res.exit_code, "output": res.output}


def test_signal_events_reused_as_background_are_flagged(duplicated, monkeypatch) -> None:
    base, ingested = duplicated
    assert ingested["exit_code"] == 0, ingested["output"]
    monkeypatch.chdir(base)
    cfg = load_config("config.yaml")
    events, _ = ingest.load_events(cfg)
    check = sanity.shared_events(cfg, events)
    assert not check.passed and check.value == 300
    assert len(check.warning.splitlines()) == 1
    assert "'X500'" in check.warning and "'copy_of_X500'" in check.warning
    assert "signal.root" in check.warning and "disjoint selections" in check.warning
    assert "some may come" not in check.warning  # both read exactly the same tree


def test_same_event_numbers_in_different_trees_are_not_flagged(duplicated, monkeypatch) -> None:
    base, _ = duplicated
    monkeypatch.chdir(base)
    cfg = load_config("config.yaml")
    events, _ = ingest.load_events(cfg)
    events = events[events["sample"].astype(str) != "copy_of_X500"]
    assert sanity.shared_events(cfg, events).passed


def test_mass_leak_on_a_tiny_sample_is_no_false_alarm(duplicated, monkeypatch) -> None:
    base, _ = duplicated
    monkeypatch.chdir(base)
    cfg = load_config("config.yaml")
    events, _ = ingest.load_events(cfg)
    events = events[events["sample"].astype(str) != "copy_of_X500"]
    tiny = training_events(cfg, events).sample(150, random_state=1)
    check = sanity.mass_leak(cfg, tiny, 0.02)
    assert check.passed and check.tolerance > 0.05


def test_a_check_that_could_not_be_computed_is_not_passed() -> None:
    check = sanity.identical_auc({})
    assert not check.passed and np.isnan(check.value)
    assert len(check.warning.splitlines()) == 1


def test_one_trained_mass_warns_in_one_line() -> None:
    check = sanity.mass_sensitivity({750.0: np.linspace(0, 1, 10)})
    assert not check.passed
    assert check.warning.startswith("trained on one mass only (750 GeV)")
    assert len(check.warning.splitlines()) == 1
