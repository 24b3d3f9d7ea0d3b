"""Bad tuning input: a search space that names no training key, an empty or impossible range,
a choice of the wrong type, a journal made by another config, an unfinished study. Each is one
line and exit code 2."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from pnn.cli import main
from pnn.core.config import load_config
from pnn.learn import tune
from tests.faults.util import one_line_error

SPACE = {"learning_rate": {"low": 0.01, "high": 0.3, "log": True},
         "layers": {"choices": [[32, 32, 32], [16, 16]]}}


def _config(good_run, tmp_path: Path, space: dict | None = None, **tune_keys) -> Path:
    raw = copy.deepcopy(good_run[0])
    raw["output_dir"] = str(tmp_path / "runs")
    raw["tune"] = {"trials": 3, "space": SPACE if space is None else space, **tune_keys}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _error(*args: str) -> str:
    return one_line_error(CliRunner().invoke(main, list(args)))


@pytest.mark.parametrize(("space", "words"), [
    ({"lerning_rate": {"low": 0.01, "high": 0.3}},
     ["key 'tune.space'", "'lerning_rate' is not a training key", "learning_rate"]),
    ({"learning_rate": {"low": 0.3, "high": 0.01}}, ["tune.space.learning_rate", "empty range"]),
    ({"learning_rate": {"low": 0.1, "high": 0.1}}, ["empty range"]),
    ({"learning_rate": {"low": 0.0, "high": 0.3, "log": True}}, ["log range needs low > 0"]),
    ({"batch_size": {"choices": [256, "big"]}}, ["'batch_size': 'big' is not a valid value"]),
    ({"batch_size": {"choices": [256, 512.5]}}, ["'batch_size': 512.5 is not a valid value"]),
    ({"layers": {"choices": [[32, 32, 32], 64]}}, ["'layers': 64 is not a valid value"]),
    ({"nesterov": {"choices": [True, "no"]}}, ["'nesterov': 'no' is not a valid value"]),
    ({"layers": {"low": 1, "high": 3}}, ["'layers' is not a number: give it choices"]),
    ({"batch_size": {"low": 128, "high": 1024.5}}, ["'batch_size' is an integer"]),
    ({"momentum": {"low": 0.5, "high": 1.5}}, ["'momentum': 1.5 is not a valid value"]),
    ({"learning_rate": {"low": 0.01}}, ["needs both low and high"]),
    ({"learning_rate": {"low": 0.01, "high": 0.3, "choices": [0.1]}}, ["either low and high"]),
    ({}, ["search space is empty"]),
    ({"learning_rate": {"low": 0.2, "high": 0.3}},
     ["tune.space.learning_rate", "training.learning_rate 0.1 is outside the space"]),
])
def test_bad_search_space_is_one_line(good_run, tmp_path, space, words) -> None:
    line = _error("tune", str(_config(good_run, tmp_path, space)))
    assert "config.yaml" in line
    for w in words:
        assert w in line, line


def test_config_without_tune_section(good_run, tmp_path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**good_run[0], "output_dir": str(tmp_path / "runs")}))
    line = _error("tune", str(path))
    assert "has no 'tune' section" in line and "space" in line
    line = _error("submit", str(path), "tune", "--scheduler", "local", "--dry-run")
    assert "has no 'tune' section" in line


def test_journal_of_another_config_is_refused_with_the_command_to_start_afresh(good_run, tmp_path) -> None:
    path = _config(good_run, tmp_path)
    tune.open_study(load_config(path), "events-id", seed=1)  # a journal of this config
    assert tune.study_status(load_config(path)).counts == {"WAITING": 1}  # its first trial
    other = _config(good_run, tmp_path, {**SPACE, "momentum": {"low": 0.5, "high": 0.95}})
    for args in (["status", str(other), "tune"], ["tune", str(other), "--collect"],
                 ["submit", str(other), "tune", "--scheduler", "local"]):
        line = _error(*args)
        assert "tuning journal" in line and "'tune.space' changed" in line, line
        assert f"rerun 'pnn tune {other} --fresh'" in line, line


def test_collect_of_an_unfinished_study_says_how_to_finish_it(good_run, tmp_path) -> None:
    path = _config(good_run, tmp_path)
    line = _error("tune", str(path), "--collect")
    assert "no tuning journal" in line and f"pnn tune {path}" in line
    tune.open_study(load_config(path), "events-id", seed=1)
    line = _error("tune", str(path), "--collect")
    assert "holds 0 of its 3 finished trials" in line and f"run 'pnn tune {path}'" in line


def test_tune_options_that_exclude_each_other(good_run, tmp_path) -> None:
    path = str(_config(good_run, tmp_path))
    assert "exclude each other" in _error("tune", path, "--worker", "0", "--collect")
    assert "--fresh starts a whole search" in _error("tune", path, "--fresh", "--worker", "1")
