"""``@kp.func``: device functions, inlined into the kernels that call them.

A device function is a Python function with kernpack annotations (scalars and arrays in, a
scalar or nothing out). The front end inlines every call, on the AST, before it checks the
kernel: the function's names are renamed apart (its locals and scalar parameters get names no
kernel can spell, its array parameters become the caller's arrays, its globals aliases of its
own module's values), its body goes where the call was, and the call becomes its result. So
every target, and the reference interpreter, runs functions with nothing of their own, and
every error inside one points at the function's own file and line.

What a call may be, so that inlining keeps Python's meaning:

* anywhere an expression is evaluated exactly once, before its statement runs: the whole
  right side of an assignment, a term of an expression, an ``if`` test, a ``range`` bound, a
  grid extent; the calls of one statement run in Python's order (left to right, arguments
  first);
* not where Python may skip it (after the first operand of ``and``/``or``, in a branch of
  ``a if c else b``) nor in a ``while`` test (evaluated again each time): assign it first;
* a function that writes an array is called as a whole statement or as the whole right side
  of an assignment, so that nothing else in the statement reads what it writes.

The body may ``return`` only as its last statement; recursion is refused.
"""

from __future__ import annotations

import ast
import builtins
import copy
import functools
import itertools
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

from .definition import definition_parts
from .intrinsics import CALLABLES
from .namespace import annotations, namespace
from .source import Source
from .types import ArrayType, ScalarType

__all__ = ["KernelFunction", "expand_calls", "func"]


class KernelFunction:
    """A device function: callable from kernels (inlined) and as plain Python.

    Attributes
    ----------
    py_func : callable
        The original function (calling the object calls it, in plain Python).
    params : list of (str, ScalarType or ArrayType)
        The annotated parameters, in order.
    returns : ScalarType or None
        The type of the result (None: it returns nothing).
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.py_func = fn  # kp.func() gives it fn's __name__, __doc__ and __wrapped__
        self.source = Source(fn)
        try:
            tree = ast.parse(self.source.text)
        except SyntaxError as exc:  # pragma: no cover - the function compiled once already
            self.source.error(ast.Module(body=[], type_ignores=[]), str(exc))
        node = tree.body[0]
        if not isinstance(node, ast.FunctionDef):
            self.source.error(node, "a kp.func must be a plain function (def)")
        self.node = node
        self.params, self.returns = self._signature(fn, node)
        self._check_body(node)
        self._token_busy = False

    def _signature(self, fn: Callable[..., Any], node: ast.FunctionDef) -> tuple[list[Any], ScalarType | None]:
        args = node.args
        if args.vararg or args.kwarg or args.kwonlyargs or args.posonlyargs or args.defaults:
            self.source.error(node, "kp.func parameters must be plain positional parameters without defaults")
        hints = annotations(fn)
        params = []
        for arg in args.args:
            hint = hints.get(arg.arg)
            if not isinstance(hint, (ScalarType, ArrayType)):
                self.source.error(arg, f"parameter {arg.arg!r} needs a kernpack type annotation (kp.f32, kp.f32[:])")
            params.append((arg.arg, hint))
        returns = hints.get("return")
        if returns is not None and not isinstance(returns, ScalarType):
            self.source.error(node, "a kp.func returns a scalar (annotate it, e.g. -> kp.f32) or nothing")
        return params, returns

    def _check_body(self, node: ast.FunctionDef) -> None:
        body = _without_docstring(node.body)
        for stmt in ast.walk(node):
            if isinstance(stmt, ast.Return) and (not body or stmt is not body[-1]):
                self.source.error(
                    stmt, "a kp.func returns only as its last statement; assign the result, return it there"
                )
            if isinstance(stmt, (ast.FunctionDef, ast.Lambda, ast.AsyncFunctionDef)) and stmt is not node:
                self.source.error(stmt, "a kp.func cannot define functions; make it a kp.func of its own")
        last = body[-1] if body else None
        gives = isinstance(last, ast.Return) and last.value is not None
        if self.returns is None and gives:
            self.source.error(last, f"{node.name} returns a value: annotate it (def {node.name}(...) -> kp.f32)")
        if self.returns is not None and not gives:
            self.source.error(
                node, f"{node.name} is annotated to return {self.returns!r}: end it with 'return <value>'"
            )
        for call in ast.walk(node):
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == node.name:
                self.source.error(call, f"{node.name} calls itself: kp.func functions cannot be recursive")

    @property
    def writes_arrays(self) -> bool:
        """True if the body writes an array, itself or through the functions it calls."""
        return self._writes(set())

    def _writes(self, seen: set[int]) -> bool:
        seen.add(id(self))
        for node in ast.walk(self.node):
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            if any(isinstance(t, ast.Subscript) for t in targets):
                return True  # only arrays can be subscripted in a kernel
            if isinstance(node, ast.Call):
                callee = _resolve(self.py_func, node.func)
                if CALLABLES.get(id(callee)) == "atomic_add":
                    return True
                if isinstance(callee, KernelFunction) and id(callee) not in seen and callee._writes(seen):
                    return True
        return False

    def kernel_index_token(self) -> str | None:
        """What a kernel's index key holds for this function: its definition's parts.

        None (the kernel goes through the front end) where a value it names is not readable,
        and for functions that call each other in a cycle (refused when inlined anyway).
        """
        if self._token_busy:
            return None
        self._token_busy = True
        try:
            parts = definition_parts(self.py_func)
        finally:
            self._token_busy = False
        # The parts themselves (the kernel's key hashes them): its file, position and values.
        return None if parts is None else "func:" + "\0".join(parts)

    def __call__(self, *args: Any) -> Any:
        return self.py_func(*args)

    def __repr__(self) -> str:
        params = ", ".join(f"{n}: {t!r}" for n, t in self.params)
        return f"<kernpack func {self.__name__}({params}) -> {self.returns!r}>"


def func(fn: Callable[..., Any]) -> KernelFunction:
    """Decorate a Python function as a device function, callable from kernels.

    Its parameters are annotated with kernpack types (``kp.f32``, ``kp.f32[:]``) and its result,
    if any, with a scalar type (``-> kp.f32``). Calls from kernels (and from other functions)
    are inlined: every target runs them. Scalar arguments are converted to the parameter's type
    as ``kp.f32(v)`` does; array arguments are the caller's arrays, of exactly the annotated
    dtype and rank.

    Examples
    --------
    >>> import numpy as np, kernpack as kp
    >>> @kp.func
    ... def clamp(v: kp.f32, lo: kp.f32, hi: kp.f32) -> kp.f32:
    ...     return min(max(v, lo), hi)
    >>> @kp.kernel
    ... def clip(x: kp.f32[:], out: kp.f32[:]):
    ...     for i in kp.grid(x.shape[0]):
    ...         out[i] = clamp(x[i], 0.0, 1.0)
    >>> x = np.array([-1.0, 0.5, 2.0], np.float32); out = np.empty_like(x)
    >>> clip(x, out)
    >>> out
    array([0. , 0.5, 1. ], dtype=float32)
    """
    return functools.update_wrapper(KernelFunction(fn), fn, updated=())


# ---------------------------------------------------------------------- inlining
class Inliner:
    """Rewrites a kernel's statements so that no call to a kp.func remains.

    ``resolve(node)`` gives the object a call's target names in the kernel (the front end's
    own resolution), ``arrays`` the kernel's array parameters, and ``alias(value)`` registers a
    value in the kernel's namespace under a fresh name, which it returns.
    """

    def __init__(
        self, resolve: Callable[[ast.expr], Any], arrays: dict[str, ArrayType], alias: Callable[[Any], str]
    ) -> None:
        self.resolve = resolve
        self.arrays = arrays
        self.alias = alias
        self.counter = itertools.count(1)
        self.stack: list[KernelFunction] = []

    # ------------------------------------------------------------------ statements
    def block(self, stmts: list[ast.stmt]) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for stmt in stmts:
            out.extend(self.stmt(stmt))
        return out

    def stmt(self, node: ast.stmt) -> list[ast.stmt]:
        before: list[ast.stmt] = []
        if isinstance(node, ast.Assign) and self._is_call(node.value):
            # Python evaluates the right side first, then the target's subscripts.
            node.value = self.inline(node.value, before, whole=True)
            node.targets = [self.hoist(t, before) for t in node.targets]
            return [*before, node]
        if isinstance(node, ast.AugAssign):
            # Python evaluates (and reads) the target before the value: a function that writes
            # must not run first, so its call counts as part of an expression.
            node.target = self.hoist(node.target, before)
            node.value = self.hoist(node.value, before)
            return [*before, node]
        if isinstance(node, ast.Expr) and self._is_call(node.value):
            self.inline(node.value, before, whole=True, value_used=False)
            return before
        if isinstance(node, ast.While):
            for call in self._calls(node.test):
                self._error(call, "a kp.func call in a while test would run once, not each time: assign it in the loop")
            node.body = self.block(node.body)
            return [node]
        if isinstance(node, ast.If):
            node.test = self.hoist(node.test, before)
            node.body, node.orelse = self.block(node.body), self.block(node.orelse)
            return [*before, node]
        if isinstance(node, ast.For):
            node.iter = self.hoist(node.iter, before)
            node.body = self.block(node.body)
            return [*before, node]
        for field in ("value", "target", "targets", "test"):
            if hasattr(node, field):
                value = getattr(node, field)
                if isinstance(value, list):
                    setattr(node, field, [self.hoist(v, before) for v in value])
                elif isinstance(value, ast.expr):
                    setattr(node, field, self.hoist(value, before))
        return [*before, node]

    # ------------------------------------------------------------------ expressions
    def hoist(self, expr: ast.expr, before: list[ast.stmt]) -> ast.expr:
        """``expr`` with each kp.func call replaced by its result, the calls' bodies appended to ``before``."""
        if self._is_call(expr):
            return self.inline(expr, before, whole=False)
        # Where Python may skip what follows the first operand, only that operand may call.
        if isinstance(expr, ast.BoolOp):
            expr.values[0] = self.hoist(expr.values[0], before)
            self._refuse(expr.values[1:], "after 'and'/'or'")
            return expr
        if isinstance(expr, ast.Compare):
            expr.left = self.hoist(expr.left, before)
            expr.comparators[0] = self.hoist(expr.comparators[0], before)
            self._refuse(expr.comparators[1:], "later in a chained comparison")
            return expr
        if isinstance(expr, ast.IfExp):
            expr.test = self.hoist(expr.test, before)
            self._refuse([expr.body, expr.orelse], "in a branch of 'a if c else b'")
            return expr
        for field, value in ast.iter_fields(expr):
            if isinstance(value, ast.expr):
                setattr(expr, field, self.hoist(value, before))
            elif isinstance(value, list):
                setattr(expr, field, [self.hoist(v, before) if isinstance(v, ast.expr) else v for v in value])
        return expr

    def inline(
        self,
        call: ast.Call,
        before: list[ast.stmt],
        *,
        whole: bool,
        value_used: bool = True,
    ) -> ast.expr:
        """Append the body of the kp.func ``call`` calls to ``before``; return its result."""
        fn: KernelFunction = self.resolve(call.func)
        if fn in self.stack:
            cycle = " -> ".join(f.__name__ for f in [*self.stack[self.stack.index(fn) :], fn])
            self._error(call, f"kp.func functions cannot be recursive: {cycle}")
        if call.keywords:
            self._error(call, f"{fn.__name__}() takes its arguments by position in a kernel")
        if len(call.args) != len(fn.params):
            self._error(call, f"{fn.__name__}() takes {len(fn.params)} argument(s), not {len(call.args)}")
        if fn.writes_arrays and not whole:
            self._error(
                call,
                f"{fn.__name__} writes an array: call it as a statement or as the whole right side of an "
                "assignment, so that nothing else in the statement reads what it writes",
            )
        if value_used and fn.returns is None:
            self._error(call, f"{fn.__name__} returns nothing: it has no value to use")
        prefix = f"{fn.__name__}.{next(self.counter)}."
        renames: dict[str, str] = {}
        for (name, type_), arg in zip(fn.params, call.args, strict=True):
            if isinstance(type_, ArrayType):
                if not (isinstance(arg, ast.Name) and arg.id in self.arrays):
                    self._error(
                        arg,
                        f"{fn.__name__}(): {name!r} is an array parameter; pass an array parameter of the kernel "
                        "(a kp.local array cannot be passed to a function in this version)",
                    )
                if self.arrays[arg.id] != type_:
                    self._error(
                        arg,
                        f"{fn.__name__}(): {name!r} is {type_!r}, not {self.arrays[arg.id]!r} like {arg.id!r}",
                        "type",
                    )
                renames[name] = arg.id
            else:
                local = prefix + name
                before.append(_assign(local, self.alias(type_), self.hoist(arg, before), arg))
                renames[name] = local
        body = [copy.deepcopy(s) for s in _without_docstring(fn.node.body)]
        _Renamer(fn, prefix, renames, self.alias).rename(body)
        result = prefix + "return"
        if body and isinstance(body[-1], ast.Return):
            returned = body.pop()
            if returned.value is not None:
                body.append(_assign(result, self.alias(fn.returns), returned.value, returned))
        self.stack.append(fn)
        try:
            before.extend(self.block(body))  # its globals are aliases in the kernel's namespace now
        finally:
            self.stack.pop()
        return _at(ast.Name(result, ast.Load()), call)

    def _refuse(self, parts: list[ast.expr], where: str) -> None:
        for part in parts:
            for call in self._calls(part):
                self._error(call, f"a kp.func call {where} might not run in Python: assign it to a local first")

    def _is_call(self, node: ast.AST) -> bool:
        return isinstance(node, ast.Call) and isinstance(self.resolve(node.func), KernelFunction)

    def _calls(self, node: ast.AST) -> Iterator[ast.Call]:
        return (n for n in ast.walk(node) if self._is_call(n))  # type: ignore[misc]

    def _error(self, node: ast.AST, message: str, kind: str = "syntax") -> NoReturn:
        raise _InlineError(node, message, kind)


class _InlineError(Exception):
    """An error at ``node`` (which the front end reports with its file and line)."""

    def __init__(self, node: ast.AST, message: str, kind: str) -> None:
        super().__init__(message)
        self.node, self.message, self.kind = node, message, kind


class _Renamer(ast.NodeTransformer):
    """Renames a copied function body apart, and tags every node with the function's source."""

    def __init__(self, fn: KernelFunction, prefix: str, renames: dict[str, str], alias: Callable[[Any], str]) -> None:
        self.fn, self.prefix, self.renames, self.alias = fn, prefix, dict(renames), alias
        self.namespace = namespace(fn.py_func)
        self.globals: dict[str, str] = {}

    def rename(self, body: list[ast.stmt]) -> None:
        for stmt in body:  # locals: every name the body assigns or loops over
            for node in ast.walk(stmt):
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id not in self.renames:
                    self.renames[node.id] = self.prefix + node.id
        for i, stmt in enumerate(body):
            body[i] = self.visit(stmt)

    def generic_visit(self, node: ast.AST) -> ast.AST:
        node = super().generic_visit(node)
        if not hasattr(node, "kp_source"):
            node.kp_source = self.fn.source  # type: ignore[attr-defined]
        return node

    def visit_Name(self, node: ast.Name) -> ast.Name:
        name = node.id
        if name in self.renames:
            node.id = self.renames[name]
        else:  # a global of the function's own module (or a builtin), seen under a fresh alias
            if name not in self.globals:
                if name in self.namespace:
                    self.globals[name] = self.alias(self.namespace[name])
                elif hasattr(builtins, name):
                    self.globals[name] = self.alias(getattr(builtins, name))
                else:
                    self.globals[name] = name  # undefined: the front end says so, at this line
            node.id = self.globals[name]
        node.kp_source = self.fn.source  # type: ignore[attr-defined]
        return node


def _resolve(fn: Callable[..., Any], node: ast.expr) -> Any:
    """The object ``node`` names in ``fn``'s module (for calls in its body), or None."""
    if isinstance(node, ast.Name):
        names = namespace(fn)
        return names[node.id] if node.id in names else getattr(builtins, node.id, None)
    if isinstance(node, ast.Attribute):
        base = _resolve(fn, node.value)
        return getattr(base, node.attr, None) if base is not None else None
    return None


def _assign(local: str, type_alias: str, value: ast.expr, at: ast.AST) -> ast.Assign:
    """``local = T(value)``, made at ``at``'s position (``value`` keeps its own)."""
    cast = _at(ast.Call(_at(ast.Name(type_alias, ast.Load()), at), [value], []), at)
    return _at(ast.Assign([_at(ast.Name(local, ast.Store()), at)], cast), at)


def _at(node: Any, at: ast.AST) -> Any:
    """A new ``node`` placed at ``at``'s position, in ``at``'s source."""
    ast.copy_location(node, at)
    if hasattr(at, "kp_source"):
        node.kp_source = at.kp_source
    return node


def _without_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        return body[1:]
    return body


def expand_calls(
    stmts: list[ast.stmt],
    resolve: Callable[[ast.expr], Any],
    arrays: dict[str, ArrayType],
    alias: Callable[[Any], str],
    error: Callable[[ast.AST, str, str], NoReturn],
) -> list[ast.stmt]:
    """``stmts`` with every kp.func call inlined (see the module docstring); errors through ``error``."""
    try:
        return Inliner(resolve, arrays, alias).block(stmts)
    except _InlineError as exc:
        error(exc.node, exc.message, exc.kind)
