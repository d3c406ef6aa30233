"""Grid extents as expressions of a kernel's arguments, for device function tables.

A device launch needs the grid size before any device code runs, so the host computes it
from the arguments. The extents in the kernel IR may use prologue locals; those defined by a
straight-line assignment are substituted, which covers ``n = x.shape[0]`` and friends.
"""

from __future__ import annotations

from ...errors import CompileError
from ..lang import kir

__all__ = ["grid_expressions"]

_OPS = {"add": "+", "sub": "-", "mul": "*", "floordiv": "//", "mod": "%"}


class _NotExpressible(Exception):
    pass


def grid_expressions(kernel: kir.Kernel) -> list[str]:
    """The extents of ``kernel``'s grid as Python expressions over its parameters.

    Raises
    ------
    CompileError
        If an extent depends on something other than the arguments and integer arithmetic.
    """
    params = dict(kernel.params)
    known: dict[str, str] = {}
    for stmt in kernel.prologue:
        if isinstance(stmt, kir.Assign):
            try:
                known[stmt.name] = _expr(stmt.value, params, known)
            except _NotExpressible:
                known.pop(stmt.name, None)
        else:  # assignments under control flow are not straight-line
            for name in _assigned(stmt):
                known.pop(name, None)
    try:
        return [_expr(e, params, known) for e in kernel.grid.extents]
    except _NotExpressible:
        raise CompileError(
            f"kernel {kernel.name!r}: for device targets the grid extents must be computable from the "
            "arguments (array shapes, integer parameters and integer arithmetic, possibly through "
            f"straight-line locals); got {', '.join(map(str, kernel.grid.extents))}"
        ) from None


def _expr(e: kir.Expr, params: dict, known: dict[str, str]) -> str:
    if isinstance(e, kir.Const) and e.type.is_int:
        return str(int(e.value))
    if isinstance(e, kir.Shape):
        return f"{e.array}.shape[{e.dim}]"
    if isinstance(e, kir.Var):
        if e.name in known:
            return f"({known[e.name]})"
        if e.name in params and e.type.is_int:
            return e.name
        raise _NotExpressible
    if isinstance(e, kir.Cast) and e.type.is_int and e.operand.type.is_int:
        return _expr(e.operand, params, known)
    if isinstance(e, kir.BinOp) and e.type.is_int:
        a, b = _expr(e.lhs, params, known), _expr(e.rhs, params, known)
        if e.op in _OPS:
            return f"({a} {_OPS[e.op]} {b})"
        if e.op in ("min", "max"):
            return f"{e.op}({a}, {b})"
    raise _NotExpressible


def _assigned(stmt: kir.Stmt) -> list[str]:
    names = []
    if isinstance(stmt, kir.Assign):
        names.append(stmt.name)
    for attr in ("body", "orelse"):
        for child in getattr(stmt, attr, []):
            names.extend(_assigned(child))
    if isinstance(stmt, kir.ForRange):
        names.append(stmt.var)
    return names
