"""Safe expressions over branches: selections, weights and derived features.

An expression is parsed with :mod:`ast` and only arithmetic, comparisons, boolean logic,
whitelisted NumPy math functions, numeric constants and constant indexing are allowed.
Anything else (attribute access, lambdas, strings, imports, ...) is refused, never evaluated.

Object collections (jagged branches such as ``Jet_pt``, read as awkward arrays) are reduced
to one number per event with awkward, never with Python loops:

* ``Jet_pt[k]``: the k-th object (k >= 0), the configured fill value when there is none;
* ``at(Jet_pt, k, fill)``: the same with an explicit fill value;
* ``count(Jet_pt)``: the number of objects; ``sum(x)``, ``mean(x)``, ``max(x)``, ``min(x)``
  over the objects (0 for an empty event; ``mean``/``max``/``min`` then give the fill value).

Element-wise arithmetic and functions work on whole collections before a reduction, e.g.
``sum(Jet_pt * (abs(Jet_eta) < 2.5))`` or ``count(Jet_pt) - sum(Jet_btag > 0.5)``.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np

from pnn.core.errors import PnnError

FUNCTIONS: dict[str, Any] = {
    name: getattr(np, name)
    for name in (
        "sqrt", "abs", "exp", "log", "log10", "log1p", "sin", "cos", "tan", "arcsin", "arccos",
        "arctan", "arctan2", "sinh", "cosh", "tanh", "arcsinh", "arccosh", "arctanh", "hypot",
        "minimum", "maximum", "where", "floor", "ceil", "round", "sign", "isfinite", "clip",
    )
}
FUNCTIONS["pi"] = np.pi
REDUCERS = ("at", "count", "sum", "mean", "max", "min")

_BINOPS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow, ast.BitAnd: operator.and_, ast.BitOr: operator.or_,
    ast.BitXor: operator.xor,
}
_CMPOPS = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
}


def _refuse(expr: str, what: str) -> PnnError:
    return PnnError(
        f"expression '{expr}': {what} is not allowed; use branches, numbers, arithmetic, "
        f"comparisons, and/or/not and the functions {', '.join(sorted(FUNCTIONS))}"
    )


@lru_cache(maxsize=256)
def parse(expr: str) -> ast.Expression:
    """Parse and check ``expr``; raise :class:`PnnError` for anything outside the grammar."""
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError:
        raise PnnError(f"expression '{expr}' is not valid syntax: check brackets and operators") from None
    allowed = (
        ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.Call, ast.Name,
        ast.Constant, ast.Subscript, ast.Load, ast.operator, ast.unaryop, ast.boolop, ast.cmpop,
    )
    for node in ast.walk(tree):
        if not isinstance(node, allowed):
            raise _refuse(expr, type(node).__name__)
        if isinstance(node, ast.Constant) and not isinstance(node.value, int | float | bool):
            raise _refuse(expr, f"the constant {node.value!r}")
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in (*FUNCTIONS, *REDUCERS):
                raise _refuse(expr, f"calling '{ast.unparse(node.func)}'")
            _check_reducer(expr, node)
            if node.keywords:
                raise _refuse(expr, "a keyword argument")
        if isinstance(node, ast.Subscript) and not (
                isinstance(node.slice, ast.Constant) and type(node.slice.value) is int
                and node.slice.value >= 0):
            raise _refuse(expr, "indexing with anything but a non-negative integer")
        if isinstance(node, ast.BinOp) and type(node.op) not in _BINOPS:
            raise _refuse(expr, f"the operator {type(node.op).__name__}")
    return tree


def _check_reducer(expr: str, node: ast.Call) -> None:
    name = node.func.id  # type: ignore[attr-defined]
    if name not in REDUCERS:
        return
    if name == "at":
        ok = (len(node.args) == 3 and isinstance(node.args[1], ast.Constant)
              and type(node.args[1].value) is int and node.args[1].value >= 0
              and _is_number(node.args[2]))
        if not ok:
            raise PnnError(f"expression '{expr}': write at(collection, k, fill) with an integer "
                           "k >= 0 and a number fill")
    elif len(node.args) != 1:
        raise PnnError(f"expression '{expr}': {name}() takes one collection, e.g. {name}(Jet_pt)")


def _is_number(node: ast.AST) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        node = node.operand
    return isinstance(node, ast.Constant) and type(node.value) in (int, float)


def unreduced(expr: str, collections: set[str]) -> str | None:
    """The first of ``collections`` (branches with several values per event) that ``expr``
    uses without reducing it to one number per event, or None if every use is reduced."""

    def walk(node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            return node.id if node.id in collections else None
        if isinstance(node, ast.Subscript):
            return None
        if isinstance(node, ast.Call) and node.func.id in REDUCERS:  # type: ignore[attr-defined]
            return None
        for child in ast.iter_child_nodes(node):
            if isinstance(node, ast.Call) and child is node.func:
                continue
            found = walk(child)
            if found:
                return found
        return None

    return walk(parse(expr).body)


def branches(expr: str) -> set[str]:
    """Branch names that ``expr`` reads (names that are not functions)."""
    called = set()
    names = set()
    for node in ast.walk(parse(expr)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            called.add(id(node.func))
        elif isinstance(node, ast.Name):
            names.add((node.id, id(node)))
    return {name for name, ident in names if ident not in called and name not in FUNCTIONS}


def evaluate(expr: str, arrays: Mapping[str, Any], fill: float = 0.0) -> Any:
    """Evaluate ``expr`` with branch names bound to the arrays in ``arrays``; ``fill`` is the
    value of ``x[k]`` for events without a k-th object."""
    return _Evaluator(arrays, expr, fill).eval(parse(expr).body)


def _kth(value: Any, k: int, fill: float, expr: str) -> Any:
    """The k-th entry of every event: a column of a 2D array, or of a padded collection."""
    if isinstance(value, np.ndarray):
        if value.ndim != 2:
            raise PnnError(f"expression '{expr}': indexing a branch with one value per event")
        if k >= value.shape[1]:
            raise PnnError(f"expression '{expr}': index {k} is past the {value.shape[1]} "
                           "entries of the array branch")
        return value[:, k]
    import awkward as ak

    if value.ndim < 2:
        raise PnnError(f"expression '{expr}': indexing a branch with one value per event")
    if value.ndim == 2:  # numbers per object: pick from the flat content by offsets
        counts = ak.to_numpy(ak.num(value, axis=1))
        flat = ak.to_numpy(ak.flatten(value, axis=1))
        has = counts > k
        out = np.full(len(counts), fill, dtype=np.result_type(flat.dtype, np.float64))
        out[has] = flat[(np.cumsum(counts) - counts)[has] + k]
        return out
    picked = ak.fill_none(ak.pad_none(value, k + 1, axis=1)[:, k], fill)
    return ak.to_numpy(picked)


def _reduce(name: str, value: Any, fill: float) -> Any:
    """count/sum/mean/max/min over the objects of every event, with awkward."""
    import awkward as ak

    if isinstance(value, np.ndarray) and value.ndim == 2:
        value = ak.from_numpy(value, regulararray=True)
    elif not isinstance(value, ak.Array):
        value = ak.Array(np.asarray(value)[:, None])  # a number per event: one object each
    if name == "count":
        out = ak.num(value, axis=1)
    elif name == "sum":
        out = ak.sum(value, axis=1)
    else:
        out = ak.fill_none(getattr(ak, name)(value, axis=1), fill)
        if name == "mean":  # an empty event has mean NaN, not None
            return np.where(ak.to_numpy(ak.num(value, axis=1)) == 0, fill, ak.to_numpy(out))
    return ak.to_numpy(out)


class _Evaluator:
    def __init__(self, arrays: Mapping[str, Any], expr: str, fill: float) -> None:
        self.arrays, self.expr, self.fill = arrays, expr, fill

    def eval(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Call) and node.func.id in REDUCERS:  # type: ignore[attr-defined]
            name = node.func.id  # type: ignore[attr-defined]
            value = self.eval(node.args[0])
            if name == "at":
                fill = float(ast.literal_eval(node.args[2]))
                return _kth(value, node.args[1].value, fill, self.expr)  # type: ignore[attr-defined]
            return _reduce(name, value, self.fill)
        if isinstance(node, ast.Subscript):
            return _kth(self.eval(node.value), node.slice.value, self.fill,  # type: ignore[attr-defined]
                        self.expr)
        return _eval(node, self.arrays, self.expr, self.eval)


def _eval(node: ast.AST, arrays: Mapping[str, Any], expr: str, sub: Any) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in arrays:
            return arrays[node.id]
        if node.id in FUNCTIONS and not callable(FUNCTIONS[node.id]):
            return FUNCTIONS[node.id]
        raise PnnError(f"expression '{expr}': unknown branch '{node.id}'")
    if isinstance(node, ast.BinOp):
        return _BINOPS[type(node.op)](sub(node.left), sub(node.right))
    if isinstance(node, ast.UnaryOp):
        value = sub(node.operand)
        if isinstance(node.op, ast.Not | ast.Invert):
            return np.logical_not(value)
        return -value if isinstance(node.op, ast.USub) else +value
    if isinstance(node, ast.BoolOp):
        values = [sub(v) for v in node.values]
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        out = values[0]
        for v in values[1:]:
            out = combine(out, v)
        return out
    if isinstance(node, ast.Compare):
        left = sub(node.left)
        out = None
        for op, comp in zip(node.ops, node.comparators, strict=True):
            right = sub(comp)
            if type(op) not in _CMPOPS:
                raise _refuse(expr, f"the comparison {type(op).__name__}")
            part = _CMPOPS[type(op)](left, right)
            out = part if out is None else np.logical_and(out, part)
            left = right
        return out
    if isinstance(node, ast.Call):
        func = FUNCTIONS[node.func.id]  # type: ignore[attr-defined]
        return func(*(sub(a) for a in node.args))
    raise _refuse(expr, type(node).__name__)
