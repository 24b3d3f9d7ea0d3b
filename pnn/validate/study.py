"""Physics validation: does the PNN beat the tools analysts trust, and is it right at masses
it never saw?

Baseline networks share the PNN's folds, weights, features and architecture. Each trains in
its own process (``study.jobs`` at once, ``study.threads_per_network`` threads each, so the
numbers do not depend on how many run side by side):

* ``holdout-m<M>``: the PNN with the signal at M left out, for each interior trained mass;
* ``dedicated-m<M>``: no mass input, the signal at M alone against all background;
* ``nonparametric``: no mass input, every trained mass pooled.

Also compared: a parametric BDT (gradient-boosted trees with the mass as a feature, trained
on all masses and with each interior mass held out), the mass window and, on the toy, the
exact likelihood ratio. Studies: interpolation (every method at every mass), detuning (Z
against the hypothesised mass for signal at each true mass) and permutation importance per
mass; ``study.md`` sums them up with conclusions computed from the numbers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable
from concurrent.futures import as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pnn.core.atomic import sweep, write_json, write_text
from pnn.core.config import Config
from pnn.core.errors import PnnError
from pnn.core.workers import process_pool
from pnn.io import toy
from pnn.learn.preprocess import PointPrior, cut_halves, feature_matrix, folds, mass_mask
from pnn.learn.train import Variant, split_fold, training_events
from pnn.show import plots
from pnn.stats import metrics
from pnn.stats.evaluate import evaluable_masses, method_metrics
from pnn.stats.report import markdown, write_table

log = logging.getLogger(__name__)

Scorer = Callable[[np.ndarray, float, np.ndarray], np.ndarray]
METHOD_LABELS = {
    "pnn": "PNN (all masses)",
    "pnn_holdout": "PNN, this mass held out",
    "dedicated": "dedicated network at this mass",
    "dedicated_below": "dedicated network of the mass below",
    "dedicated_above": "dedicated network of the mass above",
    "nonparametric": "non-parametric network",
    "bdt": "parametric BDT (all masses)",
    "bdt_holdout": "parametric BDT, this mass held out",
    "window": "mass window",
    "optimal": "optimal (likelihood ratio)",
}


def study_dir(cfg: Config) -> Path:
    return cfg.run_dir / "study"


def network_dir(cfg: Config, name: str) -> Path:
    return study_dir(cfg) / "networks" / name


def trained_masses(cfg: Config, events: pd.DataFrame) -> list[float]:
    ev = training_events(cfg, events)
    return sorted(float(m) for m in np.unique(ev.loc[ev["label"] == 1, "mass"]))


def interior(masses: list[float]) -> list[float]:
    """Trained masses with a trained neighbour on each side: the ones a hold-out tests."""
    return list(masses[1:-1])


def neighbours(mass: float, masses: list[float]) -> tuple[float | None, float | None]:
    """Nearest trained masses strictly below and above ``mass``."""
    below = [m for m in masses if m < mass - 1e-6]
    above = [m for m in masses if m > mass + 1e-6]
    return (below[-1] if below else None, above[0] if above else None)


def network_variants(masses: list[float]) -> list[Variant]:
    """Every baseline network of the study, largest first (so parallel training ends sooner)."""
    out = [Variant("nonparametric", None, False)]
    out += [Variant(f"holdout-m{m:g}", tuple(x for x in masses if x != m), True)
            for m in interior(masses)]
    out += [Variant(f"dedicated-m{m:g}", (m,), False) for m in masses]
    return out


def training_digest(cfg: Config) -> str:
    """Hash of everything a study network's weights depend on (not the study settings)."""
    d = cfg.model_dump(exclude={"name", "output_dir", "evaluation", "study"})
    d["threads_per_network"] = cfg.study.threads_per_network
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def is_trained(cfg: Config, name: str) -> bool:
    marker = network_dir(cfg, name) / "done.json"
    return marker.is_file() and json.loads(marker.read_text()).get("digest") == training_digest(cfg)


def _train_fold(cfg: Config, variant: Variant, fold: int, log_level: int) -> tuple[str, dict]:
    """Worker process: train one fold of one network with a fixed number of threads."""
    import tensorflow as tf

    logging.basicConfig(level=log_level, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    logging.getLogger("pnn.learn.train").setLevel(max(log_level, logging.WARNING))
    n = cfg.study.threads_per_network
    tf.config.threading.set_intra_op_parallelism_threads(n)
    tf.config.threading.set_inter_op_parallelism_threads(n)
    from pnn.io import ingest
    from pnn.learn import train

    events, _ = ingest.load_events(cfg)
    res = train.train(cfg, events, [fold], variant=variant,
                      out_dir=network_dir(cfg, variant.name) / "model")
    return variant.name, asdict(res.folds[0])


def train_networks(cfg: Config, variants: list[Variant], jobs: int | None = None,
                   meanwhile: Callable[[], None] | None = None) -> list[str]:
    """Train the variants not yet trained with this config, ``jobs`` processes at once.

    Each fold of each network is one unit of work, so the processes stay busy to the end;
    a network is marked done once all its folds are. ``meanwhile`` runs in this process
    while the networks train (work that needs only the PNN).
    """
    todo = [v for v in variants if not is_trained(cfg, v.name)]
    done = len(variants) - len(todo)
    if done:
        log.info("%d of %d study networks already trained with this config", done, len(variants))
    if not todo:
        if meanwhile:
            meanwhile()
        return []
    from pnn.io.ingest import load_events

    load_events(cfg)  # fail here, once, if there is no events table
    k = cfg.preprocessing.folds
    units = [(v, f) for v in todo for f in range(k)]
    jobs = min(jobs or cfg.study.jobs, len(units))
    log.info("training %d study networks (%d folds each), %d processes", len(todo), k, jobs)
    level = logging.getLogger().getEffectiveLevel()
    by_name = {v.name: v for v in todo}
    folds_done: dict[str, list[dict]] = {v.name: [] for v in todo}
    names = []
    try:
        with process_pool(jobs) as pool:
            futures = [pool.submit(_train_fold, cfg, v, f, level) for v, f in units]
            if meanwhile:
                meanwhile()
            for fut in as_completed(futures):
                name, result = fut.result()
                folds_done[name].append(result)
                if len(folds_done[name]) == k:
                    write_json(network_dir(cfg, name) / "done.json", {
                        "digest": training_digest(cfg), "variant": asdict(by_name[name]),
                        "folds": sorted(folds_done[name], key=lambda r: r["fold"])})
                    names.append(name)
                    log.info("trained %s (%d/%d)", name, len(names), len(todo))
    except BaseException:
        sweep(study_dir(cfg))  # what the stopped workers were staging
        raise
    return names


def select_variants(variants: list[Variant], prefix: str, masses: list[float] | None) -> list[Variant]:
    """Variants whose name starts with ``prefix``, restricted to ``masses`` when given."""
    chosen = [v for v in variants if v.name.startswith(prefix)]
    if masses:
        names = {f"{prefix}-m{m:g}" for m in masses}
        unknown = sorted(names - {v.name for v in chosen})
        if unknown:
            valid = ", ".join(v.name.split("-m")[1] for v in chosen)
            raise PnnError(f"no {prefix} network '{unknown[0]}': choose among masses {valid} GeV")
        chosen = [v for v in chosen if v.name in names]
    return chosen


# -- parametric BDT -------------------------------------------------------------------------

def _bdt_training_set(cfg: Config, events: pd.DataFrame, fold: int,
                      signal_masses: tuple[float, ...] | None) -> tuple[np.ndarray, ...]:
    """The PNN's training events of ``fold`` with the mass as a column; background masses are
    drawn from the signal mass points as one PNN epoch draws them."""
    ev = training_events(cfg, events, signal_masses)
    parts = split_fold(cfg, ev, fold)
    X = np.concatenate([p.X for p in parts])
    y = np.concatenate([p.y for p in parts])
    w = np.concatenate([p.w for p in parts])
    mass = np.concatenate([p.mass for p in parts])
    sig = y == 1
    prior = PointPrior.from_signal(mass[sig], w[sig])
    mass[~sig] = prior.draw(np.random.default_rng([cfg.seed, 19, fold]), int((~sig).sum()))
    return np.column_stack([X, mass]), y, w


def fit_bdt(cfg: Config, events: pd.DataFrame,
            signal_masses: tuple[float, ...] | None = None) -> Scorer:
    """One gradient-boosted classifier per fold; returns a scorer over unseen folds."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    k = cfg.preprocessing.folds
    models = []
    for fold in range(k):
        X, y, w = _bdt_training_set(cfg, events, fold, signal_masses)
        clf = HistGradientBoostingClassifier(
            max_iter=cfg.study.bdt_max_iter, learning_rate=cfg.study.bdt_learning_rate,
            early_stopping=True, validation_fraction=0.2, n_iter_no_change=20,
            random_state=cfg.seed + fold)
        models.append(clf.fit(X, y, sample_weight=w))

    def score(X: np.ndarray, mass: float, evno: np.ndarray) -> np.ndarray:
        out = np.empty(len(X))
        fold_of = folds(evno, k)
        for i, clf in enumerate(models):
            sel = fold_of == i
            out[sel] = clf.predict_proba(np.column_stack([X[sel], np.full(sel.sum(), mass)]))[:, 1]
        return out

    return score


# -- scoring every method -------------------------------------------------------------------

@dataclass
class Methods:
    """Scorers of the PNN and every baseline, loaded once for all studies."""

    masses: list[float]
    pnn: Scorer
    networks: dict[str, Scorer] = field(default_factory=dict)
    bdt: dict[str, Scorer] = field(default_factory=dict)

    def at(self, mass: float) -> dict[str, tuple[Scorer, bool]]:
        """The methods to compare at ``mass``, each with whether it trained on signal there."""
        trained = bool(mass_mask(np.asarray(self.masses), mass).any())
        out: dict[str, tuple[Scorer, bool]] = {"pnn": (self.pnn, trained)}
        holdout = self.networks.get(f"holdout-m{mass:g}")
        if holdout:
            out["pnn_holdout"] = (holdout, False)
        if trained and f"dedicated-m{mass:g}" in self.networks:
            out["dedicated"] = (self.networks[f"dedicated-m{mass:g}"], True)
        below, above = neighbours(mass, self.masses)
        for side, m in (("below", below), ("above", above)):
            net = self.networks.get(f"dedicated-m{m:g}") if m is not None else None
            if net:
                out[f"dedicated_{side}"] = (net, False)
        if "nonparametric" in self.networks:
            out["nonparametric"] = (self.networks["nonparametric"], trained)
        if "all" in self.bdt:
            out["bdt"] = (self.bdt["all"], trained)
        if f"m{mass:g}" in self.bdt:
            out["bdt_holdout"] = (self.bdt[f"m{mass:g}"], False)
        return out


def _fold_scorer(path: Path) -> Scorer:
    from pnn.learn.model import FoldModels

    models = FoldModels.load_dir(path)

    def score(X: np.ndarray, mass: float, evno: np.ndarray) -> np.ndarray:
        return models.score(X, mass, evno)[0]

    return score


def load_methods(cfg: Config, events: pd.DataFrame, *, networks: bool = True,
                 bdt: bool = True) -> Methods:
    """The PNN of the run plus the trained study networks and freshly fitted BDTs."""
    from pnn.learn.model import model_dir
    from pnn.learn.train import require_model

    masses = trained_masses(cfg, events)
    require_model(cfg)  # a PNN retrained since, or from other settings, is refused
    methods = Methods(masses, _fold_scorer(model_dir(cfg.run_dir)))
    if networks:
        for v in network_variants(masses):
            if not is_trained(cfg, v.name):
                raise PnnError(f"study network '{v.name}' is not trained with this config: "
                               "run 'pnn study all' (or the study that trains it) first")
            methods.networks[v.name] = _fold_scorer(network_dir(cfg, v.name) / "model")
    if bdt:
        log.info("fitting the parametric BDT on all masses")
        methods.bdt["all"] = fit_bdt(cfg, events)
        for m in interior(masses):
            log.info("fitting the parametric BDT with %g GeV held out", m)
            methods.bdt[f"m{m:g}"] = fit_bdt(cfg, events, tuple(x for x in masses if x != m))
    return methods


@dataclass
class TestSet:
    """Signal at one mass plus every background event, all as test (unseen-fold) events."""

    mass: float
    frame: pd.DataFrame
    X: np.ndarray
    label: np.ndarray
    weight: np.ndarray
    evno: np.ndarray
    half: np.ndarray


def test_set(cfg: Config, events: pd.DataFrame, mass: float) -> TestSet:
    label = events["label"].to_numpy()
    sel = (label == 0) | ((label == 1) & mass_mask(events["mass"].to_numpy(), mass))
    frame = events[sel]
    evno = frame["event_number"].to_numpy()
    return TestSet(mass, frame, feature_matrix(frame, cfg.features), frame["label"].to_numpy(),
                   frame["weight"].to_numpy(np.float64), evno,
                   cut_halves(evno, cfg.preprocessing.folds))


# -- interpolation --------------------------------------------------------------------------

def interpolation(cfg: Config, events: pd.DataFrame, methods: Methods, is_toy: bool) -> pd.DataFrame:
    """AUC, Z and background efficiency at 80 % signal efficiency of every method at every mass."""
    ev = cfg.evaluation
    rows = []
    for mass in evaluable_masses(cfg, events):
        log.info("interpolation: %g GeV", mass)
        t = test_set(cfg, events, mass)
        scores = {name: (scorer(t.X, mass, t.evno), saw) for name, (scorer, saw) in methods.at(mass).items()}
        if ev.window_branch in t.frame:
            scores["window"] = (-np.abs(t.frame[ev.window_branch].to_numpy(np.float64) - mass), None)
        if is_toy:
            scores["optimal"] = (toy.log_likelihood_ratio(t.frame, mass), None)
        for name, (score, saw) in scores.items():
            mm, _ = method_metrics(score, t.label, t.weight, t.half, ev.min_background_events)
            rows.append({"mass": mass, "trained": mass in methods.masses, "method": name,
                         "trained_at_mass": saw, "auc": mm.auc, "z": mm.z,
                         "bkg_eff_sig80": mm.bkg_eff_sig80, "s_over_sqrt_b": mm.s_over_sqrt_b})
    return pd.DataFrame(rows)


def _value(table: pd.DataFrame, mass: float, method: str, col: str) -> float:
    hit = table[(table["mass"] == mass) & (table["method"] == method)]
    return float(hit[col].iloc[0]) if len(hit) else float("nan")


def interpolation_conclusions(table: pd.DataFrame, masses: list[float]) -> list[str]:
    """Sentences with the numbers: hold-out vs full PNN, neighbours, baselines, BDT."""
    lines = []
    for m in interior(masses):
        v = {k: _value(table, m, k, "auc") for k in METHOD_LABELS}
        z = {k: _value(table, m, k, "z") for k in METHOD_LABELS}
        lines.append(
            f"PNN with {m:g} GeV held out: AUC {v['pnn_holdout']:.4f} vs {v['pnn']:.4f} trained "
            f"(difference {v['pnn'] - v['pnn_holdout']:+.4f}), Z {z['pnn_holdout']:.3f} vs "
            f"{z['pnn']:.3f} (ratio {z['pnn_holdout'] / z['pnn']:.3f}); dedicated {v['dedicated']:.4f}; "
            f"neighbours' dedicated {v['dedicated_below']:.4f} / {v['dedicated_above']:.4f}; "
            f"BDT {v['bdt']:.4f}, BDT with {m:g} held out {v['bdt_holdout']:.4f}")
    ratio = {m: _value(table, m, "pnn", "z") / _value(table, m, "nonparametric", "z")
             for m in sorted(set(table["mass"]))}
    if all(math.isfinite(r) for r in ratio.values()):
        worst = min(ratio, key=ratio.get)
        lo = min(ratio)
        lines.append(f"PNN vs non-parametric network: Z ratio {ratio[lo]:.3f} at {lo:g} GeV, "
                     f"smallest {ratio[worst]:.3f} at {worst:g} GeV")
    drops = {m: (_value(table, m, "pnn", "auc") - _value(table, m, "pnn_holdout", "auc"),
                 _value(table, m, "bdt", "auc") - _value(table, m, "bdt_holdout", "auc"))
             for m in interior(masses)}
    if drops:
        pnn_drop = max(d[0] for d in drops.values())
        bdt_drop = max(d[1] for d in drops.values())
        verdict = "as well as" if bdt_drop <= pnn_drop + 0.001 else "worse than"
        lines.append(f"The parametric BDT interpolates {verdict} the PNN: holding a mass out costs "
                     f"the BDT up to {bdt_drop:.4f} in AUC and the PNN up to {pnn_drop:.4f}")
    off = sorted(set(table.loc[~table["trained"], "mass"]))
    if off:
        gap = [_value(table, m, "pnn", "auc") - _value(table, m, "bdt", "auc") for m in off]
        lines.append(f"At the {len(off)} masses never trained on, PNN AUC minus BDT AUC ranges "
                     f"from {min(gap):+.4f} to {max(gap):+.4f}")
    return lines


# -- detuning -------------------------------------------------------------------------------

def detuning_grid(cfg: Config, masses: list[float]) -> np.ndarray:
    lo, hi = min(masses), max(masses)
    step = cfg.study.detuning_step or (hi - lo) / 20
    return np.round(np.arange(lo, hi + step / 2, step), 6)


# The width of a detuning curve: the hypotheses whose Z is at least this fraction of its peak.
DETUNING_WIDTH = 0.75


@dataclass
class DetuningPeak:
    true_mass: float
    peak_mass: float
    peak_z: float
    range_low: float
    range_high: float
    within_one_step: bool


def detuning(cfg: Config, events: pd.DataFrame, methods: Methods) -> tuple[pd.DataFrame, list[DetuningPeak]]:
    """Z of the PNN for signal at each true mass, fed every hypothesised mass of a grid."""
    ev = cfg.evaluation
    grid = detuning_grid(cfg, methods.masses)
    step = float(grid[1] - grid[0]) if len(grid) > 1 else 0.0
    label = events["label"].to_numpy()
    bkg = events[label == 0]
    bX, bno = feature_matrix(bkg, cfg.features), bkg["event_number"].to_numpy()
    k = cfg.preprocessing.folds
    rows = []
    truths = evaluable_masses(cfg, events)
    sig_sets = {m: events[(label == 1) & mass_mask(events["mass"].to_numpy(), m)] for m in truths}
    for h in grid:
        log.info("detuning: hypothesis %g GeV", h)
        b_score = methods.pnn(bX, float(h), bno)
        for m, sig in sig_sets.items():
            sno = sig["event_number"].to_numpy()
            s_score = methods.pnn(feature_matrix(sig, cfg.features), float(h), sno)
            score = np.r_[s_score, b_score]
            lab = np.r_[np.ones(len(sig)), np.zeros(len(bkg))]
            w = np.r_[sig["weight"].to_numpy(np.float64), bkg["weight"].to_numpy(np.float64)]
            s = metrics.best_cut(score, lab, w, cut_halves(np.r_[sno, bno], k),
                                 ev.min_background_events)
            rows.append({"true_mass": m, "hypothesis": float(h), "z": s.z})
    table = pd.DataFrame(rows)
    peaks = []
    for m in truths:
        curve = table[table["true_mass"] == m].sort_values("hypothesis")
        z = curve["z"].to_numpy()
        hyp = curve["hypothesis"].to_numpy()
        i = int(np.nanargmax(z))
        keep = z >= DETUNING_WIDTH * z[i]
        lo = hi = i
        while lo > 0 and keep[lo - 1]:
            lo -= 1
        while hi < len(z) - 1 and keep[hi + 1]:
            hi += 1
        peaks.append(DetuningPeak(m, float(hyp[i]), float(z[i]), float(hyp[lo]), float(hyp[hi]),
                                  bool(abs(hyp[i] - m) <= step + 1e-6)))
    return table, peaks


# -- permutation importance -----------------------------------------------------------------

class _AtMass:
    """Adapter that lets scikit-learn's permutation_importance score the PNN at one mass:
    rows keep their order while a column is permuted, so the event numbers stay valid."""

    def __init__(self, scorer: Scorer, mass: float, evno: np.ndarray) -> None:
        self.scorer, self.mass, self.evno = scorer, mass, evno

    def fit(self, X: np.ndarray, y: np.ndarray) -> _AtMass:
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.scorer(X, self.mass, self.evno)


def _weighted_auc(est: _AtMass, X: np.ndarray, y: np.ndarray,
                  sample_weight: np.ndarray | None = None) -> float:
    return metrics.roc(est.predict(X), y, sample_weight).auc


def importance(cfg: Config, events: pd.DataFrame, methods: Methods) -> pd.DataFrame:
    """Drop in the PNN's AUC when each feature is permuted, per mass, on the test folds."""
    from sklearn.inspection import permutation_importance

    rows = []
    for mass in evaluable_masses(cfg, events):
        log.info("importance: %g GeV", mass)
        t = test_set(cfg, events, mass)
        res = permutation_importance(
            _AtMass(methods.pnn, mass, t.evno), t.X, t.label, scoring=_weighted_auc,
            n_repeats=cfg.study.importance_repeats, random_state=cfg.seed,
            sample_weight=t.weight)
        for j, feat in enumerate(cfg.features):
            rows.append({"mass": mass, "feature": feat, "auc_drop": float(res.importances_mean[j]),
                         "auc_drop_std": float(res.importances_std[j])})
    return pd.DataFrame(rows)


# -- outputs --------------------------------------------------------------------------------

def _load_table(base: Path) -> pd.DataFrame | None:
    return pd.read_csv(base.with_suffix(".csv")) if base.with_suffix(".csv").is_file() else None


def run_interpolation(cfg: Config, events: pd.DataFrame, methods: Methods, is_toy: bool) -> pd.DataFrame:
    table = interpolation(cfg, events, methods, is_toy)
    out = study_dir(cfg)
    write_table(table, out / "interpolation")
    plots.interpolation(table, METHOD_LABELS, interior(methods.masses), out / "interpolation.png")
    return table


def run_detuning(cfg: Config, events: pd.DataFrame, methods: Methods) -> list[DetuningPeak]:
    table, peaks = detuning(cfg, events, methods)
    out = study_dir(cfg)
    write_table(table, out / "detuning")
    write_json(out / "detuning_peaks.json", [asdict(p) for p in peaks])
    plots.detuning(table, out / "detuning.png",
                   {p.true_mass: (p.range_low, p.range_high) for p in peaks}, DETUNING_WIDTH)
    return peaks


def run_importance(cfg: Config, events: pd.DataFrame, methods: Methods) -> pd.DataFrame:
    table = importance(cfg, events, methods)
    out = study_dir(cfg)
    write_table(table, out / "importance")
    plots.importance(table, out / "importance.png")
    return table


def write_markdown(cfg: Config, masses: list[float]) -> Path:
    """``study.md``: one table per study that has run, each with computed conclusions."""
    out = study_dir(cfg)
    parts = [f"# PNN validation study: {cfg.name}", ""]
    interp = _load_table(out / "interpolation")
    if interp is not None:
        wide = interp.pivot_table(index="mass", columns="method", values="auc").reset_index()
        wide_z = interp.pivot_table(index="mass", columns="method", values="z").reset_index()
        parts += ["## Interpolation and baselines", "",
                  "Held out: " + ", ".join(f"{m:g}" for m in interior(masses)) + " GeV (one PNN each). "
                  "Masses never trained on: " + (", ".join(
                      f"{m:g}" for m in sorted(set(interp.loc[~interp['trained'], 'mass']))) or "none")
                  + " GeV.", "", "### AUC", "", markdown(wide), "", "### Asimov Z", "",
                  markdown(wide_z), "", "### Conclusions", ""]
        parts += [f"- {line}" for line in interpolation_conclusions(interp, masses)] + [""]
    peaks_file = out / "detuning_peaks.json"
    if peaks_file.is_file():
        peaks = pd.DataFrame(json.loads(peaks_file.read_text()))
        good = int(peaks["within_one_step"].sum())
        parts += ["## Detuning", "", markdown(peaks), "",
                  f"- {good} of {len(peaks)} curves peak within one grid step of the true mass", ""]
    imp = _load_table(out / "importance")
    if imp is not None:
        wide = imp.pivot_table(index="mass", columns="feature", values="auc_drop").reset_index()
        lo, hi = wide["mass"].min(), wide["mass"].max()
        top = {m: wide.set_index("mass").loc[m].idxmax() for m in (lo, hi)}
        parts += ["## Permutation importance (drop in AUC)", "", markdown(wide), "",
                  f"- Most important input at {lo:g} GeV: {top[lo]}; at {hi:g} GeV: {top[hi]}", ""]
    path = out / "study.md"
    write_text(path, "\n".join(parts))
    return path


# -- entry points ---------------------------------------------------------------------------

STUDIES = ("interpolation", "detuning", "importance", "all")


@dataclass
class StudyResult:
    paths: list[Path]
    conclusions: list[str]


def _events(cfg: Config) -> tuple[pd.DataFrame, dict, list[float]]:
    from pnn.io.ingest import load_events

    events, meta = load_events(cfg)
    masses = trained_masses(cfg, events)
    if len(masses) < 3:
        raise PnnError(f"the study needs at least 3 trained signal masses (found "
                       f"{len(masses)}): a hold-out needs a trained mass on each side")
    return events, meta, masses


def train_some(cfg: Config, kind: str, masses: list[float] | None = None,
               jobs: int | None = None) -> list[str]:
    """Train the ``holdout`` or ``dedicated`` networks (all, or those at ``masses``): one
    batch job's worth of work; the tables come from a later ``pnn study all``."""
    _, _, trained = _events(cfg)
    return train_networks(cfg, select_variants(network_variants(trained), kind, masses), jobs)


def run_study(cfg: Config, which: str, jobs: int | None = None) -> StudyResult:
    """Run one study (or ``all``), training what it needs that is not trained yet."""
    if which not in STUDIES:
        raise PnnError(f"unknown study '{which}': choose one of {', '.join(STUDIES)}")
    events, meta, masses = _events(cfg)
    out = study_dir(cfg)
    paths: list[Path] = []
    conclusions: list[str] = []

    def pnn_only() -> None:
        """Detuning and importance need only the PNN: they run while the baselines train."""
        methods = load_methods(cfg, events, networks=False, bdt=False)
        if which in ("detuning", "all"):
            peaks = run_detuning(cfg, events, methods)
            good = sum(p.within_one_step for p in peaks)
            conclusions.append(f"detuning: {good} of {len(peaks)} curves peak within one grid "
                               "step of the true mass")
            paths.extend([out / "detuning.csv", out / "detuning_peaks.json", out / "detuning.png"])
        if which in ("importance", "all"):
            run_importance(cfg, events, methods)
            paths.extend([out / "importance.csv", out / "importance.png"])

    if which in ("interpolation", "all"):
        _limit_threads(cfg.study.threads_per_network)  # share the cores with the trainings
        train_networks(cfg, network_variants(masses), jobs, meanwhile=pnn_only)
        methods = load_methods(cfg, events)
        table = run_interpolation(cfg, events, methods, bool(meta.get("toy")))
        conclusions[:0] = interpolation_conclusions(table, masses)
        paths[:0] = [out / "interpolation.csv", out / "interpolation.json", out / "interpolation.png"]
    else:
        pnn_only()
    paths.append(write_markdown(cfg, masses))
    return StudyResult(paths, conclusions)


def _limit_threads(n: int) -> None:
    """Cap TensorFlow's threads in this process, if it has not started yet."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(n)
    except RuntimeError:  # already initialised (e.g. in a test process): keep its setting
        log.debug("TensorFlow already initialised; thread count unchanged")
