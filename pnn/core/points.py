"""Signal parameter points: one value per parameter (the mass alone, or e.g. (m_X, m_Y)).

A point is a tuple of floats in the order of the config's ``parameters``. These helpers
name points (folders, score branches, make targets), select the events of a point, and tell
interpolation from extrapolation: inside the trained range in one dimension, inside the
convex hull of the trained points in more (an irregular grid's bounding box is not its hull).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import numpy as np

from pnn.core.errors import PnnError

log = logging.getLogger(__name__)

Point = tuple[float, ...]
TOLERANCE = 1e-3  # parameters are floats: values this close are the same point
MASS = "mass"  # the one parameter of a one-parameter search


def as_point(value: float | Sequence[float]) -> Point:
    """A point from a number (one parameter) or a sequence of numbers."""
    if isinstance(value, int | float | np.floating | np.integer):
        return (float(value),)
    return tuple(float(v) for v in value)


def matrix(values: np.ndarray | Sequence, n: int | None = None) -> np.ndarray:
    """Parameter values as an (events, parameters) float array; a 1-D array is one parameter."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if n is not None and arr.shape[1] != n:
        raise ValueError(f"expected {n} parameter columns, got {arr.shape[1]}")
    return arr


def mask(values: np.ndarray, point: float | Sequence[float]) -> np.ndarray:
    """Events whose parameters equal ``point`` within :data:`TOLERANCE` (NaN never matches)."""
    p = np.asarray(as_point(point))
    arr = matrix(values, len(p))
    return np.all(np.abs(arr - p) < TOLERANCE, axis=1)


def unique(values: np.ndarray) -> list[Point]:
    """The distinct finite points among the rows of ``values``, sorted."""
    arr = matrix(values)
    arr = arr[np.all(np.isfinite(arr), axis=1)]
    kept: list[np.ndarray] = []
    for row in np.unique(arr, axis=0):  # sorted; values within TOLERANCE are one point
        if not any(np.all(np.abs(row - k) < TOLERANCE) for k in kept):
            kept.append(row)
    return [tuple(float(v) for v in row) for row in kept]


def index(values: np.ndarray, points: Sequence[Point]) -> np.ndarray:
    """For every row, the index of its point in ``points`` (-1 for none)."""
    arr = matrix(values)
    out = np.full(len(arr), -1, dtype=np.int64)
    for i, p in enumerate(points):
        out[mask(arr, p)] = i
    return out


def _number(v: float) -> str:
    return f"{v:g}".replace("+", "")


def label(names: Sequence[str], point: Point) -> str:
    """A plain name for files, folders and make targets: ``m500`` for the mass alone,
    ``mX1000_mY300`` for several parameters (names then values, joined by '_')."""
    if list(names) == [MASS]:
        return f"m{_number(point[0])}"
    return "_".join(f"{n}{_number(v)}" for n, v in zip(names, point, strict=True))


def branch_label(names: Sequence[str], point: Point) -> str:
    """``label`` with '.' as 'p' and '-' as 'm', safe inside a branch name."""
    return label(names, point).replace(".", "p").replace("-", "m")


def describe(names: Sequence[str], point: Point, unit: str = "GeV") -> str:
    """Human text: ``m = 500 GeV`` or ``mX = 1000, mY = 300 GeV``."""
    if list(names) == [MASS]:
        return f"m = {point[0]:g} {unit}"
    return ", ".join(f"{n} = {v:g}" for n, v in zip(names, point, strict=True)) + f" {unit}"


def phrase(names: Sequence[str], point: Point, unit: str = "GeV") -> str:
    """For messages: ``mass 500 GeV`` or ``point mX = 1000, mY = 300 GeV``."""
    if len(names) == 1:
        return f"{names[0]} {point[0]:g} {unit}"
    return "point " + describe(names, point, unit)


def as_dict(names: Sequence[str], point: Point) -> dict[str, float]:
    return {n: float(v) for n, v in zip(names, point, strict=True)}


def parse(text: str, names: Sequence[str]) -> Point:
    """A point from the command line: ``500`` (one parameter), ``1000,300`` in the order of
    the parameters, ``mX=1000,mY=300`` by name, or its folder name (``m500``,
    ``mX1000_mY300``, as make targets give it)."""
    named = from_label(str(text).strip(), names)
    if named is not None and all(np.isfinite(named)):
        return named
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    example = ",".join(f"{n}=..." for n in names)
    if len(parts) != len(names):
        raise PnnError(f"point '{text}' has {len(parts)} value(s) for the parameters "
                       f"{', '.join(names)}: give one each, e.g. {example}")
    values: dict[str, float] = {}
    for i, part in enumerate(parts):
        key, sep, val = part.partition("=")
        name = key.strip() if sep else names[i]
        if name not in names:
            raise PnnError(f"point '{text}': no parameter '{name}': use {', '.join(names)}")
        try:
            values[name] = float(val if sep else key)
        except ValueError:
            raise PnnError(f"point '{text}': '{part}' is not a number: e.g. {example}") from None
        if not np.isfinite(values[name]):
            raise PnnError(f"point '{text}': {name} must be a finite number")
    missing = [n for n in names if n not in values]
    if missing:
        raise PnnError(f"point '{text}' gives no value for '{missing[0]}': e.g. {example}")
    return tuple(values[n] for n in names)


_LABEL = re.compile(r"(?P<name>[A-Za-z_][A-Za-z_]*?)(?P<value>-?[0-9][0-9.eE+-]*)")


def from_label(text: str, names: Sequence[str]) -> Point | None:
    """The point that :func:`label` named ``text``, or None when it is not one."""
    if list(names) == [MASS]:
        m = re.fullmatch(r"m(-?[0-9][0-9.eE+-]*)", text)
        try:
            return (float(m.group(1)),) if m else None
        except ValueError:
            return None
    parts = text.split("_")
    if len(parts) != len(names):
        return None
    out = []
    for name, part in zip(names, parts, strict=True):
        if not part.startswith(name):
            return None
        try:
            out.append(float(part[len(name):]))
        except ValueError:
            return None
    return tuple(out)


def outside(points: Sequence[Point], trained: Sequence[Point]) -> list[Point]:
    """The ``points`` that are extrapolation from ``trained``: outside the trained range
    (one parameter) or outside the convex hull of the trained points (several)."""
    if not points:
        return []
    tr = np.asarray(trained, dtype=np.float64)
    if tr.ndim == 1:
        tr = tr[:, None]
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim == 1:
        pts = pts[:, None]
    if len(tr) == 0:
        return [tuple(p) for p in points]
    lo, hi = tr.min(axis=0), tr.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    inside = np.all((pts >= lo - 1e-6 * span) & (pts <= hi + 1e-6 * span), axis=1)
    if tr.shape[1] > 1 and inside.any():
        inside &= _in_hull((pts - lo) / span, (tr - lo) / span)
    return [tuple(float(v) for v in p) for p, ok in zip(pts, inside, strict=True) if not ok]


def _in_hull(pts: np.ndarray, trained: np.ndarray) -> np.ndarray:
    """Points inside the convex hull of ``trained`` (both scaled to the unit box); a grid
    that spans no volume (all on a line) holds only points on its segments."""
    from scipy.spatial import Delaunay, QhullError

    try:
        hull = Delaunay(trained)
    except QhullError:
        return _on_line(pts, trained)
    # A point a hair outside a facet (rounding) still counts as inside.
    inside = hull.find_simplex(pts, tol=1e-9) >= 0
    return inside


def _on_line(pts: np.ndarray, trained: np.ndarray) -> np.ndarray:
    """Degenerate grid (collinear points): inside when on the segment they span."""
    a = trained.min(axis=0)
    centred = trained - trained.mean(axis=0)
    direction = np.linalg.svd(centred, full_matrices=False)[2][0]
    t = (trained - a) @ direction
    tp = (pts - a) @ direction
    off = np.linalg.norm((pts - a) - np.outer(tp, direction), axis=1)
    return (off < 1e-6) & (tp >= t.min() - 1e-9) & (tp <= t.max() + 1e-9)


def requested(names: Sequence[str], masses: Sequence[float], texts: Sequence[str]) -> list[Point]:
    """The points of the ``--mass`` (a lone mass only) and ``--point`` options."""
    if masses and len(names) > 1:
        raise PnnError(f"--mass is for a lone mass; the parameters are {', '.join(names)}: use "
                       "--point " + ",".join(f"{n}=..." for n in names))
    bad = [m for m in masses if not np.isfinite(m)]
    if bad:
        raise PnnError(f"--mass {bad[0]} is not a finite number: give mass hypotheses in GeV, "
                       "e.g. --mass 750")
    return [(float(m),) for m in masses] + [parse(t, names) for t in texts]


def check_trained(names: Sequence[str], wanted: Sequence[Point], trained: Sequence[Point],
                  allow_extrapolation: bool, action: str) -> None:
    """Refuse hypotheses outside the trained range (one parameter) or the convex hull of the
    trained points (several; their bounding box is not enough) unless ``allow_extrapolation``,
    then warn about each. ``action`` ends the message: 'evaluate', 'score', ..."""
    if not trained:
        return
    out = outside(wanted, trained)
    tr = np.asarray(trained, dtype=np.float64).reshape(len(trained), -1)
    lo, hi = tr.min(axis=0), tr.max(axis=0)
    if len(names) == 1:
        what = [f"mass {p[0]:g} GeV is outside the trained range {lo[0]:g}-{hi[0]:g} GeV"
                for p in out]
    else:
        box = ", ".join(f"{n} {a:g}-{b:g}" for n, a, b in zip(names, lo, hi, strict=True))
        what = [f"point {describe(names, p)} is outside the convex hull of the {len(tr)} "
                f"trained points ({box} GeV)" for p in out]
    if what and not allow_extrapolation:
        raise PnnError(f"{what[0]}: the network was never shown it; pass --allow-extrapolation "
                       f"to {action} anyway")
    for line in what:
        log.warning("%s: an extrapolation the network was never shown", line)


def interior(trained: list) -> list:
    """The trained points that a hold-out can test, as given (masses or tuples): with one
    parameter the masses with a trained neighbour on each side (``trained`` sorted); with
    several, the points not outside the convex hull of the others (inside it, or on its
    boundary between two of them)."""
    pts = [as_point(m) for m in trained]
    if all(len(p) == 1 for p in pts):
        return list(trained[1:-1])
    return [m for i, m in enumerate(trained) if not outside([pts[i]], pts[:i] + pts[i + 1:])]
