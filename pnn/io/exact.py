"""The exact likelihood ratio of the embedded toys: the optimum every PNN number is set
against. Which toy wrote a file is read from the manifest beside it."""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd

from pnn.core import inputs, points

MANIFEST = "toy.json"
GENERATORS = ("pnn.io.toy", "pnn.io.toy2d")


def generator_of(path: str | Path) -> str | None:
    """The toy generator that wrote ``path`` (from the manifest beside it), or None."""
    if inputs.is_remote(path):
        return None
    manifest = Path(path).parent / MANIFEST
    if not manifest.is_file():
        return None
    try:
        found = json.loads(manifest.read_text()).get("generator")
    except (OSError, ValueError, AttributeError):
        return None
    return found if found in GENERATORS else None


def common_generator(files: Sequence[str]) -> str | None:
    """The generator of every file when they all come from one toy, else None."""
    found = {generator_of(f) for f in files}
    return found.pop() if len(found) == 1 else None


def _module(generator: str | bool) -> ModuleType:
    name = "pnn.io.toy" if generator is True else str(generator)
    if name not in GENERATORS:
        raise ValueError(f"unknown toy generator {generator!r}")
    return importlib.import_module(name)


def branches(generator: str | bool | None) -> tuple[str, ...]:
    """The branches the likelihood ratio of ``generator`` reads (none without a toy, and
    none for a listed generator this installation does not ship: it wrote no file here)."""
    if not generator:
        return ()
    try:
        module = _module(generator)
    except ModuleNotFoundError as exc:
        if exc.name != str(generator):
            raise
        return ()
    return tuple(module.BRANCHES)


def background_log_density(generator: str | bool, events: pd.DataFrame | dict) -> np.ndarray:
    """log p_b(x) of every event: the part of the likelihood ratio that is the same at every
    point, worth computing once for all of them."""
    return _module(generator).background_logpdf(events)


def log_likelihood_ratio(generator: str | bool, events: pd.DataFrame | dict,
                         point: float | Sequence[float],
                         background: np.ndarray | None = None) -> np.ndarray:
    """log p_s(x | point) / p_b(x) of the toy that wrote the events; ``background``: their
    :func:`background_log_density`, when already known."""
    module = _module(generator)
    p = points.as_point(point)
    arg = p[0] if len(p) == 1 else p
    if background is None:
        return module.log_likelihood_ratio(events, arg)
    return module.signal_logpdf(events, arg) - background
