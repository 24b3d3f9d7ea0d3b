"""pnn inspect and the plots section: bad input is one line and exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from pnn.cli import main
from tests.faults.util import one_line_error


def _with(good_run, tmp_path: Path, **changes) -> Path:
    cfg = yaml.safe_load(yaml.safe_dump(good_run[0]))
    cfg.update(changes)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize(("plots", "message"), [
    ({"formats": ["pdf"]}, "formats must include png"),
    ({"formats": ["png", "png"]}, "formats must include png"),
    ({"experiment": "LHCb"}, "plots.experiment"),
    ({"com": -1}, "plots.com"),
    ({"colour": "red"}, "unknown key 'plots.colour'"),
])
def test_bad_plots_section(good_run, tmp_path, plots, message) -> None:
    line = one_line_error(CliRunner().invoke(main, ["inspect", str(_with(good_run, tmp_path,
                                                                          plots=plots))]))
    assert message in line


def test_inspect_before_ingest_names_the_command(good_run, tmp_path) -> None:
    path = _with(good_run, tmp_path, output_dir=str(tmp_path / "empty"))
    line = one_line_error(CliRunner().invoke(main, ["inspect", str(path)]))
    assert f"run 'pnn ingest {path}' first" in line
    assert not (tmp_path / "empty" / "small" / "inputs").exists()


def test_inspect_refuses_a_model_of_other_training_settings(finished) -> None:
    raw = yaml.safe_load(finished.read_text())
    raw["training"]["epochs"] = 3  # the model on disk was trained with other settings
    finished.write_text(yaml.safe_dump(raw))
    line = one_line_error(CliRunner().invoke(main, ["inspect", str(finished)]))
    assert "stale" in line and f"pnn train {finished}" in line


def test_status_shows_inspect_missing_then_current(finished) -> None:
    res = CliRunner().invoke(main, ["status", str(finished)])
    assert any(line.startswith("inspect") and "missing" in line for line in res.output.splitlines())
    assert CliRunner().invoke(main, ["inspect", str(finished)]).exit_code == 0
    res = CliRunner().invoke(main, ["status", str(finished)])
    assert any(line.startswith("inspect") and "current" in line for line in res.output.splitlines())
