"""Sanity checks that ``pnn evaluate`` runs and the report prints as warnings.

Each guards against a fault that leaves a PNN looking fine while being wrong:

* mass leak: if background masses are assigned wrongly, the mass input alone tells signal
  from background, and the network learns that instead of the physics;
* ignored mass: a network (or a sentinel-mass bug) whose score does not change with the
  mass input, seen as identical scores, or identical AUC, at every mass;
* overtraining: train and test score distributions differ (KS p-value);
* single mass: a PNN trained on one mass point cannot learn what the mass input means;
* shared events: signal and background samples that read the same file and tree and keep
  the same event numbers, so the same events are labelled both ways;
* convergence: a fold whose best epoch is its last, or whose validation loss was still
  falling when it ran out of epochs, is not the network the settings could give;
* statistics: too few signal or background MC events, raw or effective, to quote a number.

A check whose value could not be computed (NaN) never counts as passed.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier

from pnn.core import inputs
from pnn.core.config import Config, Sample
from pnn.learn.preprocess import PointPrior, cut_halves, parameter_matrix, training_weights
from pnn.stats import metrics

log = logging.getLogger(__name__)

SCORE_SPREAD_MIN = 1e-6  # smallest change of any score over the mass range that counts
SENSITIVITY_EVENTS = 5000


CONVERGENCE_WINDOW = 10  # epochs through which the convergence check fits a line
LEAK_SIGMAS = 3.0  # the mass-leak tolerance is at least this many null standard errors


@dataclass
class Check:
    """Outcome of one run-level check; ``warning`` is empty when it passed.

    A NaN ``value`` means the check could not be computed: it is then never ``passed``, and
    gets a warning saying so if it has none. ``tolerance`` is the limit the value was held to,
    where there is one.
    """

    name: str
    value: float
    passed: bool
    warning: str = ""
    tolerance: float | None = None

    def __post_init__(self) -> None:
        self.value = float(self.value)
        if math.isnan(self.value):
            self.passed = False
            if not self.warning:
                self.warning = (f"{self.name}: the value could not be computed (NaN), so this "
                                "check did not pass; check that there are signal and background "
                                "events for it")


def effective_events(weight: np.ndarray) -> float:
    """Kish effective number of events (sum w)^2 / sum w^2: what the weights are worth."""
    w = np.asarray(weight, dtype=np.float64)
    w2 = float(np.sum(w * w))
    return float(np.sum(w)) ** 2 / w2 if w2 > 0 else 0.0


def training_masses(cfg: Config, train_events: pd.DataFrame,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, masses and loss weights as training sees them: background masses are drawn
    from the signal mass points exactly as one training epoch draws them."""
    pre = cfg.preprocessing
    y = train_events["label"].to_numpy()
    mass = parameter_matrix(train_events, cfg.parameters).copy()
    w = training_weights(y, mass, train_events["weight"].to_numpy(), balance_signal=pre.balance_signal,
                         drop_negative=pre.drop_negative_weights)
    sig = y == 1
    prior = PointPrior.from_signal(mass[sig], w[sig])
    mass[~sig] = prior.draw(rng, int((~sig).sum()))
    return y, mass, w


def null_auc_error(n_signal: float, n_background: float) -> float:
    """Standard error of the AUC of a classifier blind to the label (true AUC 0.5).

    The Hanley-McNeil variance at AUC = 0.5, (n_s + n_b + 1) / (12 n_s n_b), with the
    (effective) numbers of signal and background events; NaN when a class is empty.
    """
    if not (n_signal > 0 and n_background > 0):
        return float("nan")
    return math.sqrt((n_signal + n_background + 1) / (12 * n_signal * n_background))


def mass_leak(cfg: Config, train_events: pd.DataFrame, tolerance: float) -> Check:
    """AUC of a classifier that sees only the mass input; it must be 0.5 within a tolerance.

    A gradient-boosted classifier learns P(signal | mass) on one half of the training events
    and is scored on the other half, with the training weights. The tolerance is the larger
    of ``tolerance`` and three standard errors of the AUC under the null hypothesis, for the
    effective numbers of scored events, so small samples do not raise false alarms.
    """
    y, mass, w = training_masses(cfg, train_events, np.random.default_rng([cfg.seed, 13]))
    keep = w != 0
    half = cut_halves(train_events["event_number"].to_numpy(), cfg.preprocessing.folds)
    fit, test = half & keep, ~half & keep
    clf = HistGradientBoostingClassifier(max_iter=30, early_stopping=False, random_state=cfg.seed)
    clf.fit(mass[fit], y[fit], sample_weight=w[fit])
    score = clf.predict_proba(mass[test])[:, 1]
    auc = metrics.roc(score, y[test], w[test]).auc
    is_sig = y[test] == 1
    sigma = null_auc_error(effective_events(w[test][is_sig]), effective_events(w[test][~is_sig]))
    used = max(tolerance, LEAK_SIGMAS * sigma) if np.isfinite(sigma) else tolerance
    ok = abs(auc - 0.5) <= used
    warning = "" if ok else (
        f"mass leak: a classifier given only the mass input reaches AUC {auc:.3f} on the "
        f"training events (expected 0.5 within {used:.3f}): background masses are not drawn "
        "like the signal masses"
    )
    return Check("mass_leak", auc, ok, warning, tolerance=used)


def mass_sensitivity(score_at: dict[float, np.ndarray]) -> Check:
    """Largest change of any event's score over the masses; zero means the mass is ignored.

    ``score_at`` maps each mass to the scores of the same events at that mass (the trained
    masses). A single mass is a warning of its own: nothing can be learned about the mass.
    """
    if len(score_at) < 2:  # not computable: say why rather than "could not be computed"
        return Check("mass_sensitivity", float("nan"), False, single_mass(list(score_at)).warning)
    stacked = np.vstack(list(score_at.values()))
    spread = float(np.max(np.ptp(stacked, axis=0))) if stacked.shape[1] else 0.0
    ok = spread > SCORE_SPREAD_MIN
    warning = "" if ok else (
        f"ignored mass: the PNN gives every event the same score at all {len(score_at)} masses "
        "(the mass input does not reach the network)"
    )
    return Check("mass_sensitivity", spread, ok, warning)


def single_mass(trained_masses: list[float]) -> Check:
    """Warns when the network was trained on fewer than two masses: its mass input is constant
    in training, so what it does at any other mass means nothing."""
    n = len(set(trained_masses))
    ok = n >= 2
    shown = ", ".join(f"{m:g}" for m in sorted(set(trained_masses))) or "none"
    warning = "" if ok else (
        f"trained on one mass only ({shown} GeV): the mass input cannot be learned; add signal "
        "samples at more masses with train: true")
    return Check("single_mass", float(n), ok, warning)


def identical_auc(aucs: dict[float, float]) -> Check:
    """Fires when every evaluated mass has the same AUC: the mass hypothesis changed nothing.

    With fewer than two masses there is nothing to compare: the check does not pass, and
    says so.
    """
    values = np.array(list(aucs.values()), dtype=np.float64)
    if len(values) < 2:
        return Check("identical_auc", float("nan"), False,
                     f"identical AUC: only {len(values)} mass evaluated, so whether the AUC "
                     "changes with the mass cannot be checked; evaluate at least two masses")
    spread = float(np.ptp(values))
    ok = spread > 1e-9
    warning = "" if ok else (
        f"ignored mass: the AUC is {values[0]:.6f} at every one of the {len(values)} masses"
    )
    return Check("identical_auc", spread, ok, warning)


def convergence(fold_results: list[dict], max_epochs: int,
                histories: dict[int, pd.DataFrame] | None = None) -> Check:
    """Warns for each fold whose training did not converge: its best epoch is its last, or it
    ran every epoch while its validation loss was still falling (a straight line through the
    last ``CONVERGENCE_WINDOW`` epochs slopes down by more than that line's scatter). The value
    is the number of such folds."""
    histories = histories or {}
    bad = []
    for r in fold_results:
        fold, run, best = int(r["fold"]), int(r["epochs_run"]), int(r["best_epoch"])
        if run > 1 and best == run:
            bad.append(f"fold {fold}: best epoch {best} is the last one")
            continue
        hist = histories.get(fold)
        if run < max_epochs or hist is None or len(hist) < CONVERGENCE_WINDOW:
            continue
        tail = hist["val_loss"].to_numpy(np.float64)[-CONVERGENCE_WINDOW:]
        x = np.arange(len(tail), dtype=np.float64)
        slope, intercept = np.polyfit(x, tail, 1)
        scatter = float(np.std(tail - (slope * x + intercept)))
        if slope * (len(tail) - 1) < -max(scatter, 1e-12):
            bad.append(f"fold {fold}: ran all {run} epochs with the validation loss still falling")
    warning = "" if not bad else (
        "training has not converged (" + "; ".join(bad) + "): raise training.epochs or the "
        "learning rate, or use training.schedule: plateau")
    return Check("convergence", float(len(bad)), not bad, warning, tolerance=0.0)


def overtraining(ks: dict[str, float], threshold: float) -> list[str]:
    """Warnings for classes whose train and test score distributions differ (KS p-value)."""
    return [f"overtraining check: KS p-value {p:.2g} for {cls} is below {threshold:g}"
            for cls, p in ks.items() if p < threshold]


def statistics(label: np.ndarray, weight: np.ndarray, n_bkg_passing: int, *,
               min_signal_events: int, min_effective_events: float,
               min_background_events: int) -> list[str]:
    """Warnings when the MC at one mass is too thin, raw or weighted, to quote a number."""
    sig = np.asarray(label) == 1
    w = np.asarray(weight, dtype=np.float64)
    out = []
    n_sig = int(sig.sum())
    if n_sig < min_signal_events:
        out.append(f"statistics: only {n_sig} signal MC events (need {min_signal_events})")
    for cls, sel in (("signal", sig), ("background", ~sig)):
        n_eff = effective_events(w[sel])
        if n_eff < min_effective_events:
            out.append(f"statistics: {cls} weights are worth only {n_eff:.1f} effective events "
                       f"(need {min_effective_events:g})")
        if w[sel].sum() <= 0:
            out.append(f"statistics: the {cls} yield is not positive ({w[sel].sum():.3g})")
    if n_bkg_passing < min_background_events:
        out.append(f"statistics: only {n_bkg_passing} background MC events pass the best cut "
                   f"(need {min_background_events})")
    return out


def _name_parts(sample: Sample, name: str) -> dict[str, str]:
    """The '{tree}' and '{file}' values that made the events-table name ``name`` of ``sample``."""
    return sample.name_parts(name) or {}


def _sources(sample: Sample, name: str) -> set[tuple[str, str, str]]:
    """``(file, kind, tree)`` read by the events-table sample ``name``: ``kind`` is 'tree' for
    a tree name, 'regex' when only the sample's ``tree_regex`` is known. Files are resolved
    to real paths, so two spellings of one file are one source."""
    parts = _name_parts(sample, name)
    pairs = sample.files.items() if isinstance(sample.files, dict) else [
        (f, sample.tree) for f in sample.files]
    out = set()
    for pattern, tree in pairs:
        kind, value = ("tree", tree) if tree is not None else ("regex", sample.tree_regex or ".*")
        if "tree" in parts:
            if (kind == "tree" and value != parts["tree"]) or (
                    kind == "regex" and not re.fullmatch(value, parts["tree"])):
                continue
            kind, value = "tree", parts["tree"]
        for path in inputs.expand(pattern) or [pattern]:
            if "file" not in parts or os.path.splitext(os.path.basename(path))[0] == parts["file"]:
                out.add((inputs.identity(path), kind, value))
    return out


def _same_source(a: tuple[str, str, str], b: tuple[str, str, str]) -> bool:
    """Whether two sources can be the same tree of the same file."""
    if a[0] != b[0]:
        return False
    if a[1] == b[1]:
        return a[2] == b[2]
    name, regex = (a[2], b[2]) if a[1] == "tree" else (b[2], a[2])
    return re.fullmatch(regex, name) is not None


def shared_events(cfg: Config, events: pd.DataFrame) -> Check:
    """Events used as both signal and background: a signal and a background sample that read
    the same file and tree and keep the same event numbers (e.g. overlapping selections).

    Only pairs of samples that share a file and tree are compared, so event numbers that
    merely repeat across different files are not counted. The value is the number of
    shared events; when the two samples also read other files, some shared event numbers
    may come from those, and the warning says so.
    """
    if not {"sample", "label", "event_number"} <= set(events.columns):
        return Check("shared_events", float("nan"), False,
                     "shared events: the events table has no sample, label or event_number "
                     "column, so signal and background cannot be compared; rerun 'pnn ingest'")
    names = events["sample"].to_numpy()  # the category strings themselves, not copies
    label = events["label"].to_numpy()
    evno = events["event_number"].to_numpy()
    found = []
    groups = {(cls, n): np.unique(evno[(names == n) & (label == cls)])
              for cls in (0, 1) for n in np.unique(names[label == cls])}
    for (cls_s, sig_name), sig_ev in groups.items():
        if cls_s != 1:
            continue
        sig_cfg = next((s for s in cfg.samples.signal if s.owns(sig_name)), None)
        if sig_cfg is None:
            continue
        sig_src = _sources(sig_cfg, sig_name)
        for (cls_b, bkg_name), bkg_ev in groups.items():
            bkg_cfg = next((s for s in cfg.samples.background if s.owns(bkg_name)), None)
            if cls_b != 0 or bkg_cfg is None:
                continue
            bkg_src = _sources(bkg_cfg, bkg_name)
            common = [a for a in sig_src if any(_same_source(a, b) for b in bkg_src)]
            if not common:
                continue
            n = len(np.intersect1d(sig_ev, bkg_ev, assume_unique=True))
            if n:
                exact = len(common) == len(sig_src) and all(
                    any(_same_source(a, b) for a in sig_src) for b in bkg_src)
                found.append((sig_name, bkg_name, common[0], n, exact))
    total = sum(f[3] for f in found)
    if not found:
        return Check("shared_events", 0.0, True)
    sig_name, bkg_name, (path, _, tree), n, exact = found[0]
    more = f" ({len(found) - 1} more sample pairs too)" if len(found) > 1 else ""
    maybe = "" if exact else " (some may come from their other files)"
    return Check("shared_events", float(total), False, (
        f"shared events: signal sample '{sig_name}' and background sample '{bkg_name}' both read "
        f"'{path}' tree '{tree}' and keep {n} of the same event numbers{maybe}{more}: those "
        "events are labelled signal and background at once; give the two samples disjoint "
        "selections or different files"))
