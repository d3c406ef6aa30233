"""The kernel IR: a small, typed tree that every code generator consumes.

The front end (:mod:`.frontend`) checks a Python function and produces a :class:`Kernel`; a
target (``kernpack.driver.targets``, with the lowering they share, ``kernpack.driver.lower``)
turns it into LLVM IR. Nothing here knows about any target.

Every expression carries its type, and every operand already has the type its operation
works in: the front end inserts the :class:`Cast` nodes, so code generators never apply
promotion rules themselves. ``str(kernel)`` prints the IR, e.g.::

    kernel saxpy(a: f32, x: f32[:], y: f32[:], out: f32[:]):
      grid (i) in (out.shape[0]):
        out[i] = add.f32(mul.f32(a, x[i]), y[i])

A kernel may end with an epilogue, statements after the grid that run once when every point
is done; a prologue local the epilogue reads and the grid combines into (:class:`Reduce`) is
a reduction.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from .types import ArrayType, ScalarType

__all__ = [
    "Assign",
    "assigned_names",
    "AtomicAdd",
    "BinOp",
    "BoolOp",
    "Break",
    "Call",
    "Cast",
    "Compare",
    "Const",
    "Continue",
    "Expr",
    "ForRange",
    "Grid",
    "If",
    "Kernel",
    "Load",
    "LocalArray",
    "Not",
    "Print",
    "REDUCTIONS",
    "Reduce",
    "Select",
    "Shape",
    "Stmt",
    "Store",
    "Var",
    "While",
    "children",
    "exprs_of",
    "identity",
    "local_arrays",
    "prints",
    "walk",
    "walk_expr",
]


# ------------------------------------------------------------------------ expressions
@dataclass
class Expr:
    """Base of expressions; ``type`` is the value's scalar type."""

    type: ScalarType


@dataclass
class Const(Expr):
    """A literal; ``weak`` while it still takes the type of the operand it meets."""

    value: int | float | bool
    weak: bool = False

    def __str__(self) -> str:
        return repr(self.value) if self.weak else f"{self.type}({self.value!r})"


@dataclass
class Var(Expr):
    """A scalar local, loop index or scalar parameter."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass
class Shape(Expr):
    """``array.shape[dim]`` (i64)."""

    array: str
    dim: int

    def __str__(self) -> str:
        return f"{self.array}.shape[{self.dim}]"


@dataclass
class Load(Expr):
    """``array[i, j, ...]``; indices are i64."""

    array: str
    indices: list[Expr]

    def __str__(self) -> str:
        return f"{self.array}[{', '.join(map(str, self.indices))}]"


@dataclass
class BinOp(Expr):
    """Arithmetic: add sub mul div floordiv mod pow min max.

    Operands have ``type``, except the exponent of ``pow`` on floats, which is an i32.
    """

    op: str
    lhs: Expr
    rhs: Expr

    def __str__(self) -> str:
        return f"{self.op}.{self.type}({self.lhs}, {self.rhs})"


@dataclass
class Compare(Expr):
    """lt le gt ge eq ne on two operands of the same type; ``type`` is bool."""

    op: str
    lhs: Expr
    rhs: Expr

    def __str__(self) -> str:
        return f"{self.op}({self.lhs}, {self.rhs})"


@dataclass
class BoolOp(Expr):
    """Short-circuit ``and`` / ``or`` over bool values."""

    op: str
    values: list[Expr]

    def __str__(self) -> str:
        return f"{self.op}({', '.join(map(str, self.values))})"


@dataclass
class Not(Expr):
    """Logical negation of a bool."""

    operand: Expr

    def __str__(self) -> str:
        return f"not({self.operand})"


@dataclass
class Cast(Expr):
    """Conversion of ``operand`` to ``type`` (float to int saturates)."""

    operand: Expr

    def __str__(self) -> str:
        return f"{self.type}({self.operand})"


@dataclass
class Select(Expr):
    """``a if cond else b``; only the chosen side is evaluated."""

    cond: Expr
    a: Expr
    b: Expr

    def __str__(self) -> str:
        return f"({self.a} if {self.cond} else {self.b})"


@dataclass
class Call(Expr):
    """A math function: sqrt exp log sin cos tanh abs floor ceil fma neg."""

    func: str
    args: list[Expr]

    def __str__(self) -> str:
        return f"{self.func}.{self.type}({', '.join(map(str, self.args))})"


# ------------------------------------------------------------------------ statements
@dataclass
class Stmt:
    """Base of statements; ``line`` is the source line (absolute) for diagnostics."""

    line: int = field(default=0, kw_only=True)


@dataclass
class Assign(Stmt):
    """``name = value``; ``value`` already has the local's type."""

    name: str
    value: Expr


@dataclass
class Store(Stmt):
    """``array[indices] = value``; ``value`` has the array's element type."""

    array: str
    indices: list[Expr]
    value: Expr


@dataclass
class AtomicAdd(Stmt):
    """``kp.atomic_add(array, indices, value)``."""

    array: str
    indices: list[Expr]
    value: Expr


#: The operations a reduction combines with; each is associative and commutative, so the
#: points may be combined in any grouping (floating-point sums up to rounding).
REDUCTIONS = ("add", "min", "max")


def identity(op: str, type_: ScalarType) -> int | float:
    """The value ``op`` leaves unchanged in ``type_``: where each partial of a reduction starts."""
    if op == "add":
        return 0.0 if type_.is_float else 0
    if type_.is_float:
        return float("inf") if op == "min" else float("-inf")
    info = np.iinfo(type_.dtype)
    return int(info.max) if op == "min" else int(info.min)


@dataclass
class Reduce(Stmt):
    """``name op= value`` in the grid: the point's contribution to a reduction.

    ``value`` has the local's type. ``min`` and ``max`` are NaN-propagating (numpy's
    ``minimum``/``maximum``), so the result does not depend on the order of the points.
    """

    name: str
    op: str
    value: Expr


@dataclass
class LocalArray(Stmt):
    """``name = kp.local(dtype, shape)`` at the top of the grid body: a zeroed private array.

    Each grid point has its own; the statement zeroes it. It is read and written with
    :class:`Load` and :class:`Store` like a parameter (its shape is known: ``shape``).
    """

    name: str
    dtype: ScalarType
    shape: tuple[int, ...]


@dataclass
class Print(Stmt):
    """``print(...)``: literal text and scalar values, in order (the separators and end as text).

    Values print as Python prints them (``str`` of an int, a bool, a numpy float32/float64).
    """

    parts: list[str | Expr]


@dataclass
class If(Stmt):
    """``if cond: body else: orelse``."""

    cond: Expr
    body: list[Stmt]
    orelse: list[Stmt]


@dataclass
class While(Stmt):
    """``while cond: body``."""

    cond: Expr
    body: list[Stmt]


@dataclass
class ForRange(Stmt):
    """``for var in range(start, stop, step)`` (i64); ``step`` may be a runtime value."""

    var: str
    start: Expr
    stop: Expr
    step: Expr
    body: list[Stmt]


@dataclass
class Break(Stmt):
    """Leave the innermost serial loop."""


@dataclass
class Continue(Stmt):
    """Go to the next iteration of the innermost loop (or the next grid point)."""


@dataclass
class Grid(Stmt):
    """The parallel index space: independent iterations over ``extents`` (i64 each)."""

    vars: list[str]
    extents: list[Expr]
    body: list[Stmt]


@dataclass
class Kernel:
    """A checked kernel: parameters, locals with their types, scalar prologue, grid, epilogue.

    ``reductions`` maps each reduction local to its operation (one of :data:`REDUCTIONS`).
    """

    name: str
    params: list[tuple[str, ScalarType | ArrayType]]
    locals: dict[str, ScalarType]
    prologue: list[Stmt]
    grid: Grid
    written: set[str]
    epilogue: list[Stmt] = field(default_factory=list)
    reductions: dict[str, str] = field(default_factory=dict)
    #: Checked indices (a build's ``boundscheck``), and the file the kernel is in (for messages).
    boundscheck: bool = False
    filename: str = ""

    def __str__(self) -> str:
        lines = [f"kernel {self.name}({', '.join(f'{n}: {t}' for n, t in self.params)}):"]
        if self.boundscheck:
            lines.append(f"  boundscheck {self.filename}")
        for name, type_ in self.locals.items():
            lines.append(f"  local {name}: {type_}")
        _print(self.prologue, lines, 1)
        _print([self.grid], lines, 1)
        _print(self.epilogue, lines, 1)
        return "\n".join(lines)


def _print(stmts: list[Stmt], out: list[str], depth: int) -> None:
    pad = "  " * depth
    for s in stmts:
        if isinstance(s, Assign):
            out.append(f"{pad}{s.name} = {s.value}")
        elif isinstance(s, Store):
            out.append(f"{pad}{s.array}[{', '.join(map(str, s.indices))}] = {s.value}")
        elif isinstance(s, Print):
            out.append(f"{pad}print({', '.join(repr(p) if isinstance(p, str) else str(p) for p in s.parts)})")
        elif isinstance(s, LocalArray):
            out.append(f"{pad}{s.name} = local.{s.dtype}{list(s.shape)}")
        elif isinstance(s, Reduce):
            out.append(f"{pad}reduce.{s.op}({s.name}, {s.value})")
        elif isinstance(s, AtomicAdd):
            out.append(f"{pad}atomic_add({s.array}[{', '.join(map(str, s.indices))}], {s.value})")
        elif isinstance(s, If):
            out.append(f"{pad}if {s.cond}:")
            _print(s.body, out, depth + 1)
            if s.orelse:
                out.append(f"{pad}else:")
                _print(s.orelse, out, depth + 1)
        elif isinstance(s, While):
            out.append(f"{pad}while {s.cond}:")
            _print(s.body, out, depth + 1)
        elif isinstance(s, ForRange):
            out.append(f"{pad}for {s.var} in range({s.start}, {s.stop}, {s.step}):")
            _print(s.body, out, depth + 1)
        elif isinstance(s, Grid):
            out.append(f"{pad}grid ({', '.join(s.vars)}) in ({', '.join(map(str, s.extents))}):")
            _print(s.body, out, depth + 1)
        else:
            out.append(f"{pad}{type(s).__name__.lower()}")


# ------------------------------------------------------------------------ traversal
def walk(stmts: list[Stmt]) -> Iterator[Stmt]:
    """Every statement, each before the ones it holds (if arms, loop bodies, the grid)."""
    for s in stmts:
        yield s
        for attr in ("body", "orelse"):
            yield from walk(getattr(s, attr, []))


def children(e: Expr) -> list[Expr]:
    """The operands of an expression."""
    if isinstance(e, (BinOp, Compare)):
        return [e.lhs, e.rhs]
    if isinstance(e, (Cast, Not)):
        return [e.operand]
    if isinstance(e, BoolOp):
        return list(e.values)
    if isinstance(e, Select):
        return [e.cond, e.a, e.b]
    if isinstance(e, (Call, Load)):
        return list(e.args if isinstance(e, Call) else e.indices)
    return []


def walk_expr(e: Expr) -> Iterator[Expr]:
    """An expression and every expression inside it."""
    yield e
    for c in children(e):
        yield from walk_expr(c)


def exprs_of(s: Stmt) -> list[Expr]:
    """The expressions a statement evaluates itself (not those of the statements it holds)."""
    found = [e for a in ("value", "cond", "start", "stop", "step") if isinstance(e := getattr(s, a, None), Expr)]
    printed = [p for p in getattr(s, "parts", []) if isinstance(p, Expr)]
    return [*found, *getattr(s, "indices", []), *getattr(s, "extents", []), *printed]


def prints(kernel: Kernel) -> bool:
    """True if the kernel calls print() (in the grid or after it: the prologue may not)."""
    return any(isinstance(s, Print) for s in walk([*kernel.grid.body, *kernel.epilogue]))


def local_arrays(kernel: Kernel) -> list[LocalArray]:
    """The kernel's local arrays (their statements, at the top of the grid body)."""
    return [s for s in kernel.grid.body if isinstance(s, LocalArray)]


def assigned_names(stmts: list[Stmt]) -> list[str]:
    """The locals (and serial loop variables) the statements assign, nested ones included."""
    return [s.name if isinstance(s, Assign) else s.var for s in walk(stmts) if isinstance(s, (Assign, ForRange))]
