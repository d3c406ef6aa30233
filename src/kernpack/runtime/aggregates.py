"""Vectors and structs passed by value to device kernels: their layout and their bytes.

An OpenCL kernel may take ``float4 scale`` or ``struct params p`` by value. A signature names
such a type; this module gives its memory layout as a numpy dtype, laid out as OpenCL C lays
it out (a vector of n lanes is aligned to its size, a 3-vector takes four lanes; a struct's
members at their natural alignment, its size a multiple of its largest alignment), and turns
what a caller passes (a tuple, a list, a dict, a numpy structured scalar, or the bytes
themselves) into exactly those bytes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["pack", "struct_dtype", "vector_dtype"]

_VECTOR = re.compile(r"(char|uchar|short|ushort|int|uint|long|ulong|float|double)(2|3|4|8|16)")
_LANE = {
    "char": np.int8,
    "uchar": np.uint8,
    "short": np.int16,
    "ushort": np.uint16,
    "int": np.int32,
    "uint": np.uint32,
    "long": np.int64,
    "ulong": np.uint64,
    "float": np.float32,
    "double": np.float64,
}


def vector_dtype(name: str) -> np.dtype | None:
    """The layout of an OpenCL vector type (``"float4"``, ``"uint2"``), or None for another name."""
    match = _VECTOR.fullmatch(name)
    if match is None:
        return None
    lane, count = np.dtype(_LANE[match[1]]), int(match[2])
    lanes = 4 if count == 3 else count
    return np.dtype({"names": ["s"], "formats": [(lane, (count,))], "offsets": [0], "itemsize": lane.itemsize * lanes})


def struct_dtype(fields: Sequence[tuple[str, np.dtype]]) -> np.dtype:
    """The layout of a struct of scalar and vector members, as OpenCL C (and C) lays it out.

    Each member is aligned to its size (a vector's padded size: a ``float3`` takes 16 bytes),
    and the struct's size is a multiple of its largest member's. A vector member is a numpy
    subarray field, so ``np.array([((1.0, 2.0), 0.5)], layout)`` builds a value.
    """
    names, formats, offsets, offset, align = [], [], [], 0, 1
    for name, dtype in fields:
        size = dtype.itemsize  # scalars and vectors are aligned to their size
        offset = -(-offset // size) * size
        names.append(name)
        formats.append(dtype.fields["s"][0] if dtype.names == ("s",) else dtype)
        offsets.append(offset)
        offset, align = offset + size, max(align, size)
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": -(-offset // align) * align})


def pack(layout: np.dtype, value: Any) -> np.void:
    """``value`` as one element of ``layout`` (a numpy structured scalar, passed by value).

    Raises
    ------
    TypeError, ValueError
        If ``value`` is not a value of the layout: the message says what is expected.
    """
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        if len(data) != layout.itemsize:
            raise ValueError(f"{len(data)} bytes were given; the type takes {layout.itemsize}")
        return np.frombuffer(data, layout)[0]
    if isinstance(value, np.void | np.ndarray) and value.dtype == layout:
        return np.asarray(value).reshape(-1)[0] if np.ndim(value) else np.asarray(value)[()]
    if isinstance(value, np.void | np.ndarray) and value.dtype.names is not None:
        if value.dtype.names != layout.names:
            raise ValueError(
                f"a structured value with fields {value.dtype.names} was given; the type has {layout.names}"
            )
        value = value.item() if isinstance(value, np.void) else np.asarray(value).reshape(-1)[0].item()
    out = np.zeros((), layout)
    if layout.names == ("s",):  # a vector: its lanes
        lanes = np.asarray(value)
        shape = layout.fields["s"][0].shape
        if lanes.shape != shape:
            raise ValueError(f"a vector of {shape[0]} lanes was expected, got {lanes.shape or 'a scalar'}")
        out["s"] = lanes
        return out[()]
    if isinstance(value, Mapping):
        missing = [n for n in layout.names if n not in value]
        extra = [n for n in value if n not in layout.names]
        if missing or extra:
            raise ValueError(f"the struct's members are {', '.join(layout.names)}; got {', '.join(map(str, value))}")
        value = tuple(value[n] for n in layout.names)
    if not isinstance(value, tuple | list) or len(value) != len(layout.names):
        raise TypeError(
            f"expected the struct's {len(layout.names)} members ({', '.join(layout.names)}) as a tuple or dict, "
            "a numpy structured scalar, or its bytes"
        )
    for name, member in zip(layout.names, value, strict=True):
        shape = layout.fields[name][0].shape
        if np.shape(member) != shape:
            raise ValueError(f"member {name!r} takes {f'a vector of {shape[0]} lanes' if shape else 'a scalar'}")
        out[name] = member
    return out[()]
