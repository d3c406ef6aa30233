"""The reference semantics of the kernel language: an interpreter of the typed kernel IR.

It runs a kernel exactly as ``docs/kernel-language.md`` defines it, with nothing from any code
generator: integers are Python ints wrapped to their width after every operation, floats are
numpy ``float32``/``float64`` scalars (IEEE rounding of each operation), and the rules that
Python's own arithmetic would get wrong for a fixed-width language are written out here:
saturating float-to-int casts (NaN is 0), integer ``//`` and ``%`` by zero giving 0, Python's
float floor division, ``x ** n`` by repeated squaring, a fused ``fma``.

Every code generator is tested against it (the differential campaign in ``tests/difftest``),
and users reach it as ``k.interpret(*args)`` or ``kp.build(..., target="interpret")``: slow,
but with every index checked, so a kernel that reads outside an array says where.

The kernel is compiled once into nested closures (one per IR node), so a grid point costs a
few Python calls per operation rather than a walk of the tree.
"""

from __future__ import annotations

import itertools
import math
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import ArgumentError, KernelIndexError
from ...runtime.calling import as_array, convert_scalar
from ...runtime.signature import Signature
from . import intrinsics, kir
from .types import ArrayType, ScalarType, wrap

if TYPE_CHECKING:
    from fractions import Fraction

__all__ = ["TRANSCENDENTALS", "combine", "interpret"]

#: Functions whose results are not correctly rounded on every target; ``perturb`` moves these.
TRANSCENDENTALS = ("exp", "log", "sin", "cos", "tanh")

_Env = dict[str, Any]
_ExprFn = Callable[[_Env], Any]
_StmtFn = Callable[[_Env], Any]
_BREAK = object()
_CONTINUE = object()


def interpret(
    kernel: kir.Kernel, signature: Signature, args: Sequence[Any], *, perturb: int = 0, alternate: bool = False
) -> None:
    """Run ``kernel`` on ``args`` by the language's definition; arrays are updated in place.

    Parameters
    ----------
    kernel : kir.Kernel
        The typed kernel IR (``k.kir``).
    signature : Signature
        The kernel's signature (``k.signature``), which checks the arguments as a call does.
    args : sequence
        The arguments, as for calling the compiled kernel.
    perturb : int, default 0
        Move the result of every ``exp log sin cos tanh`` by this many units in the last place.
        Running with ``+n`` and ``-n`` shows how much an output depends on how a target rounds
        those functions (the differential tests use it to set their tolerance).
    alternate : bool, default False
        With ``perturb``, move every other call of those functions (in the order they run)
        the other way: a product of two results moved the same way can round back to its
        unmoved value, and so can ``cos`` applied again and again (its slopes cancel the
        moves), and would look as if it did not depend on them.

    Raises
    ------
    ArgumentError
        If the arguments do not match the signature.
    KernelIndexError
        If an index leaves its array (a compiled kernel does not check; see the docs).
    """
    if len(args) != len(signature.params):
        raise ArgumentError(f"{kernel.name}() takes {len(signature.params)} arguments, got {len(args)}")
    env: _Env = {}
    arrays: dict[str, np.ndarray] = {}
    for param, (name, type_), value in zip(signature.params, kernel.params, args, strict=True):
        try:
            if isinstance(type_, ArrayType):
                arrays[name] = as_array(param, value)
            else:
                env[name] = _from_numpy(convert_scalar(param, value), type_)
        except ArgumentError as exc:
            raise ArgumentError(f"{kernel.name}(): argument {name!r}: {exc}") from None
    for name, type_ in kernel.locals.items():
        env.setdefault(name, _from_numpy(0, type_))  # a local not assigned yet reads as 0
    program = _Compiler(kernel, arrays, perturb, alternate)
    prologue = program.block(kernel.prologue)
    grid = kernel.grid
    extents = [program.expr(e) for e in grid.extents]
    with np.errstate(all="ignore"):
        prologue(env)
        body = program.block(grid.body)
        epilogue = program.block(kernel.epilogue)
        ranges = [range(extent(env)) for extent in extents]
        start = dict(env)
        for point in itertools.product(*ranges):
            # Each grid point starts from the locals as the prologue left them: points are
            # independent, whatever order or thread runs them.
            env = dict(start)
            env.update(zip(grid.vars, point, strict=True))
            body(env)
        # The epilogue sees the prologue's locals, each reduction combined over every point
        # (the points' contributions first, then the starting value, as the CPU target does).
        env = dict(start)
        for name, op in kernel.reductions.items():
            env[name] = combine(op, kernel.locals[name], start[name], program.partials[name])
        epilogue(env)


# ------------------------------------------------------------------------ scalar semantics
def _from_numpy(value: Any, type_: ScalarType) -> Any:
    """A value read from numpy as this interpreter holds it (ints and bools as Python's)."""
    if type_.kind == "b":
        return bool(value)
    if type_.is_float:
        return type_.dtype.type(value)
    return int(value)


def cast(value: Any, src: ScalarType, dst: ScalarType) -> Any:
    """Convert ``value`` of type ``src`` to ``dst`` as the language defines it."""
    if dst.kind == "b":
        return bool(value != 0)
    if src.is_float:
        if dst.is_float:
            return dst.dtype.type(value)
        if math.isnan(value):
            return 0
        info = np.iinfo(dst.dtype)
        if math.isinf(value):
            return int(info.max) if value > 0 else int(info.min)
        return min(max(math.trunc(float(value)), int(info.min)), int(info.max))
    if dst.is_float:
        # One rounding, from the exact integer (np.float32(int) would round through float64).
        return np.array(int(value), dtype=src.dtype if src.kind != "b" else np.uint8).astype(dst.dtype)[()]
    return wrap(int(value), dst)


def combine(op: str, type_: ScalarType, a: Any, b: Any) -> Any:
    """Two values of a reduction combined, in an order that cannot show.

    Integers wrap; float ``min``/``max`` are IEEE 754's ``minimum``/``maximum``: NaN if either
    operand is, and -0.0 below 0.0.
    """
    if op == "add":
        return a + b if type_.is_float else wrap(a + b, type_)
    if type_.is_float:
        if math.isnan(a) or math.isnan(b):
            return a if math.isnan(a) else b
        if a == b:  # equal values, or zeros of either sign: min takes the negative one
            negative = math.copysign(1.0, a) < 0
            return a if negative == (op == "min") else b
    return min(a, b) if op == "min" else max(a, b)


def fmod(x: Any, y: Any) -> Any:
    """C's ``fmod`` on numpy floats (exact; NaN where C gives NaN)."""
    t = type(x)
    if math.isnan(x) or math.isnan(y) or math.isinf(x) or y == 0:
        return t(math.nan)
    if math.isinf(y):
        return x
    return t(math.fmod(float(x), float(y)))  # exact in float64, so exact for float32 too


def float_divmod(x: Any, y: Any) -> tuple[Any, Any]:
    """Python's float floor division and modulo (``x // y``, ``x % y``) on numpy floats.

    Python's algorithm (``floatobject.c``), which numpy follows as well: the remainder is
    exact, takes the divisor's sign, and ``x == (x // y) * y + x % y`` up to rounding. By zero
    (where Python raises) the results are numpy's: ``x / 0.0`` and NaN.
    """
    t = type(x)
    zero = t(0)
    mod = fmod(x, y)
    if y == 0:
        return x / y, mod
    div = (x - mod) / y
    if mod != 0:
        if (y < zero) != (mod < zero):
            mod = mod + y
            div = div - t(1)
    else:
        mod = np.copysign(zero, y)
    if div != 0:
        floordiv = np.floor(div)
        if div - floordiv > t(0.5):
            floordiv = floordiv + t(1)
    else:
        floordiv = np.copysign(zero, x / y)
    return floordiv, mod


def float_pow(x: Any, n: int) -> Any:
    """``x ** n`` for a float ``x`` and integer ``n``: repeated squaring, then ``1 / r`` if n < 0.

    The language defines the power by this algorithm (each product rounded in x's type), so
    every target computes the same bits.
    """
    t = type(x)
    one = t(1)
    magnitude = -n if n < 0 else n
    result = one
    base = x
    while magnitude:
        if magnitude & 1:
            result = result * base
        magnitude >>= 1
        base = base * base
    return one / result if n < 0 else result


def int_pow(x: int, n: int, type_: ScalarType) -> int:
    """``x ** n`` for integers of ``type_``: wraps; a negative ``n`` gives 0 (1 when x is 1)."""
    if n < 0:
        return 1 if x == 1 else 0
    return wrap(pow(x, n, 1 << type_.bits), type_)


def fma(a: Any, b: Any, c: Any) -> Any:
    """``a * b + c`` rounded once, in the operands' float type."""
    t = type(a)
    if not (math.isfinite(a) and math.isfinite(b)):
        with np.errstate(invalid="ignore"):
            return t(np.float64(a) * np.float64(b) + np.float64(c))  # inf/nan propagate alike
    if not math.isfinite(c):
        return c  # the exact product is finite, even where a * b would overflow: inf + that is inf
    from fractions import Fraction  # here: the front end imports this module, and fractions costs 2 ms

    exact = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
    if exact == 0:
        # IEEE: an exact zero is -0 only when the (zero) product and c are both -0.
        product_negative = math.copysign(1, a) * math.copysign(1, b) < 0
        negative = (a == 0 or b == 0) and c == 0 and product_negative and math.copysign(1, c) < 0
        return t(-0.0 if negative else 0.0)
    return _round(exact, t)


def _round(exact: Fraction, t: type) -> Any:
    """The float of type ``t`` nearest to ``exact`` (ties to even); ``exact`` is not 0."""
    from fractions import Fraction

    try:
        with np.errstate(over="ignore"):
            guess = t(float(exact))
    except OverflowError:
        return t(math.inf if exact > 0 else -math.inf)
    biggest = np.finfo(t).max
    if math.isinf(guess):
        # Rounds to the largest finite value unless beyond it by half an ulp or more.
        half_ulp = Fraction(float(biggest - np.nextafter(biggest, t(0)))) / 2
        if abs(exact) < Fraction(float(biggest)) + half_ulp:
            return t(biggest if exact > 0 else -biggest)
        return guess
    best, best_err = guess, abs(Fraction(float(guess)) - exact)
    with np.errstate(over="ignore"):
        neighbours = (np.nextafter(guess, t(math.inf)), np.nextafter(guess, t(-math.inf)))
    for candidate in neighbours:
        if math.isinf(candidate):
            continue
        err = abs(Fraction(float(candidate)) - exact)
        if err < best_err or (err == best_err and _even(candidate, t) and not _even(best, t)):
            best, best_err = candidate, err
    return best


def _even(value: Any, t: type) -> bool:
    bits = np.array(value, dtype=t).view(np.uint32 if t is np.float32 else np.uint64)
    return int(bits) & 1 == 0


def _perturbed(value: Any, ulps: int) -> Any:
    direction = type(value)(math.inf if ulps > 0 else -math.inf)
    for _ in range(abs(ulps)):
        value = np.nextafter(value, direction)
    return value


_INT_OPS: dict[str, Callable[[int, int], int]] = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "floordiv": lambda a, b: a // b if b else 0,
    "mod": lambda a, b: a % b if b else 0,
}
_FLOAT_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "floordiv": lambda a, b: float_divmod(a, b)[0],
    "mod": lambda a, b: float_divmod(a, b)[1],
}
# min and max as the code generators emit them (and as Python's builtins behave): the first
# operand unless the second compares strictly less (greater), so a NaN first operand stays.
_MINMAX: dict[str, Callable[[Any, Any], Any]] = {
    "min": lambda a, b: b if b < a else a,
    "max": lambda a, b: b if b > a else a,
}
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "lt": lambda a, b: bool(a < b),
    "le": lambda a, b: bool(a <= b),
    "gt": lambda a, b: bool(a > b),
    "ge": lambda a, b: bool(a >= b),
    "eq": lambda a, b: bool(a == b),
    "ne": lambda a, b: bool(a != b),
}
# Functions of one float, as numpy computes them on a float32 or float64 scalar (the same
# numpy functions kp.math is outside kernels).
_UNARY: dict[str, Callable[[Any], Any]] = {
    name: getattr(intrinsics.math, name) for name in ("sqrt", "exp", "log", "sin", "cos", "tanh", "floor", "ceil")
}


# ------------------------------------------------------------------------ the closures
class _Compiler:
    """Turns kernel IR into closures over an environment of scalars (and the arrays)."""

    def __init__(self, kernel: kir.Kernel, arrays: dict[str, np.ndarray], perturb: int, alternate: bool) -> None:
        self.kernel = kernel
        self.arrays = arrays
        self.perturb = perturb
        self.alternate = alternate
        self.calls = 0  # transcendental calls made so far (for ``alternate``)
        self.line = kernel.grid.line
        self.local = {a.name: a.shape for a in kir.local_arrays(kernel)}  # kp.local arrays: shapes
        # Each reduction's combined contributions of the points run so far.
        self.partials = {name: _from_numpy(kir.identity(op, kernel.locals[name]), kernel.locals[name])
                         for name, op in kernel.reductions.items()}  # fmt: skip

    # ------------------------------------------------------------------ statements
    def block(self, stmts: list[kir.Stmt]) -> _StmtFn:
        fns = [self.stmt(s) for s in stmts]
        if len(fns) == 1:
            return fns[0]

        def run(env: _Env) -> Any:
            for fn in fns:
                signal = fn(env)
                if signal is not None:
                    return signal
            return None

        return run

    def stmt(self, s: kir.Stmt) -> _StmtFn:
        self.line = s.line or self.line
        if isinstance(s, kir.Assign):
            name, value = s.name, self.expr(s.value)

            def assign(env: _Env) -> None:
                env[name] = value(env)

            return assign
        if isinstance(s, (kir.Store, kir.AtomicAdd)):
            return self.store(s)
        if isinstance(s, kir.Print):
            pieces = [p if isinstance(p, str) else self.expr(p) for p in s.parts]

            def show(env: _Env) -> None:
                text = "".join(p if isinstance(p, str) else str(p(env)) for p in pieces)
                sys.stdout.write(text)

            return show
        if isinstance(s, kir.LocalArray):
            name, size, dtype = s.name, int(np.prod(s.shape)), s.dtype.dtype
            return lambda env: env.__setitem__(name, np.zeros(size, dtype))
        if isinstance(s, kir.Reduce):
            partials, name, op, t, contribution = self.partials, s.name, s.op, s.value.type, self.expr(s.value)

            def reduce(env: _Env) -> None:
                partials[name] = combine(op, t, partials[name], contribution(env))

            return reduce
        if isinstance(s, kir.If):
            cond, body, orelse = self.expr(s.cond), self.block(s.body), self.block(s.orelse)
            return lambda env: body(env) if cond(env) else orelse(env)
        if isinstance(s, kir.While):
            return self.while_loop(s)
        if isinstance(s, kir.ForRange):
            return self.for_range(s)
        if isinstance(s, kir.Break):
            return lambda env: _BREAK
        if isinstance(s, kir.Continue):
            return lambda env: _CONTINUE
        raise AssertionError(f"unexpected statement {s!r}")  # pragma: no cover

    def store(self, s: kir.Store | kir.AtomicAdd) -> _StmtFn:
        offset = self.offset(s.array, s.indices)
        value = self.expr(s.value)
        if s.array in self.local:
            name = s.array

            def store_local(env: _Env) -> None:
                env[name][offset(env)] = value(env)

            return store_local
        flat = self.arrays[s.array].reshape(-1)
        if isinstance(s, kir.Store):

            def store(env: _Env) -> None:
                flat[offset(env)] = value(env)

            return store
        dtype = s.value.type
        if dtype.is_float:

            def atomic_float(env: _Env) -> None:
                k = offset(env)
                flat[k] = flat[k] + value(env)

            return atomic_float

        def atomic_int(env: _Env) -> None:
            k = offset(env)
            flat[k] = wrap(int(flat[k]) + value(env), dtype)

        return atomic_int

    def while_loop(self, s: kir.While) -> _StmtFn:
        cond, body = self.expr(s.cond), self.block(s.body)

        def loop(env: _Env) -> None:
            while cond(env):
                if body(env) is _BREAK:
                    break

        return loop

    def for_range(self, s: kir.ForRange) -> _StmtFn:
        var = s.var
        start, stop, step = self.expr(s.start), self.expr(s.stop), self.expr(s.step)
        body = self.block(s.body)

        def loop(env: _Env) -> None:
            by = step(env)
            if by == 0:
                return  # a zero step at run time runs no iterations (Python raises)
            for value in range(start(env), stop(env), by):
                env[var] = value
                if body(env) is _BREAK:
                    break

        return loop

    # ------------------------------------------------------------------ expressions
    def offset(self, array: str, indices: list[kir.Expr]) -> _ExprFn:
        shape = self.local[array] if array in self.local else self.arrays[array].shape
        fns = [self.expr(i) for i in indices]
        line, name = self.line, self.kernel.name

        def offset(env: _Env) -> int:
            flat = 0
            for d, (fn, extent) in enumerate(zip(fns, shape, strict=True)):
                index = fn(env)
                if not 0 <= index < extent:
                    raise KernelIndexError(
                        f"{name}, line {line}: index {index} of {array}'s dimension {d} is outside 0..{extent - 1} "
                        f"(shape {shape}); compiled code does not check indices, so guard it with an if"
                    )
                flat = flat * extent + index
            return flat

        return offset

    def expr(self, e: kir.Expr) -> _ExprFn:
        t = e.type
        if isinstance(e, kir.Const):
            value = _from_numpy(e.value, t) if t.is_float else (bool(e.value) if t.kind == "b" else wrap(e.value, t))
            return lambda env: value
        if isinstance(e, kir.Var):
            name = e.name
            return lambda env: env[name]
        if isinstance(e, kir.Shape):
            extent = int(self.arrays[e.array].shape[e.dim])
            return lambda env: extent
        if isinstance(e, kir.Load):
            offset = self.offset(e.array, e.indices)
            convert = (lambda v: v) if t.is_float else bool if t.kind == "b" else int
            if e.array in self.local:  # the grid point's own array, in its environment
                name = e.array
                return lambda env: convert(env[name][offset(env)])
            flat = self.arrays[e.array].reshape(-1)
            return lambda env: convert(flat[offset(env)])
        if isinstance(e, kir.Cast):
            operand, src = self.expr(e.operand), e.operand.type
            return lambda env: cast(operand(env), src, t)
        if isinstance(e, kir.BinOp):
            return self.binop(e)
        if isinstance(e, kir.Compare):
            op, lhs, rhs = _COMPARE[e.op], self.expr(e.lhs), self.expr(e.rhs)
            return lambda env: op(lhs(env), rhs(env))
        if isinstance(e, kir.Not):
            operand = self.expr(e.operand)
            return lambda env: not operand(env)
        if isinstance(e, kir.BoolOp):
            values = [self.expr(v) for v in e.values]
            if e.op == "and":
                return lambda env: all(v(env) for v in values)
            return lambda env: any(v(env) for v in values)
        if isinstance(e, kir.Select):
            cond, a, b = self.expr(e.cond), self.expr(e.a), self.expr(e.b)
            return lambda env: a(env) if cond(env) else b(env)
        if isinstance(e, kir.Call):
            return self.call(e)
        raise AssertionError(f"unexpected expression {e!r}")  # pragma: no cover

    def binop(self, e: kir.BinOp) -> _ExprFn:
        t = e.type
        lhs, rhs = self.expr(e.lhs), self.expr(e.rhs)
        if e.op in _MINMAX:
            op = _MINMAX[e.op]
            return lambda env: op(lhs(env), rhs(env))
        if e.op == "pow":
            if t.is_float:
                return lambda env: float_pow(lhs(env), rhs(env))
            return lambda env: int_pow(lhs(env), rhs(env), t)
        if t.is_float:
            fop = _FLOAT_OPS[e.op]
            return lambda env: fop(lhs(env), rhs(env))
        iop = _INT_OPS[e.op]
        return lambda env: wrap(iop(lhs(env), rhs(env)), t)

    def call(self, e: kir.Call) -> _ExprFn:
        t = e.type
        args = [self.expr(a) for a in e.args]
        if e.func == "neg":
            (x,) = args
            return (lambda env: -x(env)) if t.is_float else (lambda env: wrap(-x(env), t))
        if e.func == "abs":
            (x,) = args
            return (lambda env: np.abs(x(env))) if t.is_float else (lambda env: wrap(abs(x(env)), t))
        if e.func == "fma":
            a, b, c = args
            return lambda env: fma(a(env), b(env), c(env))
        fn = _UNARY[e.func]
        (x,) = args
        if e.func in TRANSCENDENTALS and self.perturb and self.alternate:
            perturb = self.perturb

            def alternating(env: _Env) -> Any:
                self.calls += 1  # the calls as they run: a loop's cos(cos(x)) alternates too
                return _perturbed(fn(x(env)), perturb if self.calls % 2 else -perturb)

            return alternating
        if e.func in TRANSCENDENTALS and self.perturb:
            return lambda env: _perturbed(fn(x(env)), self.perturb)
        return lambda env: fn(x(env))
