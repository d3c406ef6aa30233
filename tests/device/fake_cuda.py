"""A stand-in for ``cuda.bindings.driver``: the part of the CUDA driver API kernpack calls.

No GPU is lent to this suite's machines, so the CUDA launch path is checked against this: device
memory is host memory it hands out by address; one stream queues copies, launches and frees
and runs them only when something waits for it (as a GPU would, late); a launch reads its
arguments through ``kernelParams`` by the sizes of the PTX entry's ``.param`` list, and runs a
Python version of the kernel on the memory. A read of memory that is not allocated, freed
while a launch could still use it, or written back before the launch ran, gives another
answer than numpy's, so the tests see it. The real driver is exercised where a GPU is present
(``tests/device/test_cuda.py``).
"""

from __future__ import annotations

import ctypes
import enum
import re
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np

_PTX_SIZES = {"8": 1, "16": 2, "32": 4, "64": 8}
_PARAM = re.compile(r"\.param\s+\.[bsuf](8|16|32|64)\b")
_ENTRY = re.compile(r"\.entry\s+(\w+)\s*\(([^)]*)\)", re.S)
OWN_STREAM = 77


class CUresult(enum.IntEnum):
    CUDA_SUCCESS = 0
    CUDA_ERROR_INVALID_VALUE = 1
    CUDA_ERROR_OUT_OF_MEMORY = 2
    CUDA_ERROR_NO_BINARY_FOR_GPU = 209
    CUDA_ERROR_NOT_FOUND = 500
    CUDA_ERROR_ILLEGAL_ADDRESS = 700


class FakeError(Exception):
    """A fault of a fake kernel: the stream's sticky error."""

    def __init__(self, code: CUresult) -> None:
        super().__init__(code.name)
        self.code = code


class FakeDriver:
    """One GPU ("Fake GPU", compute capability 9.0) with a stream of its own (``OWN_STREAM``).

    ``kernels`` maps a kernel's name to ``f(driver, *args)``, args decoded from the launch's
    parameters (floats as floats, pointers and extents as ints). Counters: ``launches``,
    ``waited`` (streams other than its own that were synchronized).
    """

    CUresult = CUresult
    CUdevice_attribute = SimpleNamespace(
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR=75,
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR=76,
        CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED=115,
    )
    CUstream_flags = SimpleNamespace(CU_STREAM_NON_BLOCKING=1)
    CUpointer_attribute = SimpleNamespace(CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL=9)
    CUfunction_attribute = SimpleNamespace(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES=8)

    def __init__(self, kernels: dict[str, Callable[..., None]], *, pools: bool = True) -> None:
        self.kernels = kernels
        self.pools = pools
        self.allocations: dict[int, np.ndarray] = {}
        self.queue: list[Callable[[], None]] = []
        self.error: CUresult | None = None
        self.launches = 0
        self.waited: list[int] = []
        self.modules: dict[int, dict[str, list[int]]] = {}

    @staticmethod
    def CUstream(value: int) -> int:
        return int(value)

    # ------------------------------------------------------------------ device and context
    def cuInit(self, flags: int) -> tuple[CUresult]:
        return (CUresult.CUDA_SUCCESS,)

    def cuDeviceGet(self, index: int) -> tuple[CUresult, int]:
        return CUresult.CUDA_SUCCESS, index

    def cuDeviceGetName(self, length: int, device: int) -> tuple[CUresult, bytes]:
        return CUresult.CUDA_SUCCESS, b"Fake GPU".ljust(length, b"\0")

    def cuDriverGetVersion(self) -> tuple[CUresult, int]:
        return CUresult.CUDA_SUCCESS, 12040

    def cuDeviceGetAttribute(self, attribute: int, device: int) -> tuple[CUresult, int]:
        return CUresult.CUDA_SUCCESS, {75: 9, 76: 0, 115: int(self.pools)}[attribute]

    def cuDeviceTotalMem(self, device: int) -> tuple[CUresult, int]:
        return CUresult.CUDA_SUCCESS, 1 << 34

    def cuDevicePrimaryCtxRetain(self, device: int) -> tuple[CUresult, str]:
        return CUresult.CUDA_SUCCESS, "context"

    def cuCtxSetCurrent(self, context: str) -> tuple[CUresult]:
        return (CUresult.CUDA_SUCCESS,)

    def cuStreamCreate(self, flags: int) -> tuple[CUresult, int]:
        return CUresult.CUDA_SUCCESS, OWN_STREAM

    def cuStreamSynchronize(self, stream: int) -> tuple[CUresult]:
        if stream != OWN_STREAM:
            self.waited.append(stream)
            return (CUresult.CUDA_SUCCESS,)
        self._run()
        return (self.error or CUresult.CUDA_SUCCESS,)

    def _run(self) -> None:
        queue, self.queue = self.queue, []
        for work in queue:
            if self.error is None:
                try:
                    work()
                except FakeError as exc:
                    self.error = exc.code  # sticky, as a GPU fault is

    # ------------------------------------------------------------------ memory
    def allocate(self, nbytes: int) -> int:
        """Memory as another library would get it (not on kernpack's stream)."""
        memory = np.full(nbytes, 0xAB, np.uint8)  # not zeros: reading it unwritten shows
        self.allocations[memory.ctypes.data] = memory
        return memory.ctypes.data

    def cuMemAllocAsync(self, nbytes: int, stream: int) -> tuple[CUresult, int]:
        assert self.pools and stream == OWN_STREAM
        return CUresult.CUDA_SUCCESS, self.allocate(nbytes)

    def cuMemAlloc(self, nbytes: int) -> tuple[CUresult, int]:
        return CUresult.CUDA_SUCCESS, self.allocate(nbytes)

    def cuMemFreeAsync(self, pointer: int, stream: int) -> tuple[CUresult]:
        assert self.pools and stream == OWN_STREAM
        self.queue.append(lambda: self._free(pointer))
        return (CUresult.CUDA_SUCCESS,)

    def cuMemFree(self, pointer: int) -> tuple[CUresult]:
        self._free(pointer)
        return (CUresult.CUDA_SUCCESS,)

    def _free(self, pointer: int) -> None:
        memory = self.allocations.pop(int(pointer), None)
        if memory is None:
            raise FakeError(CUresult.CUDA_ERROR_INVALID_VALUE)
        memory[:] = 0xCD  # freed: a later read gives garbage, not the old values

    def view(self, pointer: int, count: int, dtype: Any) -> np.ndarray:
        """``count`` elements at ``pointer`` inside one live allocation, else an illegal address."""
        dtype = np.dtype(dtype)
        for start, memory in self.allocations.items():
            if start <= pointer and pointer + count * dtype.itemsize <= start + memory.nbytes:
                offset = pointer - start
                return memory[offset : offset + count * dtype.itemsize].view(dtype)
        raise FakeError(CUresult.CUDA_ERROR_ILLEGAL_ADDRESS)

    def cuMemcpyHtoDAsync(self, device: int, host: int, nbytes: int, stream: int) -> tuple[CUresult]:
        staged = ctypes.string_at(host, nbytes)  # pageable memory is staged before the call returns

        def copy() -> None:
            self.view(int(device), nbytes, np.uint8)[:] = np.frombuffer(staged, np.uint8)

        self.queue.append(copy)
        return (CUresult.CUDA_SUCCESS,)

    def cuMemcpyDtoHAsync(self, host: int, device: int, nbytes: int, stream: int) -> tuple[CUresult]:
        self._run()  # into pageable memory: done when the call returns
        if self.error is not None:
            return (self.error,)
        try:
            data = self.view(int(device), nbytes, np.uint8).tobytes()
        except FakeError as exc:
            return (exc.code,)
        ctypes.memmove(host, data, nbytes)
        return (CUresult.CUDA_SUCCESS,)

    def cuPointerGetAttribute(self, attribute: int, pointer: int) -> tuple[CUresult, int]:
        try:
            self.view(int(pointer), 1, np.uint8)
        except FakeError:
            return CUresult.CUDA_ERROR_INVALID_VALUE, 0
        return CUresult.CUDA_SUCCESS, 0

    # ------------------------------------------------------------------ modules and launches
    def cuModuleLoadData(self, image: bytes) -> tuple[CUresult, int]:
        if not image.startswith(b"//"):  # a cubin: as if for another architecture
            return CUresult.CUDA_ERROR_NO_BINARY_FOR_GPU, 0
        text = image.rstrip(b"\0").decode()
        entries = {name: [_PTX_SIZES[bits] for bits in _PARAM.findall(params)] for name, params in _ENTRY.findall(text)}
        handle = len(self.modules) + 1
        self.modules[handle] = entries
        return CUresult.CUDA_SUCCESS, handle

    def cuModuleUnload(self, module: int) -> tuple[CUresult]:
        self.modules.pop(module)
        return (CUresult.CUDA_SUCCESS,)

    def cuModuleGetFunction(self, module: int, name: bytes) -> tuple[CUresult, Any]:
        sizes = self.modules[module].get(name.decode())
        if sizes is None:
            return CUresult.CUDA_ERROR_NOT_FOUND, None
        return CUresult.CUDA_SUCCESS, (name.decode(), sizes)

    def cuFuncSetAttribute(self, function: Any, attribute: int, value: int) -> tuple[CUresult]:
        return (CUresult.CUDA_SUCCESS,)

    def cuLaunchKernel(self, function: Any, *args: Any) -> tuple[CUresult]:
        *_geometry, stream, params, extra = args  # grid, block, shared memory: the kernels need none
        name, sizes = function
        assert stream == OWN_STREAM and extra == 0
        addresses = (ctypes.c_void_p * len(sizes)).from_address(params)
        # The driver copies the values now: the caller's storage may be gone once this returns.
        raw = [ctypes.string_at(address, size) for address, size in zip(addresses, sizes, strict=True)]
        values = [_decode(data) for data in raw]
        kernel = self.kernels[name]
        self.launches += 1
        self.queue.append(lambda: kernel(self, *values))
        return (CUresult.CUDA_SUCCESS,)


def _decode(data: bytes) -> Any:
    """A parameter's bytes as the fake kernels take them: 4 bytes a float32, 8 an int, 1 a small int."""
    if len(data) == 4:
        return float(np.frombuffer(data, np.float32)[0])
    return int.from_bytes(data, "little", signed=True)
