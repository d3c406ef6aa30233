"""Grid extents as expressions of a kernel's arguments, for device function tables.

A device launch needs the grid size before any device code runs, so the host computes it
from the arguments. The extents in the kernel IR may use prologue locals; those defined by a
straight-line assignment are substituted, which covers ``n = x.shape[0]`` and friends.
"""

from __future__ import annotations

from ..errors import CompileError
from .lang import kir
from .lang.kir import assigned_names
from .lang.types import ScalarType

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
    # What each name assigned in the prologue holds at the grid: an expression, or None when it
    # cannot be said before launch. A parameter assigned there no longer holds its argument.
    known: dict[str, str | None] = {}
    for stmt in kernel.prologue:
        if isinstance(stmt, kir.Assign):
            try:
                known[stmt.name] = _expr(stmt.value, params, known)
            except _NotExpressible:
                known[stmt.name] = None
        else:  # assignments under control flow are not straight-line
            for name in assigned_names([stmt]):
                known[name] = None
    try:
        return [_expr(e, params, known) for e in kernel.grid.extents]
    except _NotExpressible:
        raise CompileError(
            f"kernel {kernel.name!r}, line {kernel.grid.line}: on device targets (opencl, vulkan, cuda) the grid "
            "extents must be computable from the arguments before launch; got "
            f"{', '.join(map(str, kernel.grid.extents))}. Write them with array shapes, integer parameters, "
            "integer arithmetic and casts (through straight-line locals if you like), or build for cpu"
        ) from None


def _expr(e: kir.Expr, params: dict, known: dict[str, str | None]) -> str:
    """``e`` as a host expression that computes the kernel's value, wrapping included.

    Host integers do not overflow, so every operation that can leave its type is written
    inside a cast to that type (``i64(a * b)``, ``u8(n - 1)``), which the runtime evaluates as
    the kernel does: two's complement wrapping at the type's width.
    """
    if isinstance(e, kir.Const) and e.type.is_int:
        return str(int(e.value)) if e.value >= 0 else f"({int(e.value)})"
    if isinstance(e, kir.Shape):
        return f"{e.array}.shape[{e.dim}]"
    if isinstance(e, kir.Var):
        if e.name in known:
            if known[e.name] is None:
                raise _NotExpressible
            return f"({known[e.name]})"
        if e.name in params and e.type.is_int:
            return e.name
        raise _NotExpressible
    if isinstance(e, kir.Cast) and e.type.is_int and e.operand.type.is_int:
        inner = _expr(e.operand, params, known)
        return inner if _fits(e.operand.type, e.type) else f"{e.type}({inner})"
    if isinstance(e, kir.BinOp) and e.type.is_int:
        a, b = _expr(e.lhs, params, known), _expr(e.rhs, params, known)
        if e.op == "mod":
            return f"({a} % {b})"  # |a % b| <= |b|: stays in the type
        if e.op in _OPS:
            return f"{e.type}({a} {_OPS[e.op]} {b})"
        if e.op in ("min", "max"):
            return f"{e.op}({a}, {b})"
    raise _NotExpressible


def _fits(src: ScalarType, dst: ScalarType) -> bool:
    """True if every value of ``src`` is a value of ``dst`` (the cast changes nothing)."""
    if src.is_signed == dst.is_signed:
        return dst.bits >= src.bits
    return not src.is_signed and dst.bits > src.bits
