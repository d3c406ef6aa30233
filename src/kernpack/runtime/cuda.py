"""Kind ``cuda`` (BINARY_SERIALIZABLE | RUNNABLE): PTX kernels run through the CUDA driver API.

Running needs an NVIDIA GPU, its driver and ``cuda-bindings`` (``pip install kernpack[cuda]``);
without them a call raises :class:`DeviceUnavailableError` saying which is missing. The driver
JIT-compiles the PTX for the GPU when the module is first launched (or loads the cubin beside
it, where its architecture is the GPU's).

GPU 0 is ``kp.device("cuda")``: its primary context (the one CuPy and PyTorch share) and one
stream of kernpack's own, on which every launch, copy and free is ordered. A launch on device
arrays enqueues and returns. numpy arguments are copied to the GPU before the launch, the
written ones back after it, and such a launch waits. Arrays of other libraries on the same GPU
(``__cuda_array_interface__``: CuPy, PyTorch, Numba; or DLPack) are used in place: the launch
first waits for the stream they name, and returns when it is done, so that library's next
operation sees the results.
"""

from __future__ import annotations

import ctypes
import threading
import weakref
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..errors import ArgumentError, DeviceUnavailableError, FormatError
from . import dlpack
from .abi import CUDA_BLOCK, SCALARS, axis_extents
from .device import DeviceModule, KernelEntry, load_binary_file, runtime_once
from .devices import Device, DeviceArray, LaunchError, register_device_kind
from .ptxas import assemble_cubin, ptx_target
from .registry import register_file_loader, register_loader

__all__ = ["CUDADevice", "CUDAModule", "cuda_module"]

_HOW = "pip install 'kernpack[cuda]'"
_DEFAULT_SHARED = 48 * 1024  # dynamic shared memory a kernel gets without opting in to more


class CUDAError(LaunchError):
    """A driver call failed: which call, and the driver's error name."""


class _Memory:
    """A device allocation: its address, and what keeps it valid.

    ``owner`` is None for kernpack's own memory (freed when its array is collected), or the
    other library's array (or DLPack tensor) that this memory belongs to; ``readonly`` where
    that library says kernels must not write it.
    """

    __slots__ = ("owner", "pointer", "readonly", "stream")

    def __init__(self, pointer: int, owner: Any = None, stream: int | None = None, readonly: bool = False) -> None:
        self.pointer = pointer
        self.owner = owner
        self.stream = stream  # the other library's stream that writes it, to wait for (CAI)
        self.readonly = readonly


class CUDADevice(Device):
    """An NVIDIA GPU through the driver API: its primary context and kernpack's stream."""

    kind = "cuda"

    def __init__(self, driver: Any, index: int) -> None:
        self.driver = driver
        handle = self.check(driver.cuDeviceGet(index), "cuDeviceGet")
        name = self.check(driver.cuDeviceGetName(256, handle), "cuDeviceGetName")
        name = (name if isinstance(name, bytes) else bytes(name)).split(b"\0")[0].decode(errors="replace")
        version = self.check(driver.cuDriverGetVersion(), "cuDriverGetVersion")
        attribute = driver.CUdevice_attribute
        major, minor, pools = (
            self.check(driver.cuDeviceGetAttribute(a, handle), "cuDeviceGetAttribute")
            for a in (
                attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                attribute.CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED,
            )
        )
        runtime = f"NVIDIA CUDA driver {version // 1000}.{version % 1000 // 10}, compute capability {major}.{minor}"
        memory = self.check(driver.cuDeviceTotalMem(handle), "cuDeviceTotalMem")
        super().__init__(name, index, int(memory), runtime)
        self.architecture = f"sm_{major}{minor}"
        self.dlpack_device = (dlpack.KDL_CUDA, index)
        self.context = self.check(driver.cuDevicePrimaryCtxRetain(handle), "cuDevicePrimaryCtxRetain")
        self.current()
        # Non-blocking: kernpack's work does not serialize with the legacy default stream that
        # other libraries may use; where their memory is involved, a launch orders itself.
        self.stream = self.check(driver.cuStreamCreate(driver.CUstream_flags.CU_STREAM_NON_BLOCKING), "cuStreamCreate")
        # Stream-ordered allocation (CUDA 11.2+): a free waits for the launches before it on
        # the stream, without the host waiting. Elsewhere a free first waits for the stream.
        self.pools = bool(pools)
        self.free_lock = threading.Lock()

    def check(self, result: Any, what: str) -> Any:
        """The values of a driver call's ``(CUresult, *values)``; a failure raises :class:`CUDAError`."""
        err, *values = result if isinstance(result, tuple) else (result,)
        if err != self.driver.CUresult.CUDA_SUCCESS:
            raise CUDAError(f"{what} failed: {getattr(err, 'name', err)}")
        return values[0] if len(values) == 1 else values

    def current(self) -> None:
        """Make the context current on the calling thread (every entry point does, first)."""
        self.check(self.driver.cuCtxSetCurrent(self.context), "cuCtxSetCurrent")

    # ------------------------------------------------------------------ memory
    def allocate(self, nbytes: int) -> int:
        """The address of ``nbytes`` (at least 1) of device memory, ordered on the stream."""
        d = self.driver
        try:
            if self.pools:
                pointer = self.check(d.cuMemAllocAsync(max(nbytes, 1), self.stream), "cuMemAllocAsync")
            else:
                pointer = self.check(d.cuMemAlloc(max(nbytes, 1)), "cuMemAlloc")
        except CUDAError as exc:
            raise LaunchError(f"{self}: cannot allocate {nbytes} bytes ({exc})") from None
        return int(pointer)

    def free(self, pointer: int) -> None:
        """Free memory from :meth:`allocate` once the work enqueued before has finished."""
        d = self.driver
        self.current()
        if self.pools:
            d.cuMemFreeAsync(pointer, self.stream)
        else:
            with self.free_lock:
                d.cuStreamSynchronize(self.stream)  # an error there surfaces at the next wait
                d.cuMemFree(pointer)

    def _allocate(self, nbytes: int) -> _Memory:
        self.current()
        return _Memory(self.allocate(nbytes))

    def _attach(self, array: DeviceArray) -> None:
        finalizer = weakref.finalize(array, self.free, array.buffer.pointer)
        finalizer.atexit = False  # the process's teardown frees the context and its memory

    def _device_pointer(self, buffer: _Memory) -> int:
        return buffer.pointer

    def _write(self, buffer: _Memory, host: np.ndarray) -> None:
        self.current()
        self.check(
            self.driver.cuMemcpyHtoDAsync(buffer.pointer, host.ctypes.data, host.nbytes, self.stream),
            "cuMemcpyHtoDAsync",
        )
        self.check(self.driver.cuStreamSynchronize(self.stream), "cuStreamSynchronize")

    def _read(self, buffer: _Memory, host: np.ndarray) -> None:
        self.current()
        self.check(
            self.driver.cuMemcpyDtoHAsync(host.ctypes.data, buffer.pointer, host.nbytes, self.stream),
            "cuMemcpyDtoHAsync",
        )
        self.check(self.driver.cuStreamSynchronize(self.stream), "cuStreamSynchronize")

    def _wait(self) -> None:
        self.current()
        self.check(self.driver.cuStreamSynchronize(self.stream), "cuStreamSynchronize")

    # ------------------------------------------------------------------ other libraries' arrays
    def borrow(self, value: Any) -> DeviceArray | None:
        """``value`` as a device array in place, if it is another library's array on this GPU.

        ``__cuda_array_interface__`` (CuPy, PyTorch, Numba) first, else DLPack with a CUDA
        device. The array keeps ``value`` (or its DLPack tensor) alive.

        Raises
        ------
        ArgumentError
            If it lives on another GPU, is not C-contiguous, or is of a dtype kernels do not take.
        """
        interface = getattr(value, "__cuda_array_interface__", None)
        if interface is not None:
            return self._from_interface(value, interface)
        device = getattr(value, "__dlpack_device__", None)
        if device is None or not callable(device) or device()[0] != dlpack.KDL_CUDA:
            return None
        if device()[1] != self.index:
            raise ArgumentError(f"the array is on CUDA device {device()[1]}; kernpack launches on device {self.index}")
        try:
            try:  # DLPack 1.0 first: its capsule says whether the tensor is read-only
                capsule = value.__dlpack__(stream=int(self.stream), max_version=(1, 0))
            except TypeError:  # a producer from before 1.0
                capsule = value.__dlpack__(stream=int(self.stream))
            tensor = dlpack.borrow(capsule)
        except BufferError as exc:
            raise ArgumentError(str(exc)) from None
        return DeviceArray(self, _Memory(tensor.pointer, tensor, readonly=tensor.readonly), tensor.shape, tensor.dtype)

    def _from_interface(self, value: Any, interface: dict[str, Any]) -> DeviceArray:
        shape = tuple(int(n) for n in interface["shape"])
        dtype = np.dtype(interface["typestr"])
        strides = interface.get("strides")
        if strides is not None and tuple(strides) != _c_strides(shape, dtype.itemsize):
            raise ArgumentError(f"the array ({dtype}{list(shape)}) is not C-contiguous; pass a contiguous copy")
        pointer, readonly = interface["data"]
        if pointer:
            ordinal = self.driver.CUpointer_attribute.CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL
            where = self.check(self.driver.cuPointerGetAttribute(ordinal, pointer), "cuPointerGetAttribute")
            if int(where) != self.index:
                raise ArgumentError(f"the array is on CUDA device {where}; kernpack launches on device {self.index}")
        stream = interface.get("stream")  # None: nothing to wait for (CAI version 3)
        return DeviceArray(self, _Memory(int(pointer), value, stream, bool(readonly)), shape, dtype)

    def _read_only(self, buffer: _Memory) -> bool:
        return buffer.readonly

    def wait_for(self, memory: _Memory) -> None:
        """Wait, on the host, for the other library's stream that ``memory`` names, if any."""
        if memory.stream is not None:
            self.check(self.driver.cuStreamSynchronize(self.driver.CUstream(memory.stream)), "cuStreamSynchronize")


def _c_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    strides, step = [], itemsize
    for n in reversed(shape):
        strides.append(step)
        step *= max(n, 1)
    return tuple(reversed(strides))


def _driver() -> Any:
    try:
        from cuda.bindings import driver
    except ImportError:
        raise DeviceUnavailableError(f"cuda-bindings is not installed; {_HOW}") from None
    return driver


@runtime_once
def _runtime() -> CUDADevice:
    """GPU 0, where CUDA modules launch."""
    return _devices()[0]


@runtime_once
def _devices() -> list[CUDADevice]:
    driver = _driver()
    try:
        err = driver.cuInit(0)
        if err[0] != driver.CUresult.CUDA_SUCCESS:
            raise CUDAError(f"cuInit failed: {getattr(err[0], 'name', err[0])}")
        # Modules launch on GPU 0; listing others waits for modules loaded per device.
        return [CUDADevice(driver, 0)]
    except (CUDAError, RuntimeError, OSError) as exc:
        raise DeviceUnavailableError(f"no usable NVIDIA GPU and driver ({exc}); CUDA kernels need one") from None


register_device_kind("cuda", _devices)


class CUDAModule(DeviceModule):
    """PTX kernels for CUDA, with their function table."""

    kind = "cuda"
    binary_format = "ptx"
    _runtime = staticmethod(_runtime)

    @classmethod
    def from_binary(cls, binary: bytes, functions: list[Any], path: str) -> CUDAModule:
        """A CUDA module of a PTX file's kernels (the driver checks the PTX when it loads it).

        Not assembled here: loading a file stays as cheap as reading it.
        """
        return cuda_module(binary, functions, assemble=False)

    def _inspect_source(self, fmt: str | None) -> str:
        return bytes(self.binary).decode()

    def _device(self) -> CUDADevice:
        return self._runtime()

    @staticmethod
    def _release(loaded: dict[str, Any]) -> None:
        module, dev = loaded.get("module"), loaded.get("device")
        loaded.clear()
        if module is not None:
            dev.current()
            dev.driver.cuModuleUnload(module)

    def _configure(self, entry: KernelEntry, options: dict[str, Any]) -> KernelEntry:
        block, shared = options.pop("workgroup", None), options.pop("shared", None)
        super()._configure(entry, options)  # refuses what is left
        return _checked(entry.reconfigured(block, shared=shared))

    def _function(self, dev: CUDADevice, name: str) -> Any:
        d = dev.driver
        with self._lock:
            if "module" not in self._loaded:
                # The cubin when it was built for this GPU's architecture, else the driver JITs
                # the PTX.
                cubin = self.sections.get("cubin")
                loaded = d.cuModuleLoadData(bytes(cubin)) if cubin is not None else None
                if loaded is None or loaded[0] != d.CUresult.CUDA_SUCCESS:
                    loaded = d.cuModuleLoadData(bytes(self.binary) + b"\0")
                self._loaded["module"] = dev.check(loaded, "cuModuleLoadData")
                self._loaded["device"] = dev
                self._loaded["functions"] = {}
            functions = self._loaded["functions"]
            if name not in functions:
                functions[name] = dev.check(
                    d.cuModuleGetFunction(self._loaded["module"], name.encode()), f"cuModuleGetFunction({name!r})"
                )
            return functions[name]

    def _launch(self, entry: KernelEntry, args: list[Any], grid: tuple[int, ...]) -> None:
        dev = self._runtime()
        d = dev.driver
        dev.current()
        function = self._function(dev, entry.name)
        # Each argument in ctypes storage of its own and an array of their addresses, as
        # cuLaunchKernel takes them: it copies the values before it returns.
        storage: list[Any] = []
        temporary: list[int] = []
        written: list[tuple[np.ndarray, int]] = []
        waits = False  # numpy arrays or another library's: the launch returns once it is done
        try:
            for param, value in zip(entry.signature.params, args, strict=True):
                if not param.pointer:
                    storage.append(SCALARS[param.ctype].argument(value.item()))
                    continue
                if isinstance(value, DeviceArray):
                    memory = value.buffer
                    if memory.owner is not None:
                        waits = True
                        dev.wait_for(memory)
                    pointer = memory.pointer
                else:
                    waits = True
                    pointer = dev.allocate(value.nbytes)
                    temporary.append(pointer)
                    if value.nbytes:
                        dev.check(
                            d.cuMemcpyHtoDAsync(pointer, value.ctypes.data, value.nbytes, dev.stream),
                            "cuMemcpyHtoDAsync",
                        )
                    if param.is_output and value.nbytes:
                        written.append((value, pointer))
                storage.append(ctypes.c_uint64(pointer))
                storage.extend(ctypes.c_int64(n) for n in value.shape[: param.ndim])  # none for a plain T *
            pointers = (ctypes.c_void_p * max(len(storage), 1))(*(ctypes.addressof(s) for s in storage))
            block = (*entry.attrs.get("workgroup", CUDA_BLOCK[len(grid)]), 1, 1)[:3]
            blocks = [-(-n // b) for n, b in zip(axis_extents(grid), block, strict=True)]
            shared = entry.evaluate(entry.attrs.get("shared", 0), args)
            try:
                if shared > _DEFAULT_SHARED:  # more than 48 KiB of dynamic shared memory is asked for
                    attribute = d.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
                    dev.check(d.cuFuncSetAttribute(function, attribute, shared), "cuFuncSetAttribute")
                dev.check(
                    d.cuLaunchKernel(function, *blocks, *block, shared, dev.stream, ctypes.addressof(pointers), 0),
                    "cuLaunchKernel",
                )
            except CUDAError as exc:
                raise LaunchError(
                    f"kernel {entry.name!r} on {dev.name}: the driver refused a launch of {blocks} blocks of "
                    f"{list(block)} threads with {shared} bytes of shared memory ({exc})"
                ) from None
            dev.launched(entry.name)
            for host, pointer in written:
                dev.check(d.cuMemcpyDtoHAsync(host.ctypes.data, pointer, host.nbytes, dev.stream), "cuMemcpyDtoHAsync")
        finally:
            for pointer in temporary:  # ordered on the stream: after the launch and the copies
                dev.free(pointer)
        if waits:
            dev.synchronize()


def cuda_module(
    ptx: str | bytes,
    functions: Iterable[dict[str, Any] | KernelEntry],
    cubin: bytes | None = None,
    *,
    assemble: bool = True,
) -> CUDAModule:
    """Wrap PTX that you bring (kernels with kernpack's convention; see :func:`opencl_module`).

    Parameters
    ----------
    ptx : str or bytes
        The PTX module.
    functions : iterable of dict or KernelEntry
        For each kernel: its name, signature and grid (threads), and optionally its
        ``"workgroup"`` (the block, ``[x, y, z]``; by default 256, 16 x 16 or 8 x 8 x 4 by
        the grid's rank) and ``"shared"`` (bytes of dynamic shared memory, an integer or an
        extent expression such as ``"4 * n"``). A call may give others
        (``f.configure(workgroup=..., shared=...)``).
    cubin : bytes, optional
        Machine code assembled from the same PTX, loaded instead where its architecture
        matches the GPU's (the driver compiles the PTX otherwise).
    assemble : bool, default True
        Without a ``cubin``, assemble one with ptxas where it is installed, for the
        architecture the PTX names (``.target``): it also checks the PTX now, not when a GPU
        first loads it.

    Raises
    ------
    CompileError
        If ptxas rejects the PTX: its log and a command that reproduces it.
    ArgumentError
        If a block or shared-memory size is malformed, or a parameter is a struct by value.
    """
    entries = [_checked(KernelEntry.of(f, ("workgroup", "shared"))) for f in functions]
    text = ptx.encode() if isinstance(ptx, str) else bytes(ptx)
    if cubin is None and assemble:
        source = text.decode(errors="replace")
        label = "+".join(e.name for e in entries) or "the PTX"
        cubin = assemble_cubin(source, ptx_target(source) or "sm_52", label)
    sections = {"cubin": cubin} if cubin else {}
    return CUDAModule(text, entries, sections)


def _checked(entry: KernelEntry) -> KernelEntry:
    """Refuse a block or shared-memory size, or a parameter, that a CUDA launch cannot take."""
    entry.check_workgroup(most=1024)
    entry.check_size("shared memory", entry.attrs.get("shared", 0))
    aggregate = next((p for p in entry.signature.params if p.layout is not None), None)
    if aggregate is not None:
        raise ArgumentError(
            f"kernel {entry.name!r}: parameter {aggregate} is a vector or struct by value, which kernpack passes to "
            "OpenCL and Vulkan kernels only; pass it through a pointer"
        )
    return entry


@register_file_loader(".ptx")
def _load_ptx(path: str) -> DeviceModule:
    return load_binary_file(path, "cuda")


@register_loader("cuda")
def _load(data: bytes | memoryview) -> CUDAModule:
    module = CUDAModule.from_bytes(data)
    for entry in module.functions.values():
        try:
            _checked(entry)
        except ArgumentError as exc:
            raise FormatError(f"cuda module: {exc}") from None
    return module
