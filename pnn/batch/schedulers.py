"""Scheduler back ends: write the job files of a stage and submit them (Slurm, HTCondor, local).

Each back end writes its files into the stage's job directory, submits only the tasks that
are not done (HTCondor queues every line of tasks.txt; finished ones exit at once), then the
collect step once they all succeeded, and records what it submitted in submissions.json so
``pnn status`` can ask the scheduler which tasks are queued or running. A dry run writes the
same files under ``dry-run/`` and records nothing: it is never counted as a submission.

Resource values end up in ``#SBATCH`` lines and submit descriptions, one per line, so
:func:`check_resources` refuses control characters (a newline would add directives) and wall
times that are not in one of Slurm's formats.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pnn.batch.jobs import COLLECT, JobDir, forget_done, pending
from pnn.core.atomic import write_json, write_text
from pnn.core.config import Cluster
from pnn.core.errors import PnnError

log = logging.getLogger(__name__)

SCHEDULERS = ("slurm", "htcondor", "local")

#: Slurm's --time formats; the regular expression accepts exactly these (ASCII digits only).
TIME_FORMATS = ("minutes", "minutes:seconds", "hours:minutes:seconds", "days-hours",
                "days-hours:minutes", "days-hours:minutes:seconds")
_TIME = re.compile(r"[0-9]+(:[0-9]+){0,2}|[0-9]+-[0-9]+(:[0-9]+){0,2}")

#: Resource keys written as text into scheduler files (the list keys are checked item by item).
_TEXT_KEYS = ("partition", "account", "time", "memory", "job_flavour", "slurm_directives",
              "htcondor_commands")
_LINE_BREAKS = {"\x85", "\u2028", "\u2029"}


def _control_character(value: str) -> str | None:
    """The first control character or line break in ``value``, else None."""
    for ch in value:
        if ord(ch) < 32 or ord(ch) == 127 or 0x80 <= ord(ch) < 0xA0 or ch in _LINE_BREAKS:
            return ch
    return None


def check_resources(res: Cluster, *, from_command_line: tuple[str, ...] = (),
                    config: str | None = None) -> None:
    """Refuse resource values that would break or inject lines of the scheduler files.

    ``from_command_line`` names the keys given as options (``--time``); the others are named
    as config keys (``cluster.time`` of ``config``), so the message points at what to edit.
    """
    def where(key: str) -> str:
        if key in from_command_line:
            return "option --directive" if key.endswith(("directives", "commands")) else \
                f"option --{key.replace('_', '-')}"
        return f"cluster.{key}" + (f" in '{config}'" if config else "")

    for key in _TEXT_KEYS:
        value = getattr(res, key)
        for item in value if isinstance(value, list) else [value]:
            if item is None:
                continue
            bad = _control_character(item)
            if bad is not None:
                raise PnnError(f"{where(key)}: {item!r} contains the control character {bad!r}; "
                               "it is written into a line of the job script, where a newline would "
                               "add directives: give the value on one line without control characters")
    if not _TIME.fullmatch(res.time):
        raise PnnError(f"{where('time')}: {res.time!r} is not a Slurm wall time: use one of "
                       f"{', '.join(TIME_FORMATS)} (digits only, e.g. 90, 02:00:00 or 1-12:00:00)")


def _runner(spec: dict, jd: JobDir, *args: str) -> list[str]:
    return [spec["python"], "-m", "pnn", "job", *args, str(jd.path)]


def index_ranges(indices: list[int]) -> str:
    """Slurm array spec of sorted indices: [0, 1, 2, 5] -> '0-2,5'."""
    parts: list[str] = []
    start = prev = indices[0]
    for i in [*indices[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(f"{start}-{prev}" if prev > start else f"{start}")
        if i is not None:
            start = prev = i
    return ",".join(parts)


def _record(jd: JobDir, entry: dict) -> None:
    path = jd.path / "submissions.json"
    history = json.loads(path.read_text()) if path.is_file() else []
    write_json(path, [*history, {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **entry}])


def submissions(jd: JobDir) -> list[dict]:
    path = jd.path / "submissions.json"
    return json.loads(path.read_text()) if path.is_file() else []


def _run(cmd: list[str]) -> str:
    """Run a scheduler command; its failure is the user's to fix, so one clear line."""
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise PnnError(f"'{cmd[0]}' not found: run on a submit node, or use --dry-run") from None
    if res.returncode != 0:
        detail = (res.stderr.strip() or res.stdout.strip()).splitlines()
        raise PnnError(f"'{shlex.join(cmd)}' failed: {detail[-1] if detail else res.returncode}")
    return res.stdout.strip()


# --- Slurm ----------------------------------------------------------------------------------

def slurm_script(spec: dict, jd: JobDir, res: Cluster, body: list[str], *, name: str,
                 array: str | None, output: str) -> str:
    """An sbatch script: resources as #SBATCH lines, then the runner."""
    lines = ["#!/bin/bash", f"#SBATCH --job-name={name}"]
    if array is not None:
        lines.append(f"#SBATCH --array={array}" + (f"%{res.max_concurrent}" if res.max_concurrent else ""))
    lines += [f"#SBATCH --output={jd.path / 'logs' / output}", f"#SBATCH --chdir={spec['project_dir']}",
              f"#SBATCH --time={res.time}", f"#SBATCH --mem={res.memory}",
              f"#SBATCH --cpus-per-task={res.cpus}"]
    if res.partition:
        lines.append(f"#SBATCH --partition={res.partition}")
    if res.account:
        lines.append(f"#SBATCH --account={res.account}")
    lines += [f"#SBATCH {d}" for d in res.slurm_directives]
    return "\n".join([*lines, "", *body, ""])


def submit_slurm(spec: dict, jd: JobDir, res: Cluster, dry_run: bool, force: bool = False) -> list[str]:
    """Write tasks.sbatch (job array over the pending tasks) and collect.sbatch; sbatch them."""
    todo = pending(jd, spec, force=force)
    live, _ = slurm_view(jd)
    messages = []
    if live:  # submitting again now would run the same tasks twice
        raise PnnError(f"tasks of '{spec['stage']}' are still queued or running ({', '.join(sorted(live))}): "
                       "wait for them (pnn status) or cancel them with scancel, then submit again")
    name = f"pnn-{spec['stage']}"
    tasks_file = jd.files(dry_run) / "tasks.sbatch"
    collect_file = jd.files(dry_run) / "collect.sbatch"
    if todo:
        run = shlex.join(_runner(spec, jd, "run-task"))
        write_text(tasks_file, slurm_script(spec, jd, res, [f'exec {run} "$SLURM_ARRAY_TASK_ID"'],
                                            name=name, array=index_ranges(todo), output="slurm-%A_%a.out"))
    need_collect = bool(spec.get("collect")) and (bool(todo) or not jd.marker(COLLECT).is_file())
    if need_collect:
        run = shlex.join(_runner(spec, jd, "run-collect"))
        write_text(collect_file, slurm_script(spec, jd, res, [f"exec {run}"], name=f"{name}-collect",
                                              array=None, output="slurm-collect-%j.out"))
    if not todo and not need_collect:
        return ["every task is done: nothing to submit"]
    if force and not dry_run:
        forget_done(jd, spec, todo)
    tasks_cmd = ["sbatch", "--parsable", str(tasks_file)]
    job_id = "<tasks job id>"
    if todo:
        if dry_run:
            messages.append(f"would run: {shlex.join(tasks_cmd)}")
        else:
            job_id = _run(tasks_cmd).split(";")[0]
            _record(jd, {"scheduler": "slurm", "jobs": {spec["tasks"][i]["label"]: f"{job_id}_{i}"
                                                        for i in todo}})
            messages.append(f"submitted {len(todo)} task(s) as Slurm job array {job_id}")
    collect_cmd = ["sbatch", "--parsable"]
    if todo:
        collect_cmd += [f"--dependency=afterok:{job_id}", "--kill-on-invalid-dep=yes"]
    collect_cmd.append(str(collect_file))
    if need_collect:
        if dry_run:
            shown = " ".join(c if "<" in c else shlex.quote(c) for c in collect_cmd)
            messages.append(f"would run: {shown}")
        else:
            collect_id = _run(collect_cmd).split(";")[0]
            _record(jd, {"scheduler": "slurm", "jobs": {COLLECT: collect_id}})
            messages.append(f"submitted the collect job {collect_id}"
                            + (f" (runs after {job_id} succeeds)" if todo else ""))
    return messages


_SLURM_STATES = {"RUNNING": "running", "COMPLETING": "running", "CONFIGURING": "running",
                 "PENDING": "queued", "REQUEUED": "queued", "SUSPENDED": "queued"}


def _slurm_jobs(jd: JobDir) -> dict[str, str]:
    """Slurm job id of each task's latest submission ('<array id>_<index>' for tasks)."""
    ids: dict[str, str] = {}
    for sub in submissions(jd):
        if sub.get("scheduler") == "slurm":
            ids.update(sub["jobs"])
    return ids


def slurm_view(jd: JobDir) -> tuple[dict[str, str], dict[str, Path]]:
    """Tasks squeue lists as queued or running, and the Slurm output file of the submitted
    tasks it no longer lists (both empty without squeue)."""
    jobs = _slurm_jobs(jd)
    if not jobs or shutil.which("squeue") is None:
        return {}, {}
    res = subprocess.run(["squeue", "-h", "-r", "-o", "%i %T"], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        return {}, {}
    listed = dict(line.partition(" ")[::2] for line in res.stdout.splitlines())
    live, gone = {}, {}
    for label, job in jobs.items():
        if listed.get(job) in _SLURM_STATES:
            live[label] = _SLURM_STATES[listed[job]]
        elif job not in listed:
            name = f"slurm-collect-{job}.out" if label == COLLECT else f"slurm-{job}.out"
            gone[label] = jd.path / "logs" / name
    return live, gone


# --- HTCondor -------------------------------------------------------------------------------

def _condor_args(args: list[str]) -> str:
    """HTCondor's new argument syntax: the whole list in double quotes, each item in single."""
    return '"' + " ".join("'" + a.replace("'", "''").replace('"', '""') + "'" for a in args) + '"'


def condor_submit_description(spec: dict, jd: JobDir, res: Cluster, args: list[str], *,
                              queue: str, task: str) -> str:
    """A vanilla-universe submit description running the runner with ``args``."""
    logs = jd.path / "logs"
    lines = [
        f"# pnn {spec['stage']}: {task}",
        "universe = vanilla",
        f"executable = {spec['python']}",
        f"arguments = {_condor_args(args)}",
        f"initialdir = {spec['project_dir']}",
        f"request_cpus = {res.cpus}",
        f"request_memory = {res.memory}",
        f'+JobFlavour = "{res.job_flavour}"',
        f'+PnnJobDir = "{jd.path}"',
        f'+PnnTask = "{task}"',
        f"log = {logs}/condor-$(ClusterId).log",
        f"output = {logs}/condor-$(ClusterId).$(ProcId).out",
        f"error = {logs}/condor-$(ClusterId).$(ProcId).err",
    ]
    if res.account:
        lines.append(f'+AccountingGroup = "{res.account}"')
    if res.max_concurrent and queue != "1":
        lines.append(f"max_materialize = {res.max_concurrent}")
    lines += res.htcondor_commands
    return "\n".join([*lines, f"queue {queue}", ""])


def submit_htcondor(spec: dict, jd: JobDir, res: Cluster, dry_run: bool, force: bool = False) -> list[str]:
    """Write tasks.sub, collect.sub and a DAG with collect as the child; condor_submit_dag it.

    The files refer to each other in the folder they are written to (``dry-run/`` for a dry
    run); the jobs themselves always run against the job directory.
    """
    todo = pending(jd, spec, force=force)
    if not todo and (not spec.get("collect") or jd.marker(COLLECT).is_file()):
        return ["every task is done: nothing to submit"]
    files = jd.files(dry_run)
    run_task = ["-m", "pnn", "job", "run-task", str(jd.path), "$(ProcId)", "--selected-only"]
    write_text(files / "tasks.sub", condor_submit_description(
        spec, jd, res, run_task, queue=f"task from {files / 'tasks.txt'}", task="tasks"))
    dag = [f"# pnn {spec['stage']}: every line of tasks.txt, then the collect step",
           f"JOB tasks {files / 'tasks.sub'}"]
    if spec.get("collect"):
        write_text(files / "collect.sub", condor_submit_description(
            spec, jd, res, ["-m", "pnn", "job", "run-collect", str(jd.path)], queue="1", task=COLLECT))
        dag += [f"JOB collect {files / 'collect.sub'}", "PARENT tasks CHILD collect"]
    dag_file = files / f"{spec['stage']}.dag"
    write_text(dag_file, "\n".join(dag) + "\n")
    cmd = ["condor_submit_dag", "-force", "-batch-name", f"pnn-{spec['stage']}", str(dag_file)]
    if dry_run:
        return [f"would run: {shlex.join(cmd)}"]
    if force:
        forget_done(jd, spec, todo)
    if shutil.which("condor_submit_dag") is None:
        return [f"condor_submit_dag is not installed here: on a submit node run\n  {shlex.join(cmd)}"]
    out = _run(cmd)
    _record(jd, {"scheduler": "htcondor", "output": out.splitlines()[-1:] or []})
    return [f"submitted the DAG {dag_file.name} ({len(todo)} pending task(s))"]


_CONDOR_STATES = {"1": "queued", "2": "running", "5": "queued", "6": "running", "7": "queued"}


def htcondor_live(jd: JobDir) -> dict[str, str]:
    """Tasks that condor_q lists as idle/held (queued) or running (empty without condor_q)."""
    if shutil.which("condor_q") is None or not any(s.get("scheduler") == "htcondor" for s in submissions(jd)):
        return {}
    res = subprocess.run(["condor_q", "-constraint", f'PnnJobDir == "{jd.path}"', "-af", "PnnTask",
                          "ProcId", "JobStatus"], capture_output=True, text=True, check=False)
    tasks = jd.spec()["tasks"]
    live = {}
    for line in res.stdout.splitlines():
        parts = line.split()
        if len(parts) != 3 or parts[2] not in _CONDOR_STATES:
            continue
        label = COLLECT if parts[0] == COLLECT else tasks[int(parts[1])]["label"]
        live[label] = _CONDOR_STATES[parts[2]]
    return live


# --- local ----------------------------------------------------------------------------------

def submit_local(spec: dict, jd: JobDir, res: Cluster, dry_run: bool,
                 force: bool = False) -> tuple[list[str], int]:
    """Run the pending tasks on this machine with a bounded process pool, then collect."""
    todo = pending(jd, spec, force=force)
    workers = res.max_concurrent or max(1, (os.cpu_count() or 1) // res.cpus)
    commands = [[*_runner(spec, jd, "run-task"), str(i)] for i in todo]
    need_collect = bool(spec.get("collect")) and (bool(todo) or not jd.marker(COLLECT).is_file())
    collect = _runner(spec, jd, "run-collect")
    if dry_run:
        msgs = [f"would run {len(todo)} task(s), {workers} at a time:"]
        msgs += [f"  {shlex.join(c)}" for c in commands]
        if need_collect:
            msgs.append(f"then: {shlex.join(collect)}")
        return msgs, 0
    if not todo and not need_collect:
        return ["every task is done: nothing to run"], 0
    if force:
        forget_done(jd, spec, todo)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def one(cmd: list[str]) -> int:
        return subprocess.run(cmd, stdout=subprocess.DEVNULL, env=env, check=False).returncode

    log.info("running %d task(s) of %s, %d at a time", len(todo), spec["stage"], workers)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        codes = list(pool.map(one, commands))
    msgs = [f"{spec['tasks'][i]['label']}: " + ("done" if c == 0 else f"FAILED (exit {c}), log "
                                                 f"{jd.log(spec['tasks'][i]['label'])}")
            for i, c in zip(todo, codes, strict=True)]
    failed = sum(c != 0 for c in codes)
    if failed:
        return [*msgs, f"{failed} task(s) failed: fix and submit again (finished tasks are kept)"], 1
    if need_collect:
        code = one(collect)
        msgs.append("collect: done" if code == 0 else f"collect: FAILED, log {jd.log(COLLECT)}")
        if code:
            return msgs, 1
    return msgs, 0


def submit(spec: dict, jd: JobDir, res: Cluster, scheduler: str, dry_run: bool,
           force: bool = False) -> tuple[list[str], int]:
    """Submit a prepared job directory; the messages to print and the exit code.

    ``force`` reruns the selected tasks even when they are done.
    """
    check_resources(res)
    if scheduler == "slurm":
        return submit_slurm(spec, jd, res, dry_run, force), 0
    if scheduler == "htcondor":
        return submit_htcondor(spec, jd, res, dry_run, force), 0
    if scheduler == "local":
        return submit_local(spec, jd, res, dry_run, force)
    raise PnnError(f"unknown scheduler '{scheduler}': use one of {', '.join(SCHEDULERS)}")


def scheduler_view(jd: JobDir) -> tuple[dict[str, str], dict[str, Path]]:
    """Queued/running tasks according to the scheduler this stage was submitted to, and the
    scheduler output files of submitted tasks it no longer lists."""
    live, gone = slurm_view(jd)
    return {**htcondor_live(jd), **live}, gone
