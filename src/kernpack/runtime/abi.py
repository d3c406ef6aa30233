"""The contracts between kernpack's code generators and its runtime kinds, each written once.

A device kernel and the launcher that calls it must agree on how every value is passed, which
device axis runs along which grid dimension, where a Vulkan shader finds its buffers and how
large a workgroup is. The code generators (``kernpack.driver.targets``) and the runtime kinds
(``cuda``, ``opencl``, ``vulkan``) both import these facts from here; this module imports
neither (the runtime never imports the driver).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ARRAY_C_CONTIGUOUS",
    "CHECK_PARAM",
    "CHECK_WORDS",
    "ARRAY_DATA",
    "ARRAY_DESCR",
    "ARRAY_DIMENSIONS",
    "ARRAY_FLAGS",
    "ARRAY_NDIM",
    "ARRAY_WRITEABLE",
    "CUDA_BLOCK",
    "DESCRIPTOR_SET",
    "EXTENTS_BINDING",
    "FAST_TABLE",
    "HIDDEN_PARAMS",
    "LOOPS_PARAM",
    "LOOP_GUARD",
    "METH_FASTCALL",
    "METH_KEYWORDS",
    "OBJECT_TYPE",
    "OPENCL_WORKGROUP",
    "PRINT_PARAM",
    "PRINT_WORDS",
    "SCALARS",
    "SCALAR_VALUE",
    "SCRATCH_PARAM",
    "VULKAN_WORKGROUP",
    "Scalar",
    "axis_extents",
    "check_symbols",
    "device_axis",
    "fast_symbols",
    "group_counts",
    "parameter_binding",
    "print_symbols",
    "scratch_words",
]


@dataclass(frozen=True)
class Scalar:
    """A scalar C type of a signature, and how it is passed to a device kernel by value.

    Attributes
    ----------
    ctype : str
        Its name in signatures (``"int32_t"``).
    dtype : numpy.dtype
        The dtype of an array of it (numpy's: a bool is one byte).
    value_dtype : numpy.dtype
        How one value of it travels to a device kernel: its dtype, but a bool as a ``uint8``
        (0 or 1), since OpenCL, CUDA and Vulkan kernels take no 1-bit arguments.
    device_ir : str
        The LLVM type of that parameter in a device kernel (``"i8"`` for a bool).
    argument : type
        The ctypes type of the value (what the CUDA launcher packs).
    """

    ctype: str
    dtype: np.dtype
    value_dtype: np.dtype
    device_ir: str
    argument: type


def _scalar(ctype: str, dtype: type, device_ir: str, argument: type, value_dtype: type | None = None) -> Scalar:
    return Scalar(ctype, np.dtype(dtype), np.dtype(value_dtype or dtype), device_ir, argument)


#: Every scalar C type a signature may use, by name.
SCALARS: dict[str, Scalar] = {
    s.ctype: s
    for s in (
        _scalar("bool", np.bool_, "i8", ctypes.c_uint8, np.uint8),
        _scalar("int8_t", np.int8, "i8", ctypes.c_int8),
        _scalar("int16_t", np.int16, "i16", ctypes.c_int16),
        _scalar("int32_t", np.int32, "i32", ctypes.c_int32),
        _scalar("int64_t", np.int64, "i64", ctypes.c_int64),
        _scalar("uint8_t", np.uint8, "i8", ctypes.c_uint8),
        _scalar("uint16_t", np.uint16, "i16", ctypes.c_uint16),
        _scalar("uint32_t", np.uint32, "i32", ctypes.c_uint32),
        _scalar("uint64_t", np.uint64, "i64", ctypes.c_uint64),
        _scalar("float", np.float32, "float", ctypes.c_float),
        _scalar("double", np.float64, "double", ctypes.c_double),
    )
}


# ------------------------------------------------------------------------------ grid axes
def device_axis(dimension: int, ndim: int) -> int:
    """The device axis (0 = x) along which grid dimension ``dimension`` of ``ndim`` runs.

    One order on every target: the last grid dimension is x (CUDA's ``threadIdx.x``, OpenCL's
    ``get_global_id(0)``, Vulkan's ``GlobalInvocationId.x``), so that neighbouring work-items
    touch neighbouring elements of a C-ordered array; the first is the slowest.
    """
    if not 0 <= dimension < ndim <= 3:
        raise ValueError(f"grid dimension {dimension} of a {ndim}-dimensional grid")
    return ndim - 1 - dimension


def axis_extents(grid: tuple[int, ...]) -> tuple[int, int, int]:
    """The launch size along device axes x, y, z for grid extents ``grid`` (see :func:`device_axis`)."""
    x, y, z = (*reversed(grid), 1, 1, 1)[:3]
    return x, y, z


# ------------------------------------------------------------------------------ launch geometry
#: Threads per CUDA block by grid rank, along axes x, y, z.
CUDA_BLOCK: dict[int, tuple[int, int, int]] = {1: (256, 1, 1), 2: (16, 16, 1), 3: (8, 8, 4)}
#: Invocations per Vulkan workgroup by grid rank, along axes x, y, z (the shader's LocalSize).
#: 256, as CUDA's block: lavapipe pays per workgroup, and saxpy on 10^6 points ran 15-20%
#: faster there than with 64 (a 3x3 blur of 1024x1024, 7%); GPUs run 256 well.
VULKAN_WORKGROUP: dict[int, tuple[int, int, int]] = {1: (256, 1, 1), 2: (16, 16, 1), 3: (8, 8, 4)}
#: Work-items per OpenCL workgroup by grid rank, for a kernel that needs to know it (one with
#: statements after its grid); other kernels leave the choice to the driver.
OPENCL_WORKGROUP: dict[int, tuple[int, int, int]] = {1: (64, 1, 1), 2: (8, 8, 1), 3: (4, 4, 4)}


# ------------------------------------------------------------------------------ reductions
# A device kernel with statements after its grid (an epilogue, and so its reductions) takes
# one more array parameter, last: the scratch, ``uint32_t kp_scratch[:]``, which the launcher
# allocates zeroed for each launch. Word 0 counts the workgroups that are done; then, for each
# reduction in turn, one partial per workgroup in workgroup order (one word, two for a 64-bit
# type, low word first). The last workgroup to finish combines the partials in that order and
# runs the epilogue. The function table says how many words each workgroup needs
# (``"scratch"``) and the workgroup (``"workgroup"``), from which the launcher sizes it.
SCRATCH_PARAM = "kp_scratch"


# ------------------------------------------------------------------------------ bounds checks
# A kernel built with boundscheck=True checks every index against its extent. The first
# out-of-range access of a launch is recorded in 32-bit words: 0, the number of out-of-range
# accesses (the first one, finding 0, writes the rest); 1, its site (an index into the sites the
# function table or the module lists: array, line); 2-7, the index along each dimension, and
# 8-13 the extents, as int64 (low word first). The access itself is skipped (a load gives 0).
# A device kernel takes the record as one more array parameter after the scratch,
# ``uint32_t kp_check[:]``; on the CPU it is the module's global ``<kernel>.kp.bounds`` and the
# sites are the JSON text ``<kernel>.kp.sites`` (check_symbols), read after each call.
CHECK_PARAM = "kp_check"
CHECK_WORDS = 14


def check_symbols(kernel: str) -> tuple[str, str]:
    """The CPU symbols of a bounds-checked kernel: its record, and its sites (JSON, NUL-ended)."""
    return f"{kernel}.kp.bounds", f"{kernel}.kp.sites"


# ------------------------------------------------------------------------------ print
# Each print() of a kernel is a site: the text around its values, and their types
# (``{"text": [...], "types": [...]}``, len(text) == len(types) + 1). A print sends its site and
# each value as a 64-bit word (an integer sign- or zero-extended, a float's bits, a bool 0 or 1),
# and the host writes the line (``kernpack.runtime.printing``), as Python prints those values.
# On the CPU the kernel calls the function whose address the runtime stores in the global
# ``<kernel>.kp.print`` (``void (int32_t site, const uint64_t *values)``; C's printf where it is
# null), its sites the JSON text ``<kernel>.kp.prints``. A device kernel takes one more array
# after the others, ``uint32_t kp_print[:]``: word 0 counts the words used, word 1 the prints
# that did not fit; each print then appends its site + 1 and its values (low word first) from
# word 2, where it fits (so the prints that fit are the first ones, and a 0 ends them).
PRINT_PARAM = "kp_print"
PRINT_WORDS = 1 << 18


# A Vulkan shader with loops counts each work-item's loop iterations, and one that reaches
# LOOP_GUARD sets word 0 of one more array after the others, ``uint32_t kp_loops[:]``: lavapipe
# cuts an invocation's loops short after 65535 iterations in all, and the launcher raises rather
# than return such results (the function table's ``"loop_guard"``).
LOOPS_PARAM = "kp_loops"
LOOP_GUARD = 65000


#: A device kernel's hidden arrays, in the order they follow its own parameters, each with the
#: function-table attribute that announces it.
HIDDEN_PARAMS: tuple[tuple[str, str], ...] = (
    (SCRATCH_PARAM, "scratch"),
    (CHECK_PARAM, "checks"),
    (PRINT_PARAM, "prints"),
    (LOOPS_PARAM, "loop_guard"),
)


def print_symbols(kernel: str) -> tuple[str, str]:
    """The CPU symbols of a kernel that prints: the printer's address, and its sites (JSON, NUL-ended)."""
    return f"{kernel}.kp.print", f"{kernel}.kp.prints"


def group_counts(grid: tuple[int, ...], workgroup: tuple[int, ...] | list[int]) -> tuple[int, int, int]:
    """Workgroups along x, y, z that a kernel with an epilogue is launched with.

    At least one along each axis: the epilogue runs even when the grid is empty.
    """
    x, y, z = (-(-max(1, n) // w) for n, w in zip(axis_extents(grid), workgroup, strict=True))
    return x, y, z


def scratch_words(grid: tuple[int, ...], workgroup: tuple[int, ...] | list[int], per_group: int) -> int:
    """The length of the scratch (in 32-bit words) of one launch over ``grid``."""
    x, y, z = group_counts(grid, workgroup)
    return 1 + x * y * z * per_group


# ------------------------------------------------------------------------------ Vulkan resources
#: The descriptor set every kernpack shader binds its buffers in.
DESCRIPTOR_SET = 0
#: The binding of the storage buffer that holds the extents of every array parameter, in
#: signature order, as int64 (one per dimension).
EXTENTS_BINDING = 0


def parameter_binding(index: int) -> int:
    """The binding of parameter ``index``: a storage buffer of its elements (a scalar in one)."""
    return 1 + index


# ------------------------------------------------------------------------------ native entry points
# A kernel built for the host also gets ``<name>.kp.fast``, a CPython ``METH_FASTCALL`` function
# that checks its arguments inline and calls the kernel (``kernpack.runtime.fastcall`` makes a
# Python callable of it). It reaches Python and numpy only through ``<name>.kp.table``, an array
# of pointers the runtime fills before first use (so the code references no Python symbol), and
# ``<name>.kp.def`` is its ``PyMethodDef``. What both sides must agree on:

#: The table's slots, in order; then one per parameter: the dtype object of an array parameter,
#: the numpy scalar type of a scalar one (``np.float32`` ...), checked by identity.
FAST_TABLE = (
    "filled",  # nonzero once the runtime filled the table
    "float_type",  # &PyFloat_Type
    "long_type",  # &PyLong_Type
    "ndarray_type",  # numpy.ndarray
    "none",  # Py_None
    "true",  # Py_True
    "false",  # Py_False
    "long_as_long_long",  # PyLong_AsLongLong
    "err_occurred",  # PyErr_Occurred
    "err_clear",  # PyErr_Clear
    "save_thread",  # PyEval_SaveThread
    "restore_thread",  # PyEval_RestoreThread
    "vectorcall",  # PyObject_Vectorcall: the fallback, the Python path with its error messages
    "incref",  # Py_IncRef
)
#: Byte offsets in CPython objects (64-bit, non-debug builds) and numpy's array struct; the
#: runtime checks each against live objects before it enables the native entry points.
OBJECT_TYPE = 8  # PyObject.ob_type
SCALAR_VALUE = 16  # PyFloatObject.ob_fval; the value of a numpy scalar (np.float32(1.0) ...)
ARRAY_DATA = 16  # PyArrayObject.data
ARRAY_NDIM = 24  # PyArrayObject.nd (int)
ARRAY_DIMENSIONS = 32  # PyArrayObject.dimensions (npy_intp *)
ARRAY_DESCR = 56  # PyArrayObject.descr
ARRAY_FLAGS = 64  # PyArrayObject.flags (int)
ARRAY_C_CONTIGUOUS = 0x0001  # NPY_ARRAY_C_CONTIGUOUS
ARRAY_WRITEABLE = 0x0400  # NPY_ARRAY_WRITEABLE
METH_FASTCALL = 0x0080
METH_KEYWORDS = 0x0002  # with METH_FASTCALL: the function also gets the keywords' names


def fast_symbols(kernel: str) -> tuple[str, str, str]:
    """The symbols of a kernel's native entry point: (function, its PyMethodDef, its table)."""
    return f"{kernel}.kp.fast", f"{kernel}.kp.def", f"{kernel}.kp.table"
