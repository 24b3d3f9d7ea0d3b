"""The only module that touches ROOT files (through uproot): check, read in chunks, write trees."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
import uproot

from pnn.atomic import atomic_path
from pnn.errors import PnnError

log = logging.getLogger(__name__)

STEP_SIZE = "64 MB"


def _open(path: str):
    try:
        return uproot.open(path)
    except FileNotFoundError:
        raise PnnError(f"ROOT file '{path}' not found: check the sample's files") from None
    except Exception as exc:  # uproot raises many types for a file that is not ROOT
        raise PnnError(f"'{path}' cannot be read as a ROOT file ({type(exc).__name__})") from None


def check_tree(path: str, tree: str, branches: Iterable[str]) -> int:
    """Check that ``path`` holds TTree ``tree`` with all ``branches``; return its entries."""
    with _open(path) as f:
        if tree not in f:
            trees = sorted({k.split(";")[0] for k, v in f.classnames().items() if v == "TTree"})
            raise PnnError(f"'{path}' has no tree '{tree}': trees there are {trees}")
        obj = f[tree]
        if not isinstance(obj, uproot.behaviors.TTree.TTree):
            raise PnnError(f"'{path}': '{tree}' is a {obj.classname}, not a TTree")
        missing = sorted(set(branches) - set(obj.keys()))
        if missing:
            raise PnnError(
                f"'{path}' tree '{tree}' has no branch {missing[0]!r}"
                f"{' (and ' + str(len(missing) - 1) + ' more)' if len(missing) > 1 else ''}: "
                "fix the name in the config; branches there include "
                f"{sorted(obj.keys())[:12]}"
            )
        return int(obj.num_entries)


def iterate(
    files: list[str], tree: str, branches: Iterable[str], step_size: str | int = STEP_SIZE
) -> Iterator[dict[str, np.ndarray]]:
    """Yield chunks of ``branches`` from ``tree`` in ``files`` as NumPy arrays."""
    names = sorted(set(branches))
    yield from uproot.iterate(
        {f: tree for f in files}, expressions=names, library="np", step_size=step_size
    )


def write_trees(
    path: str | Path,
    trees: Mapping[str, Mapping[str, np.ndarray]],
    chunk_entries: int = 200_000,
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
