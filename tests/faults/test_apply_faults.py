"""pnn apply with bad mass hypotheses or damaged input ntuples, and pnn ingest of damaged
ntuples: one line and exit code 2, earlier outputs untouched, no temporary file left."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import uproot
from click.testing import CliRunner

from pnn.cli import main
from tests.faults.test_model_faults import train_tiny, workdir
from tests.faults.util import leftovers, one_line_error, snapshot

BACKGROUND = "ntuples/background.root"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("apply_faults")
    train_tiny(base)
    return base


@pytest.fixture
def work(trained, tmp_path, monkeypatch) -> Path:
    """A trained copy with one good earlier apply output in ``scored/``."""
    work = workdir(trained, tmp_path, monkeypatch)
    res = CliRunner().invoke(main, ["apply", "config.yaml", "-i", BACKGROUND, "-o", "scored"])
    assert res.exit_code == 0, res.output
    assert (work / "scored" / "background_pnn.root").is_file()
    return work


def damage_tree_metadata(src: Path, dst: Path) -> None:
    """Copy ``src`` and overwrite the start of every TTree object (its streamed header, just
    after its TKey) with 0xFF bytes: the file opens, its trees cannot be read."""
    if src != dst:
        shutil.copyfile(src, dst)
    with uproot.open(src) as f:
        starts = [f.key(name).data_cursor.index for name, cls in f.classnames().items()
                  if cls == "TTree"]
    data = bytearray(dst.read_bytes())
    for start in starts:
        data[start:start + 64] = b"\xff" * 64
    dst.write_bytes(bytes(data))


def _apply(*args: str):
    return CliRunner().invoke(main, ["apply", "config.yaml", "-i", BACKGROUND, "-o", "scored",
                                     "--force", *args])


@pytest.mark.parametrize("mass", ["nan", "inf", "-inf"])
def test_non_finite_mass_is_refused(work, mass) -> None:
    before = snapshot(work)
    line = one_line_error(_apply("--mass", mass))
    assert "--mass" in line and "not a finite number" in line
    assert snapshot(work) == before
    assert leftovers(work) == []


def test_mass_outside_the_trained_range_needs_allow_extrapolation(work) -> None:
    before = snapshot(work)
    line = one_line_error(_apply("--mass", "2000"))
    assert "2000" in line and "500-1000" in line and "--allow-extrapolation" in line
    assert snapshot(work) == before
    assert leftovers(work) == []


def test_allow_extrapolation_scores_and_warns(work, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="pnn.core.points"):
        res = _apply("--mass", "2000", "--mass", "750", "--allow-extrapolation")
    assert res.exit_code == 0, res.output
    warned = [r.getMessage() for r in caplog.records if r.name == "pnn.core.points"]
    assert len(warned) == 1 and "2000" in warned[0] and "outside the trained range" in warned[0]
    with uproot.open(work / "scored" / "background_pnn.root") as f:
        assert "pnn_score_m2000" in f["ttbar"].keys()  # noqa: SIM118 -- branch names
    assert leftovers(work) == []


def test_damaged_input_ntuple_is_one_line_naming_it(work) -> None:
    damage_tree_metadata(work / BACKGROUND, work / "ntuples" / "broken.root")
    before = snapshot(work)
    res = CliRunner().invoke(main, ["apply", "config.yaml", "-i", "ntuples/broken.root",
                                    "-o", "scored"])
    line = one_line_error(res)
    assert "broken.root" in line and "damaged" in line
    assert snapshot(work) == before
    assert not (work / "scored" / "broken_pnn.root").exists()
    assert leftovers(work) == []


def test_truncated_input_ntuple_is_one_line_naming_it(work) -> None:
    data = (work / BACKGROUND).read_bytes()
    (work / "ntuples" / "cut.root").write_bytes(data[: len(data) // 2])
    before = snapshot(work)
    res = CliRunner().invoke(main, ["apply", "config.yaml", "-i", "ntuples/cut.root",
                                    "-o", "scored"])
    line = one_line_error(res)
    assert "cut.root" in line
    assert snapshot(work) == before
    assert leftovers(work) == []


def test_ingest_of_a_damaged_ntuple_is_one_line_and_keeps_the_events_table(work) -> None:
    damage_tree_metadata(work / BACKGROUND, work / BACKGROUND)
    before = snapshot(work / "runs")
    res = CliRunner().invoke(main, ["ingest", "config.yaml"])
    line = one_line_error(res)
    assert "background.root" in line and "damaged" in line
    assert snapshot(work / "runs") == before
    assert leftovers(work) == []


def test_one_bad_file_among_many_is_named_before_anything_is_written(work) -> None:
    damage_tree_metadata(work / BACKGROUND, work / "ntuples" / "broken.root")
    before = snapshot(work)
    res = CliRunner().invoke(main, ["apply", "config.yaml", "-i", "ntuples/*.root",
                                    "-o", "fresh"])
    line = one_line_error(res)
    assert "broken.root" in line and "damaged" in line
    assert snapshot(work) == before
    assert not (work / "fresh").exists() or not any((work / "fresh").iterdir())
    assert leftovers(work) == []


def test_keep_going_scores_the_rest_and_lists_the_failures(work) -> None:
    damage_tree_metadata(work / BACKGROUND, work / "ntuples" / "broken.root")
    (work / "ntuples" / "empty.root").write_bytes(b"")
    res = CliRunner().invoke(main, ["apply", "config.yaml", "-i", "ntuples/*.root",
                                    "-o", "fresh", "--keep-going"])
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    lines = res.output.strip().splitlines()
    failed = [x for x in lines if x.startswith("pnn: failed: ")]
    assert len(failed) == 2
    assert "broken.root" in failed[0] and "empty.root" in failed[1]
    assert lines[-1] == ("pnn: error: 2 of 4 inputs failed (listed above); the others were "
                         "scored")
    assert sorted(p.name for p in (work / "fresh").iterdir()) == ["background_pnn.root",
                                                                  "signal_pnn.root"]
    assert leftovers(work) == []
