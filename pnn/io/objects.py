"""Physics objects as four-vectors (the ``vector`` library) over awkward arrays.

Two kinds of input become arrays of ``Momentum4D`` records:

* branches of ``TLorentzVector`` or ``std::vector<TLorentzVector>``;
* NanoAOD-style collections: flat jagged branches sharing a prefix that make up a
  four-vector (``Muon_pt``/``_eta``/``_phi``/``_mass`` or ``Muon_Px``/``_Py``/``_Pz``/``_E``,
  the coordinate names matched case-insensitively; pt/eta/phi/mass wins when both exist),
  addressed as one collection ``Muon`` with the other branches of the prefix as its fields.

Coordinates are taken in double precision, so the same objects stored either way give the
same numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pnn.core.errors import PnnError

# Attributes every four-vector answers (computed by ``vector``), and the methods allowed on it.
ATTRIBUTES = ("pt", "eta", "phi", "mass", "E", "px", "py", "pz", "rapidity")
METHODS = ("deltaR", "deltaphi", "deltaeta")
# Coordinate systems of a collection, in order of preference: branch suffix -> vector name.
COORDINATES = (
    {"pt": "pt", "eta": "eta", "phi": "phi", "mass": "mass"},
    {"px": "px", "py": "py", "pz": "pz", "e": "E"},
)
LORENTZ_TYPES = {"TLorentzVector": "lorentz1", "std::vector<TLorentzVector>": "lorentz"}


@dataclass(frozen=True)
class Collection:
    """Branches that make up collection ``name``: coordinates and further fields."""

    name: str
    coordinates: dict[str, str]  # vector coordinate name -> branch
    fields: dict[str, str]  # field name (branch suffix) -> branch, those the expressions use
    available: tuple[str, ...] = ()  # every field the collection has (for messages)

    @property
    def branches(self) -> set[str]:
        return set(self.coordinates.values()) | set(self.fields.values())


@dataclass
class Reading:
    """How the names of some expressions map onto one tree: the branches to read, the
    object branches to turn into four-vectors and the collections to assemble."""

    branches: set[str]
    collections: dict[str, Collection] = field(default_factory=dict)
    lorentz: set[str] = field(default_factory=set)


def find_collection(name: str, keys: Iterable[str], attributes: Iterable[str]) -> Collection | None:
    """The collection ``name`` made of branches ``<name>_<coordinate>`` among ``keys``, with
    the fields among ``attributes`` that it has as branches; None if it has no four-vector."""
    prefix = name + "_"
    by_suffix: dict[str, str] = {}
    for key in keys:
        if key.startswith(prefix) and len(key) > len(prefix):
            by_suffix.setdefault(key[len(prefix):].lower(), key)
    for system in COORDINATES:
        if all(s in by_suffix for s in system):
            coords = {v: by_suffix[s] for s, v in system.items()}
            fixed = {a.lower() for a in ATTRIBUTES} | set(system)
            fields = {by_suffix[a.lower()][len(prefix):]: by_suffix[a.lower()]
                      for a in attributes if a.lower() in by_suffix and a.lower() not in fixed}
            available = tuple(b[len(prefix):] for s, b in by_suffix.items() if s not in fixed)
            return Collection(name, coords, fields, available)
    return None


def check_fields(spec: Collection, attributes: Iterable[str], where: str) -> None:
    """Every attribute taken of collection ``spec`` is a four-vector one or one of its fields."""
    known = {a.lower() for a in (*ATTRIBUTES, *spec.available)}
    for name in sorted(attributes):
        if name.lower() not in known:
            raise PnnError(f"{where}: objects of collection '{spec.name}' have no attribute "
                           f"'{name}': use one of {', '.join((*ATTRIBUTES, *spec.available))}")


def _behaviour():
    import vector

    return vector


def lorentz(value: Any) -> Any:
    """``TLorentzVector`` records as read by uproot (``fP.fX``, ..., ``fE``) -> Momentum4D."""
    import awkward as ak

    vector = _behaviour()
    p = value["fP"]
    return vector.zip({"px": ak.values_astype(p["fX"], np.float64),
                       "py": ak.values_astype(p["fY"], np.float64),
                       "pz": ak.values_astype(p["fZ"], np.float64),
                       "E": ak.values_astype(value["fE"], np.float64)})


def collection(chunk: Mapping[str, Any], spec: Collection) -> Any:
    """The Momentum4D records of collection ``spec`` from the branch arrays of one chunk."""
    import awkward as ak

    vector = _behaviour()
    parts = {v: ak.values_astype(chunk[b], np.float64) for v, b in spec.coordinates.items()}
    parts.update({f: chunk[b] for f, b in spec.fields.items()})
    try:
        return vector.zip(parts)
    except ValueError:
        raise PnnError(f"the branches of collection '{spec.name}' "
                       f"({', '.join(sorted(spec.branches))}) do not hold the same number of "
                       "objects in every event: they cannot form one collection") from None


def assemble(chunk: dict[str, Any], reading: Reading) -> dict[str, Any]:
    """The chunk with its object branches as four-vectors and its collections added."""
    for name in reading.lorentz:
        if name in chunk:
            chunk[name] = lorentz(chunk[name])
    for name, spec in reading.collections.items():
        chunk[name] = collection(chunk, spec)
    return chunk


def is_object(value: Any) -> bool:
    """Whether ``value`` is an awkward array of records (objects, four-vectors)."""
    import awkward as ak

    return isinstance(value, ak.Array) and bool(ak.fields(value))


def kth(value: Any, k: int) -> Any:
    """The k-th object of every event, with NaN in every field when there is none (never a
    zero vector, which would give a wrong invariant mass)."""
    import awkward as ak

    columns = {}
    for name in ak.fields(value):
        padded = ak.pad_none(value[name], k + 1, axis=1)[:, k]
        columns[name] = ak.to_numpy(ak.fill_none(ak.values_astype(padded, np.float64), np.nan))
    record = value.layout.content.parameter("__record__") if hasattr(value.layout, "content") \
        else None
    return ak.zip(columns, with_name=record, behavior=value.behavior)


def attribute(value: Any, name: str, where: str) -> Any:
    """Attribute ``name`` of objects: a four-vector quantity (from the allow-list) or a field
    of the collection, found case-insensitively. Never a Python attribute lookup otherwise."""
    import awkward as ak

    if not is_object(value):
        raise PnnError(f"{where}: '.{name}' needs an object (a four-vector branch or a collection "
                       "such as Muon): this value is a plain number")
    fields = list(ak.fields(value))
    coordinates = {"x", "y", "z", "t", "rho", "phi", "eta", "tau"}
    own = [f for f in fields if f not in coordinates]
    four = _is_four_vector(value)
    if name in ATTRIBUTES and four:
        out = getattr(value, name)
    else:
        match = [f for f in own if f == name] or [f for f in own if f.lower() == name.lower()]
        if not match:
            allowed = (list(ATTRIBUTES) if four else []) + own
            raise PnnError(f"{where}: objects have no attribute '{name}': use one of "
                           f"{', '.join(allowed)}")
        out = value[match[0]]
    return numbers(out)


def method(value: Any, name: str, other: Any, where: str) -> Any:
    """``value.<name>(other)`` for a method of the allow-list, both four-vectors."""
    if not (is_object(value) and _is_four_vector(value)
            and is_object(other) and _is_four_vector(other)):
        raise PnnError(f"{where}: .{name}() takes two four-vectors, e.g. "
                       f"Muon[0].{name}(Muon[1])")
    return numbers(getattr(value, name)(other))


def numbers(value: Any) -> Any:
    """One number per event as a NumPy array; anything with more structure as it is."""
    import awkward as ak

    if isinstance(value, ak.Array) and value.ndim == 1 and not ak.fields(value):
        return ak.to_numpy(value)
    return value


def _is_four_vector(value: Any) -> bool:
    layout = value.layout
    while hasattr(layout, "content") and not layout.parameter("__record__"):
        layout = layout.content
    return layout.parameter("__record__") in ("Momentum4D", "Vector4D", "Lorentz")
