"""Ingestion: configured samples -> one events table (Parquet) with features, weights, labels.

Every file, tree and branch of every sample is checked before anything is read. Samples are
then read in chunks (memory stays bounded), only the branches needed, with the global and
per-sample selections and the weight expression applied. Each chunk is appended to the
Parquet file as a row group as soon as it is read.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pnn.core import provenance
from pnn.core.atomic import Staging, read_json, sweep, write_json
from pnn.core.config import Config, Sample
from pnn.core.errors import PnnError
from pnn.core.locks import task_lock
from pnn.io import exact, expressions, ntuple, objects

log = logging.getLogger(__name__)

RESERVED = ("weight", "event_number", "sample", "label", "mass")
EVENTS_FILE = "events.parquet"
META_FILE = "events.json"
SHARD_DIR = "events.d"


@dataclass
class SampleSummary:
    name: str
    label: int
    mass: float | None  # the sample's point when it has one parameter
    train: bool
    read: int
    selected: int
    weighted: float
    sum_weights: float | None = None
    non_finite: dict[str, int] = field(default_factory=dict)
    point: list[float] | None = None  # the sample's point (every parameter), when constant


@dataclass
class IngestResult:
    path: Path
    events: int
    toy: str | bool  # the generator of an embedded toy, else False
    features: list[str]
    spectators: list[str]
    samples: list[SampleSummary] = field(default_factory=list)


@dataclass
class _Part:
    """One tree of one file, with the signal point its name gives (if any)."""

    path: str
    tree: object
    point: tuple[float, ...] | None


@dataclass
class _Plan:
    """What to read for one sample: its trees and the expressions to evaluate."""

    sample: Sample
    name: str
    label: int
    parts: list[_Part]
    branches: set[str]
    collections: set[str]
    weight: str
    selection: str | None
    event_number: str
    scale: float = 1.0
    sum_weights: float | None = None
    reading: objects.Reading = field(default_factory=lambda: objects.Reading(set()))


def events_path(cfg: Config) -> Path:
    return cfg.run_dir / EVENTS_FILE


def shard_path(cfg: Config, index: int, count: int) -> Path:
    """Events table of one ingest shard: ``events.d/shard-I-of-N.parquet``."""
    return cfg.run_dir / SHARD_DIR / f"shard-{index}-of-{count}.parquet"


def _selection(cfg: Config, sample: Sample) -> str | None:
    parts = [f"({s})" for s in (cfg.selection, sample.selection) if s]
    return " & ".join(parts) if parts else None


def _as_array(value, n: int, dtype, what: str) -> np.ndarray:
    if not isinstance(value, np.ndarray) and type(value).__module__.startswith("awkward"):
        import awkward as ak

        try:
            value = ak.to_numpy(value)
        except (ValueError, TypeError):
            raise PnnError(f"{what} has several values per event: reduce it to one, e.g. "
                           "x[0], count(x) or sum(x)") from None
    arr = np.asarray(value)
    if arr.ndim == 0:
        arr = np.full(n, arr)
    if arr.dtype == object and dtype is None and arr.ndim == 1 and (
            len(arr) == 0 or isinstance(arr[0], str)):
        arr = arr.astype(str)  # a string spectator
    if arr.dtype == object or arr.ndim != 1:
        raise PnnError(f"{what} has several values per event: reduce it to one, e.g. "
                       "x[0], count(x) or sum(x)")
    return arr if dtype is None else arr.astype(dtype, copy=False)


def _regex_point(sample: Sample, names: list[str], tree: str, path: str
                 ) -> tuple[float, ...] | None:
    """The point that ``mass_regex`` or ``parameter_regex`` reads from a tree or file name."""
    regex = sample.mass_regex or sample.parameter_regex
    if regex is None:
        return None
    key = "mass_regex" if sample.mass_regex else "parameter_regex"
    on = sample.mass_regex_on if sample.mass_regex else sample.parameter_regex_on
    text = tree if on == "tree" else Path(path).name
    found = re.search(regex, text)
    if not found:
        raise PnnError(f"sample '{sample.name}': {key} '{regex}' does not match the {on} name "
                       f"'{text}'")
    groups = [found.group(1)] if sample.mass_regex else [found.group(n) for n in names]
    try:
        return tuple(float(g) for g in groups)
    except (TypeError, ValueError):
        raise PnnError(f"sample '{sample.name}': {key} groups {groups} in '{text}' are not "
                       "all numbers") from None


def sample_parts(sample: Sample, handles: dict, pairs: list[tuple[str, str | None]],
                 names: list[str] | None = None) -> dict[str, list[_Part]]:
    """The trees of ``sample`` grouped by expanded sample name, with the signal points their
    tree or file names give (``names``: the parameters)."""
    groups: dict[str, list[_Part]] = {}
    for path, tree in pairs:
        if tree is None:
            trees = [t for t in ntuple.list_trees(handles[path])
                     if re.fullmatch(sample.tree_regex, t)]  # type: ignore[arg-type]
            if not trees:
                raise PnnError(
                    f"sample '{sample.name}': no tree in '{path}' matches tree_regex "
                    f"'{sample.tree_regex}': trees there are {ntuple.list_trees(handles[path])}")
        else:
            trees = [tree]
        for name in trees:
            point = _regex_point(sample, names or ["mass"], name, path)
            groups.setdefault(sample.expanded_name(name, path), []).append(_Part(path, name, point))
    return groups


_KIND_NAMES = {"jagged": "jagged branch", "array": "array branch",
               "lorentz": "four-vector branch", "collection": "collection"}


def _plans(cfg: Config, handles: dict, sample: Sample, label: int,
           pairs: list[tuple[str, str | None]], spectators: list[str]) -> list[_Plan]:
    weight = sample.weight or cfg.weight
    selection = _selection(cfg, sample)
    event_number = sample.event_number or cfg.event_number
    features = {name: cfg.expression(name) for name in cfg.features}
    specs = {name: cfg.expression(name) for name in spectators}
    keyed = {**{f"features ({n})": e for n, e in features.items()},
             **{f"spectators ({n})": e for n, e in specs.items()},
             "weight": weight, "event_number": event_number}
    if selection:
        keyed["selection"] = selection
    needed: set[str] = set().union(*(expressions.branches(e, key=k) for k, e in keyed.items()))
    attributes: set[str] = set().union(*(expressions.attributes(e) for e in keyed.values()))
    needed |= set(_parameter_branches(cfg, sample).values())
    plans = []
    for name, parts in sample_parts(sample, handles, pairs, cfg.parameters).items():
        first = parts[0]
        first.tree = ntuple.get_tree(handles[first.path], first.path, first.tree, ())
        reading = ntuple.resolve(first.tree, first.path, needed, attributes)
        expressions.check_fields(keyed, reading.collections)
        for part in parts:
            part.tree = ntuple.get_tree(handles[part.path], part.path, getattr(
                part.tree, "name", part.tree), reading.branches)
        kinds = ntuple.branch_kinds(first.tree, reading.branches - {ntuple.ENTRY})
        reading.lorentz = {b for b, k in kinds.items() if k in ("lorentz", "lorentz1")}
        where = f"sample '{name}' ('{first.path}' tree '{first.tree.name}')"
        for branch, kind in kinds.items():
            if kind == "object":
                raise PnnError(f"{where}: branch '{branch}' holds objects that cannot be read as "
                               "numbers: leave it out of the config")
            if kind == "string":
                users = [n for n, e in features.items() if branch in expressions.branches(e)]
                users += [n for n, e in specs.items()
                          if branch in expressions.branches(e) and e != branch]
                if users:
                    raise PnnError(f"{where}: branch '{branch}' holds strings: it can be a "
                                   f"spectator by its own name, never a feature ({users[0]!r})")
        collections = {b for b, k in kinds.items() if k in ("jagged", "array", "lorentz")}
        for coll, spec in reading.collections.items():
            if any(kinds[b] in ("jagged", "array") for b in spec.coordinates.values()):
                kinds[coll] = "collection"
                collections.add(coll)
        labelled = [*(f"feature '{n}'" for n in features), *(f"spectator '{n}'" for n in specs),
                    "the weight", "the event number", "the selection"]
        for what, expr in zip(labelled, [*features.values(), *specs.values(), weight,
                                         event_number, selection], strict=False):
            if expr is None:
                continue
            bad = expressions.unreduced(expr, collections)
            if bad:
                raise PnnError(
                    f"{where}: {what} uses the {_KIND_NAMES.get(kinds[bad], kinds[bad])} "
                    f"'{bad}' without a reduction: use {bad}[0] (k-th object), count({bad}) "
                    f"or sum({bad}{'.pt' if kinds[bad] in ('lorentz', 'collection') else ''})")
        plans.append(_Plan(sample, name, label, parts, reading.branches,
                           collections | reading.lorentz, weight, selection, event_number,
                           reading=reading))
    return plans


def _normalise(cfg: Config, plan: _Plan, handles: dict) -> None:
    """Scale of the sample's weights, xsec * lumi / sum_weights, summed over every file."""
    sample = plan.sample
    if sample.cross_section is None or sample.sum_weights is None:
        return
    sw = sample.sum_weights
    paths = list(dict.fromkeys(p.path for p in plan.parts))
    if sw.histogram is not None:
        total = sum(ntuple.histogram_bin(handles[p], p, sw.histogram, sw.bin or 0) for p in paths)
    elif sw.tree is not None:
        trees = [ntuple.get_tree(handles[p], p, sw.tree, [sw.branch]) for p in paths]
        total = ntuple.sum_branch(trees, sw.branch)  # type: ignore[arg-type]
    else:
        for part in plan.parts:
            ntuple.get_tree(handles[part.path], part.path, part.tree.name, [sw.branch])
        total = ntuple.sum_branch([p.tree for p in plan.parts], sw.branch)  # type: ignore[arg-type]
    if not np.isfinite(total) or total == 0:
        raise PnnError(f"sample '{plan.name}': the sum of weights is {total}: "
                       "check sum_weights in the config")
    plan.sum_weights = total
    plan.scale = sample.cross_section * cfg.luminosity / total  # type: ignore[operator]
    log.info("%s: sum of weights %g, weights scaled by %g", plan.name, total, plan.scale)


def _chunk_table(cfg: Config, plan: _Plan, part: _Part, chunk: dict, spectators: list[str],
                 code: int, dictionary: pa.Array, non_finite: dict[str, int]) -> pa.Table | None:
    n = len(chunk[min(chunk)])
    keep = None
    if plan.selection:
        keep = _as_array(expressions.evaluate(plan.selection, chunk, cfg.object_fill), n, bool,
                         "the selection")
        if not keep.any():
            return None

    def column(name: str, expr: str, dtype) -> np.ndarray:
        arr = _as_array(expressions.evaluate(expr, chunk, cfg.object_fill), n, dtype, f"'{name}'")
        return arr if keep is None else arr[keep]

    cols: dict[str, np.ndarray] = {
        name: column(name, cfg.expression(name), np.float32) for name in cfg.features}
    cols.update({name: column(name, cfg.expression(name), None) for name in spectators})
    cols["weight"] = column("weight", plan.weight, np.float64) * plan.scale
    cols["event_number"] = _event_numbers(column("event_number", plan.event_number, None),
                                          plan.event_number)
    m = len(cols["weight"])
    from_branches = _parameter_branches(cfg, plan.sample)
    point = part.point or plan.sample.constant_point(cfg.parameters)
    for i, p in enumerate(cfg.parameters):
        if p in from_branches:
            cols[p] = column(p, from_branches[p], np.float64)
        else:
            cols[p] = np.full(m, np.nan if point is None else point[i])
    if not np.isfinite(cols["weight"]).all():
        raise PnnError(f"sample '{plan.name}': {int((~np.isfinite(cols['weight'])).sum())} events "
                       f"have a NaN or infinite weight ({plan.weight}): fix the weight expression")
    bad = np.zeros(m, dtype=bool)
    for name in cfg.features:
        wrong = ~np.isfinite(cols[name])
        if wrong.any():
            non_finite[name] = non_finite.get(name, 0) + int(wrong.sum())
            if cfg.non_finite == "fill":
                cols[name] = np.where(wrong, np.float32(cfg.non_finite_fill), cols[name])
            bad |= wrong
    if bad.any() and cfg.non_finite == "error":
        return None
    if bad.any() and cfg.non_finite == "drop":
        cols = {k: v[~bad] for k, v in cols.items()}
        m = len(cols["weight"])
    arrays = {k: pa.array(v) for k, v in cols.items()}
    arrays["sample"] = pa.DictionaryArray.from_arrays(pa.array(np.full(m, code, np.int16)),
                                                      dictionary)
    arrays["label"] = pa.array(np.full(m, plan.label, np.int8))
    return pa.table(arrays)


def _event_numbers(values: np.ndarray, expr: str) -> np.ndarray:
    """Event numbers as int64: NanoAOD's uint64 ``event`` fits (real event numbers stay far
    below 2**63); a value beyond that would give a wrong fold."""
    if values.dtype.kind == "u" and values.size and values.max() > np.iinfo(np.int64).max:
        raise PnnError(f"event number '{expr}' has values beyond 2**63 - 1: use a branch "
                       "with event numbers below that")
    return values.astype(np.int64, copy=False)


Groups = list[tuple[int, list[Sample]]]


def plan_samples(cfg: Config, handles: dict, spectators: list[str],
                 groups: Groups | None = None) -> list[_Plan]:
    """Every sample expanded into its trees, checked and normalised, in config order.

    ``groups`` (label, samples) default to the signal (1) and background (0) samples.
    """
    if groups is None:
        groups = [(1, cfg.samples.signal), (0, cfg.samples.background)]
    plans = []
    for label, samples in groups:
        for sample in samples:
            plans += _plans(cfg, handles, sample, label, sample.resolved_files(), spectators)
    names = [p.name for p in plans]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise PnnError(f"several samples expand to the name {dupes[0]!r}: rename them "
                       "(use '{tree}' or '{file}' in the name)")
    return plans


def shard_parts(plans: list[_Plan], index: int, count: int) -> None:
    """Keep in every plan only the (file, tree) parts of shard ``index`` of ``count``: the
    parts of all samples in config order, dealt out in turn."""
    position = 0
    for plan in plans:
        mine = []
        for part in plan.parts:
            if position % count == index:
                mine.append(part)
            position += 1
        plan.parts = mine


def _spectators(cfg: Config, files: list[str]) -> tuple[str | bool, list[str]]:
    """Whether the files are an embedded toy (its generator's name) and the spectators,
    with the branches of the toy's exact likelihood ratio added."""
    generator = exact.common_generator(files) or False
    spectators = list(cfg.spectators)
    if generator:
        spectators += [b for b in exact.branches(generator)
                       if b not in cfg.features and b not in spectators]
    return generator, spectators


def _write_table(cfg: Config, handles: dict, plans: list[_Plan], spectators: list[str],
                 tmp: Path, require_events: bool) -> list[SampleSummary]:
    """Read every (normalised) plan chunk by chunk into one Parquet table at ``tmp``."""
    dictionary = pa.array([p.name for p in plans])
    writer: list[pq.ParquetWriter] = []

    def write(table: pa.Table) -> None:
        if not writer:  # the first chunk fixes the schema
            writer.append(pq.ParquetWriter(tmp, table.schema, compression="lz4",
                                           use_dictionary=["sample"], write_statistics=False))
        writer[0].write_table(table.cast(writer[0].schema))

    try:
        summaries = [_read(cfg, plan, code, spectators, dictionary, write,
                           require_events=require_events)
                     for code, plan in enumerate(plans)]
        if not writer and require_events:
            raise PnnError("no event passes the selections: loosen them")
        if not writer:  # nothing kept (a shard, say): an empty table
            pq.write_table(pa.table({"weight": pa.array([], pa.float64())}), tmp)
    finally:
        for w in writer:
            w.close()
    return summaries


def ingest(cfg: Config, shard: tuple[int, int] | None = None) -> IngestResult:
    """Read every sample of ``cfg`` and write the events table and its metadata.

    With ``shard=(i, n)`` only the i-th of n shares of the trees is read, into
    ``events.d/shard-i-of-n.parquet``; weights are still normalised over the whole sample.
    """
    clash = sorted(set(cfg.features + cfg.spectators) & {*RESERVED, *cfg.parameters})
    if clash:
        raise PnnError(f"features/spectators may not be named {clash}: these columns are reserved "
                       "(the signal parameters and the table's own columns)")
    if shard is not None and not 0 <= shard[0] < shard[1]:
        raise PnnError(f"shard {shard[0]}/{shard[1]}: need 0 <= I < N")
    pairs = [pair for s in (*cfg.samples.signal, *cfg.samples.background)
             for pair in s.resolved_files()]
    files = list(dict.fromkeys(path for path, _ in pairs))
    is_toy, spectators = _spectators(cfg, files)
    path = events_path(cfg) if shard is None else shard_path(cfg, *shard)
    key = "ingest" if shard is None else f"ingest-shard-{shard[0]}-of-{shard[1]}"
    sweep(cfg.run_dir)
    with task_lock(cfg.run_dir, key), Staging(path.parent, key) as staged, \
            ntuple.open_files(files) as handles:
        plans = plan_samples(cfg, handles, spectators)
        for plan in plans:
            _normalise(cfg, plan, handles)
        if shard is not None:
            shard_parts(plans, *shard)
        summaries = _write_table(cfg, handles, plans, spectators, staged.path(path.name),
                                 require_events=shard is None)
        total = sum(s.selected for s in summaries)
        result = IngestResult(path, total, is_toy, list(cfg.features), spectators, summaries)
        meta = {"events": total, "toy": is_toy, "features": result.features,
                "spectators": spectators, "samples": [asdict(s) for s in summaries],
                provenance.KEY: provenance.record(cfg, "ingest")}
        if shard is not None:
            meta["shard"] = {"index": shard[0], "count": shard[1]}
        meta_name = path.with_suffix(".json").name if shard is not None else META_FILE
        write_json(staged.path(meta_name), meta)
        staged.publish(last=[meta_name])
    log.info("wrote %d events to %s", total, path)
    return result


def check_samples(cfg: Config, groups: Groups) -> None:
    """Open and plan other samples (files, trees, branches, expressions) without reading
    their events, so a bad one fails before anything is written."""
    pairs = [pair for _, samples in groups for s in samples for pair in s.resolved_files()]
    files = list(dict.fromkeys(path for path, _ in pairs))
    _, spectators = _spectators(cfg, files)
    with ntuple.open_files(files) as handles:
        plan_samples(cfg, handles, spectators, groups)


def read_samples(cfg: Config, groups: Groups, tmp: Path) -> list[SampleSummary]:
    """Read other samples than the training ones (data, systematic variations) into a table
    at ``tmp``, with the same selection, features, spectators and expressions as ingest."""
    pairs = [pair for _, samples in groups for s in samples for pair in s.resolved_files()]
    files = list(dict.fromkeys(path for path, _ in pairs))
    _, spectators = _spectators(cfg, files)
    with ntuple.open_files(files) as handles:
        plans = plan_samples(cfg, handles, spectators, groups)
        for plan in plans:
            _normalise(cfg, plan, handles)
        return _write_table(cfg, handles, plans, spectators, tmp, require_events=False)


def _read(cfg: Config, plan: _Plan, code: int, spectators: list[str], dictionary: pa.Array,
          write: Callable[[pa.Table], None], require_events: bool = True) -> SampleSummary:
    """Read one sample chunk by chunk, handing each selected chunk to ``write``."""
    read = selected = 0
    weighted = 0.0
    non_finite: dict[str, int] = {}
    for part in plan.parts:
        for raw in ntuple.iterate([part.tree], plan.branches, ntuple.STEP_SIZE,
                                  awkward=plan.collections):
            chunk = objects.assemble(raw, plan.reading)
            read += len(chunk[min(chunk)])
            table = _chunk_table(cfg, plan, part, chunk, spectators, code, dictionary, non_finite)
            if table is not None and table.num_rows:
                write(table)
                selected += table.num_rows
                weighted += float(pc.sum(table.column("weight")).as_py() or 0.0)
            log.info("%s: %d events read, %d selected", plan.name, read, selected)
    if non_finite and cfg.non_finite == "error":
        first, count = next(iter(non_finite.items()))
        more = f" (and {len(non_finite) - 1} more features)" if len(non_finite) > 1 else ""
        raise PnnError(
            f"sample '{plan.name}': feature '{first}' is NaN or infinite in {count} events{more}: "
            "set non_finite: drop or fill in the config, or add a selection that removes them")
    if non_finite:
        log.warning("%s: non-finite features %s (%s)", plan.name, non_finite, cfg.non_finite)
    if selected == 0 and require_events:
        raise PnnError(
            f"sample '{plan.name}': the selection keeps no events of {read} read: "
            f"loosen the selection ({plan.selection}) or check the files"
        )
    found = {p.point or plan.sample.constant_point(cfg.parameters) for p in plan.parts}
    point = found.pop() if len(found) == 1 else None
    train = plan.sample.train if plan.label else True
    return SampleSummary(plan.name, plan.label, point[0] if point and len(point) == 1 else None,
                         train, read, selected, weighted, plan.sum_weights, non_finite,
                         list(point) if point else None)


def _parameter_branches(cfg: Config, sample: Sample) -> dict[str, str]:
    """Parameter -> branch for a sample that reads its point from branches."""
    if sample.mass_branch:
        return {cfg.parameters[0]: sample.mass_branch}
    return dict(sample.parameter_branches or {})


def _shards(cfg: Config) -> list[Path]:
    """The complete set of shard tables in ``events.d/``, or an error naming the missing ones."""
    found = sorted((cfg.run_dir / SHARD_DIR).glob("shard-*-of-*.parquet"))
    if not found:
        return []
    counts = {int(re.fullmatch(r"shard-(\d+)-of-(\d+)\.parquet", p.name).group(2))  # type: ignore[union-attr]
              for p in found}
    if len(counts) > 1:
        raise PnnError(f"'{cfg.run_dir / SHARD_DIR}' mixes shard counts {sorted(counts)}: "
                       "remove the shards of the old split")
    count = counts.pop()
    missing = [i for i in range(count) if not shard_path(cfg, i, count).is_file()
               or not shard_path(cfg, i, count).with_suffix(".json").is_file()]
    if missing:
        names = ", ".join(f"shard-{i}-of-{count}" for i in missing)
        raise PnnError(f"ingest shards incomplete in '{cfg.run_dir / SHARD_DIR}': missing {names}: "
                       f"run 'pnn ingest CONFIG --shard I/{count}' for each")
    return [shard_path(cfg, i, count) for i in range(count)]


def _shard_metas(cfg: Config, shards: list[Path]) -> list[dict]:
    """The metadata of every shard, each checked against the current ingest settings."""
    metas = []
    for p in shards:
        fix = cfg.command("ingest") + " --shard " + "/".join(p.stem.split("-")[1::2])
        m = read_json(p.with_suffix(".json"), fix)
        provenance.require(cfg, "ingest", m.get(provenance.KEY), f"ingest shard '{p}'", fix=fix)
        metas.append(m)
    return metas


def events_identity(cfg: Config) -> str:
    """Identity of the current events table (or of its complete set of shards), checked
    against the config: the input identity that training records."""
    path = events_path(cfg)
    if path.is_file():
        meta = read_json(cfg.run_dir / META_FILE, cfg.command("ingest"))
        rec = provenance.require(cfg, "ingest", meta.get(provenance.KEY),
                                 f"the events table '{path}'")
        return rec["id"]
    shards = _shards(cfg)
    if not shards:
        raise PnnError(f"events table '{path}' not found: run '{cfg.command('ingest')}' first")
    return provenance.combine([m[provenance.KEY]["id"] for m in _shard_metas(cfg, shards)])


def _read_table(path: Path, fix: str, columns: list[str] | None = None) -> pd.DataFrame:
    try:
        if columns is not None:  # only those the table has: a missing one is the caller's to name
            have = set(pq.read_schema(path).names)
            columns = [c for c in columns if c in have]
        table = pd.read_parquet(path, columns=columns)
        pa.default_memory_pool().release_unused()  # Arrow's buffers, now copied into pandas
        return table
    except (OSError, ValueError) as exc:
        first = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise PnnError(f"'{path}' is damaged ({first}): rerun '{fix}'") from None


def merge_shards(cfg: Config) -> IngestResult:
    """Join the complete set of shards into one events table, once each is checked current."""
    shards = _shards(cfg)
    if not shards:
        raise PnnError(f"no ingest shards in '{cfg.run_dir / SHARD_DIR}': run "
                       f"'{cfg.command('ingest')} --shard I/N' first")
    with task_lock(cfg.run_dir, "ingest"):
        events, meta = load_events(cfg, shards_only=True)
        path = events_path(cfg)
        meta.pop("id")
        meta[provenance.KEY] = provenance.record(
            cfg, "ingest", {"shards": provenance.combine(meta.pop("shard_ids"))})
        with Staging(cfg.run_dir, "ingest") as staged:
            events.to_parquet(staged.path(path.name), compression="lz4", index=False)
            write_json(staged.path(META_FILE), meta)
            staged.publish(last=[META_FILE])
    summaries = [SampleSummary(**s) for s in meta["samples"]]
    return IngestResult(path, meta["events"], meta["toy"], meta["features"], meta["spectators"],
                        summaries)


def load_events(cfg: Config, *, shards_only: bool = False,
                columns: list[str] | None = None) -> tuple[pd.DataFrame, dict]:
    """Read the events table written by :func:`ingest`, or the union of its shards, once its
    provenance is checked against the config; ``meta["id"]`` is the table's identity.
    ``columns``: read only these (those the table has), in their stored types."""
    path = events_path(cfg)
    if path.is_file() and not shards_only:
        meta = read_json(cfg.run_dir / META_FILE, cfg.command("ingest"))
        rec = provenance.require(cfg, "ingest", meta.get(provenance.KEY),
                                 f"the events table '{path}'")
        events = _read_table(path, cfg.command("ingest"), columns)
        return events, {**meta, "id": rec["id"]}
    shards = _shards(cfg)
    if not shards:
        raise PnnError(f"events table '{path}' not found: run '{cfg.command('ingest')}' first")
    metas = _shard_metas(cfg, shards)
    tables = [_read_table(p, cfg.command("ingest"), columns) for p in shards]
    if not any(m["events"] for m in metas):
        raise PnnError(f"the shards in '{cfg.run_dir / SHARD_DIR}' hold no event: loosen the "
                       "selections")
    events = pd.concat([t for t, m in zip(tables, metas, strict=True) if m["events"]],
                       ignore_index=True)
    events["sample"] = events["sample"].astype(str).astype("category")
    meta = dict(metas[0])
    meta.pop("shard", None)
    meta["events"] = sum(m["events"] for m in metas)
    merged: dict[str, dict] = {}
    for m in metas:
        for s in m["samples"]:
            if s["name"] not in merged:
                merged[s["name"]] = dict(s)
            else:
                for key in ("read", "selected", "weighted"):
                    merged[s["name"]][key] += s[key]
    meta["samples"] = list(merged.values())
    ids = [m[provenance.KEY]["id"] for m in metas]
    meta["shard_ids"] = ids
    meta["id"] = provenance.combine(ids)
    return events, meta
