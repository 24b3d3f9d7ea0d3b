"""Evaluation at each mass hypothesis (each signal point, with several parameters): every
test background event is set to that point and compared with the test signal of that
point, never pooled over points.

For each point: weighted ROC AUC, background efficiency at 80 % and 95 % signal efficiency,
Asimov Z and S/sqrt(B) at the best cut (chosen on one half, measured on the other, both
ways and averaged), the
same for a mass window and, on the embedded toy, for the exact likelihood ratio; plus the
TMVA overtraining check (train vs test score distributions with KS p-values).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
from concurrent import futures
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pnn.core import points, provenance
from pnn.core.atomic import Staging, sweep, write_json
from pnn.core.config import Config
from pnn.core.errors import PnnError
from pnn.core.locks import task_lock
from pnn.core.workers import available_cores, process_pool, warm_workers
from pnn.io import exact
from pnn.learn.metadata import ModelInfo
from pnn.learn.preprocess import cut_halves, feature_matrix, folds, parameter_matrix
from pnn.learn.train import require_model, training_events
from pnn.show import plots
from pnn.show.style import Style
from pnn.show.style import current as current_style
from pnn.show.style import use as use_style
from pnn.stats import metrics, sanity
from pnn.stats.ks import ks_2samp_weighted

if TYPE_CHECKING:  # TensorFlow loads only when networks are read
    from pnn.learn.model import FoldModels

log = logging.getLogger(__name__)


@dataclass
class MethodMetrics:
    auc: float
    bkg_eff_sig80: float
    bkg_eff_sig95: float
    z: float
    s: float
    b: float
    s_over_sqrt_b: float
    cut: float
    cut_other_half: float
    n_bkg_mc: int
    z_bkg_uncertainty: float = float("nan")  # Z at the same cut, background known to +-sigma_b
    # bootstrap standard deviations (evaluation.bootstrap_replicates Poisson(1) reweightings)
    auc_err: float = float("nan")
    z_err: float = float("nan")
    bkg_eff_sig80_err: float = float("nan")
    bkg_eff_sig95_err: float = float("nan")


@dataclass
class MassResult:
    mass: float | None  # the mass of a one-parameter search; None with several parameters
    trained: bool
    n_signal: int
    n_background: int
    signal_yield: float
    background_yield: float
    methods: dict[str, MethodMetrics]
    ks_signal: float
    ks_background: float
    warnings: list[str] = field(default_factory=list)
    z_ratio: float = float("nan")  # Z of the PNN over Z of the optimal classifier (toy)
    z_ratio_err: float = float("nan")
    bootstrap_replicates: int = 0
    point: dict[str, float] = field(default_factory=dict)  # every parameter by name


def mass_dir(run_dir: Path, mass: float | tuple, names: list[str] | None = None) -> Path:
    """``evaluate/m500`` for a mass, ``evaluate/mX1000_mY300`` for a point."""
    return Path(run_dir) / "evaluate" / points.label(names or [points.MASS], points.as_point(mass))


def index_path(run_dir: Path) -> Path:
    """Written after a full evaluation (every default mass), listing the masses."""
    return Path(run_dir) / "evaluate" / "index.json"


def metrics_path(run_dir: Path, mass: float | tuple, names: list[str] | None = None) -> Path:
    return mass_dir(run_dir, mass, names) / "metrics.json"


def evaluable_masses(cfg: Config, events: pd.DataFrame) -> list:
    """Points from the config, or every signal point in the events table: masses (floats)
    for one parameter, tuples for several."""
    found = cfg.evaluation_points()
    if found is None:
        found = points.unique(parameter_matrix(events[events["label"] == 1], cfg.parameters))
    return _public(found)


def _public(pts: list[tuple[float, ...]]) -> list:
    """Points as callers know them: a float per mass, a tuple per multi-parameter point."""
    return sorted(p[0] if len(p) == 1 else tuple(p) for p in pts)


def check_masses(masses: list, trained: list, allow_extrapolation: bool,
                 names: list[str] | None = None) -> None:
    """Refuse hypotheses outside the trained range (one parameter) or outside the convex
    hull of the trained points (several) unless extrapolation is allowed."""
    points.check_trained(names or [points.MASS], [points.as_point(m) for m in masses],
                         [points.as_point(m) for m in trained], allow_extrapolation, "evaluate")


def method_metrics(score: np.ndarray, label: np.ndarray, weight: np.ndarray, half: np.ndarray,
                   min_bkg: int, bkg_uncertainty: float = 0.0) -> tuple[MethodMetrics, metrics.Summary]:
    """ROC, background efficiencies and the half-split significance of one discriminant."""
    summary = metrics.summarise(score, label, weight, half, min_bkg, bkg_uncertainty,
                                points=PLOT_POINTS)
    r, sig = summary.roc, summary.significance
    return MethodMetrics(
        auc=r.auc, bkg_eff_sig80=summary.bkg_eff_sig80,
        bkg_eff_sig95=summary.bkg_eff_sig95, z=sig.z, s=sig.s, b=sig.b,
        s_over_sqrt_b=sig.s_over_sqrt_b, cut=sig.threshold, cut_other_half=sig.threshold_other,
        n_bkg_mc=sig.n_bkg,
        z_bkg_uncertainty=sig.z_uncertain,
    ), summary


def _ks(train: np.ndarray, test: np.ndarray, w_train: np.ndarray, w_test: np.ndarray) -> float:
    """Weighted KS p-value of train against test scores, as the weighted histograms show them."""
    return ks_2samp_weighted(train, test, w_train, w_test).pvalue


PLOT_POINTS = 4000  # points of a curve drawn from millions of cuts


CHUNK_EVENTS = 1_000_000


def release_memory() -> None:
    """Hand freed memory back to the system between the big steps: arrays still held by
    reference cycles (a closed figure keeps its data until the cyclic collector runs),
    Arrow's pool, and the C heap (glibc keeps freed blocks of the chunks otherwise, and they
    pile up over masses)."""
    gc.collect()
    pa.default_memory_pool().release_unused()
    libc = ctypes.util.find_library("c")
    if libc is not None:
        trim = getattr(ctypes.CDLL(libc), "malloc_trim", None)
        if trim is not None:
            trim(0)


@dataclass
class MassScores:
    """What the metrics of one mass need, one entry per test event (train scores per
    (event, training model) pair); everything else stays in ``scores.parquet`` only."""

    label: np.ndarray
    weight: np.ndarray
    half: np.ndarray
    discriminants: dict[str, np.ndarray]
    train_score: np.ndarray
    train_label: np.ndarray
    train_weight: np.ndarray


def window_discriminant(values: np.ndarray, point: tuple[float, ...]) -> np.ndarray:
    """The mass-window baseline: -|x - m| for one parameter (a cut on it is a window around
    m); with several, -max_i |x_i - theta_i| / theta_i, a box of equal relative half-widths."""
    v = points.matrix(values)
    p = np.asarray(point, dtype=np.float64)
    if len(p) == 1:
        return -np.abs(v[:, 0] - p[0])
    return -np.max(np.abs(v - p) / np.abs(p), axis=1)


def window_branches(cfg: Config) -> list[str] | None:
    """The window variable of each parameter, in the order of ``parameters`` (None: off)."""
    wb = cfg.evaluation.window_branch
    if wb is None:
        return None
    if isinstance(wb, str):
        return [wb] if len(cfg.parameters) == 1 else None
    return [wb[n] for n in cfg.parameters]


def score_mass(cfg: Config, events: pd.DataFrame, rows: np.ndarray, models: FoldModels,
               mass: float | tuple, toy_samples: str | bool, window: bool, path: Path,
               chunk: int = CHUNK_EVENTS, background: np.ndarray | None = None) -> MassScores:
    """Score the events ``rows`` at ``mass`` in chunks of ``chunk`` events, writing each
    chunk to ``path`` (a row group of ``scores.parquet``) as it is scored, so memory holds a
    chunk's features and network inputs, never all of them. ``background``: the toy's
    background log-density of every event, when known (see :func:`toy_background`)."""
    n, k = len(rows), models.k
    label = events["label"].to_numpy()[rows].astype(np.int8)
    weight = events["weight"].to_numpy(np.float64)[rows]
    evno_all = events["event_number"].to_numpy()
    half = cut_halves(evno_all[rows], k)
    disc = {"pnn": np.empty(n)}
    if toy_samples:
        disc["optimal"] = np.empty(n)
    if window:
        disc["window"] = np.empty(n)
    train_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    writer = None
    try:
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            part = events.iloc[rows[start:stop]]
            evno = evno_all[rows[start:stop]]
            X = feature_matrix(part, models.features)
            disc["pnn"][start:stop] = models.score(X, mass, evno, split="test")[0]
            tr, idx = models.score(X, mass, evno, split="train")
            train_parts.append((tr, label[start:stop][idx], weight[start:stop][idx]))
            del X
            columns = {
                "event_number": evno,
                "sample": pa.array(part["sample"].astype(str).to_numpy(), pa.string()
                                   ).dictionary_encode(),
                "fold": folds(evno, k).astype(np.int16),
                "weight": weight[start:stop],
                "label": label[start:stop],
                "score": disc["pnn"][start:stop],
            }
            if window:
                branches = window_branches(cfg) or []
                values = part[branches].to_numpy(np.float64)
                for i, b in enumerate(branches):
                    columns["window" if len(branches) == 1 else f"window_{b}"] = values[:, i]
                disc["window"][start:stop] = window_discriminant(values, points.as_point(mass))
            if toy_samples:
                known = None if background is None else background[rows[start:stop]]
                disc["optimal"][start:stop] = exact.log_likelihood_ratio(toy_samples, part, mass,
                                                                         known)
                columns["llr"] = disc["optimal"][start:stop]
            batch = pa.table(columns)
            if writer is None:
                writer = pq.ParquetWriter(path, batch.schema, compression="lz4")
            writer.write_table(batch)
    finally:
        if writer is not None:
            writer.close()
    cat = [np.concatenate([p[i] for p in train_parts]) for i in range(3)]
    return MassScores(label, weight, half, disc, *cat)


def toy_background(toy_samples: str | bool, events: pd.DataFrame) -> np.ndarray | None:
    """The embedded toy's background log-density of every event (None without a toy): the
    same at every point, so computed once for all of them."""
    return exact.background_log_density(toy_samples, events) if toy_samples else None


def evaluate_mass(cfg: Config, events: pd.DataFrame, models: FoldModels, mass: float | tuple,
                  toy_samples: str | bool, inputs: dict[str, str] | None = None,
                  chunk: int | None = None, background: np.ndarray | None = None) -> MassResult:
    """All numbers and plots for one mass hypothesis, published together with ``metrics.json``
    (which records the model and events table they came from, ``inputs``).

    Events are scored ``chunk`` at a time (default ``evaluation.chunk_events``) and written
    to ``scores.parquet`` as they go; the figures of merit come from one sort of each
    discriminant, with bootstrap uncertainties. ``background``: :func:`toy_background`.
    """
    ev = cfg.evaluation
    names = cfg.parameters
    point = points.as_point(mass)
    where = points.describe(names, point)
    sig_sel = (events["label"].to_numpy() == 1) & points.mask(
        parameter_matrix(events, names), point)
    if not sig_sel.any():
        raise PnnError(f"no signal events at {points.phrase(names, point)}: add a signal sample with that "
                       f"{'mass' if len(names) == 1 else 'point'}")
    rows = np.flatnonzero(sig_sel | (events["label"].to_numpy() == 0))
    del sig_sel
    branches = window_branches(cfg)
    window = branches is not None and all(b in events for b in branches)
    out_dir = mass_dir(cfg.run_dir, point, names)
    trained = bool(points.mask(np.asarray(models.trained_points), point).any())
    title = where + ("" if trained else " (not trained on)")
    with task_lock(cfg.run_dir, f"evaluate-{out_dir.name}"), \
            Staging(out_dir, "evaluate") as staged:
        sc = score_mass(cfg, events, rows, models, mass, toy_samples, window,
                        staged.path(SCORES_FILE), chunk or ev.chunk_events, background)
        del rows
        release_memory()
        label, weight = sc.label, sc.weight
        results: dict[str, MethodMetrics] = {}
        summaries: dict[str, metrics.Summary] = {}
        for name, values in sc.discriminants.items():
            results[name], summaries[name] = method_metrics(
                values, label, weight, sc.half, ev.min_background_events, ev.background_uncertainty)
        errors = bootstrap_errors(cfg, point, summaries, weight)
        for name, errs in errors.items():
            if name in results:
                for key, value in errs.items():
                    setattr(results[name], f"{key}_err", value)
        curves = {n: plots.thin_roc(s.roc) for n, s in summaries.items()}
        pnn_scan = summaries["pnn"].scan
        score = sc.discriminants["pnn"]
        del summaries  # the bins and the baselines' values are done with
        sc.discriminants = {}
        release_memory()

        is_sig = label == 1
        tr_lab = sc.train_label
        ks_sig = _ks(sc.train_score[tr_lab == 1], score[is_sig], sc.train_weight[tr_lab == 1],
                     weight[is_sig])
        ks_bkg = _ks(sc.train_score[tr_lab == 0], score[~is_sig], sc.train_weight[tr_lab == 0],
                     weight[~is_sig])
        warnings = sanity.overtraining({"signal": ks_sig, "background": ks_bkg}, ev.ks_threshold)
        warnings += sanity.statistics(
            label, weight, results["pnn"].n_bkg_mc, min_signal_events=ev.min_signal_events,
            min_effective_events=ev.min_effective_events,
            min_background_events=ev.min_background_events)
        n_sig = int(is_sig.sum())
        result = MassResult(
            mass=point[0] if len(point) == 1 else None, trained=trained, n_signal=n_sig,
            n_background=int((~is_sig).sum()),
            signal_yield=float(weight[is_sig].sum()), background_yield=float(weight[~is_sig].sum()),
            methods=results, ks_signal=ks_sig, ks_background=ks_bkg, warnings=warnings,
            z_ratio=_ratio(results, "z"), z_ratio_err=errors.get("ratio", {}).get("z", float("nan")),
            bootstrap_replicates=ev.bootstrap_replicates, point=points.as_dict(names, point),
        )
        for w in warnings:
            log.warning("%s: %s", where, w)
        figures = plots.MassFigures(
            train={"signal": plots.score_histogram(sc.train_score[tr_lab == 1],
                                                   sc.train_weight[tr_lab == 1]),
                   "background": plots.score_histogram(sc.train_score[tr_lab == 0],
                                                       sc.train_weight[tr_lab == 0])},
            test={"signal": plots.score_histogram(score[is_sig], weight[is_sig]),
                  "background": plots.score_histogram(score[~is_sig], weight[~is_sig])},
            ks={"signal": ks_sig, "background": ks_bkg}, rocs=curves,
            scan=plots.thin_scan(pnn_scan, ev.min_background_events),
            cuts=(results["pnn"].cut, results["pnn"].cut_other_half),
            min_bkg_events=ev.min_background_events, title=title, style=current_style())
        plots.mass_figures(figures, staged.dir)
        record = {provenance.KEY: provenance.record(cfg, "evaluate", inputs)}
        write_json(staged.path("metrics.json"), {**asdict(result), **record})
        staged.publish(last=["metrics.json"])
    return result


def _ratio(results: dict[str, MethodMetrics], key: str) -> float:
    if "optimal" not in results:
        return float("nan")
    num, den = getattr(results["pnn"], key), getattr(results["optimal"], key)
    return float(num / den) if den and np.isfinite(den) else float("nan")


def bootstrap_errors(cfg: Config, mass: float | tuple, summaries: dict[str, metrics.Summary],
                     weight: np.ndarray) -> dict[str, dict[str, float]]:
    """Bootstrap standard deviations of every method's AUC, Z and background efficiencies,
    and (``"ratio"``) of the PNN's Z over the optimal one, all from the same replicates.

    The seed comes from the config seed and the point, so a point evaluated alone or with
    the others gets the same uncertainties.
    """
    ev = cfg.evaluation
    rng = np.random.default_rng([cfg.seed, *(round(v * 1000) for v in points.as_point(mass)), 23])
    reps = metrics.bootstrap({n: s.bins for n, s in summaries.items()}, weight,
                             ev.min_background_events, ev.bootstrap_replicates, rng)
    out = {n: {k: metrics.spread(v) for k, v in r.items()} for n, r in reps.items()}
    if "optimal" in reps:
        with np.errstate(divide="ignore", invalid="ignore"):
            out["ratio"] = {"z": metrics.spread(reps["pnn"]["z"] / reps["optimal"]["z"])}
    return out


SCORES_FILE = "scores.parquet"


def scores_path(run_dir: Path, mass: float | tuple, names: list[str] | None = None) -> Path:
    """Per-event test scores at one point: the hub that templates and limits read."""
    return mass_dir(run_dir, mass, names) / SCORES_FILE


def sanity_path(run_dir: Path) -> Path:
    return Path(run_dir) / "evaluate" / "sanity.json"


def run_checks(cfg: Config, events: pd.DataFrame, models: FoldModels) -> list[sanity.Check]:
    """Run-level sanity checks (mass leak, ignored mass); written to ``sanity.json``."""
    narrow = events[["event_number", "sample", "label", *cfg.parameters, "weight"]]  # no features
    checks = [sanity.mass_leak(cfg, training_events(cfg, narrow), cfg.evaluation.mass_leak_tolerance)]
    del narrow
    rng = np.random.default_rng([cfg.seed, 17])
    pick = np.sort(rng.choice(len(events), min(len(events), sanity.SENSITIVITY_EVENTS), replace=False))
    sample = events.iloc[pick]
    X = feature_matrix(sample, models.features)
    evno = sample["event_number"].to_numpy()
    checks.append(sanity.mass_sensitivity(
        {p: models.score(X, p, evno)[0] for p in models.trained_points}))
    checks.append(sanity.shared_events(cfg, events))
    checks.append(sanity.convergence(models.metadata.get("fold_results", []),
                                     int(models.metadata.get("training", {}).get("epochs", 0)),
                                     models.histories()))
    for c in checks:
        if c.warning:
            log.warning("%s", c.warning)
    write_json(sanity_path(cfg.run_dir), [asdict(c) for c in checks])
    return checks


def check_yields(cfg: Config, events: pd.DataFrame, masses: list) -> None:
    """Refuse all-zero or negative total weights: every figure of merit would be meaningless."""
    label = events["label"].to_numpy()
    weight = events["weight"].to_numpy(np.float64)
    theta = parameter_matrix(events, cfg.parameters)
    parts = [("background", label == 0)]
    parts += [(f"signal at {points.describe(cfg.parameters, points.as_point(m))}",
               (label == 1) & points.mask(theta, m)) for m in masses]
    for name, sel in parts:
        total = float(weight[sel].sum())
        if sel.any() and not total > 0:
            raise PnnError(f"the {name} weights sum to {total:g} (all zero or negative): check "
                           f"the weight expression '{cfg.weight}' and the samples' weights")


def _window_branch(cfg: Config, events: pd.DataFrame) -> None:
    """An explicit ``window_branch`` must exist; the default one may be absent (then the
    window baseline is skipped, with a warning); ``null`` turns it off."""
    branches = window_branches(cfg)
    missing = [b for b in branches or [] if b not in events]
    if not missing:
        return
    branch = missing[0]
    if "window_branch" in cfg.evaluation.model_fields_set:
        raise PnnError(f"{cfg.source}: key 'evaluation.window_branch': '{branch}' is not a column "
                       "of the events table: add it to spectators and rerun ingest, or set it "
                       "to null")
    log.warning("no '%s' in the events table: the mass-window baseline is skipped (set "
                "evaluation.window_branch to a mass branch, or to null to silence this)", branch)


def event_columns(cfg: Config) -> list[str]:
    """The columns of the events table that evaluation reads (features, window variable and
    the toy's likelihood-ratio inputs when present): the rest stays on disk."""
    cols = ["event_number", "sample", "label", *cfg.parameters, "weight", *cfg.features,
            *exact.branches("pnn.io.toy"), *exact.branches("pnn.io.toy2d")]
    cols += window_branches(cfg) or []
    return list(dict.fromkeys(cols))


def evaluate(cfg: Config, events: pd.DataFrame, meta: dict, masses: list[float] | None = None,
             allow_extrapolation: bool | None = None) -> list[MassResult]:
    """Evaluate every requested mass (default: all signal masses) with the fold models.

    Each mass is one task; the index is written last, listing only masses whose outputs
    are complete and made from the current model.
    """
    events_id = meta.get("id") or "unrecorded"
    model_id = require_model(cfg, events_id=events_id)
    default_set = not masses
    masses = sorted(masses) if masses else evaluable_masses(cfg, events)
    jobs = min(cfg.evaluation.jobs, available_cores(), len(masses))
    networks: FoldModels | None = None
    if jobs > 1:  # the workers load the networks (and TensorFlow); here the metadata will do
        warm_workers("evaluate")
        models = ModelInfo.load(cfg.run_dir)
    else:
        from pnn.learn.model import FoldModels

        models = networks = FoldModels.load(cfg.run_dir)
    missing = sorted(set(models.features) - set(events.columns))
    if missing:
        raise PnnError(f"events table lacks feature {missing[0]!r}: rerun '{cfg.command('ingest')}'")
    _window_branch(cfg, events)
    allow = cfg.evaluation.allow_extrapolation if allow_extrapolation is None else allow_extrapolation
    check_masses(masses, models.trained_points, allow, cfg.parameters)
    check_yields(cfg, events, masses)
    sweep(cfg.run_dir / "evaluate")
    inputs = {"model": model_id, "events": events_id}
    names = cfg.parameters
    toy = meta.get("toy") or False
    if networks is None:
        out = _evaluate_in_workers(cfg, masses, meta, inputs, jobs)
    else:
        out = _evaluate_here(cfg, events, networks, masses, toy, inputs)
    if default_set:
        write_json(index_path(cfg.run_dir), {
            "masses": [m if len(names) == 1 else list(m) for m in masses],
            "metrics": [str(metrics_path(cfg.run_dir, m, names).relative_to(cfg.run_dir))
                        for m in masses],
            provenance.KEY: provenance.record(cfg, "evaluate", inputs),
        })
    return out


def _evaluate_here(cfg: Config, events: pd.DataFrame, models: FoldModels, masses: list,
                   toy: str | bool, inputs: dict[str, str]) -> list[MassResult]:
    """The run checks and every point, one after the other in this process."""
    background = toy_background(toy, events)
    # What exists now (modules, TensorFlow, the models, the events) lives to the end: moved
    # out of the collector's sight, each collection between masses scans only what a mass made.
    gc.freeze()
    run_checks(cfg, events, models)
    out = []
    for i, m in enumerate(masses, 1):
        log.info("evaluating %s (%d/%d)", points.describe(cfg.parameters, points.as_point(m)), i,
                 len(masses))
        out.append(evaluate_mass(cfg, events, models, m, toy, inputs, background=background))
        release_memory()
    return out


_WORKER: dict[str, Any] = {}  # a point worker's events table and networks, read once


def _worker_inputs(cfg: Config, meta: dict, look: Style, log_level: int,
                   threads: int) -> tuple[pd.DataFrame, FoldModels, np.ndarray | None]:
    """The events table and networks on disk, read by the first task of a worker process
    (they must be those the command started from), and the toy's background density."""
    if not _WORKER:
        from pnn.io.ingest import load_events
        from pnn.learn.model import FoldModels
        from pnn.learn.train import limit_threads

        logging.basicConfig(level=log_level, format="%(asctime)s %(name)s: %(message)s",
                            datefmt="%H:%M:%S")
        limit_threads(threads)
        use_style(look)
        events, found = load_events(cfg, columns=event_columns(cfg))
        if found.get("id") != meta.get("id"):
            raise PnnError(f"the events table changed during the evaluation: rerun "
                           f"'{cfg.command('evaluate')}'")
        _WORKER.update(events=events, models=FoldModels.load(cfg.run_dir),
                       background=toy_background(meta.get("toy") or False, events))
        gc.freeze()
    return _WORKER["events"], _WORKER["models"], _WORKER["background"]


def _evaluate_point(cfg: Config, mass: float | tuple, meta: dict, inputs: dict[str, str],
                    look: Style, log_level: int, threads: int) -> MassResult:
    """Worker process: evaluate one point."""
    events, models, background = _worker_inputs(cfg, meta, look, log_level, threads)
    result = evaluate_mass(cfg, events, models, mass, meta.get("toy") or False, inputs,
                           background=background)
    release_memory()
    return result


def _checks_in_worker(cfg: Config, meta: dict, look: Style, log_level: int,
                      threads: int) -> list[sanity.Check]:
    """Worker process: the run-level checks, beside the points."""
    events, models, _ = _worker_inputs(cfg, meta, look, log_level, threads)
    return run_checks(cfg, events, models)


def _evaluate_in_workers(cfg: Config, masses: list, meta: dict, inputs: dict[str, str],
                         jobs: int) -> list[MassResult]:
    """Every point in ``jobs`` worker processes, each point scored, measured, drawn and
    published by one worker; the run-level checks go to the first free worker. A point that
    fails stops the command once the points already under way are published."""
    names = cfg.parameters
    threads = max(1, available_cores() // jobs)
    level = logging.getLogger().getEffectiveLevel()
    look = current_style()
    results: dict[int, MassResult] = {}
    error: Exception | None = None
    with process_pool(jobs, leftovers=cfg.run_dir / "evaluate", stage="evaluate") as pool:
        checks = pool.submit(_checks_in_worker, cfg, meta, look, level, threads)
        todo = {pool.submit(_evaluate_point, cfg, m, meta, inputs, look, level, threads): i
                for i, m in enumerate(masses)}
        for fut in futures.as_completed(todo):
            i = todo[fut]
            try:
                results[i] = fut.result()
            except Exception as exc:  # the others under way still finish and publish
                error = error or exc
                for other in todo:
                    other.cancel()
                continue
            log.info("evaluated %s (%d/%d)", points.describe(names, points.as_point(masses[i])),
                     len(results), len(masses))
        if error is not None:
            raise error
        checks.result()
    return [results[i] for i in sorted(results)]


def require_metrics(cfg: Config, found: list[tuple[Path, dict]]) -> None:
    """Refuse per-mass metrics that were not made from the current model and settings.

    The model is checked first, so a retrained or stale model is named before its metrics.
    """
    if not found:
        return
    model_id = require_model(cfg, check_files=False)
    for path, m in found:
        provenance.require(cfg, "evaluate", m.get(provenance.KEY), f"'{path}'",
                           inputs={"model": model_id})
