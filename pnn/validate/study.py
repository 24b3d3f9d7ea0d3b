"""Physics validation: does the PNN beat the tools analysts trust, and is it right at masses
(signal points) it never saw?

Baseline networks share the PNN's folds, weights, features and architecture. Each trains in
its own process (``study.jobs`` at once, ``study.threads_per_network`` threads each, so the
numbers do not depend on how many run side by side):

* ``holdout-<point>``: the PNN with the signal at that point left out, for each interior
  trained point (``holdout-m750``, ``holdout-mX1000_mY300``);
* ``dedicated-m<M>``: no mass input, the signal at M alone against all background;
* ``nonparametric``: no mass input, every trained mass pooled;
* ``conditioning-<other>``: the PNN trained with the other way of feeding it the parameters
  (``affine`` when the config says ``concat``, and vice versa).

Also compared: a parametric BDT (gradient-boosted trees with the mass as a feature, trained
on all masses and with each interior mass held out), the mass window and, on the toy, the
exact likelihood ratio. Studies: interpolation (every method at every point), detuning (Z
against the hypothesised mass for signal at each true mass), permutation importance per mass
and conditioning (concat against affine at every point); ``study.md`` sums them up with
conclusions computed from the numbers.

With one parameter a mass is interior when a trained mass lies on each side. With several,
a trained point is interior when it is not outside the convex hull of the *other* trained
points (:func:`pnn.core.points.outside`): strictly inside it, or on its boundary between two
of them (e.g. the middle of a grid's bottom row). Either way the network without that point
interpolates to it, by the same rule that decides when evaluation calls a point
extrapolation; the hull's corners are never held out. With several parameters the study
compares the PNN, its hold-outs, the box window and the optimum only: dedicated networks,
the non-parametric network and the parametric BDT would be tens of extra fits over a grid of
tens of points, and detuning and importance scan or rank one mass parameter; they are
skipped (the log and ``study.md`` say so).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Sequence
from concurrent.futures import as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pnn.core import points
from pnn.core.atomic import write_json, write_text
from pnn.core.config import Config
from pnn.core.errors import PnnError
from pnn.core.workers import process_pool
from pnn.io import exact
from pnn.learn.preprocess import PointPrior, cut_halves, feature_matrix, folds, parameter_matrix
from pnn.learn.train import Variant, split_fold, training_events
from pnn.show import plots
from pnn.stats import metrics
from pnn.stats.evaluate import evaluable_masses, method_metrics, window_branches, window_discriminant
from pnn.stats.report import markdown, write_table

log = logging.getLogger(__name__)

# A scorer gets the events' features, the point (a float for one parameter, a tuple for
# several) and the event numbers, which choose each event's fold model.
Scorer = Callable[[np.ndarray, float | tuple, np.ndarray], np.ndarray]
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
# What the study compares with several parameters, and what it leaves out (see the module).
METHODS_ND = ("pnn", "pnn_holdout", "window", "optimal")
SKIPPED_ND = ("dedicated networks, the non-parametric network and the parametric BDT are "
              "skipped: with tens of grid points they would be tens of extra fits")
ONE_PARAMETER_ND = ("detuning and permutation importance scan or rank one mass parameter: "
                    "skipped")
CONDITIONINGS = ("concat", "affine")


def study_dir(cfg: Config) -> Path:
    return cfg.run_dir / "study"


def network_dir(cfg: Config, name: str) -> Path:
    return study_dir(cfg) / "networks" / name


def _public(point: Sequence[float]) -> float | tuple:
    """A point as callers know it: a float for one parameter, a tuple for several."""
    return float(point[0]) if len(point) == 1 else tuple(float(v) for v in point)


def _several(names: Sequence[str]) -> bool:
    return len(names) > 1


def _where(names: Sequence[str], point: float | Sequence[float]) -> str:
    """``1000 GeV`` for a mass, ``mX = 1000, mY = 300 GeV`` for a point (log lines)."""
    p = points.as_point(point)
    return f"{p[0]:g} GeV" if len(p) == 1 else points.describe(names, p)


def _short(point: float | Sequence[float]) -> str:
    """``(1000, 300)``: a point in a list of points."""
    return "(" + ", ".join(f"{v:g}" for v in points.as_point(point)) + ")"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _shown(table: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """``table`` with the parameter columns as plain numbers for Markdown (``90``, not the
    four decimals a float below 100 gets)."""
    return table.assign(**{n: [f"{v:g}" for v in table[n]] for n in names})


def network_name(prefix: str, names: Sequence[str], point: float | Sequence[float]) -> str:
    """``holdout-m750`` for a mass, ``holdout-mX1000_mY300`` for a point."""
    return f"{prefix}-{points.label(list(names), points.as_point(point))}"


def trained_masses(cfg: Config, events: pd.DataFrame) -> list:
    """The trained signal points, sorted: masses (floats) for one parameter, tuples for
    several."""
    ev = training_events(cfg, events)
    theta = parameter_matrix(ev[ev["label"] == 1], cfg.parameters)
    return sorted(_public(p) for p in points.unique(theta))


def interior(masses: list) -> list:
    """The trained points a hold-out tests (see :func:`pnn.core.points.interior`)."""
    return points.interior(masses)


def neighbours(mass: float, masses: list[float]) -> tuple[float | None, float | None]:
    """Nearest trained masses strictly below and above ``mass`` (one parameter)."""
    below = [m for m in masses if m < mass - 1e-6]
    above = [m for m in masses if m > mass + 1e-6]
    return (below[-1] if below else None, above[0] if above else None)


def network_variants(masses: list, names: Sequence[str] | None = None) -> list[Variant]:
    """Every baseline network of the study, largest first (so parallel training ends sooner).

    With several parameters (``names``), only the hold-outs: dedicated and non-parametric
    networks are one-parameter baselines.
    """
    names = list(names or [points.MASS])
    held = [Variant(network_name("holdout", names, m), tuple(x for x in masses if x != m), True)
            for m in interior(masses)]
    if _several(names):
        return held
    out = [Variant("nonparametric", None, False), *held]
    out += [Variant(network_name("dedicated", names, m), (m,), False) for m in masses]
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

    logging.basicConfig(level=log_level, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    logging.getLogger("pnn.learn.train").setLevel(max(log_level, logging.WARNING))
    from pnn.io import ingest
    from pnn.learn import train

    train.limit_threads(cfg.study.threads_per_network)

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
    with process_pool(jobs, leftovers=study_dir(cfg),
                      stage="study") as pool:
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
    return names


def select_variants(variants: list[Variant], prefix: str, masses: list | None,
                    names: Sequence[str] | None = None) -> list[Variant]:
    """Variants whose name starts with ``prefix``, restricted to ``masses`` (masses, or
    points of the parameters ``names``) when given."""
    names = list(names or [points.MASS])
    chosen = [v for v in variants if v.name.startswith(prefix)]
    if masses:
        wanted = {network_name(prefix, names, m) for m in masses}
        unknown = sorted(wanted - {v.name for v in chosen})
        if unknown:
            labels = [v.name[len(prefix) + 1:] for v in chosen]
            if not _several(names):
                valid = ", ".join(f"{(points.from_label(t, names) or (math.nan,))[0]:g}"
                                  for t in labels)
                raise PnnError(f"no {prefix} network '{unknown[0]}': choose among masses {valid} GeV")
            raise PnnError(f"no {prefix} network '{unknown[0]}': choose among points "
                           f"{', '.join(labels) or '(none)'}")
        chosen = [v for v in chosen if v.name in wanted]
    return chosen


# -- parametric BDT -------------------------------------------------------------------------

def _bdt_training_set(cfg: Config, events: pd.DataFrame, fold: int,
                      signal_masses: tuple | None) -> tuple[np.ndarray, ...]:
    """The PNN's training events of ``fold`` with the parameters as columns; background
    points are drawn from the signal points as one PNN epoch draws them."""
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


def fit_bdt(cfg: Config, events: pd.DataFrame, signal_masses: tuple | None = None) -> Scorer:
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

    def score(X: np.ndarray, mass: float | tuple, evno: np.ndarray) -> np.ndarray:
        out = np.empty(len(X))
        point = np.asarray(points.as_point(mass), dtype=np.float64)
        fold_of = folds(evno, k)
        for i, clf in enumerate(models):
            sel = fold_of == i
            theta = np.tile(point, (int(sel.sum()), 1))
            out[sel] = clf.predict_proba(np.column_stack([X[sel], theta]))[:, 1]
        return out

    return score


# -- scoring every method -------------------------------------------------------------------

@dataclass
class Methods:
    """Scorers of the PNN and every baseline, loaded once for all studies."""

    masses: list
    pnn: Scorer
    networks: dict[str, Scorer] = field(default_factory=dict)
    bdt: dict[str, Scorer] = field(default_factory=dict)
    names: list[str] = field(default_factory=lambda: [points.MASS])

    def trained_at(self, mass: float | tuple) -> bool:
        """Whether the PNN trained on signal at this point."""
        if not self.masses:
            return False
        trained = np.asarray([points.as_point(m) for m in self.masses], dtype=np.float64)
        return bool(points.mask(trained, mass).any())

    def at(self, mass: float | tuple) -> dict[str, tuple[Scorer, bool]]:
        """The methods to compare at ``mass``, each with whether it trained on signal there."""
        point = points.as_point(mass)
        key = points.label(self.names, point)
        trained = self.trained_at(point)
        out: dict[str, tuple[Scorer, bool]] = {"pnn": (self.pnn, trained)}
        holdout = self.networks.get(f"holdout-{key}")
        if holdout:
            out["pnn_holdout"] = (holdout, False)
        if trained and f"dedicated-{key}" in self.networks:
            out["dedicated"] = (self.networks[f"dedicated-{key}"], True)
        if len(point) == 1:
            below, above = neighbours(point[0], self.masses)
            for side, m in (("below", below), ("above", above)):
                net = self.networks.get(network_name("dedicated", self.names, m)) if m is not None else None
                if net:
                    out[f"dedicated_{side}"] = (net, False)
        if "nonparametric" in self.networks:
            out["nonparametric"] = (self.networks["nonparametric"], trained)
        if "all" in self.bdt:
            out["bdt"] = (self.bdt["all"], trained)
        if key in self.bdt:
            out["bdt_holdout"] = (self.bdt[key], False)
        return out


def _fold_scorer(path: Path) -> Scorer:
    from pnn.learn.model import FoldModels

    models = FoldModels.load_dir(path)

    def score(X: np.ndarray, mass: float | tuple, evno: np.ndarray) -> np.ndarray:
        return models.score(X, mass, evno)[0]

    return score


def load_methods(cfg: Config, events: pd.DataFrame, *, networks: bool = True,
                 bdt: bool = True) -> Methods:
    """The PNN of the run plus the trained study networks and freshly fitted BDTs (one
    parameter only: with several the BDTs are skipped)."""
    from pnn.learn.train import model_dir, require_model

    masses = trained_masses(cfg, events)
    names = list(cfg.parameters)
    require_model(cfg)  # a PNN retrained since, or from other settings, is refused
    methods = Methods(masses, _fold_scorer(model_dir(cfg.run_dir)), names=names)
    if networks:
        for v in network_variants(masses, names):
            if not is_trained(cfg, v.name):
                raise PnnError(f"study network '{v.name}' is not trained with this config: "
                               "run 'pnn study all' (or the study that trains it) first")
            methods.networks[v.name] = _fold_scorer(network_dir(cfg, v.name) / "model")
    if bdt and not _several(names):
        log.info("fitting the parametric BDT on all masses")
        methods.bdt["all"] = fit_bdt(cfg, events)
        for m in interior(masses):
            log.info("fitting the parametric BDT with %g GeV held out", m)
            methods.bdt[points.label(names, points.as_point(m))] = fit_bdt(
                cfg, events, tuple(x for x in masses if x != m))
    return methods


@dataclass
class TestSet:
    """Signal at one point plus every background event, all as test (unseen-fold) events."""

    mass: float | tuple
    frame: pd.DataFrame
    X: np.ndarray
    label: np.ndarray
    weight: np.ndarray
    evno: np.ndarray
    half: np.ndarray


def test_set(cfg: Config, events: pd.DataFrame, mass: float | tuple) -> TestSet:
    label = events["label"].to_numpy()
    at = points.mask(parameter_matrix(events, cfg.parameters), mass)
    sel = (label == 0) | ((label == 1) & at)
    frame = events[sel]
    evno = frame["event_number"].to_numpy()
    return TestSet(mass, frame, feature_matrix(frame, cfg.features), frame["label"].to_numpy(),
                   frame["weight"].to_numpy(np.float64), evno,
                   cut_halves(evno, cfg.preprocessing.folds))


def _window_score(cfg: Config, frame: pd.DataFrame, mass: float | tuple) -> np.ndarray | None:
    """The mass window (a box with several parameters), or None without its variables."""
    branches = window_branches(cfg)
    if not branches or not all(b in frame for b in branches):
        return None
    return window_discriminant(frame[branches].to_numpy(np.float64), points.as_point(mass))


# -- interpolation --------------------------------------------------------------------------

def interpolation(cfg: Config, events: pd.DataFrame, methods: Methods,
                  is_toy: str | bool) -> pd.DataFrame:
    """AUC, Z and background efficiency at 80 % signal efficiency of every method at every
    point: one column per parameter (``mass`` alone by default). ``is_toy`` is the toy
    generator of the events (events.json's ``toy``; True means the one-parameter toy), which
    gives the exact likelihood ratio, or False."""
    ev = cfg.evaluation
    names = list(cfg.parameters)
    if _several(names):
        log.info("interpolation over %s: comparing %s; %s", ", ".join(names),
                 ", ".join(METHODS_ND), SKIPPED_ND)
    rows = []
    for mass in evaluable_masses(cfg, events):
        point = points.as_point(mass)
        log.info("interpolation: %s", _where(names, point))
        t = test_set(cfg, events, mass)
        scores = {name: (scorer(t.X, mass, t.evno), saw) for name, (scorer, saw) in methods.at(mass).items()}
        window = _window_score(cfg, t.frame, mass)
        if window is not None:
            scores["window"] = (window, None)
        if is_toy:
            scores["optimal"] = (exact.log_likelihood_ratio(is_toy, t.frame, point), None)
        trained = methods.trained_at(point)
        for name, (score, saw) in scores.items():
            mm, _ = method_metrics(score, t.label, t.weight, t.half, ev.min_background_events)
            rows.append({**points.as_dict(names, point), "trained": trained, "method": name,
                         "trained_at_mass": saw, "auc": mm.auc, "z": mm.z,
                         "bkg_eff_sig80": mm.bkg_eff_sig80, "s_over_sqrt_b": mm.s_over_sqrt_b})
    return pd.DataFrame(rows)


def _parameter_columns(table: pd.DataFrame) -> list[str]:
    """The parameters of a study table: its columns before ``trained``."""
    cols = list(table.columns)
    return cols[:cols.index("trained")]


def _rows_at(table: pd.DataFrame, mass: float | tuple) -> np.ndarray:
    names = _parameter_columns(table)
    return points.mask(table[names].to_numpy(np.float64), mass)


def _value(table: pd.DataFrame, mass: float | tuple, method: str, col: str) -> float:
    hit = table[_rows_at(table, mass) & (table["method"] == method).to_numpy()]
    return float(hit[col].iloc[0]) if len(hit) else float("nan")


def _ratio(num: float, den: float) -> float:
    return num / den if den and math.isfinite(den) else float("nan")


def _points_of(table: pd.DataFrame, rows: np.ndarray | pd.Series | None = None) -> list:
    """The distinct points of a study table (of ``rows`` when given), sorted."""
    names = _parameter_columns(table)
    part = table if rows is None else table[np.asarray(rows, dtype=bool)]
    return sorted(_public(p) for p in points.unique(part[names].to_numpy(np.float64)))


def interpolation_conclusions(table: pd.DataFrame, masses: list) -> list[str]:
    """Sentences with the numbers: hold-out vs full PNN, neighbours, baselines, BDT."""
    names = _parameter_columns(table)
    if _several(names):
        return _conclusions_nd(table, masses, names)
    col = names[0]
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
             for m in sorted(set(table[col]))}
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
    off = sorted(set(table.loc[~table["trained"], col]))
    if off:
        gap = [_value(table, m, "pnn", "auc") - _value(table, m, "bdt", "auc") for m in off]
        lines.append(f"At the {len(off)} masses never trained on, PNN AUC minus BDT AUC ranges "
                     f"from {min(gap):+.4f} to {max(gap):+.4f}")
    return lines


def _conclusions_nd(table: pd.DataFrame, masses: list, names: list[str]) -> list[str]:
    """The conclusions over several parameters: hold-outs against the PNN, the box window
    and the optimum (the methods compared there)."""
    lines = []
    drops = {}
    for p in interior(masses):
        v = {k: _value(table, p, k, "auc") for k in METHODS_ND}
        z = {k: _value(table, p, k, "z") for k in METHODS_ND}
        line = (f"PNN with {points.describe(names, points.as_point(p))} held out: AUC "
                f"{v['pnn_holdout']:.4f} vs {v['pnn']:.4f} trained (difference "
                f"{v['pnn'] - v['pnn_holdout']:+.4f}), Z {z['pnn_holdout']:.3f} vs {z['pnn']:.3f} "
                f"(ratio {_ratio(z['pnn_holdout'], z['pnn']):.3f})")
        extra = [f"{label} {v[k]:.4f}" for k, label in (("window", "box window"),
                                                        ("optimal", "optimal")) if math.isfinite(v[k])]
        lines.append(line + "".join(f"; {e}" for e in extra))
        drops[p] = v["pnn"] - v["pnn_holdout"]
    finite = {p: d for p, d in drops.items() if math.isfinite(d)}
    if finite:
        worst = max(finite, key=finite.get)
        lines.append(f"Holding a point out costs the PNN {np.mean(list(finite.values())):+.4f} in "
                     f"AUC on average over {_plural(len(finite), 'interior point')}, at most "
                     f"{finite[worst]:+.4f} (at {points.describe(names, points.as_point(worst))})")
    off = _points_of(table, ~table["trained"].astype(bool))
    for other, label in (("optimal", "the optimum"), ("window", "the box window")):
        gap = [_value(table, p, "pnn", "auc") - _value(table, p, other, "auc") for p in off]
        if not gap or not all(math.isfinite(g) for g in gap):
            continue
        if len(off) == 1:
            lines.append(f"At the point never trained on, {_short(off[0])}, PNN AUC minus "
                         f"{label}'s is {gap[0]:+.4f}")
        else:
            lines.append(f"At the {len(off)} points never trained on, PNN AUC minus {label}'s "
                         f"ranges from {min(gap):+.4f} to {max(gap):+.4f}")
    return lines


def holdout_changes(table: pd.DataFrame) -> pd.DataFrame:
    """One row per held-out point: the parameters, ``trained`` and ``auc_change`` (AUC of the
    PNN without the point minus the PNN's), ``z_ratio`` (Z without over Z with)."""
    names = _parameter_columns(table)
    rows = []
    for p in _points_of(table, table["method"] == "pnn_holdout"):
        auc = {k: _value(table, p, k, "auc") for k in ("pnn", "pnn_holdout")}
        z = {k: _value(table, p, k, "z") for k in ("pnn", "pnn_holdout")}
        rows.append({**points.as_dict(names, points.as_point(p)), "trained": True,
                     "auc_change": auc["pnn_holdout"] - auc["pnn"],
                     "z_ratio": _ratio(z["pnn_holdout"], z["pnn"])})
    return pd.DataFrame(rows, columns=[*names, "trained", "auc_change", "z_ratio"])


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
    """Z of the PNN for signal at each true mass, fed every hypothesised mass of a grid (one
    parameter)."""
    ev = cfg.evaluation
    grid = detuning_grid(cfg, methods.masses)
    step = float(grid[1] - grid[0]) if len(grid) > 1 else 0.0
    label = events["label"].to_numpy()
    bkg = events[label == 0]
    bX, bno = feature_matrix(bkg, cfg.features), bkg["event_number"].to_numpy()
    k = cfg.preprocessing.folds
    rows = []
    truths = evaluable_masses(cfg, events)
    theta = parameter_matrix(events, cfg.parameters)
    sig_sets = {m: events[(label == 1) & points.mask(theta, m)] for m in truths}
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
    """Drop in the PNN's AUC when each feature is permuted, per mass, on the test folds (one
    parameter; its column is named after it, ``mass`` by default)."""
    from sklearn.inspection import permutation_importance

    column = cfg.parameters[0]
    rows = []
    for mass in evaluable_masses(cfg, events):
        log.info("importance: %g GeV", mass)
        t = test_set(cfg, events, mass)
        res = permutation_importance(
            _AtMass(methods.pnn, mass, t.evno), t.X, t.label, scoring=_weighted_auc,
            n_repeats=cfg.study.importance_repeats, random_state=cfg.seed,
            sample_weight=t.weight)
        for j, feat in enumerate(cfg.features):
            rows.append({column: mass, "feature": feat, "auc_drop": float(res.importances_mean[j]),
                         "auc_drop_std": float(res.importances_std[j])})
    return pd.DataFrame(rows)


# -- conditioning ---------------------------------------------------------------------------

def other_conditioning(cfg: Config) -> str:
    """The conditioning the run's PNN does not use: ``affine`` for ``concat`` and back."""
    return "affine" if cfg.training.conditioning == "concat" else "concat"


def with_conditioning(cfg: Config, conditioning: str) -> Config:
    """``cfg`` with ``training.conditioning`` set, everything else (the private attributes
    that name the config in messages included) as it is."""
    out = cfg.model_copy(update={"training": cfg.training.model_copy(
        update={"conditioning": conditioning})})
    out._source, out._output_override = cfg._source, cfg._output_override
    return out


def conditioning_variant(cfg: Config) -> Variant:
    """The study network with the other conditioning: the PNN's signal, parametric."""
    return Variant(f"conditioning-{other_conditioning(cfg)}", None, True)


def conditioning(cfg: Config, events: pd.DataFrame, scorers: dict[str, Scorer],
                 is_toy: str | bool, trained: list | None = None) -> pd.DataFrame:
    """AUC, Z and background efficiency of each conditioning's network at every evaluable
    point, with the optimum's AUC and Z, the AUC gap to it and Z / Z optimal when the toy
    gives it. ``scorers`` maps ``concat`` and ``affine`` to their networks; one row per
    point and conditioning, the parameters first."""
    ev = cfg.evaluation
    names = list(cfg.parameters)
    this = cfg.training.conditioning
    trained = trained_masses(cfg, events) if trained is None else trained
    on_grid = np.asarray([points.as_point(m) for m in trained], dtype=np.float64)
    nan = float("nan")
    rows = []
    for mass in evaluable_masses(cfg, events):
        point = points.as_point(mass)
        log.info("conditioning: %s", _where(names, point))
        t = test_set(cfg, events, mass)
        opt = None
        if is_toy:
            opt, _ = method_metrics(exact.log_likelihood_ratio(is_toy, t.frame, point), t.label,
                                    t.weight, t.half, ev.min_background_events)
        at_grid = bool(len(on_grid) and points.mask(on_grid, point).any())
        for kind in CONDITIONINGS:
            if kind not in scorers:
                continue
            mm, _ = method_metrics(scorers[kind](t.X, mass, t.evno), t.label, t.weight, t.half,
                                   ev.min_background_events)
            rows.append({
                **points.as_dict(names, point), "trained": at_grid, "conditioning": kind,
                "network": "pnn" if kind == this else f"conditioning-{kind}",
                "auc": mm.auc, "z": mm.z, "bkg_eff_sig80": mm.bkg_eff_sig80,
                "auc_optimal": opt.auc if opt else nan, "z_optimal": opt.z if opt else nan,
                "auc_gap": opt.auc - mm.auc if opt else nan,
                "z_ratio": _ratio(mm.z, opt.z) if opt else nan})
    return pd.DataFrame(rows)


def _has_optimum(table: pd.DataFrame) -> bool:
    return "auc_gap" in table and bool(table["auc_gap"].notna().any())


def conditioning_wide(table: pd.DataFrame) -> pd.DataFrame:
    """The two conditionings side by side, one row per point: ``auc_concat``,
    ``auc_affine``, ``z_...`` and, with the optimum, ``auc_gap_...`` and ``z_ratio_...``."""
    names = _parameter_columns(table)
    values = ["auc", "z"] + (["auc_gap", "z_ratio"] if _has_optimum(table) else [])
    wide = table.pivot_table(index=[*names, "trained"], columns="conditioning", values=values)
    wide.columns = [f"{v}_{c}" for v, c in wide.columns]
    order = [f"{v}_{c}" for v in values for c in CONDITIONINGS if f"{v}_{c}" in wide]
    return wide[order].reset_index().sort_values(names, kind="stable").reset_index(drop=True)


def conditioning_conclusion(table: pd.DataFrame) -> str:
    """Which conditioning wins on average over the points, and by how much: by the mean
    AUC gap to the optimum (and mean Z / Z optimal) when the toy gives it, else by the mean
    AUC (and mean Z)."""
    n = len(_points_of(table))
    off = len(_points_of(table, ~table["trained"].astype(bool)))
    where = f"over the {_plural(n, 'point')}" + (f" ({off} never trained on)" if off else "")
    mean = table.groupby("conditioning")[[c for c in ("auc", "z", "auc_gap", "z_ratio")
                                           if c in table]].mean()
    if set(CONDITIONINGS) - set(mean.index):
        return "conditioning: only " + ", ".join(mean.index) + " was evaluated"
    a, b = CONDITIONINGS
    if _has_optimum(table):
        gap, zr = mean["auc_gap"], mean["z_ratio"]
        first, other = (a, b) if gap[a] <= gap[b] else (b, a)
        numbers = (f"mean AUC gap to the optimum {gap[first]:.4f} against {gap[other]:.4f} for "
                   f"{other} ({gap[other] - gap[first]:.4f} smaller), mean Z/Zopt "
                   f"{zr[first]:.3f} against {zr[other]:.3f} ({zr[first] - zr[other]:+.3f})")
        tie = abs(gap[a] - gap[b]) < 5e-5
        disagree = math.isfinite(zr[a] - zr[b]) and zr[other] > zr[first] + 5e-4
    else:
        auc, z = mean["auc"], mean["z"]
        first, other = (a, b) if auc[a] >= auc[b] else (b, a)
        numbers = (f"mean AUC {auc[first]:.4f} against {auc[other]:.4f} for {other} "
                   f"({auc[first] - auc[other]:+.4f}), mean Z {z[first]:.3f} against "
                   f"{z[other]:.3f} ({z[first] - z[other]:+.3f}); no exact optimum for these samples")
        tie = abs(auc[a] - auc[b]) < 5e-5
        disagree = math.isfinite(z[a] - z[b]) and z[other] > z[first] + 5e-4
    head = (f"{a} and {b} conditioning tie on average {where}" if tie else
            f"{first} conditioning wins on average {where}")
    tail = f" (Z favours {other})" if disagree and not tie else ""
    return f"{head}: {numbers}{tail}"


# -- outputs --------------------------------------------------------------------------------

def _load_table(base: Path) -> pd.DataFrame | None:
    return pd.read_csv(base.with_suffix(".csv")) if base.with_suffix(".csv").is_file() else None


def run_interpolation(cfg: Config, events: pd.DataFrame, methods: Methods,
                      is_toy: str | bool) -> pd.DataFrame:
    table = interpolation(cfg, events, methods, is_toy)
    out = study_dir(cfg)
    write_table(table, out / "interpolation")
    names = list(cfg.parameters)
    plot = out / "interpolation.png"
    changes = holdout_changes(table) if len(names) == 2 else None
    if not _several(names):
        plots.interpolation(table.rename(columns={names[0]: "mass"}), METHOD_LABELS,
                            interior(methods.masses), plot)
    elif changes is not None and len(changes):  # the change in AUC from holding a point out
        plots.parameter_heatmap(changes, *names, "auc_change", plot,
                                label="ROC AUC, point held out $-$ trained on", center=0.0,
                                cmap="RdBu")
    else:
        log.info("no interpolation plot (%d parameters, %d held-out points evaluated): see "
                 "interpolation.csv", len(names), 0 if changes is None else len(changes))
        plot.unlink(missing_ok=True)  # a plot of an earlier run would contradict the table
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
    plots.importance(table.rename(columns={cfg.parameters[0]: "mass"}), out / "importance.png")
    return table


def run_conditioning(cfg: Config, events: pd.DataFrame, is_toy: str | bool,
                     jobs: int | None = None) -> pd.DataFrame:
    """Train the PNN with the other conditioning (once), then compare it with the run's PNN
    at every point: ``conditioning.csv``/``.json``."""
    from pnn.learn.train import model_dir, require_model

    this, that = cfg.training.conditioning, other_conditioning(cfg)
    variant = conditioning_variant(cfg)
    log.info("conditioning: the PNN of the run uses %s conditioning; the network '%s' is the "
             "same PNN with %s", this, variant.name, that)
    require_model(cfg)  # the run's PNN first: it is the other half of the comparison
    train_networks(with_conditioning(cfg, that), [variant], jobs)
    scorers = {this: _fold_scorer(model_dir(cfg.run_dir)),
               that: _fold_scorer(network_dir(cfg, variant.name) / "model")}
    table = conditioning(cfg, events, scorers, is_toy)
    write_table(table, study_dir(cfg) / "conditioning")
    return table


def write_markdown(cfg: Config, masses: list) -> Path:
    """``study.md``: one table per study that has run, each with computed conclusions."""
    out = study_dir(cfg)
    names = list(cfg.parameters)
    several = _several(names)
    parts = [f"# PNN validation study: {cfg.name}", ""]
    if several:
        parts += ["## Scope with several parameters", "",
                  f"- Parameters {', '.join(names)}. Compared: the PNN, the PNN with each "
                  "interior point held out, the box window and, on the toy, the optimum; "
                  f"{SKIPPED_ND}.",
                  "- A trained point is held out when it is not outside the convex hull of the "
                  "other trained points (inside it, or on its boundary between two of them); "
                  "the hull's corners are never held out.",
                  f"- Not run: {ONE_PARAMETER_ND} with several parameters.", ""]
    interp = _load_table(out / "interpolation")
    if interp is not None:
        index = names if several else names[0]
        wide = interp.pivot_table(index=index, columns="method", values="auc").reset_index()
        wide_z = interp.pivot_table(index=index, columns="method", values="z").reset_index()
        if several:
            wide, wide_z = _shown(wide, names), _shown(wide_z, names)
            held = ", ".join(_short(m) for m in interior(masses)) or "none"
            off = ", ".join(_short(p) for p in _points_of(interp, ~interp["trained"].astype(bool)))
            parts += ["## Interpolation and baselines", "",
                      f"Held out ({', '.join(names)}): {held} GeV (one PNN each). Points never "
                      f"trained on: {off or 'none'}{' GeV' if off else ''}."]
        else:
            parts += ["## Interpolation and baselines", "",
                      "Held out: " + ", ".join(f"{m:g}" for m in interior(masses)) + " GeV (one PNN each). "
                      "Masses never trained on: " + (", ".join(
                          f"{m:g}" for m in sorted(set(interp.loc[~interp['trained'], names[0]]))) or "none")
                      + " GeV."]
        parts += ["", "### AUC", "", markdown(wide), "", "### Asimov Z", "",
                  markdown(wide_z), "", "### Conclusions", ""]
        parts += [f"- {line}" for line in interpolation_conclusions(interp, masses)] + [""]
    peaks_file = out / "detuning_peaks.json"
    if peaks_file.is_file() and not several:
        peaks = pd.DataFrame(json.loads(peaks_file.read_text()))
        good = int(peaks["within_one_step"].sum())
        parts += ["## Detuning", "", markdown(peaks), "",
                  f"- {good} of {len(peaks)} curves peak within one grid step of the true mass", ""]
    imp = _load_table(out / "importance")
    if imp is not None and not several:
        column = imp.columns[0]
        wide = imp.pivot_table(index=column, columns="feature", values="auc_drop").reset_index()
        lo, hi = wide[column].min(), wide[column].max()
        top = {m: wide.set_index(column).loc[m].idxmax() for m in (lo, hi)}
        parts += ["## Permutation importance (drop in AUC)", "", markdown(wide), "",
                  f"- Most important input at {lo:g} GeV: {top[lo]}; at {hi:g} GeV: {top[hi]}", ""]
    cond = _load_table(out / "conditioning")
    if cond is not None:
        gap = ("; `auc_gap` is the optimum's AUC minus the network's, `z_ratio` its Z over the "
               "optimum's" if _has_optimum(cond) else "")
        parts += ["## Conditioning: concat against affine", "",
                  f"The PNN of the run uses {cfg.training.conditioning} conditioning; the same "
                  f"network with {other_conditioning(cfg)} conditioning was trained with the "
                  f"same settings. Concat feeds the parameters beside the features; affine "
                  f"scales and shifts every hidden layer by functions of them{gap}.", "",
                  markdown(conditioning_wide(cond)), "",
                  f"- {conditioning_conclusion(cond)}", ""]
    path = out / "study.md"
    write_text(path, "\n".join(parts))
    return path


# -- entry points ---------------------------------------------------------------------------

STUDIES = ("interpolation", "detuning", "importance", "conditioning", "all")


@dataclass
class StudyResult:
    paths: list[Path]
    conclusions: list[str]


def _events(cfg: Config, which: str = "all") -> tuple[pd.DataFrame, dict, list]:
    """The events table and the trained points, refused when ``which`` cannot run on them."""
    from pnn.io.ingest import load_events

    events, meta = load_events(cfg)
    masses = trained_masses(cfg, events)
    if which == "conditioning":
        return events, meta, masses
    if not _several(cfg.parameters):
        if len(masses) < 3:
            raise PnnError(f"the study needs at least 3 trained signal masses (found "
                           f"{len(masses)}): a hold-out needs a trained mass on each side")
    elif which in ("interpolation", "all") and not interior(masses):
        raise PnnError(f"the interpolation study needs a trained point inside the convex hull of "
                       f"the other trained points (none among the {len(masses)} trained): a "
                       "hold-out needs trained points around it")
    return events, meta, masses


def train_some(cfg: Config, kind: str, masses: list | None = None,
               jobs: int | None = None) -> list[str]:
    """Train the ``holdout`` or ``dedicated`` networks (all, or those at ``masses``: masses or
    points): one batch job's worth of work; the tables come from a later ``pnn study all``."""
    names = list(cfg.parameters)
    if kind == "dedicated" and _several(names):
        raise PnnError(f"dedicated networks are a one-parameter baseline: with the parameters "
                       f"{', '.join(names)} the study has hold-outs only ({SKIPPED_ND})")
    _, _, trained = _events(cfg, "interpolation")
    return train_networks(cfg, select_variants(network_variants(trained, names), kind, masses,
                                               names), jobs)


def run_study(cfg: Config, which: str, jobs: int | None = None) -> StudyResult:
    """Run one study (or ``all``), training what it needs that is not trained yet."""
    if which not in STUDIES:
        raise PnnError(f"unknown study '{which}': choose one of {', '.join(STUDIES)}")
    events, meta, masses = _events(cfg, which)
    out = study_dir(cfg)
    names = list(cfg.parameters)
    toy_generator = meta.get("toy") or False
    paths: list[Path] = []
    conclusions: list[str] = []

    def pnn_only() -> None:
        """Detuning and importance need only the PNN: they run while the baselines train."""
        if _several(names):
            asked = which in ("detuning", "importance")
            (log.warning if asked else log.info)(
                "%s with the parameters %s", ONE_PARAMETER_ND, ", ".join(names))
            if asked:
                conclusions.append(f"{which}: skipped, a one-parameter study (parameters "
                                   f"{', '.join(names)})")
            return
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
        train_networks(cfg, network_variants(masses, names), jobs, meanwhile=pnn_only)
        methods = load_methods(cfg, events)
        table = run_interpolation(cfg, events, methods, toy_generator)
        conclusions[:0] = interpolation_conclusions(table, masses)
        plot = [p for p in [out / "interpolation.png"] if p.is_file()]
        paths[:0] = [out / "interpolation.csv", out / "interpolation.json", *plot]
    elif which in ("detuning", "importance"):
        pnn_only()
    if which in ("conditioning", "all"):
        _limit_threads(cfg.study.threads_per_network)
        table = run_conditioning(cfg, events, toy_generator, jobs)
        conclusions.append(conditioning_conclusion(table))
        paths.extend([out / "conditioning.csv", out / "conditioning.json"])
    paths.append(write_markdown(cfg, masses))
    return StudyResult(paths, conclusions)


def _limit_threads(n: int) -> None:
    """Cap TensorFlow's threads in this process, if it has not started yet."""
    from pnn.learn.train import limit_threads

    try:
        limit_threads(n)
    except RuntimeError:  # already initialised (e.g. in a test process): keep its setting
        log.debug("TensorFlow already initialised; thread count unchanged")
