"""The front end: a Python function's AST, checked and typed, lowered to the kernel IR.

Everything outside the kernel language stops here, as a :class:`KernelSyntaxError` or
:class:`KernelTypeError` pointing at the file, line and column, with the source line: code
generators only ever see valid, fully typed IR. The typing rules are written down in
``docs/kernel-language.md``.
"""

from __future__ import annotations

import ast
import builtins
import operator
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import numpy as np

from ...errors import KernelSyntaxError, KernelTypeError
from . import kir
from .functions import expand_calls
from .interpret import float_divmod, float_pow
from .intrinsics import CALLABLES
from .namespace import annotations, namespace
from .source import Source
from .types import ArrayType, GenericArrayType, ScalarType, TypeVar, bool_, f64, i64, promote, u64, wrap

__all__ = ["parse_kernel"]

_BINOPS = {
    ast.Add: "add",
    ast.Sub: "sub",
    ast.Mult: "mul",
    ast.Div: "div",
    ast.FloorDiv: "floordiv",
    ast.Mod: "mod",
    ast.Pow: "pow",
}
_COMPARES = {ast.Lt: "lt", ast.LtE: "le", ast.Gt: "gt", ast.GtE: "ge", ast.Eq: "eq", ast.NotEq: "ne"}
_FOLD: dict[str, Callable[[Any, Any], Any]] = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "div": operator.truediv,
    "floordiv": operator.floordiv,
    "mod": operator.mod,
    "pow": operator.pow,
}
_UNARY_MATH = ("sqrt", "exp", "log", "sin", "cos", "tanh")
#: The most elements a kp.local array may have.
MAX_LOCAL_ELEMENTS = 1024


def parse_kernel(fn: Callable[..., Any], types: Mapping[TypeVar, ScalarType] | None = None) -> kir.Kernel:
    """Check ``fn`` against the kernel language and return its typed kernel IR.

    ``types`` binds the type variables of a generic kernel; the kernel's name then carries
    them (``saxpy__f32``), so that several specialisations can share a module.

    Raises
    ------
    KernelSyntaxError, KernelTypeError
        At the first construct outside the language or the first type error.
    """
    source = Source(fn)
    try:
        tree = ast.parse(source.text)
    except SyntaxError as exc:  # pragma: no cover - the function compiled once already
        raise KernelSyntaxError(str(exc)) from None
    node = tree.body[0]
    if not isinstance(node, ast.FunctionDef):
        source.error(node, "a kernel must be a plain function (def)")
    return _Checker(fn, node, source, dict(types or {})).kernel()


class _Checker:
    def __init__(
        self, fn: Callable[..., Any], node: ast.FunctionDef, source: Source, types: dict[TypeVar, ScalarType]
    ) -> None:
        self.fn = fn
        self.node = node
        self.src = source
        self.types = types  # a generic kernel's type variables, bound
        self.namespace: dict[str, Any] = namespace(fn)
        self.arrays: dict[str, ArrayType] = {}
        self.scalars: dict[str, ScalarType] = {}  # scalar params, locals and loop variables
        self.params: list[tuple[str, ScalarType | ArrayType]] = []
        self.locals: dict[str, ScalarType] = {}
        self.loop_vars: set[str] = set()
        self.written: set[str] = set()
        self.loops: list[str] = []  # "serial" or "grid", innermost last
        self.in_grid = False
        self.in_epilogue = False
        self.grid_vars: set[str] = set()
        # Locals the grid assigns and the epilogue reads: each must be a reduction.
        self.reductions: set[str] = set()
        self.reduce_ops: dict[str, tuple[str, int]] = {}  # reduction -> (operation, first line)
        self.local_arrays: dict[str, tuple[int, ...]] = {}  # kp.local arrays -> shape
        self.grid_top: set[int] = set()  # ids of the grid body's top-level statements
        self.aliases: list[Any] = []

    def source(self, node: ast.AST) -> Source:
        """The source ``node`` comes from: the kernel's, or an inlined kp.func's (``kp_source``)."""
        return getattr(node, "kp_source", self.src)

    def error(self, node: ast.AST, message: str) -> NoReturn:
        self.source(node).error(node, message)

    def type_error(self, node: ast.AST, message: str) -> NoReturn:
        self.source(node).error(node, message, KernelTypeError)

    def alias(self, value: Any) -> str:
        """A fresh name bound to ``value`` in the kernel's namespace (for inlined functions' globals)."""
        name = f"kp.alias.{len(self.aliases)}"
        self.aliases.append(value)
        self.namespace[name] = value
        return name

    def inline_error(self, node: ast.AST, message: str, kind: str) -> NoReturn:
        (self.type_error if kind == "type" else self.error)(node, message)

    # ------------------------------------------------------------------ the function
    def kernel(self) -> kir.Kernel:
        node = self.node
        args = node.args
        if args.vararg or args.kwarg or args.kwonlyargs or args.posonlyargs or args.defaults:
            self.error(node, "kernel parameters must be plain positional parameters without defaults")
        hints = annotations(self.fn, self.namespace)
        for arg in args.args:
            hint = self.concrete(hints.get(arg.arg), arg)
            if not isinstance(hint, (ScalarType, ArrayType)):
                self.error(arg, f"parameter {arg.arg!r} needs a kernpack type annotation, e.g. kp.f32 or kp.f32[:]")
            self.params.append((arg.arg, hint))
            if isinstance(hint, ArrayType):
                self.arrays[arg.arg] = hint
            else:
                self.scalars[arg.arg] = hint
        body = list(node.body)
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]  # docstring
        # Calls of kp.func functions are inlined first: what follows checks their bodies too.
        body = expand_calls(body, self.resolve, self.arrays, self.alias, self.inline_error)
        grids = [i for i, s in enumerate(body) if self._is_grid(s)]
        if not grids:
            nested = next((s for s in ast.walk(node) if isinstance(s, ast.stmt) and self._is_grid(s)), None)
            if nested is not None:
                self.error(nested, "the grid loop cannot be nested in another statement; make it a top-level loop")
            last = body[-1] if body else None
            if isinstance(last, ast.For) and isinstance(last.iter, ast.Call) and self._calls(last.iter, "range"):
                # The loop a numba user writes: point at it, and say what runs it in parallel.
                args = ", ".join(ast.unparse(a) for a in last.iter.args)
                self.error(
                    last,
                    f"a kernel's last statement is its parallel loop, 'for ... in kp.grid(...)'; write "
                    f"kp.grid({args}) instead of range({args}) here (range loops run serially, inside it)",
                )
            self.error(node, "a kernel needs one 'for ... in kp.grid(...)' loop")
        if len(grids) > 1:
            self.error(body[grids[1]], "a kernel has exactly one grid loop; put the work in the first one")
        grid_node, after = body[grids[0]], body[grids[0] + 1 :]
        self.reductions = _reduction_candidates(grid_node, after)
        prologue = self.block(body[: grids[0]])
        grid = self.grid(grid_node)
        epilogue = self.epilogue(after)
        name = "__".join([node.name, *(t.name for t in self.types.values())]) if self.types else node.name
        reductions = {n: op for n, (op, _) in self.reduce_ops.items()}
        written = self.written - set(self.local_arrays)
        return kir.Kernel(name, self.params, self.locals, prologue, grid, written, epilogue, reductions)

    def concrete(self, hint: Any, node: ast.AST) -> Any:
        """``hint`` with a type variable replaced by its binding (other hints as they are)."""
        var = hint.var if isinstance(hint, GenericArrayType) else hint
        if not isinstance(var, TypeVar):
            return hint
        if var not in self.types:
            self.error(node, f"type variable {var.name} has no type here; call the kernel, or specialize it")
        return hint.bind(self.types) if isinstance(hint, GenericArrayType) else self.types[var]

    def _calls(self, call: ast.Call, name: str) -> bool:
        """True if ``call`` calls the kernel-language callable ``name`` (``"range"``, ``"grid"``)."""
        return CALLABLES.get(id(self.resolve(call.func))) == name

    def _is_grid(self, stmt: ast.stmt) -> bool:
        return (
            isinstance(stmt, ast.For)
            and isinstance(stmt.iter, ast.Call)
            and CALLABLES.get(id(self.resolve(stmt.iter.func))) == "grid"
        )

    def grid(self, node: ast.For) -> kir.Grid:
        call = node.iter
        assert isinstance(call, ast.Call)
        if call.keywords or not 1 <= len(call.args) <= 3:
            self.error(call, "kp.grid takes 1 to 3 extents")
        names = [node.target] if isinstance(node.target, ast.Name) else getattr(node.target, "elts", [node.target])
        if not all(isinstance(n, ast.Name) for n in names) or len(names) != len(call.args):
            self.error(
                node.target,
                f"kp.grid has {len(call.args)} extent(s): unpack it into {len(call.args)} name(s), not {len(names)}",
            )
        extents = [self.index(arg, "a grid extent") for arg in call.args]
        if node.orelse:
            self.error(node.orelse[0], "for/else is not supported")
        var_names = [n.id for n in names]  # type: ignore[attr-defined]
        for name, target in zip(var_names, names, strict=True):
            self.declare_loop_var(name, target)
        self.in_grid = True
        self.grid_vars = set(var_names)
        self.grid_top = {id(s) for s in node.body}
        self.loops.append("grid")
        body = self.block(node.body)
        self.loops.pop()
        self.in_grid = False
        return kir.Grid(var_names, extents, body, line=self.line(node))

    def epilogue(self, stmts: list[ast.stmt]) -> list[kir.Stmt]:
        """The statements after the grid: they run once, when every point is done."""
        self.in_epilogue = True
        epilogue = self.block(stmts)
        self.in_epilogue = False
        return epilogue

    # ------------------------------------------------------------------ print
    def print(self, call: ast.Call, line: int) -> kir.Stmt:
        """``print(...)`` of string literals, f-strings and scalar values, ``sep=`` and ``end=`` literals."""
        if not self.in_grid and not self.in_epilogue:
            self.error(
                call,
                "print() in the prologue is not supported (it would run once per thread or work-item); "
                "print in the grid loop or after it",
            )
        text = {"sep": " ", "end": "\n"}
        for keyword in call.keywords:
            value = keyword.value
            if keyword.arg not in text or not (isinstance(value, ast.Constant) and isinstance(value.value, str)):
                self.error(keyword, "print() in a kernel takes sep= and end= as string literals, and nothing else")
            text[keyword.arg] = value.value
        parts: list[str | kir.Expr] = []
        for k, arg in enumerate(call.args):
            if k:
                parts.append(text["sep"])
            pieces = arg.values if isinstance(arg, ast.JoinedStr) else [arg]
            for piece in pieces:
                if isinstance(piece, ast.Constant) and isinstance(piece.value, str):
                    parts.append(piece.value)
                    continue
                if isinstance(piece, ast.FormattedValue):
                    if piece.conversion != -1 or piece.format_spec is not None:
                        self.error(piece, "an f-string in a kernel formats {value} only: no !r, !s or :spec")
                    piece = piece.value
                if isinstance(piece, ast.Starred):
                    self.error(piece, "print(*...) is not supported in a kernel; pass the values one by one")
                parts.append(self.strong(self.expr(piece)))
        parts.append(text["end"])
        merged: list[str | kir.Expr] = []
        for part in parts:  # adjacent text as one piece
            if isinstance(part, str) and merged and isinstance(merged[-1], str):
                merged[-1] += part
            elif part != "":
                merged.append(part)
        return kir.Print(merged, line=line)

    # ------------------------------------------------------------------ local arrays
    def local_array(self, node: ast.Assign, line: int) -> kir.Stmt:
        """``name = kp.local(dtype, shape)``: an array private to the grid point."""
        call = node.value
        assert isinstance(call, ast.Call)
        target = node.targets[0] if len(node.targets) == 1 else None
        if not isinstance(target, ast.Name):
            self.error(node, "assign kp.local(...) to one name: buf = kp.local(kp.f32, 9)")
        name = target.id
        if not self.in_grid or id(node) not in self.grid_top:
            self.error(
                node,
                "kp.local(...) makes an array private to a grid point: create it at the top level of the grid loop's "
                "body (not in the prologue, an if or a loop)",
            )
        if name in self.arrays or name in self.scalars:
            self.error(
                target,
                f"{name!r} is already a {'array' if name in self.arrays else 'value'}; name the local array anew",
            )
        if call.keywords or len(call.args) != 2:
            self.error(call, "kp.local takes (dtype, shape): kp.local(kp.f32, 9) or kp.local(kp.i32, (3, 3))")
        dtype = self.concrete(self.resolve(call.args[0]), call.args[0])
        if not isinstance(dtype, ScalarType):
            self.error(call.args[0], "the first argument of kp.local is a scalar type such as kp.f32")
        dims = call.args[1].elts if isinstance(call.args[1], ast.Tuple) else [call.args[1]]
        shape = tuple(self.constant_int(d) for d in dims)
        if not 1 <= len(shape) <= 3 or min(shape) < 1:
            self.error(call.args[1], "a local array has 1 to 3 dimensions, each at least 1")
        if int(np.prod(shape)) > MAX_LOCAL_ELEMENTS:
            self.error(
                call.args[1],
                f"a local array holds at most {MAX_LOCAL_ELEMENTS} elements (it lives in each work-item's registers "
                f"or stack); {shape} has {int(np.prod(shape))}. Use an array parameter for more",
            )
        self.arrays[name] = ArrayType(dtype, len(shape))
        self.local_arrays[name] = shape
        return kir.LocalArray(name, dtype, shape, line=line)

    def constant_int(self, node: ast.expr) -> int:
        """A compile-time integer: a literal, or a global int (a local array's extent)."""
        value = self.expr(node)
        if not (isinstance(value, kir.Const) and value.type.is_int):
            self.error(node, "a local array's extents are integer constants (literals or global ints)")
        return int(value.value)

    # ------------------------------------------------------------------ reductions
    def reduction(self, node: ast.Assign | ast.AugAssign, line: int) -> kir.Stmt:
        """``acc += v``, ``acc = acc + v``, ``acc = min(acc, v)``, ``acc = max(acc, v)`` in the grid."""
        name = node.target.id if isinstance(node, ast.AugAssign) else node.targets[0].id  # type: ignore[union-attr]
        op, value = _reduction_form(node, name, self.resolve)
        if op is None or value is None:
            self.error(
                node,
                f"{name!r} is read after the grid loop, so the grid may only combine into it, as a reduction: "
                f"write {name} += v, {name} = min({name}, v) or {name} = max({name}, v) (if it is another value "
                "there, give it another name)",
            )
        if name not in self.scalars:
            self.error(node, f"reduction {name!r} needs a starting value before the grid loop, e.g. {name} = 0")
        first = self.reduce_ops.setdefault(name, (op, line))
        if first[0] != op:
            self.error(
                node,
                f"reduction {name!r} combines with {first[0]} on line {first[1]}; one reduction has one operation "
                "(use another local for the other)",
            )
        acc = self.scalars[name]
        if acc is bool_:
            self.type_error(node, f"reduction {name!r} is a bool; reduce numbers (e.g. count with an int)")
        contribution = self.expr(value)
        # Type the update as the same statement anywhere else would be typed, so the same
        # programs are accepted; the point contributes its value converted to the local's type.
        combined = self.binop(op, kir.Var(acc, name), contribution, node)
        if op != "add" and combined.type is not acc:
            self.type_error(
                node,
                f"reduction {name!r} is {acc} but {op}() here computes in {combined.type}; convert the value: "
                f"{name} = {op}({name}, kp.{acc}(...))",
            )
        self.store_convert(combined, acc, node)
        return kir.Reduce(name, op, self.store_convert(self.convert(contribution, acc), acc, node), line=line)

    def declare_loop_var(self, name: str, node: ast.AST) -> None:
        if self.in_grid and name in self.reductions:
            self.error(node, f"{name!r} is read after the grid loop (a reduction); use another loop variable")
        if name in self.arrays:
            self.error(node, f"{name!r} is an array parameter; use another name for the loop variable")
        if name in self.scalars and self.scalars[name] is not i64:
            self.type_error(node, f"loop variable {name!r} is i64 but was {self.scalars[name]} before")
        self.scalars[name] = i64
        self.loop_vars.add(name)
        if name not in dict(self.params):
            self.locals[name] = i64

    def line(self, node: ast.AST) -> int:
        return self.source(node).line(node)

    # ------------------------------------------------------------------ statements
    def block(self, stmts: list[ast.stmt]) -> list[kir.Stmt]:
        out: list[kir.Stmt] = []
        for stmt in stmts:
            lowered = self.stmt(stmt)
            if lowered is not None:
                out.append(lowered)
        return out

    def stmt(self, node: ast.stmt) -> kir.Stmt | None:
        line = self.line(node)
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and self._calls(node.value, "local"):
            return self.local_array(node, line)
        if isinstance(node, (ast.Assign, ast.AugAssign)) and self.in_grid and _assigns(node) & self.reductions:
            return self.reduction(node, line)
        if isinstance(node, ast.Assign):
            if len(node.targets) != 1:
                self.error(node, "assign one target at a time")
            return self.assign(node.targets[0], self.expr(node.value), node, line)
        if isinstance(node, ast.AnnAssign):
            self.error(node, "annotated assignments are not supported; use a cast such as kp.f32(v)")
        if isinstance(node, ast.AugAssign):
            op = _BINOPS.get(type(node.op))
            if op is None:
                self.error(node, f"operator {type(node.op).__name__} is not supported")
            current = self.expr(_as_load(node.target))
            value = self.binop(op, current, self.expr(node.value), node)
            return self.assign(node.target, value, node, line)
        if isinstance(node, ast.If):
            cond = self.condition(node.test)
            return kir.If(cond, self.block(node.body), self.block(node.orelse), line=line)
        if isinstance(node, ast.While):
            if node.orelse:
                self.error(node.orelse[0], "while/else is not supported")
            cond = self.condition(node.test)
            self.loops.append("serial")
            body = self.block(node.body)
            self.loops.pop()
            return kir.While(cond, body, line=line)
        if isinstance(node, ast.For):
            return self.for_range(node, line)
        if isinstance(node, ast.Break):
            if not self.loops or self.loops[-1] != "serial":
                self.error(node, "break must be inside a range or while loop (grid iterations cannot stop the grid)")
            return kir.Break(line=line)
        if isinstance(node, ast.Continue):
            if not self.loops:
                self.error(node, "continue must be inside a loop")
            return kir.Continue(line=line)
        if isinstance(node, ast.Pass):
            return None
        if isinstance(node, ast.Expr):
            call = node.value
            if isinstance(call, ast.Call) and CALLABLES.get(id(self.resolve(call.func))) == "atomic_add":
                return self.atomic_add(call, line)
            if isinstance(call, ast.Call) and self.resolve(call.func) is builtins.print:
                return self.print(call, line)
            if isinstance(call, ast.Call):
                self.error(call, f"calling {ast.unparse(call.func)!r} as a statement does nothing in a kernel")
            self.error(node, "an expression statement has no effect in a kernel")
        if isinstance(node, ast.Return):
            self.error(node, "kernels do not return values: write results into an output array")
        self.error(node, f"{type(node).__name__} statements are not part of the kernel language")

    def assign(self, target: ast.expr, value: kir.Expr, node: ast.AST, line: int) -> kir.Stmt:
        if isinstance(target, ast.Name):
            name = target.id
            if name in self.arrays:
                what = "local array" if name in self.local_arrays else "array parameter"
                self.error(target, f"cannot rebind {what} {name!r}; write into it with {name}[...] = ...")
            if name in self.loop_vars:
                self.error(target, f"cannot assign to loop variable {name!r}")
            if name in self.scalars:
                value = self.store_convert(value, self.scalars[name], node)
            else:
                if not self.in_grid and self.loops:
                    pass  # a local first assigned inside a prologue loop: still function-scoped
                type_ = value.type
                if isinstance(value, kir.Const) and value.weak:
                    value = kir.Const(type_, value.value)
                self.scalars[name] = self.locals[name] = type_
            return kir.Assign(name, value, line=line)
        if isinstance(target, ast.Subscript):
            array, indices = self.subscript(target)
            if not self.in_grid and not self.in_epilogue:
                self.error(target, "arrays can be written only in the grid loop or after it")
            self.written.add(array)
            value = self.store_convert(value, self.arrays[array].dtype, node)
            return kir.Store(array, indices, value, line=line)
        self.error(target, "assign to a local name or an array element")

    def for_range(self, node: ast.For, line: int) -> kir.Stmt:
        call = node.iter
        if not (isinstance(call, ast.Call) and CALLABLES.get(id(self.resolve(call.func))) == "range"):
            if isinstance(call, ast.Call) and CALLABLES.get(id(self.resolve(call.func))) == "grid":
                self.error(node, "the grid loop cannot be nested in another loop")
            self.error(node.iter, "serial loops iterate over range(...) only")
        if call.keywords or not 1 <= len(call.args) <= 3:
            self.error(call, "range takes 1 to 3 integer arguments")
        if not isinstance(node.target, ast.Name):
            self.error(node.target, "the range loop variable must be a single name")
        if node.orelse:
            self.error(node.orelse[0], "for/else is not supported")
        args = [self.index(a, "a range bound") for a in call.args]
        start, stop, step = (
            (kir.Const(i64, 0), args[0], kir.Const(i64, 1))
            if len(args) == 1
            else (args[0], args[1], args[2] if len(args) == 3 else kir.Const(i64, 1))
        )
        if isinstance(step, kir.Const) and step.value == 0:
            self.error(call.args[2], "range step must not be zero")
        name = node.target.id
        outer = name in self.loop_vars
        self.declare_loop_var(name, node.target)
        self.loops.append("serial")
        body = self.block(node.body)
        self.loops.pop()
        if not outer:
            self.loop_vars.discard(name)
        return kir.ForRange(name, start, stop, step, body, line=line)

    def atomic_add(self, call: ast.Call, line: int) -> kir.Stmt:
        if call.keywords or len(call.args) != 3:
            self.error(call, "kp.atomic_add takes (array, index, value)")
        target, index, value = call.args
        if not isinstance(target, ast.Name) or target.id not in self.arrays:
            self.error(target, "the first argument of kp.atomic_add must be an array parameter")
        if target.id in self.local_arrays:
            self.error(
                target, f"{target.id!r} is a local array, private to this point: update it with {target.id}[...] += v"
            )
        array = self.arrays[target.id]
        if not self.in_grid and not self.in_epilogue:
            self.error(call, "kp.atomic_add belongs in the grid loop or after it")
        if array.dtype is bool_:
            self.type_error(target, "kp.atomic_add needs a numeric array, not bool")
        elts = index.elts if isinstance(index, ast.Tuple) else [index]
        if len(elts) != array.ndim:
            self.type_error(index, f"{target.id} has {array.ndim} dimension(s); give {array.ndim} index(es)")
        indices = [self.index(e, "an index") for e in elts]
        self.written.add(target.id)
        converted = self.store_convert(self.expr(value), array.dtype, value)
        return kir.AtomicAdd(target.id, indices, converted, line=line)

    # ------------------------------------------------------------------ expressions
    def condition(self, node: ast.expr) -> kir.Expr:
        cond = self.expr(node)
        if cond.type is not bool_:
            self.type_error(node, f"a condition must be bool, not {cond.type}; compare explicitly (e.g. x != 0)")
        return cond

    def index(self, node: ast.expr, what: str) -> kir.Expr:
        value = self.expr(node)
        if not value.type.is_int:
            self.type_error(node, f"{what} must be an integer, not {value.type}")
        return self.convert(value, i64)

    def expr(self, node: ast.expr) -> kir.Expr:
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool):
                return kir.Const(bool_, value)
            if isinstance(value, int):
                if not -(2**63) <= value < 2**64:
                    self.type_error(node, f"integer literal {value} does not fit in 64 bits")
                return kir.Const(i64, value, weak=True)
            if isinstance(value, float):
                return kir.Const(f64, value, weak=True)
            self.error(node, f"{type(value).__name__} literals are not part of the kernel language")
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.Subscript):
            if isinstance(node.value, ast.Attribute) and node.value.attr == "shape":
                return self.shape(node)
            array, indices = self.subscript(node)
            return kir.Load(self.arrays[array].dtype, array, indices)
        if isinstance(node, ast.BinOp):
            op = _BINOPS.get(type(node.op))
            if op is None:
                self.error(node, f"operator {type(node.op).__name__} is not part of the kernel language")
            return self.binop(op, self.expr(node.left), self.expr(node.right), node)
        if isinstance(node, ast.UnaryOp):
            return self.unary(node)
        if isinstance(node, ast.BoolOp):
            values = [self.condition(v) for v in node.values]
            return kir.BoolOp(bool_, "and" if isinstance(node.op, ast.And) else "or", values)
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.IfExp):
            cond = self.condition(node.test)
            a, b = self.expr(node.body), self.expr(node.orelse)
            if a.type is bool_ and b.type is bool_:
                return kir.Select(bool_, cond, a, b)
            a, b, type_ = self.unify(a, b, node)
            if isinstance(a, kir.Const) and isinstance(b, kir.Const) and a.weak and b.weak:
                a, b = kir.Const(type_, a.value), kir.Const(type_, b.value)
            return kir.Select(type_, cond, a, b)
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.Attribute):
            self.error(node, f"{ast.unparse(node)!r} is not a value in a kernel (only arr.shape[d] is)")
        self.error(node, f"{type(node).__name__} expressions are not part of the kernel language")

    def name(self, node: ast.Name) -> kir.Expr:
        if self.in_grid and node.id in self.reductions:
            self.error(
                node,
                f"grid points cannot read reduction {node.id!r}: its value is known only after the grid loop. "
                f"Combine into it ({node.id} += v, {node.id} = min({node.id}, v) or max) and read it after the loop",
            )
        if self.in_epilogue and node.id in self.grid_vars:
            self.error(node, f"grid variable {node.id!r} has no value after the grid loop")
        if node.id in self.scalars:
            return kir.Var(self.scalars[node.id], node.id)
        if node.id in self.arrays:
            self.error(node, f"array {node.id!r} can only be indexed (e.g. {node.id}[i]) or asked for its shape")
        value = self.namespace.get(node.id, getattr(builtins, node.id, None))
        # Global numbers are compile-time constants.
        if isinstance(value, bool):
            return kir.Const(bool_, value)
        if isinstance(value, int) and -(2**63) <= value < 2**64:
            return kir.Const(i64, value, weak=True)
        if isinstance(value, float):
            return kir.Const(f64, value, weak=True)
        if node.id in self.namespace or hasattr(builtins, node.id):
            self.error(node, f"{node.id!r} is not a number, array or local; kernels see only those")
        self.error(node, f"name {node.id!r} is not defined in the kernel")

    def shape(self, node: ast.Subscript) -> kir.Expr:
        base = node.value
        assert isinstance(base, ast.Attribute)
        if not isinstance(base.value, ast.Name) or base.value.id not in self.arrays:
            self.error(base, "only an array parameter has a shape")
        array = self.arrays[base.value.id]
        dim = node.slice
        if not (isinstance(dim, ast.Constant) and isinstance(dim.value, int) and 0 <= dim.value < array.ndim):
            self.error(dim, f"{base.value.id}.shape takes a constant index from 0 to {array.ndim - 1}")
        if base.value.id in self.local_arrays:
            self.outside_point(base.value)
            return kir.Const(i64, self.local_arrays[base.value.id][dim.value], weak=True)
        return kir.Shape(i64, base.value.id, dim.value)

    def outside_point(self, node: ast.Name) -> None:
        """Refuse a local array after the grid loop (it belongs to a grid point)."""
        if self.in_epilogue:
            self.error(node, f"local array {node.id!r} belongs to a grid point; it has no value after the grid loop")

    def subscript(self, node: ast.Subscript) -> tuple[str, list[kir.Expr]]:
        if not isinstance(node.value, ast.Name) or node.value.id not in self.arrays:
            self.error(node.value, f"{ast.unparse(node.value)!r} is not an array parameter")
        name = node.value.id
        array = self.arrays[name]
        if name in self.local_arrays:
            self.outside_point(node.value)
        elts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if any(isinstance(e, ast.Slice) for e in elts):
            self.error(node.slice, "slices are not part of the kernel language; index one element at a time")
        if len(elts) != array.ndim:
            self.type_error(node, f"{name} has {array.ndim} dimension(s) but {len(elts)} index(es) were given")
        return name, [self.index(e, "an index") for e in elts]

    def unary(self, node: ast.UnaryOp) -> kir.Expr:
        operand = self.expr(node.operand)
        if isinstance(node.op, ast.Not):
            if operand.type is not bool_:
                self.type_error(node, f"'not' needs a bool, not {operand.type}")
            return kir.Not(bool_, operand)
        if isinstance(node.op, (ast.USub, ast.UAdd)):
            if operand.type is bool_:
                self.type_error(node, "arithmetic on bool is not allowed; cast it first")
            if isinstance(node.op, ast.UAdd):
                return operand
            if isinstance(operand, kir.Const):
                return kir.Const(operand.type, -operand.value, weak=operand.weak)
            return kir.Call(operand.type, "neg", [operand])
        self.error(node, f"operator {type(node.op).__name__} is not part of the kernel language")

    def compare(self, node: ast.Compare) -> kir.Expr:
        parts: list[kir.Expr] = []
        left = node.left
        for op, right in zip(node.ops, node.comparators, strict=True):
            name = _COMPARES.get(type(op))
            if name is None:
                self.error(node, f"comparison {type(op).__name__} is not part of the kernel language")
            a, b = self.expr(left), self.expr(right)
            if (a.type is bool_) != (b.type is bool_):
                self.type_error(node, f"cannot compare {a.type} with {b.type}")
            if a.type is bool_:
                if name not in ("eq", "ne"):
                    self.type_error(node, "bools compare with == and != only")
                parts.append(kir.Compare(bool_, name, a, b))
            else:
                a, b, _ = self.unify(a, b, node)
                parts.append(kir.Compare(bool_, name, self.strong(a), self.strong(b)))
            left = right
        return parts[0] if len(parts) == 1 else kir.BoolOp(bool_, "and", parts)

    def call(self, node: ast.Call) -> kir.Expr:
        target = self.resolve(node.func)
        if node.keywords:
            self.error(node, "keyword arguments are not supported in kernels")
        target = self.concrete(target, node)  # T(v) in a generic kernel: the bound type's cast
        if isinstance(target, ScalarType):
            if len(node.args) != 1:
                self.error(node, f"a cast takes one value: {target!r}(v)")
            value = self.expr(node.args[0])
            if target is bool_ and value.type is not bool_:
                zero = self.convert(kir.Const(i64, 0, weak=True), value.type)
                return kir.Compare(bool_, "ne", self.strong(value), zero)
            return self.convert(self.strong(value), target)
        name = CALLABLES.get(id(target)) if target is not None else None
        if name is None or name in ("grid", "atomic_add", "range", "local"):
            what = ast.unparse(node.func)
            if name == "local":
                self.error(node, "kp.local(...) makes an array: assign it to a name, buf = kp.local(kp.f32, 9)")
            if name in ("grid", "range"):
                self.error(node, f"{what}(...) can only be the iterable of a for loop")
            if name == "atomic_add":
                self.error(node, "kp.atomic_add is a statement; it has no value")
            if target is len and len(node.args) == 1:
                arg = ast.unparse(node.args[0])
                self.error(node, f"len() is not in the kernel language; write {arg}.shape[0] for an array's length")
            self.error(node, f"{what!r} cannot be called in a kernel; see kp.math for the functions that can")
        args = [self.expr(a) for a in node.args]
        if name in _UNARY_MATH or name in ("floor", "ceil", "abs"):
            if len(args) != 1:
                self.error(node, f"{name} takes one argument")
            (arg,) = args
            if arg.type is bool_:
                self.type_error(node, f"{name} needs a number, not bool")
            if name == "abs":
                return kir.Call(self.strong(arg).type, "abs", [self.strong(arg)])
            if not arg.type.is_float or (isinstance(arg, kir.Const) and arg.weak):
                arg = self.convert(arg, f64)  # an integer argument computes in f64
            return kir.Call(arg.type, name, [arg])
        if name == "fma":
            if len(args) != 3:
                self.error(node, "fma takes three arguments")
            type_ = self.common_type(args, node)
            if not type_.is_float:
                type_ = f64
            return kir.Call(type_, "fma", [self.convert(a, type_) for a in args])
        # min / max
        if len(args) < 2:
            self.error(node, f"{name} takes two or more numbers in a kernel")
        result = args[0]
        for other in args[1:]:
            result = self.binop(name, result, other, node)
        return result

    def resolve(self, node: ast.expr) -> Any:
        """The Python object a call target names (None for locals and unknown names)."""
        if isinstance(node, ast.Name):
            if node.id in self.scalars or node.id in self.arrays:
                return None
            if node.id in self.namespace:
                return self.namespace[node.id]
            return getattr(builtins, node.id, None)
        if isinstance(node, ast.Attribute):
            base = self.resolve(node.value)
            return getattr(base, node.attr, None) if base is not None else None
        return None

    # ------------------------------------------------------------------ typing
    def binop(self, op: str, a: kir.Expr, b: kir.Expr, node: ast.AST) -> kir.Expr:
        if a.type is bool_ or b.type is bool_:
            self.type_error(node, f"arithmetic on bool is not allowed ({op}); cast it first, e.g. kp.i32(flag)")
        if op == "pow":
            return self.power(a, b, node)
        if isinstance(a, kir.Const) and isinstance(b, kir.Const) and a.weak and b.weak and op in _FOLD:
            return self.fold(op, a.value, b.value, node)
        a, b, type_ = self.unify(a, b, node)
        if op == "div" and not type_.is_float:
            type_ = f64
        return kir.BinOp(type_, op, self.convert(a, type_), self.convert(b, type_))

    def power(self, base: kir.Expr, exponent: kir.Expr, node: ast.AST) -> kir.Expr:
        if not exponent.type.is_int:
            self.type_error(node, f"the exponent of ** must be an integer, not {exponent.type}")
        if isinstance(base, kir.Const) and isinstance(exponent, kir.Const) and base.weak and exponent.weak:
            return self.fold("pow", base.value, exponent.value, node)
        if base.type.is_float:
            base = self.strong(base)
            # The exponent keeps its value: i64, or u64 for a u64 exponent (beyond i64's range).
            wide = u64 if exponent.type is u64 else i64
            return kir.BinOp(base.type, "pow", base, self.convert(self.strong(exponent), wide))
        base, exponent, type_ = self.unify(base, exponent, node)
        return kir.BinOp(type_, "pow", self.convert(base, type_), self.convert(exponent, type_))

    def fold(self, op: str, x: int | float, y: int | float, node: ast.AST) -> kir.Const:
        """Two weak literals combined now: Python's arithmetic on ints, the language's on floats.

        Ints stay exact (they wrap only when they meet a typed value), with the language's
        rules where Python raises: ``//`` and ``%`` by zero give 0, a negative power 0 (1 for 1).
        Floats, and int ``/``, compute in float64 as at run time: ``1.0 / 0.0`` is inf.
        """
        if isinstance(x, int) and isinstance(y, int) and op != "div":
            if op in ("floordiv", "mod"):
                return kir.Const(i64, _FOLD[op](x, y) if y else 0, weak=True)
            if op == "pow" and y < 0:
                return kir.Const(i64, 1 if x == 1 else 0, weak=True)
            if op == "pow" and abs(x) > 1 and y * abs(x).bit_length() > 128:
                self.type_error(node, f"{x} ** {y} is far beyond 64 bits; kernels compute in at most 64")
            return kir.Const(i64, _FOLD[op](x, y), weak=True)
        try:
            fx, fy = np.float64(x), np.float64(y)
        except OverflowError:
            self.type_error(node, "an integer literal expression here is too large for a float")
        with np.errstate(all="ignore"):
            if op == "pow":
                value = float_pow(fx, int(y))
            elif op in ("floordiv", "mod"):
                value = float_divmod(fx, fy)[0 if op == "floordiv" else 1]
            else:
                value = _FOLD[op](fx, fy)  # + - * / on numpy float64: IEEE, no exceptions
        return kir.Const(f64, float(value), weak=True)

    def unify(self, a: kir.Expr, b: kir.Expr, node: ast.AST) -> tuple[kir.Expr, kir.Expr, ScalarType]:
        """Operands converted to their common type (weak literals take the other's type)."""
        weak_a = isinstance(a, kir.Const) and a.weak
        weak_b = isinstance(b, kir.Const) and b.weak
        if weak_a and weak_b:
            type_ = f64 if a.type.is_float or b.type.is_float else i64
        elif weak_a:
            type_ = b.type if b.type.is_float or a.type.is_int else f64
        elif weak_b:
            type_ = a.type if a.type.is_float or b.type.is_int else f64
        else:
            if a.type is bool_ or b.type is bool_:
                self.type_error(node, f"cannot combine {a.type} with {b.type}")
            type_ = promote(a.type, b.type)
        return self.convert(a, type_), self.convert(b, type_), type_

    def common_type(self, args: list[kir.Expr], node: ast.AST) -> ScalarType:
        type_ = args[0].type if not (isinstance(args[0], kir.Const) and args[0].weak) else None
        for arg in args[1:]:
            if isinstance(arg, kir.Const) and arg.weak:
                continue
            type_ = arg.type if type_ is None else promote(type_, arg.type)
        return type_ or f64

    def strong(self, value: kir.Expr) -> kir.Expr:
        if isinstance(value, kir.Const) and value.weak:
            return kir.Const(value.type, value.value)
        return value

    def convert(self, value: kir.Expr, type_: ScalarType) -> kir.Expr:
        if isinstance(value, kir.Const) and (value.weak or value.type is type_):
            return kir.Const(type_, _fold_cast(value.value, type_), weak=value.weak)
        if value.type is type_:
            return value
        return kir.Cast(type_, value)

    def store_convert(self, value: kir.Expr, target: ScalarType, node: ast.AST) -> kir.Expr:
        """Convert a value stored into a local or an array element of type ``target``."""
        if value.type is target:
            return self.strong(value)
        if target is bool_:
            self.type_error(node, f"cannot store {value.type} into a bool; compare explicitly (e.g. x != 0)")
        if target.is_int and value.type.is_float:
            self.type_error(
                node,
                f"cannot store {value.type} into {target} implicitly; convert explicitly, e.g. kp.{target}(value)",
            )
        return self.strong(self.convert(value, target))


def _fold_cast(value: int | float | bool, type_: ScalarType) -> int | float | bool:
    """A literal converted to ``type_`` at compile time, as the cast would at run time.

    An int literal meeting a narrower or unsigned integer wraps to it (rule 5 gives it the
    integer's type, and integer arithmetic wraps): ``x_u32 + (-1)`` adds 0xFFFFFFFF.
    """
    if type_ is bool_:
        return bool(value)
    if type_.is_int:
        return wrap(int(value), type_)
    return type_.dtype.type(value).item()


def _assigns(node: ast.Assign | ast.AugAssign) -> set[str]:
    """The local names an assignment statement binds."""
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return {t.id for t in targets if isinstance(t, ast.Name)}


def _reduction_candidates(grid: ast.For, after: list[ast.stmt]) -> set[str]:
    """Names the grid loop assigns (its own variables aside) and a statement after it reads."""
    read = {n.id for s in after for n in ast.walk(s) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    targets = grid.target.elts if isinstance(grid.target, ast.Tuple) else [grid.target]
    own = {t.id for t in targets if isinstance(t, ast.Name)}
    stored = {n.id for s in grid.body for n in ast.walk(s) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    return (stored - own) & read


def _reduction_form(
    node: ast.Assign | ast.AugAssign, name: str, resolve: Callable[[ast.expr], Any]
) -> tuple[str | None, ast.expr | None]:
    """(operation, contributed value) of a reduction update of ``name``, or (None, None)."""
    if isinstance(node, ast.AugAssign):
        return ("add", node.value) if isinstance(node.op, ast.Add) else (None, None)
    if len(node.targets) != 1:
        return None, None
    value = node.value

    def other(a: ast.expr, b: ast.expr) -> ast.expr | None:
        """The operand that is not ``name`` itself, if exactly one is."""
        is_a, is_b = (isinstance(x, ast.Name) and x.id == name for x in (a, b))
        return b if is_a and not is_b else a if is_b and not is_a else None

    if isinstance(value, ast.BinOp) and isinstance(value.op, ast.Add):
        found = other(value.left, value.right)
        return ("add", found) if found is not None else (None, None)
    if isinstance(value, ast.Call) and len(value.args) == 2 and not value.keywords:
        op = CALLABLES.get(id(resolve(value.func)))
        found = other(*value.args)
        if op in ("min", "max") and found is not None:
            return op, found
    return None, None


def _as_load(target: ast.expr) -> ast.expr:
    clone = ast.copy_location(ast.parse(ast.unparse(target), mode="eval").body, target)
    for child in ast.walk(clone):
        if hasattr(child, "lineno"):
            ast.copy_location(child, target)
    return clone
