"""The kernel language: Python functions checked and typed into the kernel IR (no target here)."""

from .intrinsics import atomic_add, grid, local, math
from .types import ArrayType, ScalarType, TypeVar, bool_, f32, f64, i8, i16, i32, i64, u8, u16, u32, u64

__all__ = [
    "ArrayType",
    "ScalarType",
    "TypeVar",
    "atomic_add",
    "bool_",
    "f32",
    "f64",
    "grid",
    "i8",
    "i16",
    "i32",
    "i64",
    "local",
    "math",
    "u8",
    "u16",
    "u32",
    "u64",
]
