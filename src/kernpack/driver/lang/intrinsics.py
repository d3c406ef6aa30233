"""The functions kernels call: ``kp.grid``, ``kp.atomic_add``, ``kp.local`` and ``kp.math``.

Inside a kernel the front end recognizes these objects and compiles them. Outside, they are
ordinary Python (numpy) functions, so a kernel's Python function also runs as plain Python:
slow, but handy for debugging.
"""

from __future__ import annotations

import itertools
import math as _pymath
import types
from typing import Any

import numpy as np

__all__ = ["atomic_add", "grid", "local", "math"]


def grid(*extents: int) -> Any:
    """The parallel index space of a kernel: ``for i, j in kp.grid(n, m)``.

    Its iterations are independent: they may run in any order and on several threads (or
    GPU threads). In plain Python it iterates serially.
    """
    if not 1 <= len(extents) <= 3:
        raise TypeError("kp.grid takes 1 to 3 extents")
    if len(extents) == 1:
        return iter(range(int(extents[0])))
    return itertools.product(*(range(int(e)) for e in extents))


def atomic_add(array: np.ndarray, index: Any, value: Any) -> None:
    """Add ``value`` to ``array[index]`` atomically (safe when grid points collide)."""
    array[index] += value


def local(dtype: Any, shape: int | tuple[int, ...]) -> np.ndarray:
    """A zeroed array private to one grid point: ``buf = kp.local(kp.f32, 9)`` or ``(3, 3)``.

    In a kernel its type and shape are fixed when it is compiled; in plain Python it is
    ``np.zeros(shape, dtype)``.
    """
    return np.zeros(shape, dtype.dtype)


def _fma(a: Any, b: Any, c: Any) -> Any:
    return a * b + c


# kp.math: the math functions a kernel may call, with numpy behaviour outside kernels.
math = types.ModuleType("kernpack.math", "Math functions usable inside kernels (numpy outside).")
for _name, _impl in {
    "sqrt": np.sqrt,
    "exp": np.exp,
    "log": np.log,
    "sin": np.sin,
    "cos": np.cos,
    "tanh": np.tanh,
    "abs": abs,
    "floor": np.floor,
    "ceil": np.ceil,
    "fma": _fma,
    "min": min,
    "max": max,
}.items():
    setattr(math, _name, _impl)

#: Python objects a kernel may call, by the name the front end knows them under.
CALLABLES: dict[int, str] = {
    id(grid): "grid",
    id(atomic_add): "atomic_add",
    id(local): "local",
    id(range): "range",
    id(abs): "abs",
    id(min): "min",
    id(max): "max",
    **{id(getattr(math, n)): n for n in ("sqrt", "exp", "log", "sin", "cos", "tanh", "floor", "ceil", "fma")},
    **{
        id(getattr(_pymath, n)): n
        for n in ("sqrt", "exp", "log", "sin", "cos", "tanh", "floor", "ceil", "fma")
        if hasattr(_pymath, n)
    },
    id(_pymath.fabs): "abs",
}
# kp.math.abs/min/max are the builtins themselves, already in the table.
