"""Ingestion: configured samples -> one events table (Parquet) with features, weights, labels.

Reads each sample in chunks (memory stays bounded), reads only the branches needed, applies
the global and per-sample selections and the weight expression.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pnn import expressions, ntuple, toy
from pnn.atomic import atomic_path, write_json
from pnn.config import Config, Sample
from pnn.errors import PnnError

log = logging.getLogger(__name__)

RESERVED = ("weight", "event_number", "sample", "label", "mass")
EVENTS_FILE = "events.parquet"
META_FILE = "events.json"


@dataclass
class SampleSummary:
    name: str
    label: int
    mass: float | None
    train: bool
    read: int
    selected: int
    weighted: float


@dataclass
class IngestResult:
    path: Path
    events: int
    toy: bool
    features: list[str]
    spectators: list[str]
    samples: list[SampleSummary] = field(default_factory=list)


def events_path(cfg: Config) -> Path:
    return cfg.run_dir / EVENTS_FILE


def _selection(cfg: Config, sample: Sample) -> str | None:
    parts = [f"({s})" for s in (cfg.selection, sample.selection) if s]
    return " & ".join(parts) if parts else None


def _as_array(value, n: int, dtype) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim == 0:
        arr = np.full(n, arr)
    if arr.dtype == object:
        raise PnnError("a feature or weight evaluated to a jagged array: reduce it to one number per event")
    return arr if dtype is None else arr.astype(dtype, copy=False)


def _read_sample(
    cfg: Config, sample: Sample, label: int, spectators: list[str]
) -> tuple[pd.DataFrame, SampleSummary]:
    files = sample.resolved_files()
    weight_expr = sample.weight or cfg.weight
    selection = _selection(cfg, sample)
    exprs = [*cfg.features, *spectators, weight_expr, cfg.event_number]
    if selection:
        exprs.append(selection)
    needed: set[str] = set().union(*(expressions.branches(e) for e in exprs))
    if sample.mass_branch:
        needed.add(sample.mass_branch)
    for f in files:
        ntuple.check_tree(f, sample.tree, needed)

    frames: list[pd.DataFrame] = []
    read = 0
    for chunk in ntuple.iterate(files, sample.tree, needed):
        n = len(next(iter(chunk.values())))
        read += n
        keep = np.ones(n, dtype=bool)
        if selection:
            keep = _as_array(expressions.evaluate(selection, chunk), n, bool)
        cols: dict[str, np.ndarray] = {}
        for name in cfg.features:
            cols[name] = _as_array(expressions.evaluate(name, chunk), n, np.float32)[keep]
        for name in spectators:
            cols[name] = _as_array(expressions.evaluate(name, chunk), n, None)[keep]
        cols["weight"] = _as_array(expressions.evaluate(weight_expr, chunk), n, np.float64)[keep]
        cols["event_number"] = _as_array(chunk[cfg.event_number], n, np.int64)[keep]
        if sample.mass_branch:
            cols["mass"] = _as_array(chunk[sample.mass_branch], n, np.float64)[keep]
        else:
            cols["mass"] = np.full(int(keep.sum()), np.nan if sample.mass is None else sample.mass)
        frames.append(pd.DataFrame(cols))
        log.info("%s: %d events read, %d selected so far", sample.name, read,
                 sum(len(f) for f in frames))
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if df.empty:
        raise PnnError(
            f"sample '{sample.name}': the selection keeps no events of {read} read: "
            f"loosen the selection ({selection}) or check the files"
        )
    bad = ~np.isfinite(df[cfg.features].to_numpy(np.float64)).all(axis=1) | ~np.isfinite(df["weight"])
    if bad.any():
        raise PnnError(
            f"sample '{sample.name}': {int(bad.sum())} events have a non-finite feature or weight: "
            "add a selection that removes them"
        )
    df["sample"] = sample.name
    df["label"] = np.int8(label)
    summary = SampleSummary(
        name=sample.name, label=label, mass=sample.mass, train=sample.train if label else True,
        read=read, selected=len(df), weighted=float(df["weight"].sum()),
    )
    return df, summary


def ingest(cfg: Config) -> IngestResult:
    """Read every sample of ``cfg`` and write the events table and its metadata."""
    clash = sorted(set(cfg.features + cfg.spectators) & set(RESERVED))
    if clash:
        raise PnnError(f"features/spectators may not be named {clash}: these columns are reserved")
    all_samples = [(s, 1) for s in cfg.samples.signal] + [(s, 0) for s in cfg.samples.background]
    is_toy = all(toy.is_toy_file(f) for s, _ in all_samples for f in s.resolved_files())
    spectators = list(cfg.spectators)
    if is_toy:
        spectators += [b for b in toy.BRANCHES if b not in cfg.features and b not in spectators]
    frames, summaries = [], []
    for sample, label in all_samples:
        df, summary = _read_sample(cfg, sample, label, spectators)
        frames.append(df)
        summaries.append(summary)
    table = pd.concat(frames, ignore_index=True)
    table["sample"] = table["sample"].astype("category")
    dup = table["event_number"].duplicated()
    if dup.any():
        log.warning("%d events share an event number with another event; folds stay valid "
                    "but check '%s' is the event number", int(dup.sum()), cfg.event_number)
    path = events_path(cfg)
    with atomic_path(path) as tmp:
        table.to_parquet(tmp, index=False)
    result = IngestResult(path, len(table), is_toy, list(cfg.features), spectators, summaries)
    write_json(cfg.run_dir / META_FILE, {
        "events": len(table), "toy": is_toy, "features": result.features,
        "spectators": spectators, "config_digest": cfg.digest(),
        "samples": [asdict(s) for s in summaries],
    })
    log.info("wrote %d events to %s", len(table), path)
    return result


def load_events(cfg: Config) -> tuple[pd.DataFrame, dict]:
    """Read the events table and its metadata written by :func:`ingest`."""
    path = events_path(cfg)
    if not path.is_file():
        raise PnnError(f"events table '{path}' not found: run 'pnn ingest' first")
    meta = json.loads((cfg.run_dir / META_FILE).read_text())
    return pd.read_parquet(path), meta
