"""Scores back into the analyst's ntuples: one friend-tree file per input file.

Every entry of every input tree gets a row, in the same order, so ROOT's ``AddFriend`` and
uproot line the two up. The branches are one score per signal point and the event number, in
the type of the source branch. A lone mass gives ``pnn_score_m<mass>`` (a decimal point
written ``p``: ``pnn_score_m172p5``); several parameters give ``pnn_score_`` followed by the
point's label, ``pnn_score_mX1000_mY300``. Each event is scored by the fold model that did
not train on it (EventNumber % k); events that fail the global selection get the configured
fill value.
An input RNTuple gets an RNTuple of scores (uproot's RNTuple writer), entry by entry as well.

Every input is checked before anything is written; with ``keep_going`` a bad input is
reported and the others are still scored.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pnn.core import inputs as input_files
from pnn.core import points as pts
from pnn.core.config import Config
from pnn.core.errors import PnnError
from pnn.io import expressions, ntuple, objects
from pnn.learn.model import FoldModels
from pnn.learn.train import require_model

log = logging.getLogger(__name__)

APPLY_DIR = "apply"
CHUNK_ENTRIES = 100_000  # entries per read chunk and so per written basket


@dataclass
class ApplyResult:
    input: str
    output: Path
    trees: dict[str, int]
    masses: list[float]  # the scored masses (one-parameter models; empty for several)
    error: str | None = None  # why this input was not scored (with keep_going)
    points: list[pts.Point] = field(default_factory=list)  # the scored signal points


@dataclass
class _Job:
    """One ntuple of one input file to score: how to read it and whether it is an RNTuple."""

    name: str
    tree: object
    reading: objects.Reading
    collections: set[str] = field(default_factory=set)
    rntuple: bool = False


def score_branch(mass: float) -> str:
    """``pnn_score_m172p5`` for 172.5 GeV: no dot, which ROOT would read as a member access."""
    text = np.format_float_positional(float(mass), trim="-")
    return "pnn_score_m" + text.replace(".", "p").replace("-", "minus")


def point_branch(names: list[str], point: pts.Point) -> str:
    """The score branch of a signal point: ``pnn_score_m172p5`` for a lone mass,
    ``pnn_score_mX1000_mY300`` for several parameters (or one not called mass)."""
    if list(names) == [pts.MASS]:
        return score_branch(point[0])
    return "pnn_score_" + pts.branch_label(names, point)


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


def _expressions(cfg: Config, features: list[str]) -> list[str]:
    exprs = [cfg.expression(f) for f in features] + [cfg.event_number]
    if cfg.selection:
        exprs.append(cfg.selection)
    return exprs


def needed_branches(cfg: Config, features: list[str]) -> set[str]:
    """Names the features, event number and selection read (branches or collections)."""
    return set().union(*(expressions.branches(e) for e in _expressions(cfg, features)))


def needed_attributes(cfg: Config, features: list[str]) -> set[str]:
    """Attributes the expressions take of objects (the fields collections must bring)."""
    return set().union(*(expressions.attributes(e) for e in _expressions(cfg, features)))


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
    evno = np.asarray(expressions.evaluate(cfg.event_number, arrays))
    return X, keep, evno


def score(models: FoldModels, X: np.ndarray, event_number: np.ndarray, masses: list
          ) -> dict:
    """Scores of the rows of ``X`` at each signal point (masses, or tuples of parameter
    values), keyed by the point as given, each row by the fold model that did not train on
    it. The plain scoring path, shared by ``pnn apply`` and model comparisons."""
    return {m: models.score(X, m, event_number, split="test")[0] for m in masses}


def score_chunk(cfg: Config, models: FoldModels, arrays: Mapping, masses: list,
                fill: float) -> dict[str, np.ndarray]:
    """The friend-tree columns of one chunk: event number and one score per signal point
    (masses, or tuples of parameter values), with ``fill`` for events outside the
    selection."""
    X, keep, evno = feature_arrays(cfg, models.features, arrays)
    out: dict[str, np.ndarray] = {cfg.event_number: evno}  # the source's type (uint64 stays)
    scores = score(models, X[keep], evno[keep].astype(np.int64), masses)
    for m in masses:
        col = np.full(len(keep), fill, dtype=np.float32)
        col[keep] = scores[m]
        out[point_branch(models.parameters, pts.as_point(m))] = col
    return out


def _chunks(cfg: Config, models: FoldModels, job: _Job, masses: list, fill: float
            ) -> Iterator[dict[str, np.ndarray]]:
    for arrays in ntuple.iterate([job.tree], job.reading.branches, CHUNK_ENTRIES,
                                 awkward=job.collections):
        yield score_chunk(cfg, models, objects.assemble(arrays, job.reading), masses, fill)


def requested_points(names: list[str], masses: list[float] | None,
                     points: list[pts.Point] | None, trained: list[pts.Point]
                     ) -> list[pts.Point]:
    """The points to score: ``--mass`` values (a lone parameter only) and ``--point``s, in
    the order given without repeats, or every ``trained`` point; refuse two points that
    would share a branch name."""
    for p in points or []:
        if len(p) != len(names):
            raise PnnError(f"point {p} has {len(p)} value(s) but the model's parameters are "
                           f"{', '.join(names)}: give one each, e.g. --point "
                           + ",".join(f"{n}=..." for n in names))
    asked = [(float(m),) for m in masses or []] + [tuple(float(v) for v in p) for p in points or []]
    if not asked:
        return list(trained)
    out: list[pts.Point] = []
    branches: dict[str, pts.Point] = {}
    for p in asked:
        if p in out:
            continue
        name = point_branch(names, p) if all(np.isfinite(p)) else None
        if name is not None and name in branches:
            raise PnnError(f"points {pts.label(names, branches[name])} and {pts.label(names, p)} "
                           f"would both be written to the branch '{name}': give points that "
                           "differ in their first six significant digits")
        if name is not None:
            branches[name] = p
        out.append(p)
    return out


def apply(cfg: Config, inputs: list[str], masses: list[float] | None = None,
          output_dir: str | Path | None = None, force: bool = False,
          trees: list[str] | None = None, allow_extrapolation: bool = False,
          keep_going: bool = False, points: list[pts.Point] | None = None) -> list[ApplyResult]:
    """Score every entry of every input file's trees into ``<stem>_pnn.root`` friend files.

    The signal points are ``masses`` (a one-parameter model only) and ``points`` (tuples of
    parameter values in the order of the model's parameters); default: every trained point.
    Every input is opened and checked (trees, branches, expressions) before anything is
    written; the first bad one is an error naming it. With ``keep_going`` the bad inputs
    (and any that break while being read) are returned with their ``error`` instead, and the
    others are scored. Points outside the trained range (one parameter) or the convex hull
    of the trained points (several) are refused unless ``allow_extrapolation``.
    """
    names = list(cfg.parameters)
    pts.requested(names, masses or [], [])  # --mass checked before any file is looked at
    files = expand_inputs(inputs)
    outputs = [output_path(cfg, f, output_dir) for f in files]
    existing = [str(o) for o in outputs if o.exists()]
    if existing and not force:
        raise PnnError(f"'{existing[0]}' exists: pass --force to overwrite it")
    require_model(cfg, check_events=False)
    models = FoldModels.load(cfg.run_dir)
    if models.parametric and models.parameters != names:
        raise PnnError(f"the model was trained with the parameters {models.parameters} but the "
                       f"config lists {names}: rerun 'pnn train' or use the config it was "
                       "trained with")
    trained = models.trained_points if models.parametric else []
    wanted = requested_points(names, masses, points, models.trained_points)
    pts.check_trained(names, wanted, trained, allow_extrapolation, "score")
    scored: list = [p[0] for p in wanted] if len(names) == 1 else wanted
    masses = [p[0] for p in wanted] if len(names) == 1 else []
    fill = cfg.apply.fill
    branches = needed_branches(cfg, models.features)
    attributes = needed_attributes(cfg, models.features)
    results: list[ApplyResult] = []
    with contextlib.ExitStack() as stack:
        planned: dict[str, list[_Job]] = {}
        for path, out in zip(files, outputs, strict=True):  # check every file before writing
            try:
                handles = stack.enter_context(ntuple.open_files([path]))
                planned[path] = _jobs(cfg, models.features, handles[path], path, trees,
                                      branches, attributes)
            except PnnError as exc:
                if not keep_going:
                    raise
                results.append(ApplyResult(path, out, {}, masses, str(exc), wanted))
        for path, out in zip(files, outputs, strict=True):
            if path not in planned:
                continue
            jobs = planned[path]
            try:
                entries = ntuple.write_chunks(
                    out, {j.name: _chunks(cfg, models, j, scored, fill) for j in jobs},
                    rntuples=[j.name for j in jobs if j.rntuple])
            except PnnError as exc:
                if not keep_going:
                    raise
                results.append(ApplyResult(path, out, {}, masses, str(exc), wanted))
                continue
            log.info("scored %s into %s", path, out)
            results.append(ApplyResult(path, out, entries, masses, None, wanted))
    order = {f: i for i, f in enumerate(files)}
    return sorted(results, key=lambda r: order[r.input])


def _jobs(cfg: Config, features: list[str], handle, path: str, wanted: list[str] | None,
          branches: set[str], attributes: set[str]) -> list[_Job]:
    """The ntuples of one open input to score, each checked: branches or collections there,
    no unreduced collection in a feature."""
    jobs = []
    for name in _trees(handle, path, wanted, branches, attributes):
        tree = ntuple.get_tree(handle, path, name, ())
        reading = ntuple.resolve(tree, path, branches, attributes)
        keyed = {f"features ({f})": cfg.expression(f) for f in features}
        keyed.update({"event_number": cfg.event_number, "selection": cfg.selection or "0"})
        expressions.check_fields(keyed, reading.collections)
        kinds = ntuple.branch_kinds(tree, reading.branches - {ntuple.ENTRY})
        reading.lorentz = {b for b, k in kinds.items() if k in ("lorentz", "lorentz1")}
        bad_kind = next((b for b, k in kinds.items() if k in ("object", "string")), None)
        if bad_kind is not None:
            raise PnnError(f"'{path}' tree '{name}': branch '{bad_kind}' holds "
                           f"{kinds[bad_kind]}s that cannot be read as numbers: leave it out "
                           "of the features")
        collections = {b for b, k in kinds.items() if k in ("jagged", "array", "lorentz")}
        collections |= {c for c, spec in reading.collections.items()
                        if any(kinds[b] in ("jagged", "array") for b in spec.coordinates.values())}
        for feature in features:
            bad = expressions.unreduced(cfg.expression(feature), collections)
            if bad:
                raise PnnError(f"'{path}' tree '{name}': feature '{feature}' uses the "
                               f"collection '{bad}' without a reduction: use {bad}[0], "
                               f"count({bad}) or sum(...)")
        jobs.append(_Job(name, tree, reading, collections | reading.lorentz,
                         ntuple.is_rntuple(tree)))
    return jobs


def _trees(handle, path: str, wanted: list[str] | None, branches: set[str],
           attributes: set[str]) -> list[str]:
    """The ntuples to score: those asked for, or every TTree or RNTuple that has the needed
    branches."""
    if wanted:
        for name in wanted:
            ntuple.get_tree(handle, path, name, ())
        return list(wanted)
    found = ntuple.list_trees(handle)
    names = [t for t in found if ntuple.has_branches(handle, t, branches, attributes)]
    if not names:
        raise PnnError(f"no tree or RNTuple in '{path}' has the branches {sorted(branches)}: "
                       f"trees there are {found}")
    return names
