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
    """The selected task lines of a dry run (written under the job directory's dry-run/)."""
    res = CliRunner().invoke(main, ["submit", str(config), *args, "--scheduler", "local", "--dry-run"])
    assert res.exit_code == 0, res.output
    dry = jobs.JobDir.of(load_config(config), args[0]).files(dry_run=True)
    spec = jobs.JobDir(dry).spec()
    lines = (dry / "tasks.txt").read_text().splitlines()
    assert lines == [jobs.command_line(t["args"]) for t in spec["tasks"]]
    return [line for line, t in zip(lines, spec["tasks"], strict=True) if t["label"] in spec["selected"]]


def prepared(config: Path, stage: str, **selection) -> jobs.JobDir:
    """The job directory of a real (not dry-run) submission, without starting any scheduler."""
    jd, _ = jobs.prepare(load_config(config), str(config), stage, jobs.Selection(**selection), None, None)
    return jd


def test_train_one_task_per_fold(small_toy) -> None:
    c = small_toy.resolve()
    assert tasks_of(small_toy, "train") == [f"pnn train {c} --fold 0", f"pnn train {c} --fold 1"]
    assert tasks_of(small_toy, "train", "--folds", "1") == [f"pnn train {c} --fold 1"]
    res = CliRunner().invoke(main, ["submit", str(small_toy), "train", "--fold", "2", "--dry-run"])
    assert res.exit_code == 2 and "fold 2 does not exist" in res.output


def test_limits_one_task_per_mass_with_the_collect_step(small_toy) -> None:
    c = small_toy.resolve()
    assert tasks_of(small_toy, "limits") == [f"pnn limits {c} --mass {m}" for m in (500, 750, 1000, 1500)]
    spec = jobs.JobDir.of(load_config(small_toy), "limits").files(dry_run=True) / "job.json"
    assert json.loads(spec.read_text())["collect"] == ["limits", str(c), "--collect"]


def test_evaluate_one_task_per_mass_with_report_as_collect(small_toy) -> None:
    c = small_toy.resolve()
    assert tasks_of(small_toy, "evaluate") == [f"pnn evaluate {c} --mass {m}" for m in (500, 750, 1000, 1500)]
    prepared(small_toy, "evaluate")
    assert tasks_of(small_toy, "evaluate", "--masses", "1500,500") == [
        f"pnn evaluate {c} --mass 500", f"pnn evaluate {c} --mass 1500"]
    spec = jobs.JobDir.of(load_config(small_toy), "evaluate").files(dry_run=True) / "job.json"
    spec = json.loads(spec.read_text())
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
    spec = json.loads((Path("elsewhere") / "small" / "jobs" / "evaluate" / "dry-run" / "job.json").resolve()
                      .read_text())
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
    spec = jobs.JobDir.of(load_config(small_toy), "dedicated").files(dry_run=True) / "job.json"
    spec = json.loads(spec.read_text())
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
    jobs.write_json(jd.marker(task["label"]),
                    {"config_digest": jobs.stage_digest(cfg, "evaluate")})
    assert jobs.pending(jd, spec) == [0, 1, 2, 3]  # marker without the output: not done
    Path(task["outputs"][0]).parent.mkdir(parents=True)
    Path(task["outputs"][0]).write_text("{}")
    assert jobs.pending(jd, spec) == [0, 2, 3]
    raw = yaml.safe_load(small_toy.read_text())
    raw["seed"] = 8
    small_toy.write_text(yaml.safe_dump(raw))
    jd, spec = jobs.prepare(load_config(small_toy), str(small_toy), "evaluate", jobs.Selection(), None, None)
    assert jobs.pending(jd, spec) == [0, 1, 2, 3]  # done under another config: redo
    raw["seed"] = 7
    raw["cluster"] = {"partition": "short"}  # a section evaluate does not read
    small_toy.write_text(yaml.safe_dump(raw))
    jd, spec = jobs.prepare(load_config(small_toy), str(small_toy), "evaluate", jobs.Selection(), None, None)
    assert jobs.pending(jd, spec) == [0, 2, 3]  # still done


def test_failed_task_is_reported_with_its_log(small_toy, tmp_path, monkeypatch) -> None:
    """A config broken after submission: the task fails; status names its log and error line."""
    jd = prepared(small_toy, "evaluate", masses=(500.0,))
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
    prepared(small_toy, "evaluate")
    jd = prepared(small_toy, "evaluate", masses=(500.0,))
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


def test_force_reruns_done_tasks_and_a_dry_run_is_never_a_submission(small_toy) -> None:
    """A real local run, then dry runs (another scheduler and selection): status still shows
    the real outcome; only --force runs the done task again."""
    def invoke(*args: str) -> str:
        res = CliRunner().invoke(main, [*args])
        assert res.exit_code == 0, res.output
        return res.output

    invoke("submit", str(small_toy), "ingest", "--scheduler", "local")
    jd = jobs.JobDir.of(load_config(small_toy), "ingest")
    assert invoke("status", str(small_toy), "ingest").splitlines() == ["shard0  done", "1 done"]
    real = {p: p.read_bytes() for p in (jd.spec_path, jd.path / "tasks.txt", jd.state("shard0"))}

    invoke("submit", str(small_toy), "ingest", "--scheduler", "slurm", "--files-per-job", "1", "--dry-run")
    invoke("submit", str(small_toy), "ingest", "--scheduler", "local", "--force", "--dry-run")
    assert invoke("status", str(small_toy), "ingest").splitlines() == ["shard0  done", "1 done"]
    assert {p: p.read_bytes() for p in real} == real
    assert jd.marker("shard0").is_file()

    local = ("submit", str(small_toy), "ingest", "--scheduler", "local")
    assert "every task is done: nothing to run" in invoke(*local)
    assert jd.state("shard0").read_bytes() == real[jd.state("shard0")]
    assert "shard0: done" in invoke(*local, "--force")
    started = json.loads(real[jd.state("shard0")])["started"]
    assert json.loads(jd.state("shard0").read_text())["started"] > started
    assert invoke("status", str(small_toy), "ingest").splitlines() == ["shard0  done", "1 done"]


def test_forced_apply_tasks_may_overwrite_their_outputs(small_toy) -> None:
    ntuples = small_toy.parent / "ntuples"
    files = ("--files", str(ntuples / "*.root"))
    lines = tasks_of(small_toy, "apply", *files, "--force")
    assert lines and all(line.endswith(" --force") for line in lines)
    assert not any("--force" in line for line in tasks_of(small_toy, "apply", *files))


def _grid_config(tmp_path, grid: list[tuple[int, int]]) -> dict:
    """A two-parameter config with one signal sample per (mX, mY) point, given as constants."""
    return {"name": "xy", "output_dir": str(tmp_path / "runs"), "parameters": ["mX", "mY"],
            "samples": {"signal": [{"name": f"X{x}_Y{y}", "files": str(tmp_path / "s.root"),
                                    "tree": f"X{x}_Y{y}", "parameters": {"mX": x, "mY": y}}
                                   for x, y in grid],
                        "background": [{"name": "qcd", "files": str(tmp_path / "b.root"),
                                        "tree": "qcd"}]},
            "features": ["Mjj4", "Mjj2"]}


def test_two_parameter_evaluate_and_limits_go_one_task_per_point(tmp_path) -> None:
    grid = [(1000, 300), (1000, 500), (1500, 300)]
    raw = _grid_config(tmp_path, grid)
    config = tmp_path / "xy.yaml"
    config.write_text(yaml.safe_dump(raw))
    c = config.resolve()
    labels = ["mX1000_mY300", "mX1000_mY500", "mX1500_mY300"]
    assert tasks_of(config, "evaluate") == [f"pnn evaluate {c} --point {lab}" for lab in labels]
    assert tasks_of(config, "limits", "--point", "mX=1500,mY=300", "--point", "1000,500") == [
        f"pnn limits {c} --point mX1000_mY500", f"pnn limits {c} --point mX1500_mY300"]
    spec = json.loads((jobs.JobDir.of(load_config(config), "limits").files(dry_run=True)
                       / "job.json").read_text())
    assert [t["label"] for t in spec["tasks"]] == ["mX1000_mY500", "mX1500_mY300"]
    assert spec["tasks"][0]["outputs"] == [
        str(load_config(config).run_dir.resolve() / "limits" / "mX1000_mY500" / "limits.json")]
    # the points limits.points asks for, else evaluation.points, else every signal point
    raw["limits"] = {"points": [{"mX": 1000, "mY": 500}]}
    raw["evaluation"] = {"points": [{"mX": 1500, "mY": 300}]}
    config.write_text(yaml.safe_dump(raw))
    assert tasks_of(config, "limits") == [f"pnn limits {c} --point mX1000_mY500"]
    assert tasks_of(config, "evaluate") == [f"pnn evaluate {c} --point mX1500_mY300"]
    for args, words in ((("evaluate", "--mass", "1000"), "--mass is for a lone mass"),
                        (("evaluate", "--point", "mX=1000,mY=500"), "is not one of the evaluation"),
                        (("train", "--point", "mX1500_mY300"), "--point goes with stages")):
        res = CliRunner().invoke(main, ["submit", str(config), *args, "--dry-run"])
        assert res.exit_code == 2 and words in res.output, res.output


def test_two_parameter_hold_outs_go_one_task_per_interior_point(tmp_path) -> None:
    grid = [(500, 100), (1000, 100), (1000, 500), (1500, 100), (1500, 800), (750, 250)]
    raw = _grid_config(tmp_path, grid)
    config = tmp_path / "xy.yaml"
    config.write_text(yaml.safe_dump(raw))
    c = config.resolve()
    # (750, 250) lies inside the hull of the others, (1000, 100) on its edge; the rest are corners
    assert tasks_of(config, "interpolation") == [
        f"pnn study interpolation {c} --holdout {lab}" for lab in ("mX750_mY250", "mX1000_mY100")]
    assert tasks_of(config, "interpolation", "--point", "mX=750,mY=250") == [
        f"pnn study interpolation {c} --holdout mX750_mY250"]
    res = CliRunner().invoke(main, ["submit", str(config), "interpolation", "--point",
                                    "mX1500_mY800", "--dry-run"])
    assert res.exit_code == 2 and "is not one of the interior trained" in res.output, res.output


def test_one_parameter_points_are_masses(small_toy) -> None:
    c = small_toy.resolve()
    assert tasks_of(small_toy, "limits", "--point", "m750", "--mass", "500") == [
        f"pnn limits {c} --mass 500", f"pnn limits {c} --mass 750"]
