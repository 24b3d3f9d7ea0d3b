"""Scores back into the analyst's ntuples: one friend-tree file per input file.

Every entry of every input tree gets a row, in the same order, so ROOT's ``AddFriend`` and
uproot line the two up. The branches are ``pnn_score_m<mass>`` for each mass hypothesis and
the event number. Each event is scored by the fold model that did not train on it
(EventNumber % k); events that fail the global selection get the configured fill value.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pnn.core import inputs as input_files
from pnn.core.config import Config
from pnn.core.errors import PnnError
from pnn.io import expressions, ntuple
from pnn.learn.model import FoldModels
from pnn.learn.train import require_model
from pnn.stats.evaluate import check_masses

log = logging.getLogger(__name__)

APPLY_DIR = "apply"
CHUNK_ENTRIES = 100_000  # entries per read chunk and so per written basket


@dataclass
class ApplyResult:
    input: str
    output: Path
    trees: dict[str, int]
    masses: list[float]


def score_branch(mass: float) -> str:
    return f"pnn_score_m{mass:g}"


def output_path(cfg: Config, input_path: str | Path, output_dir: str | Path | None) -> Path:
    """``<output_dir or run_dir/apply>/<input stem>_pnn.root``."""
    folder = Path(output_dir) if output_dir is not None else cfg.run_dir / APPLY_DIR
    return folder / f"{Path(input_path).stem}_pnn.root"


def expand_inputs(patterns: list[str]) -> list[str]:
    """Input files from paths or globs, each pattern matching at least one file, no repeats."""
    files: list[str] = []
    for pattern in patterns:
        matches = input_files.expand(pattern)
        if not matches:
            what = "URL" if input_files.is_remote(pattern) else "path"
            raise PnnError(f"no input file matches '{pattern}': check the {what}")
        files += [m for m in matches if m not in files]
    stems = [Path(f).stem for f in files]
    clash = sorted({s for s in stems if stems.count(s) > 1})
    if clash:
        raise PnnError(f"several inputs are named '{clash[0]}.root': their outputs would collide; "
                       "apply them with different --output-dir")
    return files


def needed_branches(cfg: Config, features: list[str]) -> set[str]:
    exprs = [cfg.expression(f) for f in features] + [cfg.event_number]
    if cfg.selection:
        exprs.append(cfg.selection)
    return set().union(*(expressions.branches(e) for e in exprs))


def feature_arrays(cfg: Config, features: list[str], arrays: Mapping
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features matrix, selection mask and event numbers of one chunk of branch arrays."""
    n = len(arrays[min(arrays)])
    keep = np.ones(n, dtype=bool)
    if cfg.selection:
        keep = np.broadcast_to(np.asarray(
            expressions.evaluate(cfg.selection, arrays, cfg.object_fill), dtype=bool), (n,)).copy()
    cols = []
    for name in features:
        value = expressions.evaluate(cfg.expression(name), arrays, cfg.object_fill)
        col = np.broadcast_to(np.asarray(value, dtype=np.float64), (n,))
        cols.append(col)
    X = np.column_stack(cols) if cols else np.zeros((n, 0))
    bad = ~np.isfinite(X)
    if bad.any():
        if cfg.non_finite == "fill":
            X = np.where(bad, cfg.non_finite_fill, X)
        elif cfg.non_finite == "drop":
            keep &= ~bad.any(axis=1)
        else:
            col = int(np.flatnonzero((bad & keep[:, None]).any(axis=0))[0]) if (
                bad & keep[:, None]).any() else None
            if col is not None:
                raise PnnError(
                    f"feature '{features[col]}' is NaN or infinite in "
                    f"{int((bad[:, col] & keep).sum())} selected events: set non_finite: drop or "
                    "fill in the config")
    evno = np.asarray(expressions.evaluate(cfg.event_number, arrays), dtype=np.int64)
    return X, keep, evno


def score(models: FoldModels, X: np.ndarray, event_number: np.ndarray, masses: list[float]
          ) -> dict[float, np.ndarray]:
    """Scores of the rows of ``X`` at each mass, each row by the fold model that did not
    train on it. The plain scoring path, shared by ``pnn apply`` and model comparisons."""
    return {m: models.score(X, m, event_number, split="test")[0] for m in masses}


def score_chunk(cfg: Config, models: FoldModels, arrays: Mapping, masses: list[float],
                fill: float) -> dict[str, np.ndarray]:
    """The friend-tree columns of one chunk: event number and one score per mass, with
    ``fill`` for events outside the selection."""
    X, keep, evno = feature_arrays(cfg, models.features, arrays)
    out: dict[str, np.ndarray] = {cfg.event_number: evno}
    scores = score(models, X[keep], evno[keep], masses)
    for m in masses:
        col = np.full(len(keep), fill, dtype=np.float32)
        col[keep] = scores[m]
        out[score_branch(m)] = col
    return out


def _chunks(cfg: Config, models: FoldModels, tree, branches: set[str], collections: set[str],
            masses: list[float], fill: float) -> Iterator[dict[str, np.ndarray]]:
    for arrays in ntuple.iterate([tree], branches, CHUNK_ENTRIES, awkward=collections):
        yield score_chunk(cfg, models, arrays, masses, fill)


def check_apply_masses(masses: list[float], trained: list[float],
                       allow_extrapolation: bool) -> None:
    """Refuse NaN or infinite mass hypotheses, and masses outside the ``trained`` range unless
    ``allow_extrapolation``; then only warn, as ``pnn evaluate`` does. A model without a mass
    input has no ``trained`` range."""
    bad = [m for m in masses if not np.isfinite(m)]
    if bad:
        raise PnnError(f"--mass {bad[0]} is not a finite number: give mass hypotheses in GeV, "
                       "e.g. --mass 750")
    if not trained:
        return
    check_masses(masses, trained, allow_extrapolation)
    lo, hi = min(trained), max(trained)
    for m in masses:
        if not lo - 1e-6 <= m <= hi + 1e-6:
            log.warning("mass %g GeV is outside the trained range %g-%g GeV: its scores are an "
                        "extrapolation the network was never shown", m, lo, hi)


def apply(cfg: Config, inputs: list[str], masses: list[float] | None = None,
          output_dir: str | Path | None = None, force: bool = False,
          trees: list[str] | None = None, allow_extrapolation: bool = False) -> list[ApplyResult]:
    """Score every entry of every input file's trees into ``<stem>_pnn.root`` friend files.

    Mass hypotheses outside the trained range are refused unless ``allow_extrapolation``.
    """
    files = expand_inputs(inputs)
    outputs = [output_path(cfg, f, output_dir) for f in files]
    existing = [str(o) for o in outputs if o.exists()]
    if existing and not force:
        raise PnnError(f"'{existing[0]}' exists: pass --force to overwrite it")
    require_model(cfg, check_events=False)
    models = FoldModels.load(cfg.run_dir)
    masses = list(masses) if masses else models.trained_masses
    check_apply_masses(masses, models.trained_masses if models.parametric else [],
                       allow_extrapolation)
    fill = cfg.apply.fill
    branches = needed_branches(cfg, models.features)
    results = []
    with ntuple.open_files(files) as handles:
        chosen = {}
        for path in files:  # check every file before writing anything
            chosen[path] = _trees(handles[path], path, trees, branches)
        for path, out in zip(files, outputs, strict=True):
            jobs = {}
            for name in chosen[path]:
                tree = ntuple.get_tree(handles[path], path, name, branches)
                kinds = ntuple.branch_kinds(tree, branches - {ntuple.ENTRY})
                collections = {b for b, k in kinds.items() if k in ("jagged", "array")}
                for feature in models.features:
                    bad = expressions.unreduced(cfg.expression(feature), collections)
                    if bad:
                        raise PnnError(f"'{path}' tree '{name}': feature '{feature}' uses the "
                                       f"{kinds[bad]} branch '{bad}' without a reduction")
                jobs[name] = _chunks(cfg, models, tree, branches, collections, masses, fill)
            entries = ntuple.write_chunks(out, jobs)
            log.info("scored %s into %s", path, out)
            results.append(ApplyResult(path, out, entries, masses))
    return results


def _trees(handle, path: str, wanted: list[str] | None, branches: set[str]) -> list[str]:
    """The trees to score: those asked for, or every TTree that has the needed branches."""
    if wanted:
        for name in wanted:
            ntuple.get_tree(handle, path, name, branches)
        return list(wanted)
    names = [t for t in ntuple.list_trees(handle) if ntuple.has_branches(handle, t, branches)]
    if not names:
        raise PnnError(f"no tree in '{path}' has the branches {sorted(branches)}: "
                       f"trees there are {ntuple.list_trees(handle)}")
    return names
