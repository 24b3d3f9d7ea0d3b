"""Per-mass make targets keep their outputs: GNU make must not delete evaluate/m<mass>/metrics.json
as an intermediate file, or 'pnn report' would silently drop that mass.

A stub stands in for pnn (it writes the file each verb would write), so no training is needed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.faults.util import leftovers, one_line_error, snapshot

ROOT = Path(__file__).resolve().parents[2]

STUB = """\
#!/bin/bash
# stand-in for pnn: VERB CONFIG [--point mM]; writes what the verb would write
verb=$1; shift 2
run={run}
echo "$verb $*" >> {calls}
if [ "$verb" = evaluate ] && [ "$1" = --point ]; then
    if [ "$2" = "m{bad}" ]; then
        echo "pnn: error: mass ${{2#m}} GeV is not one of the evaluation masses: pick another" >&2
        exit 2
    fi
    mkdir -p "$run/evaluate/$2" && echo "{{\\"mass\\": ${{2#m}}}}" > "$run/evaluate/$2/metrics.json"
elif [ "$verb" = limits ] && [ "$1" = --point ]; then
    mkdir -p "$run/limits/$2" && echo "{{\"mass\": ${{2#m}}}}" > "$run/limits/$2/limits.json"
elif [ "$verb" = report ]; then
    for f in "$run"/evaluate/m*/metrics.json; do
        basename "$(dirname "$f")"
    done > "$run/summary.json"
fi
"""

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


@pytest.fixture
def project(tmp_path: Path) -> dict:
    """A config, an up-to-date model and events table, and the make command with the stub."""
    run = tmp_path / "runs" / "small"
    config = tmp_path / "c.yaml"
    config.write_text(f"name: small\noutput_dir: {tmp_path / 'runs'}\n")
    (run / "model").mkdir(parents=True)
    stamp = tmp_path / "installed"
    stamp.touch()
    old = time.time() - 60
    os.utime(config, (old, old))
    (run / "events.parquet").write_text("events")
    (run / "model" / "metadata.json").write_text("{}")
    (run / "evaluate").mkdir()
    (run / "evaluate" / "index.json").write_text("{}")
    stub = tmp_path / "pnn-stub"
    calls = tmp_path / "calls.txt"
    stub.write_text(STUB.format(run=run, calls=calls, bad="1250"))
    stub.chmod(0o755)
    make = ["make", "--no-print-directory", "-C", str(ROOT), f"CONFIG={config}", f"PNN={stub}",
            f"INSTALLED={stamp}"]
    return {"run": run, "make": make, "calls": calls}


def _make(project: dict, *targets: str) -> subprocess.CompletedProcess:
    return subprocess.run([*project["make"], *targets], capture_output=True, text=True, check=False)


def test_evaluate_one_mass_keeps_its_metrics_and_report_sees_it(project: dict) -> None:
    run = project["run"]
    res = _make(project, "evaluate-750")
    assert res.returncode == 0, res.stderr
    metrics = run / "evaluate" / "m750" / "metrics.json"
    assert metrics.is_file(), res.stdout  # make 4.3 used to 'rm' it as an intermediate file
    assert "rm " not in res.stdout
    assert _make(project, "evaluate-1000").returncode == 0
    before = snapshot(run)

    again = _make(project, "evaluate-750")
    assert again.returncode == 0 and "is up to date" in again.stdout
    assert snapshot(run) == before and leftovers(run) == []
    assert project["calls"].read_text().splitlines() == ["evaluate --point m750", "evaluate --point m1000"]

    assert _make(project, "report").returncode == 0
    assert sorted((run / "summary.json").read_text().split()) == ["m1000", "m750"]


def test_a_failing_mass_leaves_the_other_masses_untouched(project: dict) -> None:
    run = project["run"]
    assert _make(project, "evaluate-750").returncode == 0
    before = snapshot(run)
    res = _make(project, "evaluate-1250")
    assert res.returncode == 2
    pnn_lines = [ln for ln in res.stderr.splitlines() if ln.startswith("pnn:")]
    text = "\n".join(pnn_lines).encode()
    one_line_error(Result(CliRunner(), b"", text, text, None, res.returncode, None))
    assert "mass 1250 GeV" in pnn_lines[0]
    assert snapshot(run) == before and leftovers(run) == []
    assert not (run / "evaluate" / "m1250").exists()


def test_limits_of_one_mass_keep_their_file(project: dict) -> None:
    run = project["run"]
    res = _make(project, "limits-750")
    assert res.returncode == 0, res.stderr
    assert (run / "limits" / "m750" / "limits.json").is_file(), res.stdout
    assert (run / "evaluate" / "m750" / "metrics.json").is_file()
    assert "rm " not in res.stdout
    assert "limits --point m750" in project["calls"].read_text()
    res = _make(project, "limits-750")  # up to date: nothing runs again
    assert project["calls"].read_text().count("limits --point m750") == 1
