"""Safe expressions over branches: selections, weights and derived features.

An expression is parsed with :mod:`ast` and only arithmetic, comparisons, boolean logic,
whitelisted NumPy math functions, numeric constants, constant indexing and the attributes and
methods of physics objects are allowed. Anything else (other attributes or methods, lambdas,
strings, imports, ...) is refused, never evaluated.

Object collections (jagged branches such as ``Jet_pt``, read as awkward arrays) are reduced
to one number per event with awkward, never with Python loops:

* ``Jet_pt[k]``: the k-th object (k >= 0), the configured fill value when there is none;
* ``at(Jet_pt, k, fill)``: the same with an explicit fill value;
* ``count(Jet_pt)``: the number of objects; ``sum(x)``, ``mean(x)``, ``max(x)``, ``min(x)``
  over the objects (0 for an empty event; ``mean``/``max``/``min`` then give the fill value).

Element-wise arithmetic and functions work on whole collections before a reduction, e.g.
``sum(Jet_pt * (abs(Jet_eta) < 2.5))`` or ``count(Jet_pt) - sum(Jet_btag > 0.5)``.

Objects (``TLorentzVector`` branches and NanoAOD-style collections such as ``Muon``, see
:mod:`pnn.io.objects`) are four-vectors: ``Muon[0].pt``, ``(Muon[0] + Muon[1]).mass``,
``Muon[0].deltaR(Muon[1])``, ``Muon[0].charge``, ``count(Muon)``, ``sum(Jet.pt)``. Only the
attributes ``pt eta phi mass E px py pz rapidity``, the collection's own fields and the methods
``deltaR deltaphi deltaeta`` exist; a missing k-th object has NaN for every attribute.

Every expression is bounded when it is parsed, before anything is evaluated: its length, its
number of nodes, its nesting depth, the size of its constants and its powers (``9**9**9``
would otherwise compute a number with hundreds of millions of digits).
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np

from pnn.core.errors import PnnError
from pnn.io import objects

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
# Number of arguments each function takes (the rest take one).
_ARITY: dict[str, tuple[int, ...]] = {
    "arctan2": (2,), "hypot": (2,), "minimum": (2,), "maximum": (2,), "where": (3,),
    "clip": (3,), "round": (1, 2),
}

MAX_LENGTH = 10_000  # characters
MAX_NODES = 2_000  # operands, operators and calls
MAX_DEPTH = 100  # levels of nesting
MAX_EXPONENT = 64  # largest |constant exponent| of a power
MAX_CONSTANT = 1e300  # largest |number| written in, or computed from constants

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


def _short(expr: str) -> str:
    """The expression on one line, cut to its first 60 characters."""
    text = " ".join(expr.split())
    return text if len(text) <= 60 else text[:60] + "..."


def _where(expr: str, key: str | None = None) -> str:
    """How an error names an expression: its config key when known, and its first characters."""
    return f"key '{key}' ('{_short(expr)}')" if key else f"expression '{_short(expr)}'"


def _refuse(expr: str, what: str, key: str | None = None) -> PnnError:
    return PnnError(
        f"{_where(expr, key)}: {what} is not allowed; use branches, numbers, arithmetic, "
        f"comparisons, and/or/not, the functions {', '.join(sorted(FUNCTIONS))}, the object "
        f"attributes {', '.join(objects.ATTRIBUTES)} (or a collection's fields) and the "
        f"methods {', '.join(objects.METHODS)}"
    )


@lru_cache(maxsize=256)
def parse(expr: str, key: str | None = None) -> ast.Expression:
    """Parse and check ``expr``; raise :class:`PnnError` for anything outside the grammar or
    its size limits. ``key`` is the config key the expression comes from, for the message."""
    where = _where(expr, key)
    deep = (f"{where}: nested more than {MAX_DEPTH} levels deep (brackets, signs, calls, "
            "terms of one long sum or product): write it more simply")
    if len(expr) > MAX_LENGTH:
        raise PnnError(f"{where}: {len(expr)} characters is longer than the {MAX_LENGTH} "
                       "allowed: shorten it")
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as exc:
        if "too many nested" in str(exc.msg):
            raise PnnError(deep) from None
        raise PnnError(f"{where} is not valid syntax: check brackets and operators") from None
    except (RecursionError, MemoryError):
        raise PnnError(deep) from None
    _check_size(tree, where, deep)
    _check_grammar(expr, tree, key)
    _check_constants(tree.body, where)
    return tree


def _check_size(tree: ast.Expression, where: str, deep: str) -> None:
    """At most MAX_NODES operands, operators and calls, at most MAX_DEPTH of them inside one
    another (walked without recursion, so any tree the parser built can be checked)."""
    stack: list[tuple[ast.AST, int]] = [(tree.body, 0)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        if isinstance(node, ast.expr):
            nodes, depth = nodes + 1, depth + 1
            if depth > MAX_DEPTH:
                raise PnnError(deep)
            if nodes > MAX_NODES:
                raise PnnError(f"{where}: more than {MAX_NODES} operands and operators: "
                               "shorten it")
        stack.extend((child, depth) for child in ast.iter_child_nodes(node))


def _check_grammar(expr: str, tree: ast.Expression, key: str | None) -> None:
    allowed = (
        ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.Call, ast.Name,
        ast.Constant, ast.Subscript, ast.Load, ast.operator, ast.unaryop, ast.boolop, ast.cmpop,
        ast.Attribute,
    )
    methods = {id(n.func) for n in ast.walk(tree)
               if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}
    for node in ast.walk(tree):
        if not isinstance(node, allowed):
            raise _refuse(expr, type(node).__name__, key)
        if isinstance(node, ast.Constant) and not isinstance(node.value, int | float | bool):
            raise _refuse(expr, f"the constant {_short(repr(node.value))}", key)
        if isinstance(node, ast.Attribute) and id(node) not in methods and node.attr.startswith("_"):
            raise _refuse(expr, f"the attribute '.{node.attr}'", key)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr not in objects.METHODS:
                raise _refuse(expr, f"calling '.{_short(node.func.attr)}()'", key)
            if node.keywords or len(node.args) != 1:
                raise PnnError(f"{_where(expr, key)}: .{node.func.attr}() takes one object, e.g. "
                               f"Muon[0].{node.func.attr}(Muon[1])")
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in (*FUNCTIONS, *REDUCERS):
                raise _refuse(expr, f"calling '{_short(ast.unparse(node.func))}'", key)
            if node.keywords:
                raise _refuse(expr, "a keyword argument", key)
            _check_call(expr, node, key)
        if isinstance(node, ast.Subscript) and not (
                isinstance(node.slice, ast.Constant) and type(node.slice.value) is int
                and node.slice.value >= 0):
            raise _refuse(expr, "indexing with anything but a non-negative integer", key)
        if isinstance(node, ast.BinOp) and type(node.op) not in _BINOPS:
            raise _refuse(expr, f"the operator {type(node.op).__name__}", key)


def _check_call(expr: str, node: ast.Call, key: str | None) -> None:
    """Reductions have their own forms; every other function its number of arguments."""
    name = node.func.id  # type: ignore[attr-defined]
    if name not in REDUCERS:
        if not callable(FUNCTIONS[name]):
            raise PnnError(f"{_where(expr, key)}: '{name}' is a constant, not a function: "
                           f"write {name} without brackets")
        arity = _ARITY.get(name, (1,))
        if len(node.args) not in arity:
            wanted = " or ".join(str(n) for n in arity)
            raise PnnError(f"{_where(expr, key)}: {name}() takes {wanted} argument(s), "
                           f"not {len(node.args)}")
        return
    if name == "at":
        ok = (len(node.args) == 3 and isinstance(node.args[1], ast.Constant)
              and type(node.args[1].value) is int and node.args[1].value >= 0
              and _is_number(node.args[2]))
        if not ok:
            raise PnnError(f"{_where(expr, key)}: write at(collection, k, fill) with an integer "
                           "k >= 0 and a number fill")
    elif len(node.args) != 1:
        raise PnnError(f"{_where(expr, key)}: {name}() takes one collection, e.g. {name}(Jet_pt)")


def _has_pow(node: ast.AST) -> bool:
    return any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.Pow) for n in ast.walk(node))


def _check_constants(node: ast.AST, where: str) -> float | None:
    """Refuse huge constants, powers that could not be computed in time, and divisions of
    constants by zero. Returns the value of a part made of numbers only (None otherwise),
    computed with floats so that it takes no time; recursion is bounded by MAX_DEPTH."""
    too_big = (f"{where}: a number beyond {MAX_CONSTANT:g} is not allowed: use smaller "
               "numbers or rescale")
    if isinstance(node, ast.Constant):
        if abs(node.value) > MAX_CONSTANT:
            raise PnnError(too_big)
        return float(node.value)
    if isinstance(node, ast.Name):
        return float(FUNCTIONS["pi"]) if node.id == "pi" else None
    values = [_check_constants(child, where) for child in ast.iter_child_nodes(node)
              if isinstance(child, ast.expr)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        power = (f"{where}: a power needs a number exponent from -{MAX_EXPONENT} to "
                 f"{MAX_EXPONENT}, with no power in its exponent or in a number base: write e.g. x**2")
        exponent = values[1]
        if _has_pow(node.right) or (exponent is not None and abs(exponent) > MAX_EXPONENT):
            raise PnnError(power)
        if values[0] is not None and _has_pow(node.left):
            raise PnnError(power)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        return None if values[0] is None else (-values[0] if isinstance(node.op, ast.USub)
                                               else values[0])
    if not isinstance(node, ast.BinOp) or None in values or type(node.op) not in _FOLD:
        return None
    try:
        value = _FOLD[type(node.op)](values[0], values[1])
    except ZeroDivisionError:
        raise PnnError(f"{where}: divides a number by zero: fix the constant") from None
    except OverflowError:
        raise PnnError(too_big) from None
    if isinstance(value, complex):
        raise PnnError(f"{where}: a negative number to a fractional power: fix the constants")
    if not abs(value) <= MAX_CONSTANT:
        raise PnnError(too_big)
    return value


_FOLD = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}


def _is_number(node: ast.AST) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        node = node.operand
    return isinstance(node, ast.Constant) and type(node.value) in (int, float)


def unreduced(expr: str, collections: set[str], key: str | None = None) -> str | None:
    """The first of ``collections`` (branches with several values per event) that ``expr``
    uses without reducing it to one number per event, or None if every use is reduced."""

    def walk(node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            return node.id if node.id in collections else None
        if isinstance(node, ast.Subscript):
            return None
        if _is_reducer(node):
            return None
        for child in ast.iter_child_nodes(node):
            if isinstance(node, ast.Call) and child is node.func and isinstance(child, ast.Name):
                continue
            found = walk(child)
            if found:
                return found
        return None

    return walk(parse(expr, key).body)


def branches(expr: str, key: str | None = None) -> set[str]:
    """Branch names that ``expr`` reads (names that are not functions); checks ``expr`` too,
    so calling it on every expression of a config before reading data finds every mistake."""
    called = set()
    names = set()
    for node in ast.walk(parse(expr, key)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            called.add(id(node.func))
        elif isinstance(node, ast.Name):
            names.add((node.id, id(node)))
    return {name for name, ident in names if ident not in called and name not in FUNCTIONS}


def attributes(expr: str, key: str | None = None) -> set[str]:
    """Attribute names that ``expr`` takes of objects (``Muon[0].charge`` gives 'charge'),
    methods left out: the fields a collection must bring along."""
    tree = parse(expr, key)
    methods = {id(n.func) for n in ast.walk(tree)
               if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}
    return {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and id(n) not in methods}


def attributes_of(expr: str, name: str, key: str | None = None) -> set[str]:
    """Attributes that ``expr`` takes directly of the objects of ``name`` (``name.pt``,
    ``name[k].charge``), to check them against a collection's fields before reading."""
    tree = parse(expr, key)
    methods = {id(n.func) for n in ast.walk(tree)
               if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and id(node) not in methods:
            base = node.value
            while isinstance(base, ast.Subscript):
                base = base.value
            if isinstance(base, ast.Name) and base.id == name:
                out.add(node.attr)
    return out


def check_fields(exprs: Mapping[str | None, str], collections: Mapping[str, Any]) -> None:
    """Refuse, before reading, an attribute taken of a collection that is neither a
    four-vector attribute nor one of its fields. ``exprs`` maps config keys to expressions."""
    for key, expr in exprs.items():
        for name, spec in collections.items():
            objects.check_fields(spec, attributes_of(expr, name, key), _where(expr, key))


def _is_reducer(node: ast.AST) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in REDUCERS)


def evaluate(expr: str, arrays: Mapping[str, Any], fill: float = 0.0,
             key: str | None = None) -> Any:
    """Evaluate ``expr`` with branch names bound to the arrays in ``arrays``; ``fill`` is the
    value of ``x[k]`` for events without a k-th object. A branch of strings can only be taken
    as it is (a spectator by its own name), never computed with."""
    body = parse(expr, key).body
    if isinstance(body, ast.Name) and body.id in arrays:
        return arrays[body.id]
    try:
        value = _Evaluator(arrays, expr, fill, key).eval(body)
    except (TypeError, ValueError, ArithmeticError) as exc:
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise PnnError(f"{_where(expr, key)} cannot be computed ({reason}): check the types "
                       "of its branches and constants") from None
    if objects.is_object(value):
        raise PnnError(f"{_where(expr, key)} gives objects, not numbers: take one of their "
                       f"attributes, e.g. ({_short(expr)}).pt or a field such as .charge")
    return value


def _holds_strings(value: Any) -> bool:
    """Whether a branch array holds text (NumPy str/bytes/object of str, or awkward strings)."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "US":
            return True
        return value.dtype.kind == "O" and any(isinstance(v, str | bytes) for v in value[:1])
    if type(value).__module__.startswith("awkward"):
        import awkward as ak

        layout = ak.to_layout(value)
        while layout is not None:
            if layout.parameter("__array__") in ("string", "bytestring", "char", "byte"):
                return True
            layout = getattr(layout, "content", None)
    return False


def _kth(value: Any, k: int, fill: float, where: str) -> Any:
    """The k-th entry of every event: a column of a 2D array, or of a padded collection."""
    one = f"{where}: indexing a branch with one value per event: drop the [k]"
    if isinstance(value, np.ndarray):
        if value.ndim != 2:
            raise PnnError(one)
        if k >= value.shape[1]:
            raise PnnError(f"{where}: index {k} is past the {value.shape[1]} "
                           "entries of the array branch")
        return value[:, k]
    import awkward as ak

    if not isinstance(value, ak.Array) or value.ndim < 2:
        raise PnnError(one)
    if objects.is_object(value):
        return objects.kth(value, k)
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
    def __init__(self, arrays: Mapping[str, Any], expr: str, fill: float,
                 key: str | None) -> None:
        self.arrays, self.expr, self.fill, self.key = arrays, expr, fill, key
        self.where = _where(expr, key)

    def eval(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Attribute):
            return objects.attribute(self.eval(node.value), node.attr, self.where)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            return objects.method(self.eval(node.func.value), node.func.attr,
                                  self.eval(node.args[0]), self.where)
        if _is_reducer(node):
            name = node.func.id  # type: ignore[attr-defined]
            value = self.eval(node.args[0])
            if name == "at":
                fill = float(ast.literal_eval(node.args[2]))
                return _kth(value, node.args[1].value, fill, self.where)  # type: ignore[attr-defined]
            return _reduce(name, value, self.fill)
        if isinstance(node, ast.Subscript):
            return _kth(self.eval(node.value), node.slice.value, self.fill,  # type: ignore[attr-defined]
                        self.where)
        return _eval(node, self.arrays, self.expr, self.eval, self.key)


def _eval(node: ast.AST, arrays: Mapping[str, Any], expr: str, sub: Any,
          key: str | None = None) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in arrays:
            value = arrays[node.id]
            if _holds_strings(value):
                within = f" (key '{key}')" if key else ""
                raise PnnError(f"branch '{node.id}' holds strings: it cannot be used in "
                               f"'{_short(expr)}'{within}: leave it out of expressions (it can "
                               "only be a spectator by its own name)")
            return value
        if node.id in FUNCTIONS and not callable(FUNCTIONS[node.id]):
            return FUNCTIONS[node.id]
        raise PnnError(f"{_where(expr, key)}: unknown branch '{node.id}': check its spelling "
                       "against the branches of the tree")
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
                raise _refuse(expr, f"the comparison {type(op).__name__}", key)
            part = _CMPOPS[type(op)](left, right)
            out = part if out is None else np.logical_and(out, part)
            left = right
        return out
    if isinstance(node, ast.Call):
        func = FUNCTIONS[node.func.id]  # type: ignore[attr-defined]
        return func(*(sub(a) for a in node.args))
    raise _refuse(expr, type(node).__name__, key)
