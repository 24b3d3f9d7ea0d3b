"""Safe expressions over branches: selections, weights and derived features.

An expression is parsed with :mod:`ast` and only arithmetic, comparisons, boolean logic,
whitelisted NumPy math functions, numeric constants and constant indexing are allowed.
Anything else (attribute access, lambdas, strings, imports, ...) is refused, never evaluated.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np

from pnn.errors import PnnError

FUNCTIONS: dict[str, Any] = {
    name: getattr(np, name)
    for name in (
        "sqrt", "abs", "exp", "log", "log10", "log1p", "sin", "cos", "tan", "arcsin", "arccos",
        "arctan", "arctan2", "sinh", "cosh", "tanh", "arcsinh", "arccosh", "arctanh", "hypot",
        "minimum", "maximum", "where", "floor", "ceil", "round", "sign", "isfinite", "clip",
    )
}
FUNCTIONS["pi"] = np.pi

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
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                raise _refuse(expr, f"calling '{ast.unparse(node.func)}'")
            if node.keywords:
                raise _refuse(expr, "a keyword argument")
        if isinstance(node, ast.Subscript) and not isinstance(node.slice, ast.Constant):
            raise _refuse(expr, "indexing with anything but an integer")
        if isinstance(node, ast.BinOp) and type(node.op) not in _BINOPS:
            raise _refuse(expr, f"the operator {type(node.op).__name__}")
    return tree


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


def evaluate(expr: str, arrays: Mapping[str, Any]) -> Any:
    """Evaluate ``expr`` with branch names bound to the arrays in ``arrays``."""
    return _eval(parse(expr).body, arrays, expr)


def _eval(node: ast.AST, arrays: Mapping[str, Any], expr: str) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in arrays:
            return arrays[node.id]
        if node.id in FUNCTIONS and not callable(FUNCTIONS[node.id]):
            return FUNCTIONS[node.id]
        raise PnnError(f"expression '{expr}': unknown branch '{node.id}'")
    if isinstance(node, ast.BinOp):
        return _BINOPS[type(node.op)](_eval(node.left, arrays, expr), _eval(node.right, arrays, expr))
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, arrays, expr)
        if isinstance(node.op, ast.Not | ast.Invert):
            return np.logical_not(value)
        return -value if isinstance(node.op, ast.USub) else +value
    if isinstance(node, ast.BoolOp):
        values = [_eval(v, arrays, expr) for v in node.values]
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        out = values[0]
        for v in values[1:]:
            out = combine(out, v)
        return out
    if isinstance(node, ast.Compare):
        left = _eval(node.left, arrays, expr)
        out = None
        for op, comp in zip(node.ops, node.comparators, strict=True):
            right = _eval(comp, arrays, expr)
            if type(op) not in _CMPOPS:
                raise _refuse(expr, f"the comparison {type(op).__name__}")
            part = _CMPOPS[type(op)](left, right)
            out = part if out is None else np.logical_and(out, part)
            left = right
        return out
    if isinstance(node, ast.Call):
        func = FUNCTIONS[node.func.id]  # type: ignore[attr-defined]
        return func(*(_eval(a, arrays, expr) for a in node.args))
    if isinstance(node, ast.Subscript):
        # x[k] is the k-th entry of every event (a column of a per-event array).
        value = _eval(node.value, arrays, expr)
        return value[:, node.slice.value]  # type: ignore[attr-defined]
    raise _refuse(expr, type(node).__name__)
