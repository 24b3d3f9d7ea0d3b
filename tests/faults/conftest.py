"""A small finished run (ingest, train, evaluate, report), made once and copied per test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from pnn.cli import main
from pnn.io import toy
from tests.conftest import toy_config, write_config


@pytest.fixture(scope="session")
def finished_template(tmp_path_factory) -> Path:
    """Config of a tiny toy run taken through every stage up to the report."""
    tmp = tmp_path_factory.mktemp("finished")
    cfg = toy_config(tmp, signal_events=1500, background_events=15000, epochs=2)
    g = cfg["generate"]
    toy.write(g["output"], g["masses"] + g["offgrid_masses"], g["signal_events"],
              g["background_events"], 140.0, cfg["seed"])
    path = write_config(tmp / "config.yaml", cfg)
    for verb in ("ingest", "train", "evaluate", "report"):
        res = CliRunner().invoke(main, [verb, str(path)], catch_exceptions=False)
        assert res.exit_code == 0, res.output
    return path


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> tuple[dict, Path]:
    """A small toy ingested once: ``(its config dict, the folder holding ntuples and runs)``."""
    tmp = tmp_path_factory.mktemp("good")
    cfg = toy_config(tmp, signal_events=300, background_events=3000)
    g = cfg["generate"]
    toy.write(g["output"], g["masses"] + g["offgrid_masses"], g["signal_events"],
              g["background_events"], 140.0, cfg["seed"])
    res = CliRunner().invoke(main, ["ingest", str(write_config(tmp / "good.yaml", cfg))])
    assert res.exit_code == 0, res.output
    return cfg, tmp


@pytest.fixture
def finished(finished_template, tmp_path) -> Path:
    """A private copy of the finished run: returns its config path (output under tmp_path)."""
    raw = yaml.safe_load(finished_template.read_text())
    src = Path(raw["output_dir"]) / raw["name"]
    raw["output_dir"] = str(tmp_path / "runs")
    shutil.copytree(src, tmp_path / "runs" / raw["name"])
    return write_config(tmp_path / "config.yaml", raw)


def edit(path: Path, section: str, **values) -> Path:
    """Change keys of one config section in place."""
    raw = yaml.safe_load(path.read_text())
    if section:
        raw.setdefault(section, {}).update(values)
    else:
        raw.update(values)
    path.write_text(yaml.safe_dump(raw))
    return path
