"""What a kernel's typed IR depends on, read without running the front end.

The front end's output is a function of the kernel's source text, where it sits in its file,
and the values of the names the source uses (globals, closure cells, builtins, and the
annotations). :func:`definition_parts` spells those out as strings, so that a hash of them
identifies a definition the front end has already accepted: a process that finds it in the
compile cache reaches the kernel's machine code without parsing or typing anything.

Only values whose meaning in a kernel is fully given by the string written for them qualify
(numbers, kernpack's types and functions, the modules ``kernpack``, ``math`` and ``numpy``);
any other value the source names, a user's module or object say, makes the definition
unreadable here (None), and the kernel goes through the front end as before. Erring that way
costs time, never a stale result.
"""

from __future__ import annotations

import builtins
import linecache
import math
import sys
import types
from typing import Any

import numpy as np

from .intrinsics import CALLABLES
from .intrinsics import math as kp_math
from .namespace import annotations, namespace
from .types import SCALARS, ArrayType, GenericArrayType, ScalarType, TypeVar

__all__ = ["definition_parts"]

_ABSENT = object()
_NUMBERS = (bool, int, float, complex, str, type(None))


def definition_parts(fn: Any) -> list[str] | None:
    """The strings a kernel's typed IR is a function of, or None where some value is not readable.

    The whole source file stands for the kernel's source (any edit to the file changes it),
    which is what the front end reads through :mod:`linecache`, as :mod:`inspect` does.
    """
    if type(fn) is not types.FunctionType or hasattr(fn, "__wrapped__"):
        return None  # a wrapper's source is not its __code__'s: leave it to the front end
    code = fn.__code__
    linecache.checkcache(code.co_filename)  # as inspect does: the file as it is now, not as once read
    lines = linecache.getlines(code.co_filename, fn.__globals__)
    if not lines:
        return None
    names = namespace(fn)
    parts = [code.co_filename, str(code.co_firstlineno), fn.__qualname__, "".join(lines)]
    # Parameters are excluded: the front end binds them before it reads the body.
    for name in sorted(_names(code) - set(code.co_varnames[: code.co_argcount])):
        token = _token(names.get(name, getattr(builtins, name, _ABSENT)))
        if token is None:
            return None
        parts.append(f"{name}={token}")
    for name, hint in annotations(fn, names).items():
        token = _token(hint)
        if token is None:
            return None
        parts.append(f"{name}:{token}")
    return parts


def _names(code: types.CodeType) -> set[str]:
    """Every name ``code`` (and code nested in it) mentions: more than it looks up, never fewer."""
    names = {*code.co_names, *code.co_varnames, *code.co_freevars, *code.co_cellvars}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _token(value: Any) -> str | None:
    """A string that fixes what ``value`` means in a kernel, or None."""
    if value is _ABSENT:
        return "-"
    kind = type(value)
    if kind in _NUMBERS:
        return f"{kind.__name__}:{value!r}"
    if isinstance(value, np.generic):
        return f"np.{value.dtype.str}:{value.tobytes().hex()}"
    if isinstance(value, ScalarType):
        return f"scalar:{value.name}" if SCALARS.get(value.name) is value else None
    if isinstance(value, ArrayType):
        dtype = _token(value.dtype)
        return f"array:{dtype}:{value.ndim}" if dtype is not None else None
    if isinstance(value, TypeVar):  # what it stands for is in the key too (the specialisation's types)
        allowed = [_token(t) for t in value.allowed]
        return None if None in allowed else f"typevar:{value.name}:{','.join(map(str, allowed))}"
    if isinstance(value, GenericArrayType):
        var = _token(value.var)
        return f"garray:{var}:{value.ndim}" if var is not None else None
    if id(value) in CALLABLES:
        return f"callable:{CALLABLES[id(value)]}"
    token = getattr(value, "kernel_index_token", None)
    if callable(token):  # a kp.func: its own definition, by the same rules
        return token()
    if isinstance(value, types.ModuleType):
        known = {id(sys.modules.get("kernpack")): "kernpack", id(kp_math): "kernpack.math", id(math): "math"}
        known[id(np)] = f"numpy-{np.__version__}"
        return f"module:{known[id(value)]}" if id(value) in known else None
    name = getattr(value, "__name__", None)
    if isinstance(name, str):
        if getattr(builtins, name, None) is value:
            return f"builtin:{name}"
        if getattr(np, name, None) is value:
            return f"numpy:{name}"
    return None
