"""The kernel language: Python functions checked, typed and lowered to the kernel IR."""

from .intrinsics import atomic_add, grid, math
from .kernel import Kernel, build, kernel
from .types import ArrayType, ScalarType, bool_, f32, f64, i8, i16, i32, i64, u8, u16, u32, u64

__all__ = [
    "ArrayType",
    "Kernel",
    "ScalarType",
    "atomic_add",
    "bool_",
    "build",
    "f32",
    "f64",
    "grid",
    "i8",
    "i16",
    "i32",
    "i64",
    "kernel",
    "math",
    "u8",
    "u16",
    "u32",
    "u64",
]
