"""The only module that touches ROOT files (through uproot): open, check, read in chunks, write."""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import zlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
import uproot

from pnn.core import inputs
from pnn.core.atomic import atomic_path
from pnn.core.errors import PnnError

log = logging.getLogger(__name__)

STEP_SIZE = "16 MB"
# What uproot raises when a file's header, streamers, keys or baskets are damaged.
READ_ERRORS = (uproot.deserialization.DeserializationError, OSError, ValueError, KeyError,
               IndexError, TypeError, NotImplementedError, UnicodeError, EOFError, struct.error,
               zlib.error)
ENTRY = "_entry"  # pseudo-branch: the entry number inside its tree, for files without one


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
    """The TTree ``tree`` of an open file, after checking that it has every branch."""
    with _reading(path, f"tree '{tree}'"):
        if tree not in handle:
            trees = sorted({k.split(";")[0] for k, v in handle.classnames().items()
                            if v == "TTree"})
            raise PnnError(f"'{path}' has no tree '{tree}': trees there are {trees}")
        obj = handle[tree]
        if not isinstance(obj, uproot.behaviors.TTree.TTree):
            raise PnnError(f"'{path}': '{tree}' is a {obj.classname}, not a TTree")
        keys = set(obj.keys())
    missing = sorted(set(branches) - keys - {ENTRY})
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise PnnError(
            f"'{path}' tree '{tree}' has no branch {missing[0]!r}{more}: fix the name in the "
            f"config; branches there include {sorted(keys)[:12]}"
        )
    return obj


def list_trees(handle) -> list[str]:
    """Names of the TTrees at the top of an open file (cycle numbers dropped), in file order."""
    with _reading(handle.file_path, "list of keys"):
        return list(dict.fromkeys(k.split(";")[0]
                                  for k, v in handle.classnames(recursive=False).items()
                                  if v == "TTree"))


def has_branches(handle, tree: str, branches: Iterable[str]) -> bool:
    """Whether TTree ``tree`` of an open file has every one of ``branches``."""
    with _reading(handle.file_path, f"tree '{tree}'"):
        return set(branches) - {ENTRY} <= set(handle[tree].keys())


def branch_kinds(tree, branches: Iterable[str]) -> dict[str, str]:
    """What each branch holds: 'flat' (one number), 'array' (fixed size), 'jagged',
    'string' or 'object' (anything else uproot reads only as Python objects)."""
    interp = uproot.interpretation
    out = {}
    for name in branches:
        with _reading(tree.file.file_path, f"branch '{name}' of tree '{tree.name}'"):
            it = tree[name].interpretation
        if isinstance(it, interp.strings.AsStrings):
            out[name] = "string"
        elif isinstance(it, interp.jagged.AsJagged):
            out[name] = "jagged" if isinstance(it.content, interp.numerical.AsDtype) else "object"
        elif isinstance(it, interp.numerical.AsDtype):
            out[name] = "array" if it.inner_shape else "flat"
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
            chunks = tree.iterate(names, library="ak" if nested else "np", step_size=step_size,
                                  decompression_executor=executor, report=True)
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
                out = _split(chunk, names, set(nested)) if nested else chunk
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


def write_chunks(path: str | Path, trees: Mapping[str, Iterable[Mapping[str, np.ndarray]]]) -> dict[str, int]:
    """Write flat TTrees, each from an iterator of column chunks, atomically; return entries.

    Every chunk becomes one basket per branch, so callers hand over chunks of tens of
    thousands of entries. Nothing is left at ``path`` if an iterator raises.
    """
    entries: dict[str, int] = {}
    with atomic_path(path) as tmp, uproot.recreate(tmp) as f:
        for name, chunks in trees.items():
            out = None
            entries[name] = 0
            for chunk in chunks:
                if out is None:
                    out = f.mktree(name, {k: np.asarray(v).dtype for k, v in chunk.items()})
                out.extend({k: np.asarray(v) for k, v in chunk.items()})
                entries[name] += len(next(iter(chunk.values())))
            log.info("wrote tree %s with %d entries to %s", name, entries[name], path)
    return entries
