"""Batch jobs: split a stage into independent tasks, run one task, tell what is done.

A stage is a small :class:`Stage` entry in :data:`STAGES`: how to split it into tasks, the
command line of one task, the files a finished task leaves, and the collect command that
merges the outputs once every task is done. Everything of one submission lives under
``<run_dir>/jobs/<stage>/``::

    job.json        project directory, interpreter, setup line, config digest, the tasks
    tasks.txt       one ``pnn ...`` command per line; line i is task i
    logs/<task>.log output of the task's last attempt (and collect.log)
    state/<task>.json  last attempt: host, scheduler job id, start, end, exit code
    done/<task>     written (atomically) only after the command exited 0 and its outputs exist
    dry-run/        what ``pnn submit --dry-run`` would write; a dry run touches nothing else

A task runs as ``python -m pnn job run-task JOBDIR INDEX`` with the submitting shell's
interpreter, after the optional ``cluster.setup`` line, in the recorded project directory,
so it never depends on the scheduler's working directory. A finished task is skipped, so a
re-submission redoes only what is missing (``--force`` forgets the selected tasks' completion
first). A dry run reads the job directory but never changes it: tasks queued by a real
submission keep reading the same job.json, and ``pnn status`` keeps showing the real outcome.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pnn.core import inputs, points, provenance
from pnn.core.atomic import write_json, write_text
from pnn.core.config import Config
from pnn.core.errors import PnnError

log = logging.getLogger(__name__)

COLLECT = "collect"
DRY_RUN = "dry-run"


@dataclass(frozen=True)
class Selection:
    """What the user asked to submit: masses or points, folds, input files (empty = the
    stage's default)."""

    masses: tuple[float, ...] = ()
    folds: tuple[int, ...] = ()
    files: tuple[str, ...] = ()
    files_per_job: int = 10
    workers: int | None = None  # tune: worker jobs (default: tune.workers)
    points: tuple[str, ...] = ()  # signal points as given on the command line (--point)


@dataclass(frozen=True)
class Task:
    """One independent unit of work: a ``pnn`` command and the files it must leave."""

    label: str
    args: list[str]
    outputs: list[str] = field(default_factory=list)
    check: str | None = None  # extra completion check, see CHECKS


@dataclass(frozen=True)
class Stage:
    """How a stage turns into tasks, and the command that merges their outputs (if any)."""

    name: str
    split: Callable[[Config, str, Selection], list[Task]]
    collect: Callable[[Config, str], list[str]] | None
    help: str
    force_args: tuple[str, ...] = ()  # what the task's verb needs to overwrite its outputs


def _mass_label(m: float) -> str:
    return f"m{m:g}"


def _masses(requested: tuple[float, ...], default: list[float], what: str) -> list[float]:
    if not requested:
        return default
    unknown = [m for m in requested if m not in default]
    if unknown:
        raise PnnError(f"mass {unknown[0]:g} GeV is not one of the {what} masses "
                       f"({', '.join(f'{m:g}' for m in default)}): pick from these")
    return sorted(set(requested))


def _file_groups(files: list[str], per_job: int) -> list[list[str]]:
    if per_job < 1:
        raise PnnError(f"--files-per-job must be at least 1 (got {per_job})")
    return [files[i:i + per_job] for i in range(0, len(files), per_job)]


def split_train(cfg: Config, config: str, sel: Selection) -> list[Task]:
    """One task per fold: ``pnn train CONFIG --fold F``."""
    k = cfg.preprocessing.folds
    folds = sorted(set(sel.folds)) if sel.folds else list(range(k))
    bad = [f for f in folds if not 0 <= f < k]
    if bad:
        raise PnnError(f"fold {bad[0]} does not exist: folds are 0..{k - 1}")
    run = cfg.run_dir.resolve()
    return [Task(f"fold{f}", ["train", config, "--fold", str(f)],
                 [str(run / "model" / f"fold{f}.keras"), str(run / "model" / f"fold{f}.scaler.json")],
                 check=f"fold{f}") for f in folds]


def _requested(cfg: Config, sel: Selection) -> list[tuple[float, ...]]:
    """The points of ``--mass`` (a lone mass) and ``--point`` (any parameters)."""
    return points.requested(cfg.parameters, sel.masses, sel.points)


def _points(cfg: Config, sel: Selection, default: list[tuple[float, ...]],
            what: str) -> list[tuple[float, ...]]:
    """The requested points (default: ``default``), each one of ``default``."""
    names = cfg.parameters
    if len(names) == 1:
        return [(m,) for m in _masses(tuple(p[0] for p in _requested(cfg, sel)),
                                      [p[0] for p in default], what)]
    requested = _requested(cfg, sel)
    if not requested:
        return default
    unknown = [p for p in requested if not default
               or not points.mask(np.asarray(default, dtype=np.float64), p).any()]
    if unknown:
        raise PnnError(f"point {points.describe(names, unknown[0])} is not one of the {what} "
                       f"points ({', '.join(points.label(names, p) for p in default)}): pick "
                       "from these")
    return sorted(set(requested))


def _hypothesis(names: list[str], point: tuple[float, ...]) -> tuple[str, list[str]]:
    """The label and command-line option of a task at ``point``: ``m500`` and
    ``--mass 500`` for a lone mass, ``mX1000_mY300`` and ``--point mX1000_mY300`` else."""
    label = points.label(names, point)
    if len(names) == 1:
        return label, ["--mass", f"{point[0]:g}"]
    return label, ["--point", label]


def split_evaluate(cfg: Config, config: str, sel: Selection) -> list[Task]:
    """One task per mass hypothesis (signal point): ``pnn evaluate CONFIG --mass M`` or
    ``--point mX1000_mY300``."""
    default = cfg.evaluation_points() or cfg.signal_points()
    run = cfg.run_dir.resolve()
    tasks = []
    for p in _points(cfg, sel, default, "evaluation"):
        label, option = _hypothesis(cfg.parameters, p)
        tasks.append(Task(label, ["evaluate", config, *option],
                          [str(run / "evaluate" / label / "metrics.json")]))
    return tasks


def split_limits(cfg: Config, config: str, sel: Selection) -> list[Task]:
    """One task per mass hypothesis (signal point): ``pnn limits CONFIG --mass M`` or
    ``--point mX1000_mY300``."""
    default = cfg.limit_points() or cfg.evaluation_points() or cfg.signal_points()
    run = cfg.run_dir.resolve()
    tasks = []
    for p in _points(cfg, sel, default, "limits"):
        label, option = _hypothesis(cfg.parameters, p)
        tasks.append(Task(label, ["limits", config, *option],
                          [str(run / "limits" / label / "limits.json")]))
    return tasks


def sample_files(cfg: Config) -> list[str]:
    """Every input ROOT file of the config, once, in sample order."""
    seen: dict[str, None] = {}
    for s in cfg.samples.signal + cfg.samples.background:
        seen.update(dict.fromkeys(f for f, _ in s.resolved_files()))
    return list(seen)


def split_ingest(cfg: Config, config: str, sel: Selection) -> list[Task]:
    """One task per group of input files: ``pnn ingest CONFIG --shard I/N``."""
    n = len(_file_groups(sample_files(cfg), sel.files_per_job))
    shards = cfg.run_dir.resolve() / "events.d"
    return [Task(f"shard{i}", ["ingest", config, "--shard", f"{i}/{n}"],
                 [str(shards / f"shard-{i}-of-{n}.parquet")]) for i in range(n)]


def split_apply(cfg: Config, config: str, sel: Selection) -> list[Task]:
    """One task per group of input files: ``pnn apply CONFIG --input F ... [--mass M ...]``."""
    if not sel.files:
        raise PnnError("stage 'apply' needs the ntuples to score: pass --files FILE_OR_GLOB")
    files: list[str] = []
    for pattern in sel.files:
        matches = inputs.expand(pattern)
        if not matches:
            raise PnnError(f"--files: no file matches '{pattern}': check the path")
        files.extend(inputs.absolute(m) for m in matches)
    mass_args = [a for m in sorted(set(sel.masses)) for a in ("--mass", f"{m:g}")]
    out = cfg.run_dir.resolve() / "apply"
    return [Task(f"files{i}", ["apply", config, *[a for f in group for a in ("--input", f)], *mass_args],
                 [str(out / f"{Path(f).stem}_pnn.root") for f in group])
            for i, group in enumerate(_file_groups(files, sel.files_per_job))]


def _network_done(cfg: Config, name: str) -> str:
    """The marker ``pnn study`` writes once a study network is trained and saved."""
    return str(cfg.run_dir.resolve() / "study" / "networks" / name / "done.json")


def _trained_points(cfg: Config) -> list:
    """The trained signal points: from the config when every sample gives its point as
    constants, else from the events table (points read from tree names or branches)."""
    from pnn.io.ingest import SHARD_DIR, events_path, load_events

    found = cfg.signal_points(trained_only=True)
    if found or (not events_path(cfg).is_file() and not (cfg.run_dir / SHARD_DIR).is_dir()):
        return found
    from pnn.learn.preprocess import parameter_matrix
    from pnn.learn.train import training_events

    events, _ = load_events(cfg, columns=["sample", "label", *cfg.parameters])
    ev = training_events(cfg, events)
    return sorted(tuple(p) for p in points.unique(parameter_matrix(ev[ev["label"] == 1],
                                                                   cfg.parameters)))


def split_interpolation(cfg: Config, config: str, sel: Selection) -> list[Task]:
    """One task per interior trained mass or point: ``pnn study interpolation CONFIG
    --holdout M`` (``--holdout mX1000_mY300`` with several parameters)."""
    names = cfg.parameters
    inner = points.interior(_trained_points(cfg))
    if not inner:
        if len(names) == 1:
            raise PnnError("the interpolation study needs at least three trained masses")
        raise PnnError("the interpolation study needs a trained point inside the hull of the "
                       f"others; with points read from trees or branches, run "
                       f"'{cfg.command('ingest')}' first so that submit can list them")
    tasks = []
    for p in _points(cfg, sel, inner, "interior trained"):
        label = points.label(names, p)
        value = f"{p[0]:g}" if len(names) == 1 else label
        name = f"holdout{value}" if len(names) == 1 else f"holdout-{label}"
        tasks.append(Task(name, ["study", "interpolation", config, "--holdout", value],
                          [_network_done(cfg, f"holdout-{label}")]))
    return tasks


def split_dedicated(cfg: Config, config: str, sel: Selection) -> list[Task]:
    """One task per trained mass: ``pnn study dedicated CONFIG --mass M``."""
    trained = cfg.signal_masses(trained_only=True)
    return [Task(_mass_label(m), ["study", "dedicated", config, "--mass", f"{m:g}"],
                 [_network_done(cfg, f"dedicated-m{m:g}")])
            for m in _masses(sel.masses, trained, "trained")]


def split_tune(cfg: Config, config: str, sel: Selection) -> list[Task]:
    """One task per worker: ``pnn tune CONFIG --worker I``; each is done once the shared
    study holds ``tune.trials`` finished trials."""
    from pnn.learn.tune import settings

    t = settings(cfg)
    n = sel.workers or t.workers
    return [Task(f"worker{i}", ["tune", config, "--worker", str(i)], check=f"tune:{t.trials}")
            for i in range(n)]


def _tune_collect(cfg: Config, config: str) -> list[str]:
    return ["tune", config, "--collect"]


def _report(cfg: Config, config: str) -> list[str]:
    return ["report", config]


def _limits_collect(cfg: Config, config: str) -> list[str]:
    return ["limits", config, "--collect"]


def _study_all(cfg: Config, config: str) -> list[str]:
    return ["study", "all", config]


STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("ingest", split_ingest, None, "one job per group of input files, writing table shards"),
    Stage("train", split_train, None, "one job per fold"),
    Stage("evaluate", split_evaluate, _report, "one job per mass; collect: pnn report"),
    Stage("limits", split_limits, _limits_collect,
          "one job per mass; collect: pnn limits --collect"),
    Stage("interpolation", split_interpolation, _study_all,
          "one job per held-out interior mass; collect: pnn study all"),
    Stage("dedicated", split_dedicated, _study_all, "one dedicated network per trained mass; "
          "collect: pnn study all"),
    Stage("apply", split_apply, None, "one job per group of input files", ("--force",)),
    Stage("tune", split_tune, _tune_collect, "--workers jobs sharing one Optuna study; collect: "
          "pnn tune --collect"),
)}


# The config sections each cluster stage depends on (see pnn.core.provenance).
_PROVENANCE_STAGE = {"ingest": "ingest", "train": "train", "evaluate": "evaluate", "limits": "limits",
                     "interpolation": "study", "dedicated": "study", "apply": "apply",
                     "tune": "tune"}


def stage_digest(cfg: Config, stage: str) -> str:
    """Digest of the config sections a cluster stage depends on: a finished task stays done
    while they are unchanged, whatever else (the cluster section, say) is edited."""
    return provenance.digest(cfg, _PROVENANCE_STAGE[stage])


def check_inputs(cfg: Config, stage: str) -> None:
    """Refuse to submit a stage whose inputs exist but are stale or mixed, before any job is
    queued. Missing inputs pass: jobs queued earlier may still be making them."""
    from pnn.io.ingest import SHARD_DIR, events_identity, events_path

    if stage == "tune":
        from pnn.learn.tune import load_study, settings

        settings(cfg)
        if events_path(cfg).is_file():
            events_identity(cfg)
        load_study(cfg)  # refuses a journal made by another config
        return
    from pnn.learn.train import require_model

    has_model = (cfg.run_dir / "model" / "metadata.json").is_file()
    if stage == "train" and (events_path(cfg).is_file() or (cfg.run_dir / SHARD_DIR).is_dir()):
        events_identity(cfg)
    elif stage in ("evaluate", "interpolation", "dedicated", "limits") and has_model:
        require_model(cfg)
    elif stage == "apply" and has_model:
        require_model(cfg, check_events=False)


def _fold_recorded(outputs_dir: Path, fold: int) -> bool:
    meta = outputs_dir / "model" / "metadata.json"
    if not meta.is_file():
        return False
    return any(r.get("fold") == fold for r in json.loads(meta.read_text()).get("fold_results", []))


@dataclass
class JobDir:
    """The files of one stage's submission under ``<run_dir>/jobs/<stage>/``."""

    path: Path

    @classmethod
    def of(cls, cfg: Config, stage: str) -> JobDir:
        return cls(cfg.run_dir.resolve() / "jobs" / stage)

    @property
    def spec_path(self) -> Path:
        return self.path / "job.json"

    def spec(self) -> dict:
        if not self.spec_path.is_file():
            raise PnnError(f"nothing was submitted for this stage: no '{self.spec_path}' "
                           "(run 'pnn submit' first)")
        return json.loads(self.spec_path.read_text())

    def log(self, label: str) -> Path:
        return self.path / "logs" / f"{label}.log"

    def state(self, label: str) -> Path:
        return self.path / "state" / f"{label}.json"

    def marker(self, label: str) -> Path:
        return self.path / "done" / label

    def files(self, dry_run: bool) -> Path:
        """Where a submission writes job.json, tasks.txt and the scheduler files."""
        return self.path / DRY_RUN if dry_run else self.path

    def is_done(self, task: dict, digest: str) -> bool:
        """Marker written by this config, and every output still there."""
        marker = self.marker(task["label"])
        if not marker.is_file():
            return False
        try:
            if json.loads(marker.read_text()).get("config_digest") != digest:
                return False
        except json.JSONDecodeError:
            return False
        return _outputs_complete(task, self.path.parents[1])


def _outputs_complete(task: dict, run_dir: Path) -> bool:
    if not all(Path(p).is_file() for p in task.get("outputs", [])):
        return False
    check = task.get("check")
    if check and check.startswith("fold"):
        return _fold_recorded(run_dir, int(check[4:]))
    if check and check.startswith("tune:"):
        from pnn.learn.tune import study_complete

        return study_complete(run_dir, int(check[5:]))
    return True


def prepare(cfg: Config, config_path: str, stage: str, sel: Selection, output_dir: str | None,
            setup: str | None, *, dry_run: bool = False, force: bool = False) -> tuple[JobDir, dict]:
    """Split ``stage`` into tasks and write job.json and tasks.txt.

    Task indices are stable: under the same config, tasks of an earlier submission keep
    their line in tasks.txt (array tasks still queued read it) and new ones are appended;
    ``selected`` lists the tasks of this submission. A dry run writes its files under
    ``dry-run/`` so the job directory of the real submissions stays as it was. ``force``
    adds the arguments the stage's verb needs to overwrite existing outputs.
    """
    if stage not in STAGES:
        raise PnnError(f"unknown stage '{stage}': use one of {', '.join(STAGES)}")
    entry = STAGES[stage]
    config = str(Path(config_path).resolve())
    common = ["-o", str(Path(output_dir).resolve())] if output_dir else []
    extra = [*common, *(entry.force_args if force else ())]
    tasks = [{**asdict(t), "args": [*t.args, *extra]} for t in entry.split(cfg, config, sel)]
    if not tasks:
        raise PnnError(f"stage '{stage}' has nothing to run with this selection")
    jd = JobDir.of(cfg, stage)
    merged = tasks
    if jd.spec_path.is_file():
        old = json.loads(jd.spec_path.read_text())
        if old.get("config_digest") == stage_digest(cfg, stage):
            new = {t["label"]: t for t in tasks}
            merged = [new.pop(t["label"], t) for t in old["tasks"]] + list(new.values())
    spec = {
        "stage": stage,
        "run_dir": str(cfg.run_dir.resolve()),
        "project_dir": os.getcwd(),
        "python": sys.executable,
        "setup": setup,
        "config_digest": stage_digest(cfg, stage),
        "tasks": merged,
        "selected": [t["label"] for t in tasks],
        "collect": [*entry.collect(cfg, config), *common] if entry.collect else None,
    }
    target = jd.files(dry_run)
    if dry_run:
        shutil.rmtree(target, ignore_errors=True)  # only this dry run's files, nothing stale
        target.mkdir(parents=True)
    else:
        for sub in ("logs", "state", "done"):
            (jd.path / sub).mkdir(parents=True, exist_ok=True)
    write_json(target / jd.spec_path.name, spec)
    write_text(target / "tasks.txt", "".join(f"{command_line(t['args'])}\n" for t in spec["tasks"]))
    return jd, spec


def command_line(args: list[str]) -> str:
    """The task as the user would type it."""
    return shlex.join(["pnn", *args])


def pending(jd: JobDir, spec: dict, *, force: bool = False) -> list[int]:
    """Indices of the selected tasks without a valid completion marker (all of them with
    ``force``)."""
    selected = set(spec.get("selected", [t["label"] for t in spec["tasks"]]))
    return [i for i, t in enumerate(spec["tasks"])
            if t["label"] in selected and (force or not jd.is_done(t, spec["config_digest"]))]


def forget_done(jd: JobDir, spec: dict, indices: list[int]) -> None:
    """Remove the completion markers of these tasks (and of the collect step) so they run again.

    Called by a forced submission just before the scheduler starts the tasks, which would
    otherwise skip them as done.
    """
    for i in indices:
        jd.marker(spec["tasks"][i]["label"]).unlink(missing_ok=True)
    if indices:
        jd.marker(COLLECT).unlink(missing_ok=True)
    log.info("forgot the completion of %d task(s) of '%s': they run again", len(indices), spec["stage"])


def _scheduler_job_id() -> str | None:
    for var in ("SLURM_ARRAY_JOB_ID", "SLURM_JOB_ID"):
        if os.environ.get(var):
            task = os.environ.get("SLURM_ARRAY_TASK_ID")
            return f"{os.environ[var]}_{task}" if task and var == "SLURM_ARRAY_JOB_ID" else os.environ[var]
    ad = os.environ.get("_CONDOR_JOB_AD")
    if ad and Path(ad).is_file():
        attrs = dict(line.partition(" = ")[::2] for line in Path(ad).read_text().splitlines())
        return f"{attrs.get('ClusterId', '?')}.{attrs.get('ProcId', '?')}"
    return None


def _execute(jd: JobDir, spec: dict, label: str, args: list[str]) -> int:
    """Run ``pnn ARGS`` after the setup line, in the project directory; record the attempt."""
    python = spec["python"]
    command = shlex.join([python, "-m", "pnn", *args])
    script = f"{spec['setup']}\nexec {command}" if spec.get("setup") else f"exec {command}"
    state = {"label": label, "host": socket.gethostname(), "job_id": _scheduler_job_id(),
             "pid": os.getpid(), "started": time.time(), "finished": None, "exit_code": None}
    write_json(jd.state(label), state)
    logpath = jd.log(label)
    start = time.perf_counter()
    with open(logpath, "w") as out:
        out.write(f"# {command_line(args)}\n# on {state['host']} in {spec['project_dir']}\n")
        out.flush()
        code = subprocess.run(["/bin/bash", "-c", script], cwd=spec["project_dir"], stdout=out,
                              stderr=subprocess.STDOUT, check=False).returncode
        seconds = time.perf_counter() - start
        out.write(f"# exit code {code} after {seconds:.1f} s\n")
    state.update(finished=time.time(), exit_code=code, seconds=round(seconds, 3))
    write_json(jd.state(label), state)
    return code


def run_task(job_dir: str | Path, index: int, *, selected_only: bool = False) -> int:
    """Run task ``index`` of a job directory unless it is done; exit code of the task.

    ``selected_only`` (HTCondor, which queues every line of tasks.txt) also skips the tasks
    that the latest submission did not select.
    """
    jd = JobDir(Path(job_dir))
    spec = jd.spec()
    task = spec["tasks"][index]
    label = task["label"]
    if jd.is_done(task, spec["config_digest"]):
        print(f"task {label} is already done; skipped")
        return 0
    if selected_only and label not in spec.get("selected", [label]):
        print(f"task {label} was not selected in this submission; skipped")
        return 0
    code = _execute(jd, spec, label, task["args"])
    if code == 0 and not _outputs_complete(task, Path(spec["run_dir"])):
        with open(jd.log(label), "a") as out:
            out.write(f"error: the command exited 0 but left no complete output ({task['outputs']})\n")
        code = 1
    if code == 0:
        write_json(jd.marker(label), {"config_digest": spec["config_digest"], "finished": time.time()})
        jd.marker(COLLECT).unlink(missing_ok=True)  # the merged outputs must be collected again
    print(f"task {label}: exit code {code}; log {jd.log(label)}")
    return code


def run_collect(job_dir: str | Path) -> int:
    """Run the stage's collect command once every task is done."""
    jd = JobDir(Path(job_dir))
    spec = jd.spec()
    missing = [spec["tasks"][i]["label"] for i in pending(jd, spec)]
    if missing:
        msg = f"error: {len(missing)} task(s) not done: {', '.join(missing)}"
        write_text(jd.log(COLLECT), msg + "\n")
        print(msg)
        return 1
    if not spec.get("collect"):
        return 0
    code = _execute(jd, spec, COLLECT, spec["collect"])
    if code == 0:
        write_json(jd.marker(COLLECT), {"config_digest": spec["config_digest"], "finished": time.time()})
    return code


@dataclass(frozen=True)
class TaskStatus:
    """What ``pnn status`` shows for one task."""

    label: str
    state: str  # done, running, queued, failed, pending
    log: Path | None = None
    error: str | None = None


def last_error_line(path: Path) -> str | None:
    """The last line that names an error in a log, else its last line of output."""
    if not path.is_file():
        return None
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines()
             if ln.strip() and not ln.startswith("# ")]
    for ln in reversed(lines):
        if any(w in ln for w in ("error", "Error", "ERROR", "Exception", "Killed", "CANCELLED")):
            return ln
    return lines[-1] if lines else None


def status(jd: JobDir, live: dict[str, str] | None = None,
           scheduler_logs: dict[str, Path] | None = None) -> list[TaskStatus]:
    """Per task (and the collect step): done, running/queued (``live``, from the scheduler),
    failed (with log and last error line) or pending (never run).

    ``scheduler_logs`` names, for tasks the scheduler no longer lists, the scheduler's own
    output file: a task that never started or was killed (time limit, memory) is failed there.
    """
    spec = jd.spec()
    live, scheduler_logs = live or {}, scheduler_logs or {}
    out = []
    for task in spec["tasks"]:
        out.append(_one_status(jd, task["label"], jd.is_done(task, spec["config_digest"]), live,
                               scheduler_logs.get(task["label"])))
    if spec.get("collect"):
        selected = set(spec.get("selected", [t["label"] for t in spec["tasks"]]))
        done = jd.marker(COLLECT).is_file() and all(s.state == "done" for s in out if s.label in selected)
        out.append(_one_status(jd, COLLECT, done, live, None))
    return out


def _one_status(jd: JobDir, label: str, done: bool, live: dict[str, str],
                scheduler_log: Path | None) -> TaskStatus:
    if done:
        return TaskStatus(label, "done", jd.log(label))
    if label in live:
        return TaskStatus(label, live[label], jd.log(label))
    state_path = jd.state(label)
    if not state_path.is_file():
        if jd.log(label).is_file():  # collect refused: tasks missing
            return TaskStatus(label, "failed", jd.log(label), last_error_line(jd.log(label)))
        if scheduler_log is not None:  # submitted, no longer queued, never started
            return TaskStatus(label, "failed", scheduler_log,
                              last_error_line(scheduler_log) or "never started")
        return TaskStatus(label, "pending")
    state = json.loads(state_path.read_text())
    if state.get("exit_code") is None:
        if scheduler_log is None and _alive(state):
            return TaskStatus(label, "running", jd.log(label))
        killed = scheduler_log if scheduler_log is not None and scheduler_log.is_file() else jd.log(label)
        return TaskStatus(label, "failed", killed,
                          last_error_line(killed) or "started but never finished (killed?)")
    return TaskStatus(label, "failed", jd.log(label),
                      last_error_line(jd.log(label)) or f"exit code {state['exit_code']}")


def _alive(state: dict) -> bool:
    """A started attempt without scheduler information: alive if its process is (same host)."""
    if state.get("host") != socket.gethostname():
        return True  # cannot tell from here; the scheduler query would have said otherwise
    try:
        os.kill(int(state["pid"]), 0)
    except (OSError, ValueError, TypeError):
        return False
    return True
