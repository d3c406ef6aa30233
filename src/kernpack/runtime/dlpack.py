"""DLPack by hand: hand a device's memory to another library, or take another library's.

numpy makes DLPack capsules for host memory; memory on a GPU needs its own. :func:`export`
wraps a pointer in a ``"dltensor"`` capsule whose owner stays alive until the consumer calls the
deleter (or, if nobody consumes it, until the capsule dies); :func:`borrow` takes a producer's
capsule, reads where its data is, and calls the producer's deleter when the borrower is
released. Only C-contiguous tensors cross either way: that is what kernels take.

The structures are DLPack's (``dlpack.h``): the versioned ``DLManagedTensorVersioned`` of DLPack
1.0 where the consumer asks for it (``max_version``), else the unversioned ``DLManagedTensor``
every producer and consumer supports (which numpy, for one, imports read-only).
"""

from __future__ import annotations

import ctypes
import threading
import weakref
from typing import Any

import numpy as np

__all__ = ["KDL_CPU", "KDL_CUDA", "Borrowed", "borrow", "export"]

KDL_CPU = 1
KDL_CUDA = 2

# DLDataTypeCode: int, uint, float; bool is its own code since DLPack 0.8 (numpy uses it).
_CODES = {"i": 0, "u": 1, "f": 2, "b": 6}
_KINDS = {code: kind for kind, code in _CODES.items()}


class _Device(ctypes.Structure):
    _fields_ = (("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32))


class _DataType(ctypes.Structure):
    _fields_ = (("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16))


class _Tensor(ctypes.Structure):
    _fields_ = (
        ("data", ctypes.c_void_p),
        ("device", _Device),
        ("ndim", ctypes.c_int32),
        ("dtype", _DataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    )


_DELETER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


class _Managed(ctypes.Structure):
    _fields_ = (("dl_tensor", _Tensor), ("manager_ctx", ctypes.c_void_p), ("deleter", _DELETER))


class _Version(ctypes.Structure):
    _fields_ = (("major", ctypes.c_uint32), ("minor", ctypes.c_uint32))


class _ManagedVersioned(ctypes.Structure):
    _fields_ = (
        ("version", _Version),
        ("manager_ctx", ctypes.c_void_p),
        ("deleter", _DELETER),
        ("flags", ctypes.c_uint64),
        ("dl_tensor", _Tensor),
    )


_READ_ONLY = 1  # DLPACK_FLAG_BITMASK_READ_ONLY: the consumer must not write the tensor

# Each layout's capsule name, and the name a consumer gives it when it takes the tensor.
_NAMES = {
    _Managed: (b"dltensor", b"used_dltensor"),
    _ManagedVersioned: (b"dltensor_versioned", b"used_dltensor_versioned"),
}

_api = ctypes.pythonapi
_CAPSULE_DESTRUCTOR = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_api.PyCapsule_New.restype = ctypes.py_object
_api.PyCapsule_New.argtypes = (ctypes.c_void_p, ctypes.c_char_p, _CAPSULE_DESTRUCTOR)
_api.PyCapsule_IsValid.restype = ctypes.c_int
_api.PyCapsule_IsValid.argtypes = (ctypes.c_void_p, ctypes.c_char_p)
_api.PyCapsule_GetPointer.restype = ctypes.c_void_p
_api.PyCapsule_GetPointer.argtypes = (ctypes.c_void_p, ctypes.c_char_p)
_api.PyCapsule_SetName.restype = ctypes.c_int
_api.PyCapsule_SetName.argtypes = (ctypes.c_void_p, ctypes.c_char_p)

# What each exported tensor keeps alive, by the address of its DLManagedTensor: the structure
# itself, its shape, and the owner of the memory. The deleter drops the entry.
_live: dict[int, tuple[Any, ...]] = {}
_lock = threading.Lock()


@_DELETER
def _delete(address: int) -> None:
    with _lock:
        _live.pop(address, None)


@_CAPSULE_DESTRUCTOR
def _destroy_capsule(capsule: int) -> None:
    # A capsule nobody consumed still owns its tensor (a consumer renames it "used_...").
    # ``capsule`` is a raw address: the object is being freed and must not be referenced again.
    for name, _ in _NAMES.values():
        if _api.PyCapsule_IsValid(capsule, name):
            address = _api.PyCapsule_GetPointer(capsule, name)
            if address:
                _delete(address)


def export(
    pointer: int,
    shape: tuple[int, ...],
    dtype: np.dtype,
    device: tuple[int, int],
    owner: Any,
    max_version: tuple[int, int] | None = None,
    readonly: bool = False,
) -> Any:
    """A DLPack capsule of the C-contiguous tensor at ``pointer`` on ``device``; ``owner`` lives as long.

    Versioned (DLPack 1.0, writable unless ``readonly``) where ``max_version`` (the consumer's)
    allows it; the unversioned layout cannot say read-only.
    """
    dtype = np.dtype(dtype)
    versioned = max_version is not None and max_version[0] >= 1
    managed: Any = _ManagedVersioned() if versioned else _Managed()
    if versioned:
        managed.version = _Version(1, 0)
        managed.flags = _READ_ONLY if readonly else 0
    dims = (ctypes.c_int64 * max(len(shape), 1))(*shape)
    tensor = managed.dl_tensor
    tensor.data = pointer
    tensor.device = _Device(*device)
    tensor.ndim = len(shape)
    tensor.dtype = _DataType(_CODES[dtype.kind], dtype.itemsize * 8, 1)
    tensor.shape = dims
    tensor.strides = None  # C-contiguous (DLPack's convention for a null strides pointer)
    managed.deleter = _delete
    address = ctypes.addressof(managed)
    with _lock:
        _live[address] = (managed, dims, owner)
    return _api.PyCapsule_New(address, _NAMES[type(managed)][0], _destroy_capsule)


class Borrowed:
    """A producer's tensor, taken from its capsule: where it is, and its release.

    Attributes: ``pointer`` (the first element's address), ``shape``, ``dtype``, ``device``
    (DLPack's ``(device_type, device_id)``) and ``readonly`` (the producer's read-only flag,
    DLPack 1.0). The producer's deleter runs when this object is released (:meth:`release`, or
    when it is collected).
    """

    def __init__(
        self,
        pointer: int,
        shape: tuple[int, ...],
        dtype: np.dtype,
        device: tuple[int, int],
        managed: Any,
        readonly: bool = False,
    ) -> None:
        self.pointer = pointer
        self.shape = shape
        self.dtype = dtype
        self.device = device
        self.readonly = readonly
        self._finalizer = weakref.finalize(self, _call_deleter, managed)

    def release(self) -> None:
        """Hand the tensor back to its producer now."""
        self._finalizer()


def _call_deleter(managed: Any) -> None:
    if managed.deleter:
        managed.deleter(ctypes.addressof(managed))


def borrow(capsule: Any) -> Borrowed:
    """Consume a ``"dltensor"`` or ``"dltensor_versioned"`` capsule (renamed ``"used_..."``, as DLPack asks).

    Raises
    ------
    BufferError
        If it is not an unconsumed DLPack capsule, or its tensor is not C-contiguous, or not of
        a dtype kernels take (bool, integers, floats; one lane).
    """
    handle = id(capsule)  # the object's address: the C API takes the PyObject itself
    layout = next((t for t, (name, _) in _NAMES.items() if _api.PyCapsule_IsValid(handle, name)), None)
    if layout is None:
        raise BufferError("not a DLPack capsule, or one that was consumed already")
    name, used = _NAMES[layout]
    managed = layout.from_address(_api.PyCapsule_GetPointer(handle, name))
    tensor = managed.dl_tensor
    kind = _KINDS.get(tensor.dtype.code)
    if kind is None or tensor.dtype.lanes != 1 or tensor.dtype.bits % 8:
        what = f"type code {tensor.dtype.code}, {tensor.dtype.bits} bits, {tensor.dtype.lanes} lanes"
        raise BufferError(f"a DLPack tensor of {what} is not one kernels take (bool, integers, floats)")
    dtype = np.dtype(f"{kind}{tensor.dtype.bits // 8}") if kind != "b" else np.dtype(np.bool_)
    shape = tuple(tensor.shape[i] for i in range(tensor.ndim))
    if tensor.strides:
        expected = 1
        for axis in reversed(range(tensor.ndim)):
            if shape[axis] != 1 and tensor.strides[axis] != expected:
                raise BufferError(f"the DLPack tensor ({dtype}{list(shape)}) is not C-contiguous; pass a copy that is")
            expected *= shape[axis]
    _api.PyCapsule_SetName(handle, used)  # ours now: the capsule's destructor leaves it alone
    pointer = (tensor.data or 0) + tensor.byte_offset
    readonly = layout is _ManagedVersioned and bool(managed.flags & _READ_ONLY)
    return Borrowed(pointer, shape, dtype, (tensor.device.device_type, tensor.device.device_id), managed, readonly)
