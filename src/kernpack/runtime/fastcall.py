"""Native entry points: a kernel's own METH_FASTCALL function as a Python callable.

The cpu target emits, beside each kernel ``k``, a CPython ``METH_FASTCALL`` function that checks
its arguments inline and calls ``k`` (``kernpack.runtime.abi``: its table and the object layout
it reads). This module fills the function's table with the addresses of the Python and numpy
objects it compares against and of the few C-API functions it calls, and wraps it as a builtin
with ``PyCFunction_NewEx``. Its ``self`` is the ordinary call path (a :class:`NativeFunction`),
which it calls for every argument it does not take in its fast form: the results and the error
messages are that path's.

The object layout is checked against live objects once per process; where it does not hold (a
debug build of CPython, another numpy), there are no native entry points and calls take the
ordinary path.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from . import abi
from .signature import Signature

__all__ = ["native_entry"]

_api = ctypes.pythonapi
# Its own function object, so that setting its types touches no one else's ctypes.pythonapi.
_new_function = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.py_object, ctypes.py_object)(
    ("PyCFunction_NewEx", _api)
)


def native_entry(
    fallback: Callable[..., Any], signature: Signature, definition: int, table: int
) -> Callable[..., Any] | None:
    """The builtin at ``definition`` (a ``PyMethodDef``) for ``signature``, its ``table`` filled.

    ``fallback`` handles every call the native code does not; None where this process's object
    layout is not the one the code was generated for.
    """
    common = _common_slots()
    if common is None:
        return None
    own = [id(p.dtype) if p.pointer else id(p.dtype.type) for p in signature.params]
    slots = (ctypes.c_void_p * (len(common) + len(own))).from_address(table)
    slots[1:] = [*common[1:], *own]
    slots[0] = common[0]  # "filled" last, after every other slot
    # The builtin reads its PyMethodDef as long as it exists, its deallocation included, which
    # in a garbage-collected cycle can come after the library holding the code was unmapped: so
    # it gets a copy in memory of this process's own, kept for good (40 bytes a function).
    template = _MethodDef.from_address(definition)
    method = _MethodDef(signature.name.encode(), template.function, template.flags, None)
    _METHODS.append(method)
    return _new_function(ctypes.addressof(method), fallback, None)


class _MethodDef(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("function", ctypes.c_void_p), ("flags", ctypes.c_int),
                ("doc", ctypes.c_char_p)]  # fmt: skip


_METHODS: list[_MethodDef] = []  # every PyMethodDef handed to CPython, alive to the end


@functools.cache
def _common_slots() -> tuple[int, ...] | None:
    """The table's fixed slots (``abi.FAST_TABLE``), or None if the layout check fails."""
    if not _layout_holds():
        return None
    functions = {
        "long_as_long_long": "PyLong_AsLongLong",
        "err_occurred": "PyErr_Occurred",
        "err_clear": "PyErr_Clear",
        "save_thread": "PyEval_SaveThread",
        "restore_thread": "PyEval_RestoreThread",
        "vectorcall": "PyObject_Vectorcall",
        "incref": "Py_IncRef",
    }
    objects = {
        "filled": 1,
        "float_type": id(float),
        "long_type": id(int),
        "ndarray_type": id(np.ndarray),
        "none": id(None),
        "true": id(True),
        "false": id(False),
    }
    try:
        addresses = {slot: ctypes.cast(getattr(_api, name), ctypes.c_void_p).value for slot, name in functions.items()}
    except AttributeError:
        return None
    values = {**objects, **addresses}
    return tuple(int(values[slot] or 0) for slot in abi.FAST_TABLE)


def _layout_holds() -> bool:
    """True if live objects have the layout the generated code reads (``abi``'s offsets)."""

    def word(obj: object, offset: int, ctype: Any = ctypes.c_void_p) -> Any:
        return ctype.from_address(id(obj) + offset).value

    try:
        array = np.zeros((3, 5), np.float32)
        frozen = np.zeros(2, np.int64)
        frozen.flags.writeable = False
        dims = ctypes.c_int64 * 2
        checks = [
            word(array, abi.OBJECT_TYPE) == id(np.ndarray),
            word(array, abi.ARRAY_DATA) == array.ctypes.data,
            word(array, abi.ARRAY_NDIM, ctypes.c_int) == 2,
            tuple(dims.from_address(word(array, abi.ARRAY_DIMENSIONS))) == (3, 5),
            word(array, abi.ARRAY_DESCR) == id(array.dtype) == id(np.dtype(np.float32)),
            word(array, abi.ARRAY_FLAGS, ctypes.c_int) & abi.ARRAY_C_CONTIGUOUS != 0,
            word(array, abi.ARRAY_FLAGS, ctypes.c_int) & abi.ARRAY_WRITEABLE != 0,
            word(frozen, abi.ARRAY_FLAGS, ctypes.c_int) & abi.ARRAY_WRITEABLE == 0,
            word(array.T, abi.ARRAY_FLAGS, ctypes.c_int) & abi.ARRAY_C_CONTIGUOUS == 0,
            word(1.5, abi.SCALAR_VALUE, ctypes.c_double) == 1.5,
            word(np.float32(2.5), abi.SCALAR_VALUE, ctypes.c_float) == 2.5,
            word(np.float64(-3.25), abi.SCALAR_VALUE, ctypes.c_double) == -3.25,
            word(np.int64(-7), abi.SCALAR_VALUE, ctypes.c_int64) == -7,
            word(np.uint8(200), abi.SCALAR_VALUE, ctypes.c_uint8) == 200,
            word(np.bool_(True), abi.SCALAR_VALUE, ctypes.c_uint8) == 1,
            word(np.float32(1.0), abi.OBJECT_TYPE) == id(np.float32),
        ]
    except (ValueError, TypeError, OSError):
        return False
    return all(checks)
