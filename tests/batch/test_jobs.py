"""Task lists of every stage, completion markers, re-submission and pnn status."""

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

import pnn
from pnn.batch import jobs
from pnn.cli import main
from pnn.core.config import load_config


def tasks_of(config: Path, *args: str) -> list[str]:
    res = CliRunner().invoke(main, ["submit", str(config), *args, "--scheduler", "local", "--dry-run"])
    assert res.exit_code == 0, res.output
    spec = jobs.JobDir.of(load_config(config), args[0]).spec()
    lines = (load_config(config).run_dir / "jobs" / args[0] / "tasks.txt").read_text().splitlines()
    assert lines == [jobs.command_line(t["args"]) for t in spec["tasks"]]
    return [line for line, t in zip(lines, spec["tasks"], strict=True) if t["label"] in spec["selected"]]


def test_train_one_task_per_fold(small_toy) -> None:
    c = small_toy.resolve()
    assert tasks_of(small_toy, "train") == [f"pnn train {c} --fold 0", f"pnn train {c} --fold 1"]
    assert tasks_of(small_toy, "train", "--folds", "1") == [f"pnn train {c} --fold 1"]
    res = CliRunner().invoke(main, ["submit", str(small_toy), "train", "--fold", "2", "--dry-run"])
    assert res.exit_code == 2 and "fold 2 does not exist" in res.output


def test_evaluate_one_task_per_mass_with_report_as_collect(small_toy) -> None:
    c = small_toy.resolve()
    assert tasks_of(small_toy, "evaluate") == [f"pnn evaluate {c} --mass {m}" for m in (500, 750, 1000, 1500)]
    assert tasks_of(small_toy, "evaluate", "--masses", "1500,500") == [
        f"pnn evaluate {c} --mass 500", f"pnn evaluate {c} --mass 1500"]
    spec = json.loads((load_config(small_toy).run_dir / "jobs" / "evaluate" / "job.json").read_text())
    assert spec["collect"] == ["report", str(c)]
    # a smaller selection keeps every earlier task on its line: queued array tasks index it
    assert [t["label"] for t in spec["tasks"]] == ["m500", "m750", "m1000", "m1500"]
    assert spec["selected"] == ["m500", "m1500"]
    assert spec["python"] and Path(spec["python"]).is_absolute()
    res = CliRunner().invoke(main, ["submit", str(small_toy), "evaluate", "--mass", "600", "--dry-run"])
    assert res.exit_code == 2 and "600 GeV is not one of the evaluation masses" in res.output


def test_output_dir_is_passed_to_every_task(small_toy, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["submit", str(small_toy), "evaluate", "-o", "elsewhere", "--dry-run"])
    assert res.exit_code == 0, res.output
    spec = json.loads((Path("elsewhere") / "small" / "jobs" / "evaluate" / "job.json").resolve().read_text())
    out = str(Path("elsewhere").resolve())
    assert all(t["args"][-2:] == ["-o", out] for t in spec["tasks"]) and spec["collect"][-2:] == ["-o", out]


def test_contracted_stages_task_lists(small_toy) -> None:
    """ingest, apply and the two studies: task lists only (their verbs come with other stages)."""
    c = small_toy.resolve()
    ntuples = small_toy.parent / "ntuples"
    assert tasks_of(small_toy, "ingest") == [f"pnn ingest {c} --shard 0/1"]
    assert tasks_of(small_toy, "ingest", "--files-per-job", "1") == [
        f"pnn ingest {c} --shard 0/2", f"pnn ingest {c} --shard 1/2"]
    assert tasks_of(small_toy, "interpolation") == [f"pnn study interpolation {c} --holdout 1000"]
    assert tasks_of(small_toy, "dedicated") == [
        f"pnn study dedicated {c} --mass {m}" for m in (500, 1000, 1500)]
    spec = json.loads((load_config(small_toy).run_dir / "jobs" / "dedicated" / "job.json").read_text())
    assert spec["collect"] == ["study", "all", str(c)]
    files = sorted(str(p.resolve()) for p in ntuples.glob("*.root"))
    assert tasks_of(small_toy, "apply", "--files", str(ntuples / "*.root"), "--files-per-job", "1",
                    "--mass", "750") == [f"pnn apply {c} --input {f} --mass 750" for f in files]
    assert tasks_of(small_toy, "apply", "--files", str(ntuples / "*.root")) == [
        f"pnn apply {c} --input {files[0]} --input {files[1]}"]
    res = CliRunner().invoke(main, ["submit", str(small_toy), "apply", "--dry-run"])
    assert res.exit_code == 2 and "--files" in res.output


def test_done_needs_marker_outputs_and_same_config(small_toy) -> None:
    cfg = load_config(small_toy)
    jd, spec = jobs.prepare(cfg, str(small_toy), "evaluate", jobs.Selection(), None, None)
    assert jobs.pending(jd, spec) == [0, 1, 2, 3]
    task = spec["tasks"][1]
    jobs.write_json(jd.marker(task["label"]), {"config_digest": cfg.digest()})
    assert jobs.pending(jd, spec) == [0, 1, 2, 3]  # marker without the output: not done
    Path(task["outputs"][0]).parent.mkdir(parents=True)
    Path(task["outputs"][0]).write_text("{}")
    assert jobs.pending(jd, spec) == [0, 2, 3]
    raw = yaml.safe_load(small_toy.read_text())
    raw["seed"] = 8
    small_toy.write_text(yaml.safe_dump(raw))
    jd, spec = jobs.prepare(load_config(small_toy), str(small_toy), "evaluate", jobs.Selection(), None, None)
    assert jobs.pending(jd, spec) == [0, 1, 2, 3]  # done under another config: redo


def test_failed_task_is_reported_with_its_log(small_toy, tmp_path, monkeypatch) -> None:
    """A config broken after submission: the task fails; status names its log and error line."""
    tasks_of(small_toy, "evaluate", "--mass", "500")
    jd = jobs.JobDir.of(load_config(small_toy), "evaluate")
    good = small_toy.read_text()
    small_toy.write_text(good + "typo: 1\n")
    monkeypatch.chdir(tmp_path)  # the task runs in the recorded project directory
    assert jobs.run_task(jd.path, 0) == 2
    small_toy.write_text(good)
    log_path = jd.log("m500")
    res = CliRunner().invoke(main, ["status", str(small_toy), "evaluate"])
    assert res.exit_code == 1
    lines = res.output.splitlines()
    assert lines[0].split() == ["m500", "failed", "log", str(log_path)]
    assert lines[1].strip().startswith("pnn: error:") and "unknown key 'typo'" in lines[1]
    assert lines[2].split() == ["collect", "pending"]
    assert lines[3] == "1 failed, 1 pending"
    state = json.loads(jd.state("m500").read_text())
    assert state["exit_code"] == 2 and state["seconds"] > 0
    assert not jd.marker("m500").exists()


def test_local_pool_runs_the_setup_line_first_and_reports_failures(small_toy, tmp_path) -> None:
    flag = tmp_path / "setup-ran"
    res = CliRunner().invoke(main, ["submit", str(small_toy), "evaluate", "--mass", "500",
                                    "--scheduler", "local", "--setup", f"touch {flag}; exit 7"])
    log_path = load_config(small_toy).run_dir.resolve() / "jobs" / "evaluate" / "logs" / "m500.log"
    assert res.exit_code == 1 and flag.is_file()
    assert f"m500: FAILED (exit 7), log {log_path}" in res.output
    assert "collect" not in res.output  # no collect after a failed task


def test_status_before_submit_is_a_clear_error(small_toy) -> None:
    res = CliRunner().invoke(main, ["status", str(small_toy), "train"])
    assert res.exit_code == 2 and "run 'pnn submit' first" in res.output


def test_runner_entry_point_is_the_cli() -> None:
    res = CliRunner().invoke(main, ["job", "nonsense"])
    assert res.exit_code == 2 and "No such command" in res.output
    assert Path(pnn.__file__).with_name("__main__.py").is_file()


def test_htcondor_runner_skips_tasks_outside_the_selection(small_toy, capsys) -> None:
    tasks_of(small_toy, "evaluate")
    tasks_of(small_toy, "evaluate", "--mass", "500")
    jd = jobs.JobDir.of(load_config(small_toy), "evaluate")
    res = CliRunner().invoke(main, ["job", "run-task", str(jd.path), "1", "--selected-only"])
    assert res.exit_code == 0
    assert "m750 was not selected" in res.output + capsys.readouterr().out
    assert not jd.state("m750").exists() and not jd.log("m750").exists()


def test_cluster_section_is_strict(small_toy) -> None:
    raw = yaml.safe_load(small_toy.read_text())
    raw["cluster"] = {"partion": "short"}
    small_toy.write_text(yaml.safe_dump(raw))
    res = CliRunner().invoke(main, ["submit", str(small_toy), "train", "--dry-run"])
    assert res.exit_code == 2 and "unknown key 'cluster.partion'" in res.output
    raw["cluster"] = {"scheduler": "pbs"}
    small_toy.write_text(yaml.safe_dump(raw))
    res = CliRunner().invoke(main, ["submit", str(small_toy), "train", "--dry-run"])
    assert res.exit_code == 2 and "cluster.scheduler" in res.output
