"""Scheduler files: the Slurm array and collect scripts, HTCondor submit descriptions and DAG
(parsed with the HTCondor Python bindings, no schedd needed), local dry run."""

import shlex
from pathlib import Path

import htcondor2
import pytest
import yaml
from click.testing import CliRunner

from pnn.batch.jobs import JobDir, Selection, prepare, stage_digest
from pnn.batch.schedulers import index_ranges
from pnn.cli import main
from pnn.core.config import load_config


def submit(config: Path, *args: str) -> str:
    res = CliRunner().invoke(main, ["submit", str(config), *args, "--dry-run"])
    assert res.exit_code == 0, res.output
    return res.output


def test_index_ranges() -> None:
    assert index_ranges([0, 1, 2, 5]) == "0-2,5"
    assert index_ranges([3]) == "3"
    assert index_ranges([0, 2, 3, 4, 7, 8]) == "0,2-4,7-8"


@pytest.fixture
def with_cluster(small_toy) -> Path:
    raw = yaml.safe_load(small_toy.read_text())
    raw["cluster"] = {"partition": "short", "memory": "2G", "cpus": 2, "max_concurrent": 3,
                      "slurm_directives": ["--qos=normal"], "setup": "source env.sh",
                      "job_flavour": "espresso"}
    small_toy.write_text(yaml.safe_dump(raw))
    return small_toy


def test_slurm_array_and_collect_scripts(with_cluster) -> None:
    out = submit(with_cluster, "evaluate", "--scheduler", "slurm", "--time", "02:00:00", "--account", "atlas")
    jd = JobDir.of(load_config(with_cluster), "evaluate")
    dry = jd.files(dry_run=True)
    script = (dry / "tasks.sbatch").read_text()
    for line in ("#SBATCH --array=0-3%3", "#SBATCH --partition=short", "#SBATCH --mem=2G",
                 "#SBATCH --cpus-per-task=2", "#SBATCH --time=02:00:00", "#SBATCH --account=atlas",
                 "#SBATCH --qos=normal", f"#SBATCH --output={jd.path}/logs/slurm-%A_%a.out"):
        assert line in script.splitlines()
    run = shlex.split(script.splitlines()[-1])
    assert run[0] == "exec" and Path(run[1]).is_absolute() and run[2:] == [
        "-m", "pnn", "job", "run-task", str(jd.path), "$SLURM_ARRAY_TASK_ID"]
    assert "run-collect" in (dry / "collect.sbatch").read_text()
    assert f"would run: sbatch --parsable {dry}/tasks.sbatch" in out
    assert "--dependency=afterok:<tasks job id> --kill-on-invalid-dep=yes" in out
    assert JobDir(dry).spec()["setup"] == "source env.sh"
    assert sorted(p.name for p in jd.path.iterdir()) == ["dry-run"]  # the job directory is untouched


def test_slurm_resubmission_arrays_only_pending_tasks(with_cluster) -> None:
    cfg = load_config(with_cluster)
    jd, spec = prepare(cfg, str(with_cluster), "evaluate", Selection(), None, None)
    for i in (0, 2):
        task = spec["tasks"][i]
        Path(task["outputs"][0]).parent.mkdir(parents=True, exist_ok=True)
        Path(task["outputs"][0]).write_text("{}")
        jd.marker(task["label"]).write_text(f'{{"config_digest": "{stage_digest(cfg, "evaluate")}"}}')
    submit(with_cluster, "evaluate", "--scheduler", "slurm", "--max-concurrent", "1")
    assert "#SBATCH --array=1,3%1" in (jd.files(dry_run=True) / "tasks.sbatch").read_text()
    out = submit(with_cluster, "evaluate", "--scheduler", "slurm", "--force")
    assert "#SBATCH --array=0-3%3" in (jd.files(dry_run=True) / "tasks.sbatch").read_text()
    assert "would run: sbatch" in out
    assert jd.marker(spec["tasks"][0]["label"]).is_file()  # a forced dry run forgets nothing


def test_htcondor_submit_description_and_dag_parse(with_cluster) -> None:
    out = submit(with_cluster, "evaluate", "--scheduler", "htcondor", "--memory", "3G")
    jd = JobDir.of(load_config(with_cluster), "evaluate")
    dry = jd.files(dry_run=True)
    sub = htcondor2.Submit((dry / "tasks.sub").read_text())
    assert sub["universe"] == "vanilla"
    assert sub["request_cpus"] == "2" and sub["request_memory"] == "3G"
    assert sub["MY.JobFlavour"] == '"espresso"'
    assert sub.getQArgs() == f"task from {dry}/tasks.txt"
    items = list(sub.itemdata())
    assert [i["task"] for i in items] == (dry / "tasks.txt").read_text().splitlines()
    assert "$(ClusterId).$(ProcId)" in sub["output"] and "$(ClusterId).$(ProcId)" in sub["error"]
    assert sub["max_materialize"] == "3"
    args = sub.expand("arguments")
    assert args[0] == args[-1] == '"'  # the new syntax: the list in double quotes, items in single
    assert shlex.split(args[1:-1]) == ["-m", "pnn", "job", "run-task", str(jd.path), "0",
                                        "--selected-only"]
    collect = htcondor2.Submit((dry / "collect.sub").read_text())
    assert collect.getQArgs() == "1" and "run-collect" in collect["arguments"]

    dag = (dry / "evaluate.dag").read_text().splitlines()
    nodes, edges = {}, []
    for line in dag:
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "JOB":
            nodes[words[1]] = Path(words[2])
        elif words[0] == "PARENT":
            edges.append((words[1], words[3]))
            assert words[2] == "CHILD"
        else:
            pytest.fail(f"unexpected DAG line {line!r}")
    assert set(nodes) == {"tasks", "collect"} and edges == [("tasks", "collect")]
    for path in nodes.values():
        htcondor2.Submit(path.read_text())  # each node's description parses
    assert f"would run: condor_submit_dag -force -batch-name pnn-evaluate {dry}/evaluate.dag" in out


def test_htcondor_without_collect_has_one_node(small_toy) -> None:
    submit(small_toy, "train", "--scheduler", "htcondor")
    jd = JobDir.of(load_config(small_toy), "train")
    dry = jd.files(dry_run=True)
    jobs = [ln for ln in (dry / "train.dag").read_text().splitlines() if ln.startswith("JOB")]
    assert len(jobs) == 1 and not (dry / "collect.sub").exists()


def test_local_dry_run_lists_runner_commands(small_toy) -> None:
    out = submit(small_toy, "train", "--scheduler", "local", "--max-concurrent", "1")
    jd = JobDir.of(load_config(small_toy), "train")
    assert "would run 2 task(s), 1 at a time:" in out
    assert f"-m pnn job run-task {jd.path} 1" in out
    assert not list(jd.path.glob("done/*"))


def test_bad_resource_override_is_one_line(small_toy) -> None:
    res = CliRunner().invoke(main, ["submit", str(small_toy), "train", "--cpus", "0", "--dry-run"])
    assert res.exit_code == 2 and "--cpus" in res.output and "Traceback" not in res.output


def test_default_scheduler_comes_from_the_config(small_toy) -> None:
    raw = yaml.safe_load(small_toy.read_text())
    raw["cluster"] = {"scheduler": "htcondor"}
    small_toy.write_text(yaml.safe_dump(raw))
    out = submit(small_toy, "train")
    jd = JobDir.of(load_config(small_toy), "train")
    assert "condor_submit_dag" in out and (jd.files(dry_run=True) / "tasks.sub").is_file()
    submit(small_toy, "train", "--scheduler", "slurm")
    assert not (jd.files(dry_run=True) / "tasks.sub").exists()  # each dry run starts afresh


def test_missing_sbatch_is_one_line_with_the_fix(small_toy, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no scheduler commands here
    res = CliRunner().invoke(main, ["submit", str(small_toy), "train", "--scheduler", "slurm"])
    assert res.exit_code == 2
    assert "'sbatch' not found: run on a submit node, or use --dry-run" in res.output
    res = CliRunner().invoke(main, ["submit", str(small_toy), "evaluate", "--scheduler", "htcondor"])
    assert res.exit_code == 0
    assert "condor_submit_dag is not installed here: on a submit node run" in res.output


@pytest.fixture
def with_tune(with_cluster) -> Path:
    raw = yaml.safe_load(with_cluster.read_text())
    raw["tune"] = {"trials": 6, "workers": 3,
                   "space": {"learning_rate": {"low": 0.01, "high": 0.3, "log": True}}}
    with_cluster.write_text(yaml.safe_dump(raw))
    return with_cluster


def test_tune_jobs_are_workers_with_a_collect_step(with_tune) -> None:
    out = submit(with_tune, "tune", "--scheduler", "slurm", "--workers", "2")
    jd = JobDir.of(load_config(with_tune), "tune")
    dry = jd.files(dry_run=True)
    lines = (dry / "tasks.txt").read_text().splitlines()
    config = str(with_tune.resolve())
    assert [shlex.split(ln) for ln in lines] == [["pnn", "tune", config, "--worker", str(i)]
                                                 for i in range(2)]
    assert "#SBATCH --array=0-1%3" in (dry / "tasks.sbatch").read_text().splitlines()
    assert JobDir(dry).spec()["collect"] == ["tune", config, "--collect"]
    assert "--dependency=afterok:<tasks job id>" in out

    submit(with_tune, "tune", "--scheduler", "htcondor")  # tune.workers: 3 jobs
    sub = htcondor2.Submit((dry / "tasks.sub").read_text())
    items = [shlex.split(i["task"]) for i in sub.itemdata()]
    assert [i[-1] for i in items] == ["0", "1", "2"] and all(i[1] == "tune" for i in items)
    collect = htcondor2.Submit((dry / "collect.sub").read_text())
    assert "run-collect" in collect["arguments"]
    dag = (dry / "tune.dag").read_text()
    assert "PARENT tasks CHILD collect" in dag


def test_workers_option_belongs_to_tune(with_tune) -> None:
    res = CliRunner().invoke(main, ["submit", str(with_tune), "train", "--workers", "2", "--dry-run"])
    assert res.exit_code == 2 and res.output.strip() == "pnn: error: --workers goes with stage 'tune'"
