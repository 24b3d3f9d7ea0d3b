"""Cluster options that would break or inject lines of the job scripts are refused in one line,
before anything of an earlier (good) submission is touched."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from pnn.batch.jobs import JobDir
from pnn.cli import main
from pnn.core.config import load_config
from tests.faults.util import leftovers, one_line_error, snapshot

FORMATS = ("minutes, minutes:seconds, hours:minutes:seconds, days-hours, days-hours:minutes, "
           "days-hours:minutes:seconds")


@pytest.fixture
def submitted(small_toy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real Slurm submission of 'train' (sbatch and squeue are stubs on PATH)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("sbatch", "echo 4242"), ("squeue", "exit 0")):
        stub = bin_dir / name
        stub.write_text(f"#!/bin/sh\n{body}\n")
        stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    res = CliRunner().invoke(main, ["submit", str(small_toy), "train", "--scheduler", "slurm"])
    assert res.exit_code == 0, res.output
    assert "submitted 2 task(s) as Slurm job array 4242" in res.output
    return small_toy


def refused(config: Path, *args: str) -> str:
    """Submit with ``args``: one error line, and every earlier file byte-identical, none added."""
    root = config.parent
    before = snapshot(root)
    res = CliRunner().invoke(main, ["submit", str(config), "train", "--scheduler", "slurm", *args])
    line = one_line_error(res)
    assert snapshot(root) == before
    assert leftovers(root) == []
    return line


@pytest.mark.parametrize("option", ["--partition", "--account"])
@pytest.mark.parametrize("value", ["short\n#SBATCH --qos=high", "short\r", "a\tb", "x\x00", "a\u2028b"])
def test_control_characters_in_partition_and_account(submitted: Path, option: str, value: str) -> None:
    line = refused(submitted, option, value)
    assert f"option {option}: {value!r} contains the control character" in line
    assert "without control characters" in line


@pytest.mark.parametrize("value", ["1h", "01:00:00\n#SBATCH --qos=high", "1-2:3:4:5", "1:2:3:4", "",
                                   "-1", "1:", ":30", "1--2", "1-", " 90", "\u0661\u0662", "1.5"])
def test_time_must_be_a_slurm_format(submitted: Path, value: str) -> None:
    line = refused(submitted, "--time", value)
    assert line.startswith("pnn: error: option --time: ")
    assert FORMATS in line or "control character" in line


@pytest.mark.parametrize("value", ["90", "90:30", "1:00:00", "2-12", "2-12:30", "2-12:30:00"])
def test_every_slurm_time_format_is_accepted(small_toy: Path, value: str) -> None:
    res = CliRunner().invoke(main, ["submit", str(small_toy), "train", "--scheduler", "slurm",
                                    "--time", value, "--dry-run"])
    assert res.exit_code == 0, res.output
    script = JobDir.of(load_config(small_toy), "train").files(dry_run=True) / "tasks.sbatch"
    assert f"#SBATCH --time={value}" in script.read_text().splitlines()


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("partition", "short\n#SBATCH --qos=high", "control character"),
    ("account", "atlas\r\n", "control character"),
    ("time", "2 hours", FORMATS),
    ("slurm_directives", ["--qos=normal\n#SBATCH --exclusive"], "control character"),
])
def test_config_keys_are_checked_and_named(submitted: Path, key: str, value: object, expected: str) -> None:
    raw = yaml.safe_load(submitted.read_text())
    raw["cluster"] = {key: value}
    submitted.write_text(yaml.safe_dump(raw))
    line = refused(submitted)
    assert f"cluster.{key} in '{submitted}'" in line and expected in line


def test_directive_option_is_named(submitted: Path) -> None:
    line = refused(submitted, "--directive", "--qos=normal\n#SBATCH --exclusive")
    assert "option --directive:" in line and "control character" in line


def test_command_line_wins_over_a_bad_config_value(submitted: Path) -> None:
    raw = yaml.safe_load(submitted.read_text())
    raw["cluster"] = {"time": "forever"}
    submitted.write_text(yaml.safe_dump(raw))
    res = CliRunner().invoke(main, ["submit", str(submitted), "train", "--scheduler", "slurm",
                                    "--time", "30", "--dry-run"])
    assert res.exit_code == 0, res.output
