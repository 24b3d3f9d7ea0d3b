"""The only module that touches ROOT files (through uproot): open, check, read in chunks, write."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
import uproot

from pnn.atomic import atomic_path
from pnn.errors import PnnError

log = logging.getLogger(__name__)

STEP_SIZE = "16 MB"


def _open(path: str):
    try:
        return uproot.open(path)
    except FileNotFoundError:
        raise PnnError(f"ROOT file '{path}' not found: check the sample's files") from None
    except Exception as exc:  # uproot raises many types for a file that is not ROOT
        raise PnnError(f"'{path}' cannot be read as a ROOT file ({type(exc).__name__})") from None


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
    if tree not in handle:
        trees = sorted({k.split(";")[0] for k, v in handle.classnames().items() if v == "TTree"})
        raise PnnError(f"'{path}' has no tree '{tree}': trees there are {trees}")
    obj = handle[tree]
    if not isinstance(obj, uproot.behaviors.TTree.TTree):
        raise PnnError(f"'{path}': '{tree}' is a {obj.classname}, not a TTree")
    missing = sorted(set(branches) - set(obj.keys()))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise PnnError(
            f"'{path}' tree '{tree}' has no branch {missing[0]!r}{more}: fix the name in the "
            f"config; branches there include {sorted(obj.keys())[:12]}"
        )
    return obj


def check_tree(path: str, tree: str, branches: Iterable[str]) -> int:
    """Check that ``path`` holds TTree ``tree`` with all ``branches``; return its entries."""
    with open_files([path]) as handles:
        return int(get_tree(handles[path], path, tree, branches).num_entries)


def iterate(trees: list, branches: Iterable[str], step_size: str | int = STEP_SIZE
            ) -> Iterator[dict[str, np.ndarray]]:
    """Yield chunks of ``branches`` of each tree in turn as NumPy arrays.

    Baskets are decompressed on a small thread pool (zlib, LZMA and ZSTD release the GIL),
    so reading uses both cores of a laptop.
    """
    names = sorted(set(branches))
    executor = uproot.source.futures.ThreadPoolExecutor(min(4, os.cpu_count() or 1))
    try:
        for tree in trees:
            yield from tree.iterate(names, library="np", step_size=step_size,
                                    decompression_executor=executor)
    finally:
        executor.shutdown()


def write_trees(
    path: str | Path,
    trees: Mapping[str, Mapping[str, np.ndarray]],
    chunk_entries: int = 50_000,
) -> None:
    """Write flat TTrees (one per key) with ``mktree``/``extend``, atomically.

    Writing in chunks of ``chunk_entries`` gives baskets of a sensible size that ROOT,
    TMVA and uproot all read.
    """
    with atomic_path(path) as tmp, uproot.recreate(tmp) as f:
        for name, columns in trees.items():
            types = {k: np.asarray(v).dtype for k, v in columns.items()}
            out = f.mktree(name, types)
            n = len(next(iter(columns.values())))
            for start in range(0, n, chunk_entries):
                out.extend({k: np.asarray(v)[start:start + chunk_entries]
                            for k, v in columns.items()})
            log.info("wrote tree %s with %d entries to %s", name, n, path)
