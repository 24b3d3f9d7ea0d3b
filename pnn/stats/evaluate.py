"""Evaluation at each mass hypothesis: every test background event is set to that mass and
compared with the test signal of that mass, never pooled over masses.

For each mass: weighted ROC AUC, background efficiency at 80 % and 95 % signal efficiency,
Asimov Z and S/sqrt(B) at the best cut (chosen on one half, measured on the other, both
ways and averaged), the
same for a mass window and, on the embedded toy, for the exact likelihood ratio; plus the
TMVA overtraining check (train vs test score distributions with KS p-values).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pnn.core import provenance
from pnn.core.atomic import Staging, sweep, write_json
from pnn.core.config import Config
from pnn.core.errors import PnnError
from pnn.core.locks import task_lock
from pnn.io import toy
from pnn.learn.model import FoldModels
from pnn.learn.preprocess import cut_halves, feature_matrix, folds, mass_mask
from pnn.learn.train import require_model, training_events
from pnn.show import plots
from pnn.stats import metrics, sanity
from pnn.stats.ks import ks_2samp_weighted

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


@dataclass
class MassResult:
    mass: float
    trained: bool
    n_signal: int
    n_background: int
    signal_yield: float
    background_yield: float
    methods: dict[str, MethodMetrics]
    ks_signal: float
    ks_background: float
    warnings: list[str] = field(default_factory=list)


def mass_dir(run_dir: Path, mass: float) -> Path:
    return Path(run_dir) / "evaluate" / f"m{mass:g}"


def index_path(run_dir: Path) -> Path:
    """Written after a full evaluation (every default mass), listing the masses."""
    return Path(run_dir) / "evaluate" / "index.json"


def metrics_path(run_dir: Path, mass: float) -> Path:
    return mass_dir(run_dir, mass) / "metrics.json"


def evaluable_masses(cfg: Config, events: pd.DataFrame) -> list[float]:
    """Masses from the config, or every signal mass in the events table."""
    if cfg.evaluation.masses:
        return sorted(cfg.evaluation.masses)
    return sorted(float(m) for m in np.unique(events.loc[events["label"] == 1, "mass"]))


def check_masses(masses: list[float], trained: list[float], allow_extrapolation: bool) -> None:
    """Refuse mass hypotheses outside the trained range unless extrapolation is allowed."""
    lo, hi = min(trained), max(trained)
    outside = [m for m in masses if not lo - 1e-6 <= m <= hi + 1e-6]
    if outside and not allow_extrapolation:
        raise PnnError(
            f"mass {outside[0]:g} GeV is outside the trained range {lo:g}-{hi:g} GeV: "
            "the network was never shown it; pass --allow-extrapolation to evaluate anyway"
        )


def method_metrics(score: np.ndarray, label: np.ndarray, weight: np.ndarray, half: np.ndarray,
                   min_bkg: int, bkg_uncertainty: float = 0.0) -> tuple[MethodMetrics, metrics.Roc]:
    """ROC, background efficiencies and the half-split significance of one discriminant."""
    r = metrics.roc(score, label, weight)
    sig = metrics.best_cut(score, label, weight, half, min_bkg, bkg_uncertainty)
    return MethodMetrics(
        auc=r.auc, bkg_eff_sig80=metrics.bkg_eff_at(r, 0.80),
        bkg_eff_sig95=metrics.bkg_eff_at(r, 0.95), z=sig.z, s=sig.s, b=sig.b,
        s_over_sqrt_b=sig.s_over_sqrt_b, cut=sig.threshold, cut_other_half=sig.threshold_other,
        n_bkg_mc=sig.n_bkg,
        z_bkg_uncertainty=sig.z_uncertain,
    ), r


def _ks(train: np.ndarray, test: np.ndarray, w_train: np.ndarray, w_test: np.ndarray) -> float:
    """Weighted KS p-value of train against test scores, as the weighted histograms show them."""
    return ks_2samp_weighted(train, test, w_train, w_test).pvalue


def evaluate_mass(cfg: Config, events: pd.DataFrame, models: FoldModels, mass: float,
                  toy_samples: bool, inputs: dict[str, str] | None = None) -> MassResult:
    """All numbers and plots for one mass hypothesis, published together with ``metrics.json``
    (which records the model and events table they came from, ``inputs``)."""
    ev = cfg.evaluation
    k = models.k
    sig_sel = (events["label"].to_numpy() == 1) & mass_mask(events["mass"].to_numpy(), mass)
    if not sig_sel.any():
        raise PnnError(f"no signal events at mass {mass:g} GeV: add a signal sample with that mass")
    sel = sig_sel | (events["label"].to_numpy() == 0)
    test = events[sel]
    label = test["label"].to_numpy()
    weight = test["weight"].to_numpy(np.float64)
    evno = test["event_number"].to_numpy()
    X = feature_matrix(test, models.features)
    half = cut_halves(evno, k)

    score, _ = models.score(X, mass, evno, split="test")
    train_score, idx = models.score(X, mass, evno, split="train")
    results: dict[str, MethodMetrics] = {}
    rocs: dict[str, metrics.Roc] = {}
    results["pnn"], rocs["pnn"] = method_metrics(score, label, weight, half, ev.min_background_events,
                                                 ev.background_uncertainty)
    if toy_samples:
        llr = toy.log_likelihood_ratio(test, mass)
        results["optimal"], rocs["optimal"] = method_metrics(
            llr, label, weight, half, ev.min_background_events, ev.background_uncertainty)
    window_var = None
    if ev.window_branch is not None and ev.window_branch in test:
        window_var = test[ev.window_branch].to_numpy(np.float64)
        results["window"], rocs["window"] = method_metrics(
            -np.abs(window_var - mass), label, weight, half, ev.min_background_events,
            ev.background_uncertainty)

    is_sig = label == 1
    tr_lab = label[idx]
    ks_sig = _ks(train_score[tr_lab == 1], score[is_sig], weight[idx][tr_lab == 1], weight[is_sig])
    ks_bkg = _ks(train_score[tr_lab == 0], score[~is_sig], weight[idx][tr_lab == 0], weight[~is_sig])
    trained = bool(mass_mask(np.asarray(models.trained_masses), mass).any())
    warnings = sanity.overtraining({"signal": ks_sig, "background": ks_bkg}, ev.ks_threshold)
    warnings += sanity.statistics(
        label, weight, results["pnn"].n_bkg_mc, min_signal_events=ev.min_signal_events,
        min_effective_events=ev.min_effective_events,
        min_background_events=ev.min_background_events)
    n_sig = int(is_sig.sum())
    result = MassResult(
        mass=mass, trained=trained, n_signal=n_sig, n_background=int((~is_sig).sum()),
        signal_yield=float(weight[is_sig].sum()), background_yield=float(weight[~is_sig].sum()),
        methods=results, ks_signal=ks_sig, ks_background=ks_bkg, warnings=warnings,
    )
    for w in warnings:
        log.warning("m = %g GeV: %s", mass, w)

    label_dir = mass_dir(cfg.run_dir, mass).name
    title = f"m = {mass:g} GeV" + ("" if trained else " (not trained on)")
    with task_lock(cfg.run_dir, f"evaluate-{label_dir}"), \
            Staging(mass_dir(cfg.run_dir, mass), "evaluate") as staged:
        plots.score_distributions(
            {"signal": (train_score[tr_lab == 1], weight[idx][tr_lab == 1]),
             "background": (train_score[tr_lab == 0], weight[idx][tr_lab == 0])},
            {"signal": (score[is_sig], weight[is_sig]),
             "background": (score[~is_sig], weight[~is_sig])},
            {"signal": ks_sig, "background": ks_bkg}, staged.path("scores.png"), title)
        plots.roc_curves(rocs, staged.path("roc.png"), title)
        plots.significance_vs_cut(metrics.scan(score, label, weight),
                                  (results["pnn"].cut, results["pnn"].cut_other_half),
                                  ev.min_background_events, staged.path("significance.png"), title)
        write_scores(staged.path(SCORES_FILE), test, score, k,
                     window_var, llr if toy_samples else None)
        write_json(staged.path("metrics.json"),
                   {**asdict(result), provenance.KEY: provenance.record(cfg, "evaluate", inputs)})
        staged.publish(last=["metrics.json"])
    return result


SCORES_FILE = "scores.parquet"


def scores_path(run_dir: Path, mass: float) -> Path:
    """Per-event test scores at one mass: the hub that templates and limits read."""
    return mass_dir(run_dir, mass) / SCORES_FILE


def write_scores(path: Path, test: pd.DataFrame, score: np.ndarray, k: int,
                 window: np.ndarray | None, llr: np.ndarray | None) -> None:
    """Every test event once, scored by the model that did not train on it, with the window
    variable and (toy) the exact log-likelihood ratio, so every method's templates come from
    the same events."""
    evno = test["event_number"].to_numpy()
    table = pd.DataFrame({
        "event_number": evno,
        "sample": test["sample"].astype(str).to_numpy(),
        "fold": folds(evno, k).astype(np.int16),
        "weight": test["weight"].to_numpy(np.float64),
        "label": test["label"].to_numpy().astype(np.int8),
        "score": np.asarray(score, np.float64),
    })
    if window is not None:
        table["window"] = window
    if llr is not None:
        table["llr"] = np.asarray(llr, np.float64)
    table.to_parquet(path, index=False, compression="lz4")


def sanity_path(run_dir: Path) -> Path:
    return Path(run_dir) / "evaluate" / "sanity.json"


def run_checks(cfg: Config, events: pd.DataFrame, models: FoldModels) -> list[sanity.Check]:
    """Run-level sanity checks (mass leak, ignored mass); written to ``sanity.json``."""
    checks = [sanity.mass_leak(cfg, training_events(cfg, events), cfg.evaluation.mass_leak_tolerance)]
    rng = np.random.default_rng([cfg.seed, 17])
    pick = np.sort(rng.choice(len(events), min(len(events), sanity.SENSITIVITY_EVENTS), replace=False))
    sample = events.iloc[pick]
    X = feature_matrix(sample, models.features)
    evno = sample["event_number"].to_numpy()
    checks.append(sanity.mass_sensitivity(
        {m: models.score(X, m, evno)[0] for m in models.trained_masses}))
    checks.append(sanity.shared_events(cfg, events))
    checks.append(sanity.convergence(models.metadata.get("fold_results", []),
                                     int(models.metadata.get("training", {}).get("epochs", 0)),
                                     models.histories()))
    for c in checks:
        if c.warning:
            log.warning("%s", c.warning)
    write_json(sanity_path(cfg.run_dir), [asdict(c) for c in checks])
    return checks


def check_yields(cfg: Config, events: pd.DataFrame, masses: list[float]) -> None:
    """Refuse all-zero or negative total weights: every figure of merit would be meaningless."""
    label = events["label"].to_numpy()
    weight = events["weight"].to_numpy(np.float64)
    parts = [("background", label == 0)]
    parts += [(f"signal at {m:g} GeV", (label == 1) & mass_mask(events["mass"].to_numpy(), m))
              for m in masses]
    for name, sel in parts:
        total = float(weight[sel].sum())
        if sel.any() and not total > 0:
            raise PnnError(f"the {name} weights sum to {total:g} (all zero or negative): check "
                           f"the weight expression '{cfg.weight}' and the samples' weights")


def _window_branch(cfg: Config, events: pd.DataFrame) -> None:
    """An explicit ``window_branch`` must exist; the default one may be absent (then the
    window baseline is skipped, with a warning); ``null`` turns it off."""
    branch = cfg.evaluation.window_branch
    if branch is None or branch in events:
        return
    if "window_branch" in cfg.evaluation.model_fields_set:
        raise PnnError(f"{cfg.source}: key 'evaluation.window_branch': '{branch}' is not a column "
                       "of the events table: add it to spectators and rerun ingest, or set it "
                       "to null")
    log.warning("no '%s' in the events table: the mass-window baseline is skipped (set "
                "evaluation.window_branch to a mass branch, or to null to silence this)", branch)


def evaluate(cfg: Config, events: pd.DataFrame, meta: dict, masses: list[float] | None = None,
             allow_extrapolation: bool | None = None) -> list[MassResult]:
    """Evaluate every requested mass (default: all signal masses) with the fold models.

    Each mass is one task; the index is written last, listing only masses whose outputs
    are complete and made from the current model.
    """
    events_id = meta.get("id") or "unrecorded"
    model_id = require_model(cfg, events_id=events_id)
    models = FoldModels.load(cfg.run_dir)
    missing = sorted(set(models.features) - set(events.columns))
    if missing:
        raise PnnError(f"events table lacks feature {missing[0]!r}: rerun '{cfg.command('ingest')}'")
    _window_branch(cfg, events)
    default_set = not masses
    masses = sorted(masses) if masses else evaluable_masses(cfg, events)
    allow = cfg.evaluation.allow_extrapolation if allow_extrapolation is None else allow_extrapolation
    check_masses(masses, models.trained_masses, allow)
    check_yields(cfg, events, masses)
    sweep(cfg.run_dir / "evaluate")
    run_checks(cfg, events, models)
    inputs = {"model": model_id, "events": events_id}
    out = []
    for i, m in enumerate(masses, 1):
        log.info("evaluating mass %g GeV (%d/%d)", m, i, len(masses))
        out.append(evaluate_mass(cfg, events, models, m, bool(meta.get("toy")), inputs))
    if default_set:
        write_json(index_path(cfg.run_dir), {
            "masses": masses,
            "metrics": [str(metrics_path(cfg.run_dir, m).relative_to(cfg.run_dir)) for m in masses],
            provenance.KEY: provenance.record(cfg, "evaluate", inputs),
        })
    return out


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
