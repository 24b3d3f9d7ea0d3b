"""Input diagnostics (``pnn inspect``): what the network is given, before anyone asks.

Per feature: the weighted distributions of the backgrounds (stacked, per process) and of the
signal (overlaid, per mass), with the data when a data sample is configured; the same after
the input scaling of the fold-0 model, as the network sees them. Linear correlation matrices
of signal and background (weighted, TMVA style) and TMVA's separation
<S^2> = 1/2 sum_i (s_i - b_i)^2 / (s_i + b_i) of every feature at every mass.

Blinding follows the limits: unless ``limits.observed`` is true, data are drawn only in the
bins where no signal mass makes up more than ``BLIND_FRACTION`` of the expected events (the
sidebands); the other bins stay hidden and the plot says so. Binnings come from simulation.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pnn.core import points, provenance
from pnn.core.atomic import Staging, read_json, write_json
from pnn.core.config import Config
from pnn.core.errors import PnnError
from pnn.core.locks import task_lock
from pnn.io import ingest
from pnn.learn.preprocess import InputScaler, parameter_matrix
from pnn.learn.train import model_dir, require_model
from pnn.show import plots
from pnn.show.style import Style

log = logging.getLogger(__name__)

BINS = 40
BLIND_FRACTION = 0.05  # signal share of a bin above which data stay hidden while blinded
QUANTILES = (0.001, 0.999)  # feature range drawn: simulation beyond it goes to the edge bins
MANIFEST = "inputs.json"


def inputs_dir(cfg: Config) -> Path:
    return cfg.run_dir / "inputs"


@dataclass
class Inspection:
    directory: Path
    plots: list[Path]
    separation: pd.DataFrame
    data_shown: str  # "all", "sidebands" or "none"


def edges_of(values: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Uniform bins over the central range of the simulated values (integers get one bin each
    when there are few)."""
    values = values[np.isfinite(values)]
    if not len(values):
        return np.linspace(0.0, 1.0, bins + 1)
    lo, hi = np.quantile(values, QUANTILES)
    distinct = np.unique(values)
    if len(distinct) <= bins and np.allclose(distinct, np.round(distinct)):
        return np.arange(distinct.min() - 0.5, distinct.max() + 1.0)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, bins + 1)


def separation(signal: np.ndarray, background: np.ndarray) -> float:
    """TMVA's separation <S^2> of two histograms (each normalised to unit sum): 0 for identical
    shapes, 1 for shapes that never overlap."""
    s = np.clip(np.asarray(signal, dtype=np.float64), 0, None)
    b = np.clip(np.asarray(background, dtype=np.float64), 0, None)
    if not s.sum() > 0 or not b.sum() > 0:
        return float("nan")
    s, b = s / s.sum(), b / b.sum()
    both = s + b
    keep = both > 0
    return float(0.5 * np.sum((s[keep] - b[keep]) ** 2 / both[keep]))


def weighted_correlation(X: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Linear (Pearson) correlation matrix of the columns of ``X`` with event weights."""
    w = np.asarray(w, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    if not w.sum() > 0:
        return np.full((X.shape[1], X.shape[1]), np.nan)
    mean = (w[:, None] * X).sum(axis=0) / w.sum()
    d = X - mean
    cov = (w[:, None] * d).T @ d / w.sum()
    sd = np.sqrt(np.clip(np.diag(cov), 0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        return cov / np.outer(sd, sd)


OVERLAID = 6  # signal points drawn over the backgrounds when there are several parameters


def _masses(events: pd.DataFrame, names: list[str]) -> dict[float | str, np.ndarray]:
    """Every signal hypothesis and its events: masses as numbers, points with several
    parameters by their folder name (``mX1000_mY300``)."""
    sig = events["label"].to_numpy() == 1
    theta = parameter_matrix(events, names)
    found = points.unique(theta[sig])
    return {(p[0] if len(p) == 1 else points.label(names, p)): sig & points.mask(theta, p)
            for p in found}


def _overlaid(masses: dict) -> dict:
    """At most :data:`OVERLAID` hypotheses, evenly spread, for the distribution plots."""
    if len(masses) <= OVERLAID:
        return masses
    keys = list(masses)
    pick = np.unique(np.linspace(0, len(keys) - 1, OVERLAID).round().astype(int))
    return {keys[i]: masses[keys[i]] for i in pick}


def separation_table(events: pd.DataFrame, features: list[str],
                     edges: dict[str, np.ndarray], masses: dict) -> pd.DataFrame:
    """<S^2> of every feature at every mass (point): its signal against all background."""
    label = events["label"].to_numpy()
    w = events["weight"].to_numpy(np.float64)
    bkg = label == 0
    rows = []
    for feat in features:
        x = events[feat].to_numpy(np.float64)
        b, _ = plots.weighted_histogram(x[bkg], w[bkg], edges[feat])
        for m, sel in masses.items():
            s, _ = plots.weighted_histogram(x[sel], w[sel], edges[feat])
            rows.append({"feature": feat, "mass": m, "separation": separation(s, b)})
    return pd.DataFrame(rows, columns=["feature", "mass", "separation"])


def _data(cfg: Config) -> tuple[pd.DataFrame | None, str | None]:
    """The data events (read now, not kept) and an identity of what was read, or (None, None)."""
    if not cfg.samples.data:
        return None, None
    groups = [(-1, list(cfg.samples.data))]
    ingest.check_samples(cfg, groups)
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cfg.run_dir, prefix=".inspect-data-") as tmp:
        summaries = ingest.read_samples(cfg, groups, Path(tmp) / "data.parquet")
        table = pd.read_parquet(Path(tmp) / "data.parquet")
    ident = provenance.combine([f"{s.name}:{s.selected}" for s in summaries])
    return table, ident


def _scaler(cfg: Config, events_id: str) -> tuple[InputScaler | None, str]:
    """The fold-0 input scaler of the current model (checked), or None before training."""
    if not (model_dir(cfg.run_dir) / "metadata.json").is_file():
        log.info("no trained model yet: the scaled distributions are left out (run "
                 "'%s' first to have them)", cfg.command("train"))
        return None, "none"
    model_id = require_model(cfg, events_id=events_id)
    return InputScaler.load(model_dir(cfg.run_dir) / "fold0.scaler.json",
                            f"rerun '{cfg.command('train')}'"), model_id


def _histograms(events: pd.DataFrame, x: np.ndarray, edges: np.ndarray, masses: dict):
    label = events["label"].to_numpy()
    w = events["weight"].to_numpy(np.float64)
    sample = events["sample"].astype(str).to_numpy()
    backgrounds = {}
    for name in pd.unique(sample[label == 0]):
        sel = (label == 0) & (sample == name)
        backgrounds[str(name)] = plots.weighted_histogram(x[sel], w[sel], edges)
    signals = {}
    for m, sel in masses.items():
        signals[m] = plots.weighted_histogram(x[sel], w[sel], edges)
    return backgrounds, signals


def _shown(cfg: Config, backgrounds: dict, signals: dict) -> np.ndarray:
    """Bins where data may be drawn: all when unblinded, else those without signal."""
    bkg = sum(c for c, _ in backgrounds.values())
    if cfg.limits.observed:
        return np.ones(len(bkg), bool)
    worst = np.zeros(len(bkg))
    for s, _ in signals.values():
        total = bkg + np.clip(s, 0, None)
        worst = np.maximum(worst, plots._ratio(np.clip(s, 0, None), total))
    return np.nan_to_num(worst, nan=1.0) < BLIND_FRACTION


def inspect(cfg: Config, style: Style | None = None) -> Inspection:
    """Draw and write every input diagnostic to ``<run>/inputs``, published together."""
    style = style or Style.of(cfg)
    events, meta = ingest.load_events(cfg)
    events_id = meta["id"]
    scaler, model_id = _scaler(cfg, events_id)
    data, data_id = _data(cfg)
    features = list(cfg.features)
    missing = [f for f in features if f not in events]
    if missing:
        raise PnnError(f"events table lacks feature {missing[0]!r}: rerun '{cfg.command('ingest')}'")
    masses = _masses(events, cfg.parameters)
    shown_masses = _overlaid(masses)
    label = events["label"].to_numpy()
    simulated = {f: events[f].to_numpy(np.float64) for f in features}
    edges = {f: edges_of(x) for f, x in simulated.items()}
    table = separation_table(events, features, edges, masses)
    out = inputs_dir(cfg)
    drawn: list[str] = []
    with task_lock(cfg.run_dir, "inspect"), Staging(out, "inspect") as staged:
        for feat in features:
            backgrounds, signals = _histograms(events, simulated[feat], edges[feat], shown_masses)
            counts = shown = None
            if data is not None:
                counts, _ = plots.weighted_histogram(data[feat].to_numpy(np.float64),
                                                     np.ones(len(data)), edges[feat])
                shown = _shown(cfg, backgrounds, signals)
            name = f"{feat}.png"
            plots.feature_distribution(edges[feat], backgrounds, signals, staged.path(name),
                                       xlabel=feat, data=counts, shown=shown, style=style)
            drawn.append(name)
            if scaler is not None:
                i = scaler.features.index(feat)
                scaled = (simulated[feat] - scaler.center[i]) / scaler.scale[i]
                s_edges = (edges[feat] - scaler.center[i]) / scaler.scale[i]
                backgrounds, signals = _histograms(events, scaled, s_edges, shown_masses)
                name = f"{feat}_scaled.png"
                plots.feature_distribution(s_edges, backgrounds, signals, staged.path(name),
                                           xlabel=f"{feat} (scaled as the network sees it)",
                                           style=style)
                drawn.append(name)
        X = np.column_stack([simulated[f] for f in features])
        w = events["weight"].to_numpy(np.float64)
        corr = {}
        for cls, sel in (("signal", label == 1), ("background", label == 0)):
            corr[cls] = weighted_correlation(X[sel], w[sel])
            name = f"correlation_{cls}.png"
            plots.correlation_matrix(corr[cls], features, staged.path(name),
                                     title=f"{cls}: linear correlation [%]", style=style)
            drawn.append(name)
        plots.separation_map(table, staged.path("separation.png"), style=style)
        drawn.append("separation.png")
        with staged.path("separation.csv").open("w") as fh:
            table.to_csv(fh, index=False)
        data_shown = ("none" if data is None else "all" if cfg.limits.observed else "sidebands")
        inputs = {"events": events_id, "model": model_id}
        if data_id is not None:
            inputs["data"] = data_id
        write_json(staged.path(MANIFEST), {
            "features": features, "masses": list(masses), "plots": drawn,
            "edges": {f: e.tolist() for f, e in edges.items()},
            "correlation": {k: np.round(v, 6).tolist() for k, v in corr.items()},
            "separation": table.to_dict(orient="records"),
            "data": data_shown, "blind_fraction": BLIND_FRACTION,
            "scaled_by": "fold 0 scaler" if scaler is not None else None,
            provenance.KEY: provenance.record(cfg, "inspect", inputs),
        })
        staged.publish(last=[MANIFEST])
    return Inspection(out, [out / n for n in drawn], table, data_shown)


def require_inputs(cfg: Config) -> dict:
    """The inputs manifest, checked to come from the current config, events table and model."""
    path = inputs_dir(cfg) / MANIFEST
    manifest = read_json(path, cfg.command("inspect"))
    rec = manifest.get(provenance.KEY) if isinstance(manifest, dict) else None
    provenance.require(cfg, "inspect", rec, f"'{path}'",
                       inputs={"events": ingest.events_identity(cfg)})
    model = rec.get("inputs", {}).get("model") if isinstance(rec, dict) else None
    if model not in (None, "none"):
        if require_model(cfg) != model:
            raise PnnError(f"'{path}' was made from another model than the current one: rerun "
                           f"'{cfg.command('inspect')}'")
    elif (model_dir(cfg.run_dir) / "metadata.json").is_file():
        raise PnnError(f"'{path}' was made before the model was trained, so it lacks the scaled "
                       f"distributions: rerun '{cfg.command('inspect')}'")
    return manifest
