"""Ingestion: configured samples -> one events table (Parquet) with features, weights, labels.

Every file, tree and branch of every sample is checked before anything is read. Samples are
then read in chunks (memory stays bounded), only the branches needed, with the global and
per-sample selections and the weight expression applied. Each chunk is appended to the
Parquet file as a row group as soon as it is read.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

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


@dataclass
class _Plan:
    """What to read for one sample: its open trees and the expressions to evaluate."""

    sample: Sample
    label: int
    code: int
    trees: list
    branches: set[str]
    weight: str
    selection: str | None


def events_path(cfg: Config) -> Path:
    return cfg.run_dir / EVENTS_FILE


def _selection(cfg: Config, sample: Sample) -> str | None:
    parts = [f"({s})" for s in (cfg.selection, sample.selection) if s]
    return " & ".join(parts) if parts else None


def _as_array(value, n: int, dtype) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim == 0:
        arr = np.full(n, arr)
    if arr.dtype == object or arr.ndim != 1:
        raise PnnError("a feature or weight evaluated to several numbers per event: "
                       "reduce it to one, e.g. x[0]")
    return arr if dtype is None else arr.astype(dtype, copy=False)


def _plan(cfg: Config, handles: dict, files: list[str], sample: Sample, label: int, code: int,
          spectators: list[str]) -> _Plan:
    weight = sample.weight or cfg.weight
    selection = _selection(cfg, sample)
    exprs = [*cfg.features, *spectators, weight, cfg.event_number]
    if selection:
        exprs.append(selection)
    needed: set[str] = set().union(*(expressions.branches(e) for e in exprs))
    if sample.mass_branch:
        needed.add(sample.mass_branch)
    trees = [ntuple.get_tree(handles[f], f, sample.tree, needed) for f in files]
    return _Plan(sample, label, code, trees, needed, weight, selection)


def _chunk_table(cfg: Config, plan: _Plan, chunk: dict, spectators: list[str],
                 dictionary: pa.Array) -> pa.Table | None:
    n = len(next(iter(chunk.values())))
    keep = None
    if plan.selection:
        keep = _as_array(expressions.evaluate(plan.selection, chunk), n, bool)
        if not keep.any():
            return None

    def column(expr: str, dtype) -> np.ndarray:
        arr = _as_array(expressions.evaluate(expr, chunk), n, dtype)
        return arr if keep is None else arr[keep]

    cols: dict[str, np.ndarray] = {name: column(name, np.float32) for name in cfg.features}
    cols.update({name: column(name, None) for name in spectators})
    cols["weight"] = column(plan.weight, np.float64)
    cols["event_number"] = column(cfg.event_number, np.int64)
    m = len(cols["weight"])
    if plan.sample.mass_branch:
        cols["mass"] = column(plan.sample.mass_branch, np.float64)
    else:
        cols["mass"] = np.full(m, np.nan if plan.sample.mass is None else plan.sample.mass)
    finite = np.isfinite(cols["weight"])
    for name in cfg.features:
        finite &= np.isfinite(cols[name])
    if not finite.all():
        raise PnnError(
            f"sample '{plan.sample.name}': {int((~finite).sum())} events have a non-finite "
            "feature or weight: add a selection that removes them"
        )
    arrays = {k: pa.array(v) for k, v in cols.items()}
    arrays["sample"] = pa.DictionaryArray.from_arrays(
        pa.array(np.full(m, plan.code, np.int16)), dictionary)
    arrays["label"] = pa.array(np.full(m, plan.label, np.int8))
    return pa.table(arrays)


def ingest(cfg: Config) -> IngestResult:
    """Read every sample of ``cfg`` and write the events table and its metadata."""
    clash = sorted(set(cfg.features + cfg.spectators) & set(RESERVED))
    if clash:
        raise PnnError(f"features/spectators may not be named {clash}: these columns are reserved")
    all_samples = [(s, 1) for s in cfg.samples.signal] + [(s, 0) for s in cfg.samples.background]
    sample_files = [s.resolved_files() for s, _ in all_samples]
    files = [f for group in sample_files for f in group]
    is_toy = all(toy.is_toy_file(f) for f in files)
    spectators = list(cfg.spectators)
    if is_toy:
        spectators += [b for b in toy.BRANCHES if b not in cfg.features and b not in spectators]
    dictionary = pa.array([s.name for s, _ in all_samples])
    path = events_path(cfg)
    with ntuple.open_files(files) as handles:
        plans = [_plan(cfg, handles, group, s, label, code, spectators)
                 for code, ((s, label), group) in enumerate(zip(all_samples, sample_files, strict=True))]
        with atomic_path(path) as tmp:
            writer: list[pq.ParquetWriter] = []

            def write(table: pa.Table) -> None:
                if not writer:  # the first chunk fixes the schema
                    writer.append(pq.ParquetWriter(tmp, table.schema, compression="lz4",
                                                   use_dictionary=["sample"],
                                                   write_statistics=False))
                writer[0].write_table(table.cast(writer[0].schema))

            try:
                summaries = [_read(cfg, plan, spectators, dictionary, write) for plan in plans]
            finally:
                for w in writer:
                    w.close()
    total = sum(s.selected for s in summaries)
    result = IngestResult(path, total, is_toy, list(cfg.features), spectators, summaries)
    write_json(cfg.run_dir / META_FILE, {
        "events": total, "toy": is_toy, "features": result.features,
        "spectators": spectators, "config_digest": cfg.digest(),
        "samples": [asdict(s) for s in summaries],
    })
    log.info("wrote %d events to %s", total, path)
    return result


def _read(cfg: Config, plan: _Plan, spectators: list[str], dictionary: pa.Array,
          write: Callable[[pa.Table], None]) -> SampleSummary:
    """Read one sample chunk by chunk, handing each selected chunk to ``write``."""
    read = selected = 0
    weighted = 0.0
    for chunk in ntuple.iterate(plan.trees, plan.branches):
        read += len(next(iter(chunk.values())))
        table = _chunk_table(cfg, plan, chunk, spectators, dictionary)
        if table is not None:
            write(table)
            selected += table.num_rows
            weighted += float(pc.sum(table.column("weight")).as_py() or 0.0)
        log.info("%s: %d events read, %d selected", plan.sample.name, read, selected)
    if selected == 0:
        raise PnnError(
            f"sample '{plan.sample.name}': the selection keeps no events of {read} read: "
            f"loosen the selection ({plan.selection}) or check the files"
        )
    train = plan.sample.train if plan.label else True
    return SampleSummary(plan.sample.name, plan.label, plan.sample.mass, train, read, selected,
                         weighted)


def load_events(cfg: Config) -> tuple[pd.DataFrame, dict]:
    """Read the events table and its metadata written by :func:`ingest`."""
    path = events_path(cfg)
    if not path.is_file():
        raise PnnError(f"events table '{path}' not found: run 'pnn ingest' first")
    meta = json.loads((cfg.run_dir / META_FILE).read_text())
    return pd.read_parquet(path), meta
