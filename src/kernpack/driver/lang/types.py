"""Types of the kernel language: scalars (``kp.f32``) and arrays (``kp.f32[:, :]``).

These objects are what users write in annotations and casts. They import nothing heavy:
``import kernpack`` stays cheap, and the same objects work in plain Python (``kp.f32(1.5)``
returns a ``numpy.float32``), so a kernel can also run as ordinary Python for debugging.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...runtime import abi

__all__ = [
    "BY_DTYPE",
    "SCALARS",
    "ArrayType",
    "GenericArrayType",
    "ScalarType",
    "TypeVar",
    "bool_",
    "f32",
    "f64",
    "i8",
    "i16",
    "i32",
    "i64",
    "u8",
    "u16",
    "u32",
    "u64",
    "promote",
    "wrap",
]


class ScalarType:
    """A scalar type of the kernel language.

    Parameters
    ----------
    name : str
        Its kernel-language name (``"f32"``).
    dtype : numpy.dtype
        The numpy dtype of an array of it.
    ctype : str
        Its C type name, as signatures spell it.
    """

    def __init__(self, name: str, dtype: Any, ctype: str) -> None:
        self.name = name
        self.dtype = np.dtype(dtype)
        self.ctype = ctype
        self.kind = "b" if name == "bool" else self.dtype.kind  # "b", "i", "u", "f"
        self.bits = 1 if name == "bool" else self.dtype.itemsize * 8

    @property
    def is_float(self) -> bool:
        """True for f32 and f64."""
        return self.kind == "f"

    @property
    def is_int(self) -> bool:
        """True for the signed and unsigned integer types (not bool)."""
        return self.kind in "iu"

    @property
    def is_signed(self) -> bool:
        """True for signed integers."""
        return self.kind == "i"

    def __getitem__(self, dims: Any) -> ArrayType:
        return ArrayType(self, _rank(self.name, dims))

    def __call__(self, value: Any) -> Any:
        # Outside a kernel a cast is numpy's, so kernels also run as plain Python.
        return self.dtype.type(value)

    def __repr__(self) -> str:
        return f"kp.{'bool_' if self.name == 'bool' else self.name}"

    def __str__(self) -> str:
        return self.name

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # Unpickled (in a build worker) as the same object: code compares types with "is".
        return _by_name, (self.name,)


def _by_name(name: str) -> ScalarType:
    return SCALARS[name]


class ArrayType:
    """A C-contiguous array of a scalar type and a rank (1 to 3)."""

    def __init__(self, dtype: ScalarType, ndim: int) -> None:
        self.dtype = dtype
        self.ndim = ndim

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ArrayType) and (other.dtype, other.ndim) == (self.dtype, self.ndim)

    def __hash__(self) -> int:
        return hash((self.dtype, self.ndim))

    def __repr__(self) -> str:
        return f"{self.dtype!r}[{', '.join(':' * self.ndim)}]"

    def __str__(self) -> str:
        return f"{self.dtype}[{', '.join(':' * self.ndim)}]"


class TypeVar:
    """A type variable of generic kernels: ``T = kp.TypeVar("T", kp.f32, kp.f64)``.

    A kernel annotated with it (``x: T[:]``, ``a: T``, and ``T(v)`` as a cast) is specialised on
    its first call with each combination of types, read off the arguments; ``allowed`` (any
    scalar type when empty) limits what it may be.
    """

    def __init__(self, name: str, *allowed: ScalarType) -> None:
        if not all(isinstance(t, ScalarType) for t in allowed):
            raise TypeError(f"TypeVar {name!r}: the allowed types are kernpack scalar types, e.g. kp.f32")
        self.name = name
        self.allowed = allowed

    def __getitem__(self, dims: Any) -> GenericArrayType:
        return GenericArrayType(self, _rank(self.name, dims))

    def __call__(self, value: Any) -> Any:
        raise TypeError(f"{self.name} is a type variable: it casts only inside a specialised kernel")

    def __repr__(self) -> str:
        return f"kp.TypeVar({self.name!r})"


class GenericArrayType:
    """``T[:]``: an array whose element type is a type variable."""

    def __init__(self, var: TypeVar, ndim: int) -> None:
        self.var = var
        self.ndim = ndim

    def bind(self, types: dict[TypeVar, ScalarType]) -> ArrayType:
        """The array type with the variable replaced by its binding."""
        return ArrayType(types[self.var], self.ndim)

    def __repr__(self) -> str:
        return f"{self.var.name}[{', '.join(':' * self.ndim)}]"


def _rank(name: str, dims: Any) -> int:
    """The rank ``name[:, :]`` spells (1 to 3), or the TypeError that says how to write one."""
    dims = dims if isinstance(dims, tuple) else (dims,)
    if not dims or len(dims) > 3 or any(d != slice(None) for d in dims):
        raise TypeError(f"write an array type as {name}[:], {name}[:, :] or {name}[:, :, :]")
    return len(dims)


def _scalar(name: str, ctype: str) -> ScalarType:
    return ScalarType(name, abi.SCALARS[ctype].dtype, ctype)  # the dtype is the runtime's, for that C type


bool_ = _scalar("bool", "bool")
i8 = _scalar("i8", "int8_t")
i16 = _scalar("i16", "int16_t")
i32 = _scalar("i32", "int32_t")
i64 = _scalar("i64", "int64_t")
u8 = _scalar("u8", "uint8_t")
u16 = _scalar("u16", "uint16_t")
u32 = _scalar("u32", "uint32_t")
u64 = _scalar("u64", "uint64_t")
f32 = _scalar("f32", "float")
f64 = _scalar("f64", "double")

#: Every scalar type, by kernel-language name.
SCALARS: dict[str, ScalarType] = {t.name: t for t in (bool_, i8, i16, i32, i64, u8, u16, u32, u64, f32, f64)}
#: Every scalar type, by the numpy dtype of its arrays.
BY_DTYPE: dict[np.dtype, ScalarType] = {t.dtype: t for t in SCALARS.values()}


def wrap(value: int, type_: ScalarType) -> int:
    """``value`` reduced to ``type_``'s width (two's complement for signed types)."""
    bits = type_.bits
    if type_.kind == "u":
        return value & ((1 << bits) - 1)
    half = 1 << (bits - 1)
    return ((value + half) & ((1 << bits) - 1)) - half


def promote(a: ScalarType, b: ScalarType) -> ScalarType:
    """The type two numeric operands are converted to (the rules in docs/kernel-language.md)."""
    if a is b:
        return a
    if a.is_float or b.is_float:
        if a.is_float and b.is_float:
            return a if a.bits >= b.bits else b
        return a if a.is_float else b  # an integer never widens a float: i32 + f32 is f32
    if a.kind == b.kind:
        return a if a.bits >= b.bits else b
    signed, unsigned = (a, b) if a.is_signed else (b, a)
    if unsigned.bits < signed.bits:
        return signed
    return {8: i16, 16: i32, 32: i64}.get(unsigned.bits, i64)
