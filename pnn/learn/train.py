"""Training: one parametrised network per fold, background masses redrawn every epoch.

Each fold model trains on the events of the other folds. A validation share of those
events (drawn with the run seed) drives early stopping; the best weights are restored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pnn.core import points, provenance
from pnn.core.atomic import Staging, atomic_path, read_json, sweep, write_json
from pnn.core.config import Config
from pnn.core.errors import PnnError
from pnn.core.locks import file_lock, task_lock
from pnn.io.ingest import events_identity
from pnn.learn.preprocess import (
    InputScaler,
    PointPrior,
    feature_matrix,
    folds,
    parameter_matrix,
    training_weights,
)
from pnn.show import plots

if TYPE_CHECKING:  # TensorFlow loads only where a network is built or read
    import keras

log = logging.getLogger(__name__)


def model_dir(run_dir: Path) -> Path:
    """Where ``pnn train`` writes the fold networks, scalers and metadata of a run."""
    return Path(run_dir) / "model"

MAX_DIVERGENCES = 5  # restarts after a non-finite loss before a fold gives up
VERSIONED = ("pnn", "tensorflow", "keras", "numpy", "pandas", "scikit-learn", "uproot", "awkward")


@dataclass(frozen=True)
class Variant:
    """What a network is trained on: the PNN itself, or a study's hold-out or baseline network.

    ``signal_masses`` restricts the signal to those points (masses, or tuples of parameter
    values; default: every sample flagged ``train``); a non-``parametric`` network has no
    parameter input.
    """

    name: str = "pnn"
    signal_masses: tuple | None = None
    parametric: bool = True


@dataclass
class FoldData:
    """Arrays of one fold's training or validation set (features unscaled)."""

    X: np.ndarray
    y: np.ndarray
    w: np.ndarray
    mass: np.ndarray  # (events, parameters) signal point; NaN for background

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class FoldResult:
    fold: int
    train_events: int
    validation_events: int
    epochs_run: int
    best_epoch: int
    best_val_loss: float
    seconds: float


@dataclass
class TrainResult:
    model_dir: Path
    masses: list
    folds: list[FoldResult]


def training_events(cfg: Config, events: pd.DataFrame,
                    signal_masses: tuple[float, ...] | None = None) -> pd.DataFrame:
    """Background plus the signal samples flagged ``train`` (off-grid masses stay out),
    optionally only the signal at ``signal_masses``."""
    names = events["sample"]  # categorical: compared by code, never copied as strings
    trained = [n for n in names.unique() if cfg.trained_sample(str(n))]
    is_bkg = events["label"].to_numpy() == 0
    keep = names.isin(trained).to_numpy()
    if signal_masses is not None:
        theta = parameter_matrix(events, cfg.parameters)
        keep &= np.logical_or.reduce([points.mask(theta, m) for m in signal_masses])
    return events[is_bkg | keep]


def warn_repeated_event_numbers(events: pd.DataFrame, branch: str) -> int:
    """Warn when event numbers repeat within a sample: folds are built from them."""
    repeated = int(events[["sample", "event_number"]].duplicated().sum())
    if repeated:
        log.warning("%d events repeat an event number within their sample; check that '%s' "
                    "is the event number, since the folds are built from it", repeated, branch)
    return repeated


def split_fold(cfg: Config, events: pd.DataFrame, fold: int) -> tuple[FoldData, FoldData]:
    """Training and validation sets of the model for ``fold`` (trained on the other folds)."""
    pre = cfg.preprocessing
    train = events[folds(events["event_number"].to_numpy(), pre.folds) != fold]
    y = train["label"].to_numpy(np.float32)
    mass = parameter_matrix(train, cfg.parameters)
    w = training_weights(y, mass, train["weight"].to_numpy(), balance_signal=pre.balance_signal,
                         drop_negative=pre.drop_negative_weights)
    keep = w != 0
    X = feature_matrix(train, cfg.features)[keep]
    y, mass, w = y[keep], mass[keep], w[keep]
    rng = np.random.default_rng([cfg.seed, 7, fold])
    is_val = rng.random(len(y)) < pre.validation_fraction
    def part(sel):
        return (FoldData(X[sel], y[sel], w[sel], mass[sel]))
    return part(~is_val), part(is_val)


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def run_epoch(net: keras.Model, x: np.ndarray, y: np.ndarray, w: np.ndarray, bkg: np.ndarray,
              prior: PointPrior, scaler: InputScaler, rng: np.random.Generator,
              batch_size: int, epoch: int) -> float:
    """One epoch: draw new background points, shuffle with ``rng``, fit; return the loss.

    A non-parametric network has no parameter input, so nothing is drawn for it.
    """
    if scaler.parametric:
        d = scaler.n_parameters
        x[bkg, -d:] = scaler.scale_points(prior.draw(rng, len(bkg)))
    order = rng.permutation(len(y))
    h = net.fit(x[order], y[order], sample_weight=w[order], batch_size=batch_size,
                epochs=epoch + 1, initial_epoch=epoch, shuffle=False, verbose=0)
    return float(h.history["loss"][-1])


class EarlyStop:
    """The best validation loss so far; a new one counts only if it falls by ``min_delta``
    (relative), so that noise at the floor does not keep training going for ever."""

    def __init__(self, min_delta: float) -> None:
        self.min_delta = min_delta
        self.best_loss = np.inf
        self.best_epoch = 0
        self.floor = np.inf  # the loss a new best must beat

    def update(self, epoch: int, loss: float) -> bool:
        """Record ``loss`` of ``epoch``; True when it is the new best."""
        if not loss < self.floor:
            return False
        self.best_loss, self.best_epoch = loss, epoch
        self.floor = loss - self.min_delta * abs(loss)
        return True


def train_fold(cfg: Config, events: pd.DataFrame, fold: int, out_dir: Path,
               parametric: bool = True, *,
               on_epoch: Callable[[int, float], None] | None = None) -> FoldResult:
    """Train, early-stop and save the model of ``fold`` with its scaler and history.

    ``on_epoch(epoch, val_loss)`` is called after every epoch (tuning reports the losses to
    its pruner there, and may stop the training by raising).
    """
    from pnn.learn import model as pnn_model

    start = time.perf_counter()
    t = cfg.training
    train, val = split_fold(cfg, events, fold)
    sig = train.y == 1
    if not sig.any() or sig.all():
        raise PnnError(f"fold {fold}: training needs both signal and background events")
    prior = PointPrior.from_signal(train.mass[sig], train.w[sig])
    scaler = InputScaler.fit(cfg.features, train.X, prior.points, parametric, cfg.parameters)
    rng = np.random.default_rng([cfg.seed, 11, fold])

    x_train = scaler.transform(train.X, np.where(sig[:, None], train.mass, prior.points[0]))
    bkg = np.flatnonzero(~sig)
    val_sig = (val.y == 1)[:, None]
    val_mass = np.where(val_sig, val.mass, prior.draw(rng, len(val)))
    x_val = scaler.transform(val.X, val_mass)

    net = pnn_model.build_model(scaler.n_inputs, t.layers, t.activation, cfg.seed + 1000 * fold,
                                n_parameters=scaler.n_parameters, conditioning=t.conditioning)
    pnn_model.compile_model(net, t)
    history: list[dict] = []
    stop = EarlyStop(t.min_delta)
    best_weights = net.get_weights()
    stalled = 0  # epochs since the learning rate last dropped or the loss improved (plateau)
    diverged = 0
    for epoch in range(t.epochs):
        lr = pnn_model.learning_rate(net)
        loss = run_epoch(net, x_train, train.y, train.w, bkg, prior, scaler, rng,
                         t.batch_size, epoch)
        val_loss = float(net.evaluate(x_val, val.y, sample_weight=val.w,
                                      batch_size=pnn_model.PREDICT_BATCH, verbose=0))
        history.append({"epoch": epoch + 1, "loss": loss, "val_loss": val_loss,
                        "learning_rate": lr})
        log.info("fold %d epoch %d/%d: loss %.5f val_loss %.5f lr %.3g", fold, epoch + 1,
                 t.epochs, loss, val_loss, lr)
        if on_epoch is not None:
            on_epoch(epoch + 1, val_loss)
        if not (np.isfinite(loss) and np.isfinite(val_loss)):
            diverged += 1
            if t.schedule != "plateau" or diverged > MAX_DIVERGENCES:
                log.warning("fold %d: the loss is not finite at epoch %d (training diverged): "
                            "stopped at the best epoch %d; lower training.learning_rate",
                            fold, epoch + 1, stop.best_epoch)
                break
            pnn_model.restart_from(net, best_weights)
            pnn_model.set_learning_rate(net, lr * t.plateau_factor)
            log.warning("fold %d: the loss is not finite at epoch %d (training diverged): back "
                        "to the best weights (epoch %d) at learning rate %.3g", fold, epoch + 1,
                        stop.best_epoch, lr * t.plateau_factor)
            stalled = 0
            continue
        if stop.update(epoch + 1, val_loss):
            best_weights = net.get_weights()
            stalled = 0
        else:
            stalled += 1
        if epoch + 1 - stop.best_epoch >= t.patience:
            log.info("fold %d: early stop, best epoch %d", fold, stop.best_epoch)
            break
        if t.schedule == "plateau" and stalled >= t.plateau_patience:
            pnn_model.set_learning_rate(net, lr * t.plateau_factor)
            stalled = 0
    else:
        log.warning("fold %d ran all %d epochs (best epoch %d): training has not converged; "
                    "raise training.epochs or the learning rate", fold, t.epochs, stop.best_epoch)
    best = (stop.best_loss, stop.best_epoch, best_weights)
    net.set_weights(best[2])

    with atomic_path(out_dir / f"fold{fold}.keras") as tmp:
        net.save(tmp)
    scaler.save(out_dir / f"fold{fold}.scaler.json")
    hist = pd.DataFrame(history)
    with atomic_path(out_dir / f"fold{fold}.history.csv") as tmp:
        hist.to_csv(tmp, index=False)
    plots.loss_curve(hist, out_dir / f"fold{fold}.loss.png", title=f"fold {fold}")
    return FoldResult(fold, len(train), len(val), len(history), best[1], best[0],
                      time.perf_counter() - start)


def train(cfg: Config, events: pd.DataFrame, fold_ids: list[int] | None = None, *,
          variant: Variant = Variant(), out_dir: Path | None = None,
          events_id: str | None = None, jobs: int = 1) -> TrainResult:
    """Train every fold model (or only ``fold_ids``) and write the model metadata.

    The default variant is the PNN in ``<run>/model``; the studies train hold-out and
    baseline networks into their own ``out_dir``. Each fold is one task: its model, scaler,
    history and plot are staged and published together, then recorded in ``metadata.json``
    with their SHA-256 and provenance (``events_id`` names the events table trained on).
    With ``jobs`` > 1, that many folds train at once in worker processes (and TensorFlow is
    started only there).
    """
    k = cfg.preprocessing.folds
    fold_ids = list(range(k)) if fold_ids is None else fold_ids
    bad = [f for f in fold_ids if not 0 <= f < k]
    if bad:
        raise PnnError(f"fold {bad[0]} does not exist: folds are 0..{k - 1}")
    jobs = max(1, min(jobs, len(fold_ids)))
    if jobs > 1:  # the workers' imports start now, beside the preparation below
        from pnn.core.workers import warm_workers

        warm_workers("train")
    events = training_events(cfg, events, variant.signal_masses)
    counts = np.bincount(folds(events["event_number"].to_numpy(), k), minlength=k)
    if (counts == 0).any():
        raise PnnError(f"preprocessing.folds = {k} leaves fold {int(np.argmin(counts))} without "
                       f"events (event numbers of {len(events)} training events): use fewer folds")
    warn_repeated_event_numbers(events, cfg.event_number)
    trained = points.unique(parameter_matrix(events[events["label"] == 1], cfg.parameters))
    if variant.signal_masses is not None and len(trained) != len(variant.signal_masses):
        raise PnnError(f"{variant.name}: no training signal at some of the points "
                       f"{[points.label(cfg.parameters, points.as_point(m)) for m in variant.signal_masses]}")
    masses = [p[0] if len(p) == 1 else list(p) for p in trained]
    out_dir = model_dir(cfg.run_dir) if out_dir is None else Path(out_dir)
    sweep(out_dir)
    if jobs == 1:
        _deterministic()
        results = [_train_and_publish(cfg, events, f, out_dir, variant, masses, events_id)
                   for f in fold_ids]
    else:
        results = _train_in_workers(cfg, events, fold_ids, out_dir, variant, masses, events_id,
                                    jobs)
    return TrainResult(out_dir, masses, sorted(results, key=lambda r: r.fold))


def _train_and_publish(cfg: Config, events: pd.DataFrame, fold: int, out_dir: Path,
                       variant: Variant, masses: list, events_id: str | None) -> FoldResult:
    """One fold as one task: its model, scaler, history and plot are staged and published
    together, then recorded in ``metadata.json``."""
    with task_lock(out_dir, f"fold{fold}"), Staging(out_dir, f"fold{fold}") as staged:
        res = train_fold(cfg, events, fold, staged.dir, variant.parametric)
        files = {p.name: _sha256(p) for p in sorted(staged.dir.iterdir()) if p.is_file()}
        rec = provenance.record(cfg, "train", {"events": events_id or "unrecorded"})
        # fold jobs finishing together must not drop each other's record
        with file_lock(out_dir / ".metadata.lock"):
            staged.publish()
            _write_metadata(cfg, out_dir, masses, {**asdict(res), "files": files,
                                                   provenance.KEY: rec}, variant)
    return res


def _deterministic() -> None:
    """The same config and seed give the same weights (TensorFlow's deterministic kernels)."""
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()


def limit_threads(n: int) -> None:
    """Give TensorFlow ``n`` threads in this process (before its first operation): processes
    that each take every core slow one another down."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(n)
    tf.config.threading.set_inter_op_parallelism_threads(n)


def _fold_worker(cfg: Config, events: pd.DataFrame, fold: int, out_dir: Path, variant: Variant,
                 masses: list, events_id: str | None, threads: int, log_level: int
                 ) -> FoldResult:
    """Worker process: train and publish one fold with ``threads`` TensorFlow threads."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    limit_threads(threads)
    _deterministic()
    return _train_and_publish(cfg, events, fold, out_dir, variant, masses, events_id)


def _train_in_workers(cfg: Config, events: pd.DataFrame, fold_ids: list[int], out_dir: Path,
                      variant: Variant, masses: list, events_id: str | None, jobs: int
                      ) -> list[FoldResult]:
    """The folds in ``jobs`` processes at once, the cores shared out between them. Two folds
    on two cores train in about three quarters of the time they take one after the other,
    since one small network cannot keep two threads busy."""
    from concurrent.futures import as_completed

    from pnn.core.workers import available_cores, process_pool

    threads = max(1, available_cores() // jobs)
    level = logging.getLogger().getEffectiveLevel()
    log.info("training %d folds in %d processes of %d thread(s) each", len(fold_ids), jobs,
             threads)
    with process_pool(jobs, leftovers=out_dir, stage="train") as pool:
        futures = [pool.submit(_fold_worker, cfg, events, f, out_dir, variant, masses,
                               events_id, threads, level) for f in fold_ids]
        return [fut.result() for fut in as_completed(futures)]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_metadata(cfg: Config, out_dir: Path, masses: list, fold: dict,
                    variant: Variant) -> None:
    """Record one newly published fold in ``metadata.json``, keeping the other folds' records
    as they are: each fold carries its own provenance, so folds from different trainings are
    seen by :func:`require_model`, never silently mixed."""
    k = cfg.preprocessing.folds
    meta_path = out_dir / "metadata.json"
    earlier = []
    if meta_path.is_file():
        try:
            old = json.loads(meta_path.read_text())
            earlier = [r for r in old.get("fold_results", [])
                       if r.get("fold") != fold["fold"] and r.get("fold", k) < k]
        except (OSError, ValueError, AttributeError):
            log.warning("%s was unreadable: the other folds must be trained again", meta_path)
    fold_results = sorted([*earlier, fold], key=lambda r: r["fold"])
    inputs = list(cfg.features)
    if variant.parametric:
        inputs += [f"{p} (scaled to [0, 1] over the trained points)" for p in cfg.parameters]
    write_json(meta_path, {
        "variant": variant.name,
        "parametric": variant.parametric,
        "features": list(cfg.features),
        "parameters": list(cfg.parameters),
        "conditioning": cfg.training.conditioning,
        "masses": masses,
        "folds": k,
        "fold_rule": f"model i is trained on events with {cfg.event_number} % {k} != i "
                     f"and applied to events with {cfg.event_number} % {k} == i",
        "event_number": cfg.event_number,
        "inputs": inputs,
        "seed": cfg.seed,
        "config_digest": cfg.digest(),
        "training": cfg.training.model_dump(),
        "preprocessing": cfg.preprocessing.model_dump(),
        "versions": _versions(),
        "fold_results": fold_results,
    })


def require_model(cfg: Config, mdir: Path | None = None, *, events_id: str | None = None,
                  check_files: bool = True, check_events: bool = True) -> str:
    """Identity of the trained model, once every fold is checked: present, made from the
    current config's training settings and the same events table, files as recorded.

    ``events_id`` (default: the current events table's identity, when ``mdir`` is the PNN of
    the run) must be the table every fold trained on; ``check_events=False`` skips that, for
    stages that use a model without its events table (apply, export). Returns the model's
    identity.
    """
    if mdir is None:
        mdir = model_dir(cfg.run_dir)
        if check_events:
            events_id = events_id or events_identity(cfg)
    train_cmd = cfg.command("train")
    meta = read_json(mdir / "metadata.json", train_cmd)
    k = cfg.preprocessing.folds
    by_fold = {r.get("fold"): r for r in meta.get("fold_results", []) if isinstance(r, dict)}
    ids = []
    for f in range(k):
        rec = by_fold.get(f)
        fix = f"{train_cmd} --fold {f}"
        if rec is None:
            raise PnnError(f"the model of fold {f} is missing in '{mdir}': run '{fix}'")
        inputs = {"events": events_id} if events_id else None
        p = provenance.require(cfg, "train", rec.get(provenance.KEY), f"the model of fold {f} in "
                               f"'{mdir}'", inputs=inputs, fix=train_cmd)
        if check_files:
            for name, want in rec.get("files", {}).items():
                path = mdir / name
                if not path.is_file() or _sha256(path) != want:
                    raise PnnError(f"'{path}' is not the file its training recorded (changed or "
                                   f"interrupted): run '{fix}'")
        ids.append(p["id"])
    trained_on = {by_fold[f][provenance.KEY]["inputs"].get("events") for f in range(k)}
    if len(trained_on) > 1:
        raise PnnError(f"the fold models in '{mdir}' were trained on different events tables: "
                       f"rerun '{train_cmd}'")
    return provenance.combine(ids)
