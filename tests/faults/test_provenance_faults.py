"""Stale and mixed inputs are refused with one line that names the command to rerun."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from pnn.cli import main
from pnn.core import provenance
from pnn.core.config import load_config
from pnn.learn import train as pnn_train
from tests.faults.conftest import edit
from tests.faults.util import leftovers, one_line_error, snapshot


def run(*args: str):
    return CliRunner().invoke(main, [*args])


def test_a_fold_retrained_with_other_settings_stops_evaluate(finished) -> None:
    cfg = load_config(finished)
    edit(finished, "training", learning_rate=0.05)
    before = snapshot(cfg.run_dir)
    assert run("train", str(finished), "--fold", "0").exit_code == 0
    after = snapshot(cfg.run_dir)
    changed = {k for k in before if before[k] != after.get(k)}
    assert changed and all(k.startswith("model/fold0") or k == "model/metadata.json" for k in changed)
    kept = snapshot(cfg.run_dir)
    msg = one_line_error(run("evaluate", str(finished)))
    assert "fold 1" in msg and "'training' changed" in msg and f"pnn train {finished}'" in msg
    assert snapshot(cfg.run_dir) == kept and leftovers(cfg.run_dir) == []


def test_a_training_killed_mid_epoch_keeps_the_old_model_and_report_refuses(finished,
                                                                            monkeypatch) -> None:
    cfg = load_config(finished)
    before = snapshot(cfg.run_dir)
    edit(finished, "training", epochs=3)
    real = pnn_train.run_epoch
    calls = []

    def killed(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("SIGTERM")
        return real(*args, **kwargs)

    monkeypatch.setattr(pnn_train, "run_epoch", killed)
    res = run("train", str(finished), "--jobs", "1")  # in this process, where the patch is
    assert res.exit_code == 143 and "terminated" in res.output
    assert snapshot(cfg.run_dir) == before and leftovers(cfg.run_dir) == []
    msg = one_line_error(run("report", str(finished)))
    assert "stale" in msg and "'training' changed" in msg and "pnn train" in msg
    assert snapshot(cfg.run_dir) == before


def test_metrics_of_a_retrained_model_are_refused_by_report(finished) -> None:
    cfg = load_config(finished)
    assert run("train", str(finished)).exit_code == 0  # same settings, a new model
    kept = snapshot(cfg.run_dir)
    msg = one_line_error(run("report", str(finished)))
    assert "metrics.json" in msg and "another model" in msg and "pnn evaluate" in msg
    assert snapshot(cfg.run_dir) == kept


def test_editing_an_unrelated_section_invalidates_nothing(finished) -> None:
    edit(finished, "cluster", partition="short")
    edit(finished, "study", importance_repeats=5)
    res = run("status", str(finished))
    assert res.exit_code == 0, res.output
    assert [line.split()[:2] for line in res.output.splitlines()] == [
        ["ingest", "current"], ["train", "current"], ["inspect", "missing"], ["evaluate", "current"],
        ["report", "current"]]
    assert run("report", str(finished)).exit_code == 0


def test_status_names_the_stale_stages(finished) -> None:
    edit(finished, "evaluation", min_background_events=30)
    res = run("status", str(finished))
    assert res.exit_code == 1
    states = {line.split()[0]: line.split()[1] for line in res.output.splitlines()}
    assert states == {"ingest": "current", "train": "current", "inspect": "missing",
                      "evaluate": "stale", "report": "stale"}


def test_an_events_table_from_other_ingest_settings_is_refused(finished) -> None:
    cfg = load_config(finished)
    edit(finished, "", selection="sT > 100")
    kept = snapshot(cfg.run_dir)
    msg = one_line_error(run("train", str(finished)))
    assert "events table" in msg and "'selection' changed" in msg and f"pnn ingest {finished}'" in msg
    msg = one_line_error(run("evaluate", str(finished)))
    assert "pnn ingest" in msg
    assert snapshot(cfg.run_dir) == kept


def test_shards_made_with_another_selection_are_not_merged(finished) -> None:
    cfg = load_config(finished)
    for i in range(2):
        assert run("ingest", str(finished), "--shard", f"{i}/2").exit_code == 0
    edit(finished, "", selection="sT > 100")
    kept = snapshot(cfg.run_dir)
    msg = one_line_error(run("ingest", str(finished), "--merge"))
    assert "shard" in msg and "'selection' changed" in msg and "--shard 0/2" in msg
    assert snapshot(cfg.run_dir) == kept and leftovers(cfg.run_dir) == []
    for i in range(2):
        assert run("ingest", str(finished), "--shard", f"{i}/2").exit_code == 0
    res = run("ingest", str(finished), "--merge")
    assert res.exit_code == 0, res.output
    meta = json.loads((cfg.run_dir / "events.json").read_text())
    assert meta[provenance.KEY]["digest"] == provenance.digest(load_config(finished), "ingest")


def test_apply_with_new_aliases_and_an_older_model_refuses(finished, tmp_path) -> None:
    cfg = load_config(finished)
    edit(finished, "", aliases={"sT": "sT * 1.01"})
    ntuple = f"{cfg.generate.output}/background.root"
    msg = one_line_error(run("apply", str(finished), "--input", ntuple, "--mass", "500",
                             "-o", str(tmp_path / "friends")))
    assert "'aliases' changed" in msg and "pnn train" in msg
    assert not (tmp_path / "friends").exists()
    assert cfg.run_dir.is_dir()


def test_a_run_made_before_provenance_counts_as_stale(finished) -> None:
    cfg = load_config(finished)
    meta_path = cfg.run_dir / "model" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    for r in meta["fold_results"]:
        r.pop(provenance.KEY)
    meta_path.write_text(json.dumps(meta))
    kept = snapshot(cfg.run_dir)
    msg = one_line_error(run("evaluate", str(finished)))
    assert "before pnn recorded provenance" in msg and "pnn train" in msg
    assert snapshot(cfg.run_dir) == kept


def test_a_model_file_changed_after_training_is_refused(finished) -> None:
    cfg = load_config(finished)
    shutil.copy(cfg.run_dir / "model" / "fold1.scaler.json", cfg.run_dir / "model" / "fold0.scaler.json")
    msg = one_line_error(run("evaluate", str(finished), "--mass", "500"))
    assert "fold0.scaler.json" in msg and "--fold 0" in msg


@pytest.mark.parametrize("name", ["events.json", "evaluate/m500/metrics.json", "model/metadata.json"])
def test_damaged_stage_records_give_one_line(finished, name) -> None:
    cfg = load_config(finished)
    (cfg.run_dir / name).write_bytes(b"\x00{not json")
    kept = snapshot(cfg.run_dir)
    verb = "train" if name == "events.json" else "report"
    msg = one_line_error(run(verb, str(finished)))
    assert name.split("/")[-1] in msg and "damaged" in msg and "rerun 'pnn" in msg
    assert snapshot(cfg.run_dir) == kept


def test_a_damaged_events_table_gives_one_line(finished) -> None:
    cfg = load_config(finished)
    (cfg.run_dir / "events.parquet").write_bytes(b"PAR1 this is not parquet")
    msg = one_line_error(run("train", str(finished)))
    assert "events.parquet" in msg and "damaged" in msg and "pnn ingest" in msg


def test_submit_refuses_a_stage_whose_inputs_are_stale(finished) -> None:
    cfg = load_config(finished)
    edit(finished, "training", learning_rate=0.05)
    kept = snapshot(cfg.run_dir)
    msg = one_line_error(run("submit", str(finished), "evaluate", "--scheduler", "local"))
    assert "'training' changed" in msg and "pnn train" in msg
    assert snapshot(cfg.run_dir) == kept and not (cfg.run_dir / "jobs").exists()
