"""The only module that touches ROOT files (through uproot): open, check, read in chunks, write.

Both kinds of ntuple are read the same way: TTrees and RNTuples (the kind is found from the
file). Fields that uproot shows for RNTuple collections (``_collection0.*``) are not branches
of their own: only the top-level fields are.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import re
import struct
import zlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
import uproot

from pnn.core import inputs
from pnn.core.atomic import atomic_path
from pnn.core.errors import PnnError
from pnn.io import objects

log = logging.getLogger(__name__)

STEP_SIZE = "16 MB"
# What uproot raises when a file's header, streamers, keys or baskets are damaged.
READ_ERRORS = (uproot.deserialization.DeserializationError, OSError, ValueError, KeyError,
               IndexError, TypeError, NotImplementedError, UnicodeError, EOFError, struct.error,
               zlib.error)
ENTRY = "_entry"  # pseudo-branch: the entry number inside its tree, for files without one
NTUPLE_CLASSES = ("TTree", "ROOT::RNTuple", "ROOT::Experimental::RNTuple")
_HIDDEN = re.compile(r"_collection\d+")  # uproot's names for RNTuple collection records


def is_rntuple(tree) -> bool:
    """Whether an opened ntuple is an RNTuple (else a TTree)."""
    return isinstance(tree, uproot.behaviors.RNTuple.RNTuple)


def branch_names(tree) -> list[str]:
    """The branches of a TTree, or the top-level fields of an RNTuple without uproot's
    ``_collection`` records."""
    if is_rntuple(tree):
        return [k for k in tree.keys(recursive=False) if not _HIDDEN.fullmatch(k)]
    return list(tree.keys())


def closest(name: str, names: Iterable[str], n: int = 3) -> list[str]:
    """The names most similar to ``name`` (by difflib's ratio, ignoring case, best first)."""
    lower: dict[str, str] = {}
    for key in names:
        lower.setdefault(key.lower(), key)
    return [lower[k] for k in difflib.get_close_matches(name.lower(), list(lower), n=n,
                                                         cutoff=0.5)]


def _suggest(name: str, names: Iterable[str], what: str) -> str:
    names = list(names)
    near = closest(name, names)
    if near:
        return f"closest {what}: {', '.join(near)}"
    return f"{what} there: {', '.join(names[:12])}" + (" ..." if len(names) > 12 else "")


def _remote_error(path: str, exc: Exception) -> PnnError:
    """One line for a remote file whose server failed while it was opened or read."""
    message = " ".join(str(exc).split())[:200] or type(exc).__name__
    return PnnError(f"'{path}' cannot be read from its XRootD server ({message}): check that the "
                    "server answers and rerun (slow server: raise XRD_REQUESTTIMEOUT)")


def _open(path: str):
    try:
        if inputs.is_remote(path):
            # uproot's own XRootD source: its default (fsspec) one hands NumPy integers to
            # the XRootD client when iterating in byte-sized steps, which refuses them
            inputs.client()  # installed, with pnn's timeouts
            return uproot.open(path, handler=uproot.source.xrootd.XRootDSource,
                               timeout=inputs.timeout())
        return uproot.open(path)
    except FileNotFoundError:
        raise PnnError(f"ROOT file '{path}' not found: check the sample's files") from None
    except PnnError:
        raise
    except Exception as exc:  # uproot raises many types for a file that is not ROOT
        if isinstance(exc, OSError) and inputs.is_remote(path):
            raise _remote_error(path, exc) from None
        raise PnnError(f"'{path}' cannot be read as a ROOT file ({type(exc).__name__}): check "
                       "that it is one, or copy or produce it again") from None


@contextlib.contextmanager
def _reading(path: str, what: str = "") -> Iterator[None]:
    """Turn uproot's errors for a damaged file into one :class:`PnnError` naming it."""
    try:
        yield
    except PnnError:
        raise
    except READ_ERRORS as exc:
        if isinstance(exc, OSError) and inputs.is_remote(path):
            raise _remote_error(path, exc) from None
        where = f" ({what})" if what else ""
        raise PnnError(f"'{path}' is damaged: its ROOT metadata{where} cannot be read "
                       f"({type(exc).__name__}); copy or produce the file again") from None


@contextlib.contextmanager
def open_files(paths: Iterable[str]) -> Iterator[dict[str, object]]:
    """Open each distinct file once (many samples share a file); close them all at exit."""
    handles: dict[str, object] = {}
    try:
        for path in paths:
            if path not in handles:
                handles[path] = _open(path)
        yield handles
    finally:
        for handle in handles.values():
            handle.close()


def get_tree(handle, path: str, tree: str, branches: Iterable[str]):
    """The TTree or RNTuple ``tree`` of an open file, after checking that it has every branch."""
    with _reading(path, f"tree '{tree}'"):
        if tree not in handle:
            trees = sorted({k.split(";")[0] for k, v in handle.classnames().items()
                            if v in NTUPLE_CLASSES})
            raise PnnError(f"'{path}' has no tree '{tree}': fix the name in the config; "
                           + _suggest(tree, trees, "trees"))
        obj = handle[tree]
        if not isinstance(obj, uproot.behaviors.TTree.TTree) and not is_rntuple(obj):
            raise PnnError(f"'{path}': '{tree}' is a {obj.classname}, not a TTree or RNTuple")
        keys = branch_names(obj)
    missing = sorted(set(branches) - set(keys) - {ENTRY})
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise PnnError(
            f"'{path}' tree '{tree}' has no branch {missing[0]!r}{more}: fix the name in the "
            f"config; {_suggest(missing[0], keys, 'branches')}"
        )
    return obj


def resolve(tree, path: str, names: Iterable[str], attributes: Iterable[str] = ()
            ) -> objects.Reading:
    """What to read from ``tree`` for expressions using ``names``: branches as they are,
    and NanoAOD-style collections (``Muon`` from ``Muon_pt``...) with the fields among
    ``attributes``. A name that is neither is an error suggesting the closest branches."""
    keys = branch_names(tree)
    present = set(keys)
    reading = objects.Reading(set())
    for name in sorted(set(names) - {ENTRY}):
        if name in present:
            reading.branches.add(name)
            continue
        found = objects.find_collection(name, keys, attributes)
        if found is None:
            raise PnnError(
                f"'{path}' tree '{tree.name}' has no branch {name!r} (nor a collection "
                f"{name}_pt/_eta/_phi/_mass or {name}_px/_py/_pz/_e): fix the name in the "
                f"config; {_suggest(name, keys, 'branches')}")
        reading.collections[name] = found
        reading.branches |= found.branches
    if ENTRY in set(names):
        reading.branches.add(ENTRY)
    return reading


def list_trees(handle) -> list[str]:
    """Names of the TTrees and RNTuples at the top of an open file (cycle numbers dropped),
    in file order."""
    with _reading(handle.file_path, "list of keys"):
        return list(dict.fromkeys(k.split(";")[0]
                                  for k, v in handle.classnames(recursive=False).items()
                                  if v in NTUPLE_CLASSES))


def has_branches(handle, tree: str, branches: Iterable[str], attributes: Iterable[str] = ()
                 ) -> bool:
    """Whether ntuple ``tree`` of an open file has every one of ``branches`` (a collection
    name counts when its four-vector branches are there)."""
    with _reading(handle.file_path, f"tree '{tree}'"):
        obj = handle[tree]
        keys = branch_names(obj)
    return all(b in keys or objects.find_collection(b, keys, attributes) is not None
               for b in set(branches) - {ENTRY})


def branch_kinds(tree, branches: Iterable[str]) -> dict[str, str]:
    """What each branch holds: 'flat' (one number), 'array' (fixed size), 'jagged',
    'string', 'lorentz' (``std::vector<TLorentzVector>``), 'lorentz1' (``TLorentzVector``)
    or 'object' (anything else uproot reads only as Python objects)."""
    if is_rntuple(tree):
        return _field_kinds(tree, branches)
    interp = uproot.interpretation
    out = {}
    for name in branches:
        with _reading(tree.file.file_path, f"branch '{name}' of tree '{tree.name}'"):
            it = tree[name].interpretation
            typename = tree[name].typename
        if typename in objects.LORENTZ_TYPES:
            out[name] = objects.LORENTZ_TYPES[typename]
        elif isinstance(it, interp.strings.AsStrings):
            out[name] = "string"
        elif isinstance(it, interp.jagged.AsJagged):
            out[name] = "jagged" if isinstance(it.content, interp.numerical.AsDtype) else "object"
        elif isinstance(it, interp.numerical.AsDtype):
            out[name] = "array" if it.inner_shape else "flat"
        else:
            out[name] = "object"
    return out


def _field_kinds(ntuple, fields: Iterable[str]) -> dict[str, str]:
    """The kinds of :func:`branch_kinds` for top-level RNTuple fields, from their awkward forms."""
    import awkward as ak

    out = {}
    for name in fields:
        with _reading(ntuple.file.file_path, f"field '{name}' of RNTuple '{ntuple.name}'"):
            form = ntuple.to_akform(filter_field=lambda f, n=name: f.path == n)[0].content(name)
        if form.parameter("__array__") in ("string", "bytestring"):
            out[name] = "string"
        elif isinstance(form, ak.forms.NumpyForm):
            out[name] = "array" if form.inner_shape else "flat"
        elif isinstance(form, ak.forms.RegularForm) and isinstance(form.content, ak.forms.NumpyForm):
            out[name] = "array"
        elif isinstance(form, ak.forms.ListOffsetForm | ak.forms.ListForm) and isinstance(
                form.content, ak.forms.NumpyForm):
            out[name] = "jagged"
        else:
            out[name] = "object"
    return out


def sum_branch(trees: list, branch: str) -> float:
    """Sum of ``branch`` over every entry of ``trees`` (e.g. generated weights)."""
    total = 0.0
    for chunk in iterate(trees, [branch]):
        total += float(np.sum(chunk[branch], dtype=np.float64))
    return total


def histogram_bin(handle, path: str, name: str, bin_number: int) -> float:
    """Content of ROOT bin ``bin_number`` (1 = first, 0 = underflow) of a 1D histogram."""
    with _reading(path, f"histogram '{name}'"):
        if name not in handle:
            raise PnnError(f"'{path}' has no histogram '{name}': fix sum_weights.histogram")
        hist = handle[name]
        if not hasattr(hist, "values") or not hist.classname.startswith("TH1"):
            raise PnnError(f"'{path}': '{name}' is a {hist.classname}, not a 1D histogram")
        values = hist.values(flow=True)
    if not 0 <= bin_number < len(values):
        raise PnnError(f"'{path}' histogram '{name}' has no bin {bin_number} "
                       f"(bins 1-{len(values) - 2}, 0 and {len(values) - 1} are the flows)")
    return float(values[bin_number])


def check_tree(path: str, tree: str, branches: Iterable[str]) -> int:
    """Check that ``path`` holds TTree ``tree`` with all ``branches``; return its entries."""
    with open_files([path]) as handles:
        return int(get_tree(handles[path], path, tree, branches).num_entries)


def iterate(trees: list, branches: Iterable[str], step_size: str | int = STEP_SIZE,
            awkward: Iterable[str] = ()) -> Iterator[dict]:
    """Yield chunks of ``branches`` of each tree in turn: NumPy arrays, except the branches
    named in ``awkward`` (jagged or fixed-size arrays), which come as awkward arrays.

    Baskets are decompressed on a small thread pool (zlib, LZMA and ZSTD release the GIL),
    so reading uses both cores of a laptop. A file that breaks while being read (truncated,
    corrupt) is a :class:`PnnError` naming it.
    """
    wanted = set(branches)
    entry = ENTRY in wanted
    names = sorted(wanted - {ENTRY})
    nested = sorted(set(awkward) & set(names))
    executor = uproot.source.futures.ThreadPoolExecutor(min(4, os.cpu_count() or 1))
    try:
        for tree in trees:
            if is_rntuple(tree):
                chunks = tree.iterate(filter_field=lambda f, keep=set(names): f.path in keep,
                                      step_size=step_size, library="ak", report=True)
            else:
                chunks = tree.iterate(names, library="ak" if nested else "np",
                                      step_size=step_size, decompression_executor=executor,
                                      report=True)
            while True:
                try:
                    chunk, report = next(chunks)
                except StopIteration:
                    break
                except PnnError:
                    raise
                except Exception as exc:
                    if isinstance(exc, OSError) and inputs.is_remote(tree.file.file_path):
                        raise _remote_error(tree.file.file_path, exc) from None
                    raise PnnError(f"'{tree.file.file_path}' tree '{tree.name}' cannot be read "
                                   f"({type(exc).__name__}): the file is truncated or corrupt; "
                                   "copy or produce it again") from None
                out = _split(chunk, names, set(nested)) if nested or is_rntuple(tree) else chunk
                if entry:
                    out[ENTRY] = np.arange(report.tree_entry_start, report.tree_entry_stop)
                yield out
    finally:
        executor.shutdown()


def _split(chunk, names: list[str], nested: set[str]) -> dict:
    """Fields of an awkward record chunk: NumPy for flat branches, awkward for the others."""
    import awkward as ak

    out = {}
    for name in names:
        col = chunk[name]
        if name in nested:
            out[name] = col
        else:
            try:
                out[name] = ak.to_numpy(col)
            except (ValueError, TypeError):  # strings and other objects
                out[name] = np.asarray(ak.to_list(col), dtype=object)
    return out


def write_trees(
    path: str | Path,
    trees: Mapping[str, Mapping[str, np.ndarray]],
    chunk_entries: int = 50_000,
) -> None:
    """Write TTrees (one per key) with ``mktree``/``extend``, atomically.

    Columns are NumPy arrays, or awkward records of jagged fields (``Jet`` with fields
    ``pt``, ``eta`` becomes ``nJet``, ``Jet_pt[]``, ``Jet_eta[]``, as in NanoAOD). Writing
    in chunks of ``chunk_entries`` gives baskets of a sensible size that ROOT, TMVA and
    uproot all read.
    """

    def column(v):
        return v if type(v).__module__.startswith("awkward") else np.asarray(v)

    with atomic_path(path) as tmp, uproot.recreate(tmp) as f:
        for name, columns in trees.items():
            cols = {k: column(v) for k, v in columns.items()}
            types = {k: v.dtype if isinstance(v, np.ndarray) else v.type for k, v in cols.items()}
            out = f.mktree(name, types)
            n = len(next(iter(cols.values())))
            for start in range(0, n, chunk_entries):
                out.extend({k: v[start:start + chunk_entries] for k, v in cols.items()})
            log.info("wrote tree %s with %d entries to %s", name, n, path)


def write_chunks(path: str | Path, trees: Mapping[str, Iterable[Mapping[str, np.ndarray]]],
                 rntuples: Iterable[str] = ()) -> dict[str, int]:
    """Write flat TTrees, each from an iterator of column chunks, atomically; return entries.
    The names in ``rntuples`` are written as RNTuples instead (uproot's RNTuple writer).

    Every chunk becomes one basket per branch (one cluster of an RNTuple), so callers hand
    over chunks of tens of thousands of entries. Nothing is left at ``path`` if an iterator
    raises.
    """
    entries: dict[str, int] = {}
    as_rntuple = set(rntuples)
    with atomic_path(path) as tmp, uproot.recreate(tmp) as f:
        for name, chunks in trees.items():
            out = None
            entries[name] = 0
            for chunk in chunks:
                if out is None:
                    types = {k: np.asarray(v).dtype for k, v in chunk.items()}
                    out = f.mkrntuple(name, types) if name in as_rntuple else f.mktree(name, types)
                out.extend({k: np.asarray(v) for k, v in chunk.items()})
                entries[name] += len(next(iter(chunk.values())))
            log.info("wrote %s %s with %d entries to %s",
                     "RNTuple" if name in as_rntuple else "tree", name, entries[name], path)
    return entries
