"""Hyperparameter search (``pnn tune``): one Optuna study over the training keys, shared by
any number of workers through a journal file under ``<run>/tune/``.

Each trial trains fold 0's network with the trial's training settings and scores it on the
validation share of fold 0's training events (fold 0's test events are never seen). The first
trial of a study is the config's own settings. Workers may be local processes or batch jobs;
they coordinate only through the journal, so a rerun resumes the study. The journal records
the provenance of what it tunes and is refused under another config.

Journal storage has no heartbeat, so a trial records the host, pid and last epoch time of
its worker: a trial left running by a dead worker is marked failed by the next worker, by
``pnn status`` or by the collect step (same host: the process is gone; another host: no
epoch report for ``tune.stale_after`` seconds).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import time
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from pnn.core import points, provenance
from pnn.core.atomic import Staging, sweep, write_json
from pnn.core.config import Config, SearchRange, Training, Tune
from pnn.core.errors import PnnError
from pnn.core.locks import file_lock, task_lock

log = logging.getLogger(__name__)

JOURNAL = "journal.log"
STUDY = "pnn-tune"
DEFAULT = "default"  # user attribute of the enqueued trial that runs the config's own settings
POLL_SECONDS = 2.0  # how often a worker with nothing to start looks at the others' trials


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


HOST = socket.gethostname()  # the full name: short names may repeat across domains
BOOT = _boot_id()  # a rebooted host runs none of the processes it ran before
PID_NS = _pid_namespace()  # a container with its own process numbers counts as another host


def tune_dir(cfg: Config) -> Path:
    return cfg.run_dir / "tune"


def journal_path(cfg: Config) -> Path:
    return tune_dir(cfg) / JOURNAL


def settings(cfg: Config) -> Tune:
    """The ``tune`` section, or a one-line error when the config has none."""
    if cfg.tune is None:
        raise PnnError(f"{cfg.source} has no 'tune' section: add one with a search space, e.g. "
                       "tune: {space: {learning_rate: {low: 0.001, high: 0.3, log: true}}}")
    return cfg.tune


# --- search space ----------------------------------------------------------------------------

def encode(value: Any) -> Any:
    """A choice as Optuna's storage keeps it: scalars as they are, lists (layers) as JSON text."""
    return json.dumps(value) if isinstance(value, list | dict) else value


def _accepts_float(key: str) -> bool:
    def kinds(ann: Any) -> set[Any]:
        found = {ann}
        for arg in typing.get_args(ann):
            found |= kinds(arg)
        return found

    return float in kinds(Training.model_fields[key].annotation)


def distributions(space: dict[str, SearchRange]) -> dict[str, Any]:
    """One Optuna distribution per tuned training key."""
    import optuna

    out: dict[str, Any] = {}
    for key, rng in space.items():
        if rng.choices is not None:
            out[key] = optuna.distributions.CategoricalDistribution([encode(c) for c in rng.choices])
        elif _accepts_float(key):
            out[key] = optuna.distributions.FloatDistribution(float(rng.low), float(rng.high), log=rng.log)
        else:
            out[key] = optuna.distributions.IntDistribution(int(rng.low), int(rng.high), log=rng.log)
    return out


def decode(space: dict[str, SearchRange], params: dict[str, Any]) -> dict[str, Any]:
    """Trial parameters back to training values (JSON text back to the listed choice)."""
    out = {}
    for key, value in params.items():
        choices = space[key].choices
        out[key] = {encode(c): c for c in choices}[value] if choices is not None else value
    return out


def default_params(cfg: Config) -> dict[str, Any]:
    """The config's own training settings as parameters of the first trial."""
    return {key: encode(getattr(cfg.training, key)) for key in settings(cfg).space}


def trial_config(cfg: Config, values: dict[str, Any]) -> Config:
    """The config with these training values (validated like a config file's)."""
    training = Training.model_validate({**cfg.training.model_dump(), **values})
    return cfg.model_copy(update={"training": training})


def _suggest(trial: Any, key: str, dist: Any) -> Any:
    import optuna

    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return trial.suggest_categorical(key, dist.choices)
    if isinstance(dist, optuna.distributions.IntDistribution):
        return trial.suggest_int(key, dist.low, dist.high, log=dist.log)
    return trial.suggest_float(key, dist.low, dist.high, log=dist.log)


# --- the study -------------------------------------------------------------------------------

def _direction(t: Tune) -> str:
    return "minimize" if t.objective == "val_loss" else "maximize"


def _sampler(cfg: Config, seed: int) -> Any:
    import optuna

    t = settings(cfg)
    if t.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=t.startup_trials)


def _pruner(cfg: Config) -> Any:
    import optuna

    if not settings(cfg).pruning:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=settings(cfg).startup_trials)


def _storage(path: Path) -> Any:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


@contextlib.contextmanager
def _setup_lock(folder: Path) -> Iterator[None]:
    """Serialise study creation (and the enqueueing of the first trial) between workers."""
    folder.mkdir(parents=True, exist_ok=True)
    with file_lock(folder / ".setup.lock"):
        yield


def _check(cfg: Config, study: Any, events_id: str | None) -> None:
    """Refuse a journal made by another config or from another events table."""
    inputs = {"events": events_id} if events_id else None
    provenance.require(cfg, "tune", study.user_attrs.get(provenance.KEY),
                       f"the tuning journal '{journal_path(cfg)}'", inputs=inputs,
                       fix=f"{cfg.command('tune')} --fresh")


def open_study(cfg: Config, events_id: str, seed: int) -> tuple[Any, Any]:
    """The study of this config (created, with its first trial enqueued, by the first worker),
    with a sampler seeded with ``seed``; ``(study, storage)``."""
    import optuna

    with _setup_lock(tune_dir(cfg)):
        storage = _storage(journal_path(cfg))
        exists = STUDY in [s.study_name for s in storage.get_all_studies()]
        if exists:
            study = optuna.load_study(study_name=STUDY, storage=storage, sampler=_sampler(cfg, seed),
                                      pruner=_pruner(cfg))
            _check(cfg, study, events_id)
        else:
            study = optuna.create_study(storage=storage, study_name=STUDY, sampler=_sampler(cfg, seed),
                                        pruner=_pruner(cfg), direction=_direction(settings(cfg)))
            study.set_user_attr(provenance.KEY, provenance.record(cfg, "tune", {"events": events_id}))
            study.enqueue_trial(default_params(cfg), user_attrs={DEFAULT: True})
    return study, storage


def ensure_default(cfg: Config, study: Any) -> bool:
    """Enqueue the config's own settings again when their trial failed (its worker was
    killed), so the best is never worse than the defaults; whether it was enqueued."""
    from optuna.trial import TrialState

    with _setup_lock(tune_dir(cfg)):
        if any(t.user_attrs.get(DEFAULT) and t.state != TrialState.FAIL
               for t in study.get_trials(deepcopy=False)):
            return False
        study.enqueue_trial(default_params(cfg), user_attrs={DEFAULT: True})
    return True


def load_study(cfg: Config) -> tuple[Any, Any] | None:
    """The existing study of this config, checked, or None when tuning never started."""
    import optuna

    path = journal_path(cfg)
    if not path.is_file():
        return None
    # not half-way through another worker's set-up (the study made, its provenance not yet)
    with _setup_lock(tune_dir(cfg)) if os.access(path.parent, os.W_OK) else contextlib.nullcontext():
        storage = _storage(path)
        if STUDY not in [s.study_name for s in storage.get_all_studies()]:
            return None
        study = optuna.load_study(study_name=STUDY, storage=storage)
    _check(cfg, study, None)
    return study, storage


def _state_counts(study: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def finished(counts: dict[str, int]) -> int:
    """Trials that count towards ``tune.trials``: complete or pruned (failed ones are redone)."""
    return counts.get("COMPLETE", 0) + counts.get("PRUNED", 0)


# --- dead workers ----------------------------------------------------------------------------

def process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _alive_here(pid: Any, started: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except PermissionError:
        pass  # it exists, under another user
    except (OSError, ValueError, TypeError):
        return False
    return started is None or process_start(int(pid)) in (None, started)


def why_dead(trial: Any, stale_after: float, now: float | None = None) -> str | None:
    """Why a RUNNING trial's worker counts as dead, or None while it may be alive.

    Same host (and process namespace): its process is gone, its pid now names another
    process, or the host was restarted. Another host (or a trial whose worker did not yet
    record itself): no sign of life for ``stale_after`` seconds.
    """
    attrs = trial.user_attrs
    if attrs.get("host") == HOST and attrs.get("pid_ns") in (None, PID_NS) and "pid" in attrs:
        if attrs.get("boot") not in (None, BOOT):
            return f"its host {HOST} was restarted since it started"
        if _alive_here(attrs["pid"], attrs.get("pid_start")):
            return None
        return f"its worker (pid {attrs['pid']} on {HOST}) is gone"
    now = time.time() if now is None else now
    start = trial.datetime_start.timestamp() if trial.datetime_start else now
    last = float(attrs.get("alive", start))  # the last epoch report, else the start
    if now - last > stale_after:
        where = attrs.get("host", "an unknown host")
        return f"no epoch report from its worker on {where} for {now - last:.0f} s"
    return None


def fail_dead_trials(cfg: Config, study: Any, storage: Any) -> list[int]:
    """Mark the RUNNING trials of dead workers failed; their numbers."""
    import optuna
    from optuna.trial import TrialState

    stale_after = settings(cfg).stale_after
    study_id = storage.get_study_id_from_name(STUDY)
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        why = why_dead(t, stale_after)
        if why is None:
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        try:
            storage.set_trial_user_attr(trial_id, "failed_because", why)
            storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process got there first
        log.warning("trial %d marked failed: %s", t.number, why)
        failed.append(t.number)
    return failed


def _fail_own_trials(study: Any, storage: Any) -> None:
    """Mark the trials this process left RUNNING failed (an interrupt outside the objective)."""
    import optuna
    from optuna.trial import TrialState

    study_id = storage.get_study_id_from_name(STUDY)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get("host") == HOST and t.user_attrs.get("pid") == os.getpid():
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                storage.set_trial_state_values(trial_id, TrialState.FAIL)


# --- the objective ---------------------------------------------------------------------------

def validation_rows(cfg: Config, events: pd.DataFrame, fold: int = 0) -> np.ndarray:
    """Row positions in ``events`` of fold ``fold``'s validation share, exactly as training
    draws it: the split is asked for with the row number as the only feature."""
    from pnn.learn.train import split_fold

    probe = events.assign(_row=np.arange(len(events), dtype=np.float64))
    _, val = split_fold(cfg.model_copy(update={"features": ["_row"]}), probe, fold)
    return val.X[:, 0].astype(np.int64)


def best_asimov_z(score: np.ndarray, label: np.ndarray, weight: np.ndarray, min_bkg: int) -> float:
    """The largest Asimov Z over cuts on ``score`` that keep at least ``min_bkg`` background
    events (weights already scaled to the full sample); 0 when no cut qualifies."""
    order = np.argsort(-score, kind="stable")
    sig, w = label[order] == 1, weight[order]
    s = np.cumsum(np.where(sig, w, 0.0))
    b = np.cumsum(np.where(sig, 0.0, w))
    n_b = np.cumsum(~sig)
    ok = (n_b >= min_bkg) & (b > 0) & (s > 0)
    if not ok.any():
        return 0.0
    s, b = s[ok], b[ok]
    z = np.sqrt(np.maximum(2 * ((s + b) * np.log1p(s / b) - s), 0.0))
    return float(z.max())


def mean_asimov_z(cfg: Config, events: pd.DataFrame, model_dir: Path) -> float:
    """Mean over the trained points of the best-cut Asimov Z of fold 0's model on fold 0's
    validation share, with physical weights scaled up to the whole sample."""
    from pnn.learn import model as pnn_model
    from pnn.learn.preprocess import InputScaler, feature_matrix, parameter_matrix

    net = pnn_model.keras.saving.load_model(model_dir / "fold0.keras", compile=False)
    scaler = InputScaler.load(model_dir / "fold0.scaler.json")
    val = events.iloc[validation_rows(cfg, events)]
    label_all, w_all = events["label"].to_numpy(), events["weight"].to_numpy(np.float64)
    label, w = val["label"].to_numpy(), val["weight"].to_numpy(np.float64)
    bkg_all, bkg = label_all == 0, label == 0
    b_scale = w_all[bkg_all].sum() / w[bkg].sum()
    theta_all, theta = (parameter_matrix(t, cfg.parameters) for t in (events, val))
    zs = []
    for m in points.unique(theta_all[label_all == 1]):
        sig = (label == 1) & points.mask(theta, m)
        sig_all = (label_all == 1) & points.mask(theta_all, m)
        if not sig.any() or w[sig].sum() <= 0:
            continue
        keep = sig | bkg
        x = scaler.transform(feature_matrix(val[keep], cfg.features), m)
        score = pnn_model.predict(net, x)
        scaled = np.where(sig[keep], w[keep] * w_all[sig_all].sum() / w[sig].sum(), w[keep] * b_scale)
        zs.append(best_asimov_z(score, label[keep], scaled, cfg.evaluation.min_background_events))
    if not zs:
        raise PnnError("the validation share of fold 0 holds no signal: use more signal events "
                       "or a larger preprocessing.validation_fraction")
    return float(np.mean(zs))


def _limit_threads(n: int) -> None:
    """Cap TensorFlow's and BLAS's threads in this process, before TensorFlow starts."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(n)
    from threadpoolctl import threadpool_limits

    threadpool_limits(n)
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(n)
    except RuntimeError:
        log.debug("TensorFlow already initialised; thread count unchanged")


@dataclass
class WorkerResult:
    worker: int
    trials_run: int
    counts: dict[str, int]


def run_worker(cfg: Config, worker: int = 0) -> WorkerResult:
    """Run trials until the study holds ``tune.trials`` finished ones.

    The sampler is seeded with seed + ``worker`` (+ 1000 x the trials already finished when
    it joins a resumed study, so a rerun does not repeat the first run's draws). A worker with
    nothing left to start waits while other workers' trials run: if one of them dies, its
    trial is marked failed here and run again.
    """
    import optuna

    from pnn.io.ingest import load_events

    t = settings(cfg)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    events, meta = load_events(cfg)
    study, storage = open_study(cfg, meta["id"], cfg.seed + worker)
    sweep(tune_dir(cfg))  # scratch folders of trials whose worker was killed
    fail_dead_trials(cfg, study, storage)
    done_before = finished(_state_counts(study))
    if done_before >= t.trials:
        return WorkerResult(worker, 0, _state_counts(study))  # nothing to do: TensorFlow never starts
    if done_before:
        study.sampler = _sampler(cfg, cfg.seed + worker + 1000 * done_before)
    _limit_threads(t.threads)  # before TensorFlow starts
    import tensorflow as tf

    from pnn.learn.train import train_fold, training_events

    tf.config.experimental.enable_op_determinism()
    # every trial builds a new network, so TensorFlow's retracing warnings say nothing here
    tf.get_logger().setLevel(logging.ERROR)
    events = training_events(cfg, events)
    dists = distributions(t.space)
    sign = 1.0 if t.objective == "val_loss" else -1.0  # the pruner compares in the study's direction

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("host", HOST)
        trial.set_user_attr("boot", BOOT)
        trial.set_user_attr("pid_ns", PID_NS)
        trial.set_user_attr("pid", os.getpid())
        trial.set_user_attr("pid_start", process_start(os.getpid()))
        trial.set_user_attr("worker", worker)
        values = decode(t.space, {k: _suggest(trial, k, d) for k, d in dists.items()})
        tcfg = trial_config(cfg, values)

        def on_epoch(epoch: int, val_loss: float) -> None:
            trial.report(sign * val_loss, epoch)
            trial.set_user_attr("alive", time.time())
            if t.pruning and trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch} (val loss {val_loss:.5f})")

        with Staging(tune_dir(cfg), f"trial{trial.number}") as scratch:  # never published
            res = train_fold(tcfg, events, 0, scratch.dir, on_epoch=on_epoch)
            trial.set_user_attr("epochs_run", res.epochs_run)
            trial.set_user_attr("best_epoch", res.best_epoch)
            trial.set_user_attr("val_loss", res.best_val_loss)
            value = (res.best_val_loss if t.objective == "val_loss"
                     else mean_asimov_z(tcfg, events, scratch.dir))
        log.info("trial %d: %s = %.5f", trial.number, t.objective, value)
        return value

    ran = 0
    try:
        while True:
            fail_dead_trials(cfg, study, storage)
            if finished(_state_counts(study)) >= t.trials:
                break
            ensure_default(cfg, study)
            counts = _state_counts(study)
            if finished(counts) + counts.get("RUNNING", 0) >= t.trials and not counts.get("WAITING"):
                time.sleep(POLL_SECONDS)  # the last trials run elsewhere; take over if they die
                continue
            study.optimize(objective, n_trials=1, catch=(), gc_after_trial=True)
            ran += 1
    finally:
        _fail_own_trials(study, storage)
    return WorkerResult(worker, ran, _state_counts(study))


def _worker_process(cfg: Config, worker: int) -> WorkerResult:
    """Entry point of a local worker process: SIGTERM unwinds like Ctrl-C, so the running
    trial is marked failed on the way out."""
    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, stop)
    return run_worker(cfg, worker)


def run_local(cfg: Config, workers: int) -> list[WorkerResult]:
    """Run ``workers`` workers: in this process for one, else in worker processes."""
    if workers == 1:
        return [run_worker(cfg, 0)]
    from pnn.core.workers import process_pool

    with process_pool(workers, blas_threads=settings(cfg).threads,
                      stage="tune") as pool:
        futures = [pool.submit(_worker_process, cfg, i) for i in range(workers)]
        return [f.result() for f in futures]


def start_afresh(cfg: Config) -> None:
    """Remove the journal and every output of an earlier search of this run."""
    folder = tune_dir(cfg)
    with task_lock(cfg.run_dir, "tune-collect"):
        shutil.rmtree(folder, ignore_errors=True)
    log.info("removed %s: the search starts afresh", folder)


# --- status and collect ----------------------------------------------------------------------

@dataclass
class StudyStatus:
    trials: int
    counts: dict[str, int]
    failed_now: list[int]

    @property
    def line(self) -> str:
        c = self.counts
        return (f"trials: {finished(c)} of {self.trials} finished ({c.get('COMPLETE', 0)} complete, "
                f"{c.get('PRUNED', 0)} pruned), {c.get('RUNNING', 0)} running, "
                f"{c.get('FAIL', 0)} failed")


def study_status(cfg: Config) -> StudyStatus | None:
    """Trial counts of the study (after marking dead workers' trials failed), or None."""
    opened = load_study(cfg)
    if opened is None:
        return None
    study, storage = opened
    failed_now = fail_dead_trials(cfg, study, storage)
    return StudyStatus(settings(cfg).trials, _state_counts(study), failed_now)


def study_complete(run_dir: Path, trials: int) -> bool:
    """Whether the journal under ``run_dir`` holds ``trials`` finished trials (batch check)."""
    import optuna

    path = Path(run_dir) / "tune" / JOURNAL
    if not path.is_file():
        return False
    storage = _storage(path)
    if STUDY not in [s.study_name for s in storage.get_all_studies()]:
        return False
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return finished(_state_counts(optuna.load_study(study_name=STUDY, storage=storage))) >= trials


def trials_table(study: Any, space: dict[str, SearchRange]) -> pd.DataFrame:
    """Every trial: number, state, objective, parameters (lists as JSON), time, worker."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        values = decode(space, t.params) if set(t.params) == set(space) else {}
        seconds = ((t.datetime_complete - t.datetime_start).total_seconds()
                   if t.datetime_complete and t.datetime_start else None)
        row = {"number": t.number, "state": t.state.name, "value": t.value,
               **{k: json.dumps(v) if isinstance(v, list) else v for k, v in values.items()},
               "seconds": seconds, "epochs_run": t.user_attrs.get("epochs_run"),
               "best_epoch": t.user_attrs.get("best_epoch"), "default": bool(t.user_attrs.get(DEFAULT)),
               "host": t.user_attrs.get("host"), "pid": t.user_attrs.get("pid"),
               "worker": t.user_attrs.get("worker"),
               "started": t.datetime_start.isoformat() if t.datetime_start else None,
               "failed_because": t.user_attrs.get("failed_because")}
        rows.append(row)
    return pd.DataFrame(rows)


def best_config(cfg: Config, values: dict[str, Any]) -> dict[str, Any]:
    """The tuned config file with the best training values filled in, as a mapping ready for
    YAML. The run is named '<name>-best' so it never overwrites the tuned run; paths stay as
    the config gives them (relative to the directory pnn runs in, like every config), and an
    output directory given with -o is written in."""
    raw = yaml.safe_load(Path(cfg.source).read_text())
    raw["name"] = f"{cfg.name}-best"
    raw["output_dir"] = cfg.output_dir
    raw["training"] = {**(raw.get("training") or {}), **values}
    Config.model_validate(raw)  # complete and valid, as pnn run will load it
    return raw


@dataclass
class CollectResult:
    best_number: int
    best_value: float
    best_values: dict[str, Any]
    default_value: float | None
    counts: dict[str, int]
    paths: list[Path]


def collect(cfg: Config) -> CollectResult:
    """Write trials.csv, best.yaml, summary.json and the plots once the study is done."""
    from optuna.trial import TrialState

    from pnn.show import tuning as tuning_plots

    t = settings(cfg)
    opened = load_study(cfg)
    if opened is None:
        raise PnnError(f"no tuning journal at '{journal_path(cfg)}': run '{cfg.command('tune')}'")
    study, storage = opened
    fail_dead_trials(cfg, study, storage)
    counts = _state_counts(study)
    if finished(counts) < t.trials:
        raise PnnError(f"the study holds {finished(counts)} of its {t.trials} finished trials "
                       f"({counts.get('RUNNING', 0)} running): run '{cfg.command('tune')}' "
                       "(or more batch workers) to finish it, then collect")
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise PnnError("no trial of the study completed (all pruned or failed): widen the search "
                       f"space or turn tune.pruning off, and start afresh with "
                       f"'{cfg.command('tune')} --fresh'")
    best = study.best_trial
    best_values = decode(t.space, best.params)
    default = next((x for x in complete if x.user_attrs.get(DEFAULT)), None)
    out = tune_dir(cfg)
    with task_lock(cfg.run_dir, "tune-collect"), Staging(out, "collect") as staged:
        trials_table(study, t.space).to_csv(staged.path("trials.csv"), index=False)
        header = (f"# The best trial ({best.number}) of the search of '{cfg.name}' in {cfg.source}: "
                  f"{t.objective} {best.value:.6g}.\n# Run it with: pnn run <this file>\n")
        staged.path("best.yaml").write_text(header + yaml.safe_dump(best_config(cfg, best_values),
                                                                    sort_keys=False))
        names = tuning_plots.plot_study(study, staged.dir, cfg.seed)
        summary = {"objective": t.objective, "direction": _direction(t), "trials": t.trials,
                   "counts": counts, "best": {"number": best.number, "value": best.value,
                                              "training": best_values},
                   "default": None if default is None else {"number": default.number,
                                                            "value": default.value},
                   provenance.KEY: study.user_attrs.get(provenance.KEY)}
        write_json(staged.path("summary.json"), summary)
        published = staged.publish(last=["summary.json"])
    paths = [out / n for n in published if n in ("trials.csv", "best.yaml", *names, "summary.json")]
    return CollectResult(best.number, float(best.value), best_values,
                         None if default is None else float(default.value), counts, paths)
