"""Devices by name, and arrays that live on them.

``kp.devices()`` lists what this machine can run; ``kp.device("opencl")`` returns one. A device
makes arrays (``dev.asarray(x)``, ``dev.empty(shape, dtype)``, ``dev.zeros(...)``) that device
kernels take without any copy, and launches on it are asynchronous when every array argument
lives on it: reading an array back (``.numpy()``, ``np.asarray``), ``dev.synchronize()``, or a
launch that takes numpy arrays waits for the launches before it. The device's queue runs them
in order, so results are those of running the launches one after another.

Each device kind (its runtime module) registers a :class:`DeviceKind` here; this module knows
none of them.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import ArgumentError, DeviceUnavailableError, KernpackError
from . import dlpack

__all__ = ["Device", "DeviceArray", "LaunchError", "device", "devices", "register_device_kind"]


class LaunchError(KernpackError):
    """A kernel failed on its device; raised at the synchronization that found it, naming it."""


class Device:
    """One device: where device arrays live and device kernels run.

    Subclasses (one per kind) implement :meth:`_allocate`, :meth:`_write`, :meth:`_read` (both
    called after :meth:`synchronize`) and :meth:`_wait`. Attributes: ``kind`` (``"opencl"``),
    ``name`` (the driver's), ``index`` (its position among the devices of its kind),
    ``memory`` (bytes, 0 where unknown), ``runtime`` (what implements it, in the driver's
    words: ``"Intel(R) OpenCL 2026.22.10.0.01_160000, on the CPU"``) and ``dlpack_device``
    (DLPack's ``(device_type, device_id)`` of its arrays).
    """

    kind: str = ""
    dlpack_device: tuple[int, int] = (dlpack.KDL_CPU, 0)

    def __init__(self, name: str, index: int, memory: int, runtime: str = "") -> None:
        self.name = name
        self.index = index
        self.memory = memory
        self.runtime = runtime
        self._pending: list[str] = []  # kernels launched since the last synchronization
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ arrays
    def empty(self, shape: int | Sequence[int], dtype: Any = np.float32) -> DeviceArray:
        """An uninitialized array on this device."""
        shape, dtype = _shape(shape), np.dtype(dtype)
        _check_dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        array = DeviceArray(self, self._allocate(nbytes), shape, dtype)
        self._attach(array)
        return array

    def zeros(self, shape: int | Sequence[int], dtype: Any = np.float32) -> DeviceArray:
        """An array of zeros on this device."""
        array = self.empty(shape, dtype)
        array.copy_from(np.zeros(array.shape, array.dtype))
        return array

    def asarray(self, array: Any) -> DeviceArray:
        """A copy on this device of ``array`` (a numpy array or anything ``np.asarray`` takes)."""
        if isinstance(array, DeviceArray) and array.device is self:
            return array
        host = np.ascontiguousarray(np.asarray(array))
        result = self.empty(host.shape, host.dtype)
        result.copy_from(host)
        return result

    # ------------------------------------------------------------------ ordering
    def synchronize(self) -> None:
        """Wait until every launch on this device has finished.

        Raises
        ------
        LaunchError
            If one of them failed; the message names the kernels launched since the last
            synchronization.
        """
        with self._lock:
            pending, self._pending = self._pending, []
        try:
            self._wait()
        except Exception as exc:
            names = ", ".join(dict.fromkeys(pending)) or "none since the last synchronization"
            raise LaunchError(f"a launch on {self} failed (kernels launched: {names}): {exc}") from None

    def launched(self, kernel: str) -> None:
        """Note that ``kernel`` was enqueued (for the error of the synchronization that follows)."""
        with self._lock:
            if len(self._pending) < 64:  # the names, not a log: a loop of launches repeats them
                self._pending.append(kernel)

    # ------------------------------------------------------------------ the kind's part
    def _allocate(self, nbytes: int) -> Any:
        raise NotImplementedError

    def _attach(self, array: DeviceArray) -> None:
        """Tie the buffer's lifetime to ``array`` where the runtime does not free it by itself."""

    def _host_memory(self, buffer: Any) -> np.ndarray | None:
        """The buffer as host bytes (uint8), where the device's memory is the host's; else None."""
        return None

    def _device_pointer(self, buffer: Any) -> int | None:
        """The buffer's address in the device's own address space, where it has one (CUDA); else None."""
        return None

    def borrow(self, value: Any) -> DeviceArray | None:
        """``value`` as an array of this device, used in place, if it is another library's array here.

        None where it is not (numpy arrays and the like are then copied, as before).
        """
        return None

    def _read_only(self, buffer: Any) -> bool:
        """True if a kernel must not write the buffer (another library's array it lent read-only)."""
        return False

    def _write(self, buffer: Any, host: np.ndarray) -> None:
        raise NotImplementedError

    def _read(self, buffer: Any, host: np.ndarray) -> None:
        raise NotImplementedError

    def _wait(self) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        memory = f", {self.memory / 2**30:.1f} GiB" if self.memory else ""
        return f"<kernpack device {self.kind}:{self.index} {self.name!r}{memory}>"


class DeviceArray:
    """A C-contiguous array in a device's memory.

    Made by :meth:`Device.empty`, :meth:`Device.zeros` and :meth:`Device.asarray`. Device
    kernels of the same device take it as it is; ``numpy()`` (or ``np.asarray``) copies it back
    after the launches before it have finished.
    """

    __slots__ = ("__weakref__", "buffer", "device", "dtype", "shape")

    def __init__(self, device: Device, buffer: Any, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.device = device
        self.buffer = buffer  # the kind's handle (a cl.Buffer, ...)
        self.shape = shape
        self.dtype = dtype

    @property
    def ndim(self) -> int:
        """The number of dimensions."""
        return len(self.shape)

    @property
    def size(self) -> int:
        """The number of elements."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        """The size in bytes."""
        return self.size * self.dtype.itemsize

    def numpy(self) -> np.ndarray:
        """A numpy copy, once every launch before this call has finished."""
        host = np.empty(self.shape, self.dtype)
        self.copy_to(host)
        return host

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        host = self.numpy()
        return host if dtype is None else host.astype(dtype, copy=False)

    def __dlpack__(
        self, *, stream: Any = None, max_version: Any = None, dl_device: Any = None, copy: bool | None = None
    ) -> Any:
        """Export the array through DLPack, without a copy.

        The launches before the call finish first; the consumer then reads and writes the
        device's memory itself. Host memory (a CPU device's) goes to any CPU library, a CUDA
        array to any library on that GPU. Elsewhere, or when a copy or another device is asked
        for, ``BufferError``: use ``numpy()``.
        """
        if copy or (dl_device is not None and tuple(dl_device) != self.__dlpack_device__()):
            raise BufferError(f"{self!r} is exported in place on its own device only; use .numpy() for a copy")
        self.device.synchronize()
        view = self.device._host_memory(self.buffer)
        if view is not None:
            host = view[: self.nbytes].view(self.dtype).reshape(self.shape)
            return host.__dlpack__(stream=stream) if max_version is None else host.__dlpack__(max_version=max_version)
        pointer = self.device._device_pointer(self.buffer)
        if pointer is None:
            raise BufferError(f"{self!r} has no DLPack device type kernpack can hand out; use .numpy() for a copy")
        return dlpack.export(pointer, self.shape, self.dtype, self.device.dlpack_device, self, max_version)

    def __dlpack_device__(self) -> tuple[int, int]:
        """DLPack's ``(device_type, device_id)``: ``(kDLCPU, 0)`` for host memory, ``(kDLCUDA, n)`` on a GPU."""
        return self.device.dlpack_device

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        """The array for CuPy, PyTorch and Numba (CUDA arrays only), once earlier launches are done."""
        pointer = self.device._device_pointer(self.buffer)
        if pointer is None:
            raise AttributeError(f"{self!r} is not in CUDA memory")
        self.device.synchronize()
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (pointer, False), "strides": None, "version": 3}

    def copy_to(self, host: np.ndarray) -> None:
        """Copy into ``host`` (same shape and dtype, C-contiguous, writable), after earlier launches."""
        _check_host(self, host, writes=True)
        if self.nbytes:
            self.device.synchronize()  # a failed launch before it is reported here, by name
            self.device._read(self.buffer, host)

    def copy_from(self, host: np.ndarray) -> None:
        """Copy ``host`` (same shape and dtype) into this array, after earlier launches."""
        host = np.ascontiguousarray(host)
        _check_host(self, host, writes=False)
        if self.nbytes:
            self.device.synchronize()  # launches in flight may still read the old contents
            self.device._write(self.buffer, host)

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d device array")
        return self.shape[0]

    def __repr__(self) -> str:
        return f"<DeviceArray {self.dtype}{list(self.shape)} on {self.device.kind}:{self.device.index}>"


def _shape(shape: int | Sequence[int]) -> tuple[int, ...]:
    dims = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if any(not isinstance(d, (int, np.integer)) or d < 0 for d in dims):
        raise ArgumentError(f"a shape is non-negative integers, not {shape!r}")
    return tuple(int(d) for d in dims)


def _check_dtype(dtype: np.dtype) -> None:
    if dtype.kind not in "biuf" or dtype.byteorder == ">" or dtype.itemsize > 8:
        raise ArgumentError(f"device arrays hold bool, integers or float32/float64, not {dtype}")


def _check_host(array: DeviceArray, host: Any, *, writes: bool) -> None:
    if not isinstance(host, np.ndarray):
        raise ArgumentError(f"expected a numpy array, got {type(host).__name__}")
    if host.shape != array.shape or host.dtype != array.dtype:
        raise ArgumentError(
            f"{array!r} and the numpy array ({host.dtype}{list(host.shape)}) differ; "
            "pass one of the same shape and dtype"
        )
    if not host.flags.c_contiguous or (writes and not host.flags.writeable):
        raise ArgumentError("the numpy array must be C-contiguous" + (" and writable" if writes else ""))


# ---------------------------------------------------------------------- kinds
class DeviceKind:
    """How ``kp.devices()`` finds the devices of one kind.

    ``probe()`` lists them, or raises :class:`DeviceUnavailableError` saying what is missing.
    """

    def __init__(self, kind: str, probe: Callable[[], list[Device]]) -> None:
        self.kind = kind
        self.probe = probe


_KINDS: dict[str, DeviceKind] = {}


def register_device_kind(kind: str, probe: Callable[[], list[Device]]) -> None:
    """Register how to find the devices of ``kind`` (each runtime module registers its own)."""
    _KINDS[kind] = DeviceKind(kind, probe)


def devices() -> list[Device]:
    """Every device this machine can run kernpack's device kernels on, kinds in turn.

    A kind whose runtime is missing contributes none (``kp.device(kind)`` says why).
    """
    found: list[Device] = []
    for entry in _KINDS.values():
        with contextlib.suppress(DeviceUnavailableError):
            found += entry.probe()
    return found


def device(kind: str, index: int = 0) -> Device:
    """The device ``index`` of ``kind`` (``"opencl"``, ``"vulkan"``, ``"cuda"``).

    Raises
    ------
    DeviceUnavailableError
        If there is no such device here: the message says what is missing and how to get it.
    ValueError
        If ``kind`` is not a device kind.
    """
    entry = _KINDS.get(kind)
    if entry is None:
        raise ValueError(f"unknown device kind {kind!r}; kinds: {', '.join(_KINDS)}")
    found = entry.probe()
    if not 0 <= index < len(found):
        raise DeviceUnavailableError(f"there is no {kind} device {index} here ({len(found)} found: {found})")
    return found[index]
