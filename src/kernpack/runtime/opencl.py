"""Kind ``opencl`` (BINARY_SERIALIZABLE | RUNNABLE): SPIR-V kernels run through pyopencl.

Any OpenCL platform whose device accepts SPIR-V IL runs it; on a machine without a GPU, Intel's
CPU runtime from PyPI does (``pip install kernpack[opencl]``, then an ICD file naming its
``libintelocl.so``; ``scripts/test`` writes one). The context and queue are created once per
process (:class:`OpenCLDevice`, ``kp.device("opencl")``); a program is built once per module.
A launch takes device arrays as they are and returns at once; numpy arguments are used in
place on a CPU device (copied to and from the device elsewhere), and such a launch waits.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..errors import ArgumentError, CompileError, DeviceUnavailableError, FormatError, LoadError
from .abi import axis_extents, group_counts
from .device import DeviceModule, KernelEntry, is_spirv, load_binary_file, runtime_once
from .devices import Device, DeviceArray, register_device_kind
from .registry import register_file_loader, register_loader
from .tools import disassemble_spirv, validate_spirv

__all__ = ["OpenCLDevice", "OpenCLModule", "opencl_module"]

_HOW = (
    "install pyopencl and an OpenCL runtime that takes SPIR-V, e.g. Intel's CPU runtime: "
    "pip install 'kernpack[opencl]', then write an .icd file naming libintelocl.so into a directory "
    "and point OCL_ICD_VENDORS at it (kernpack's scripts/_venv.sh shows how; docs/quickstart.md)"
)


_PAGE = 4096


class OpenCLDevice(Device):
    """An OpenCL device that takes SPIR-V: its context and one in-order queue."""

    kind = "opencl"

    def __init__(self, cl: Any, device: Any, index: int) -> None:
        super().__init__(device.name.strip(), index, int(device.global_mem_size))
        self.cl = cl
        self.context = cl.Context([device])
        self.queue = cl.CommandQueue(self.context)
        # How a launch reaches numpy arrays. A device with fine-grained system SVM (Intel's CPU
        # runtime) takes their pointers as they are: really shared, no copy, whatever their
        # alignment. Another CPU device works on them in place through USE_HOST_PTR buffers,
        # which its runtime copies unless the memory is aligned as it wants (numpy's is 16
        # bytes past a page: a 2 ms copy per 4 MB array on Intel's). Elsewhere they are
        # copied in, and the written ones copied back.
        try:
            svm = device.svm_capabilities
        except cl.Error:  # an OpenCL 1.x device: no SVM
            svm = 0
        self.system_svm = bool(svm & getattr(cl.device_svm_capabilities, "FINE_GRAIN_SYSTEM", 0))
        self.shares_host_memory = bool(device.type & cl.device_type.CPU)

    def _allocate(self, nbytes: int) -> Any:
        if self.system_svm:
            # The device reads and writes host memory itself: a device array is host memory
            # (page-aligned), which DLPack can also hand to other libraries on the CPU.
            storage = np.empty(max(nbytes, 1) + _PAGE, np.uint8)
            start = -storage.ctypes.data % _PAGE
            return self.cl.SVM(storage[start : start + max(nbytes, 1)])
        return self.cl.Buffer(self.context, self.cl.mem_flags.READ_WRITE, size=max(nbytes, 1))

    def _host_memory(self, buffer: Any) -> np.ndarray | None:
        return buffer.mem if isinstance(buffer, self.cl.SVM) else None

    def _write(self, buffer: Any, host: np.ndarray) -> None:
        if isinstance(buffer, self.cl.SVM):  # after synchronize(): no launch uses it now
            buffer.mem[: host.nbytes] = host.reshape(-1).view(np.uint8)
        else:  # blocking: the caller may change ``host`` as soon as this returns
            self.cl.enqueue_copy(self.queue, buffer, host, is_blocking=True)

    def _read(self, buffer: Any, host: np.ndarray) -> None:
        if isinstance(buffer, self.cl.SVM):
            host.reshape(-1).view(np.uint8)[:] = buffer.mem[: host.nbytes]
        else:
            self.cl.enqueue_copy(self.queue, host, buffer, is_blocking=True)

    def _wait(self) -> None:
        self.queue.finish()


@runtime_once
def _runtime() -> OpenCLDevice:
    """The first SPIR-V capable OpenCL device (this module launches on it)."""
    return _devices()[0]


@runtime_once
def _devices() -> list[OpenCLDevice]:
    try:
        import pyopencl as cl
    except ImportError:
        raise DeviceUnavailableError(f"pyopencl is not installed; {_HOW}") from None
    try:
        platforms = cl.get_platforms()
    except cl.Error as exc:
        raise DeviceUnavailableError(f"no OpenCL platform ({exc}); {_HOW}") from None
    found = [
        device
        for platform in platforms
        for device in platform.get_devices()
        if "SPIR-V" in (getattr(device, "il_version", "") or "")
    ]
    if not found:
        names = ", ".join(p.name for p in platforms) or "none"
        raise DeviceUnavailableError(f"no OpenCL device accepts SPIR-V (platforms: {names}); {_HOW}")
    # Modules launch on the first device; listing others waits for programs built per device.
    return [OpenCLDevice(cl, found[0], 0)]


register_device_kind("opencl", _devices)


class OpenCLModule(DeviceModule):
    """SPIR-V kernels for OpenCL, with their function table."""

    kind = "opencl"
    binary_format = "spirv"
    _runtime = staticmethod(_runtime)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._last_args: dict[str, list[Any]] = {}  # per kernel, what its launch on device arrays set

    def _device(self) -> Device:
        return _runtime()

    @classmethod
    def from_binary(cls, binary: bytes, functions: list[Any], path: str) -> OpenCLModule:
        """An OpenCL module of a SPIR-V file's kernels."""
        if not is_spirv(binary):
            raise LoadError(f"cannot load {path!r}: not a SPIR-V module (no SPIR-V magic number and header)")
        return opencl_module(binary, functions, validate=False)

    def _inspect_source(self, fmt: str | None) -> str:
        return disassemble_spirv(bytes(self.binary))

    def _kernel(self, name: str) -> Any:
        dev = _runtime()
        cl, context = dev.cl, dev.context
        with self._lock:
            if "program" not in self._loaded:
                try:
                    with warnings.catch_warnings():
                        # The driver's build log ("Kernel was 16-way vectorized") is not a problem.
                        warnings.simplefilter("ignore", cl.CompilerWarning)
                        self._loaded["program"] = cl.Program(context, bytes(self.binary)).build()
                except cl.Error as exc:
                    raise DeviceUnavailableError(f"the OpenCL driver refused this module's SPIR-V: {exc}") from None
            kernel = self._loaded.get(name)
            if kernel is None:
                kernel = cl.Kernel(self._loaded["program"], name)
                _check_arguments(self.functions[name], kernel.get_info(cl.kernel_info.NUM_ARGS))
                self._loaded[name] = kernel
            return kernel

    def _launch(self, entry: KernelEntry, args: list[Any], grid: tuple[int, ...]) -> None:
        dev = _runtime()
        cl, context, queue = dev.cl, dev.context, dev.queue
        kernel = self._kernel(entry.name)
        flags = cl.mem_flags
        values: list[Any] = []
        written: list[tuple[np.ndarray, Any, bool]] = []
        host_arrays = False
        for param, value in zip(entry.signature.params, args, strict=True):
            if not param.pointer:
                values.append(value)
                continue
            if isinstance(value, DeviceArray):
                buffer = value.buffer  # on this device (DeviceFunction checked): no copy
            elif value.nbytes == 0:
                buffer = cl.Buffer(context, flags.READ_WRITE, size=1)
            elif dev.system_svm and value.flags.writeable:
                host_arrays = True
                buffer = cl.SVM(value)  # the kernel reads and writes the numpy array itself
            else:
                host_arrays = True
                access = flags.READ_WRITE if param.is_output else flags.READ_ONLY
                share = dev.shares_host_memory and value.flags.writeable
                # Outputs are copied in too: a kernel may read what it updates (out[i] += ...).
                buffer = cl.Buffer(
                    context, access | (flags.USE_HOST_PTR if share else flags.COPY_HOST_PTR), hostbuf=value
                )
                if param.is_output:
                    written.append((value, buffer, share))
            values.append(buffer)
            values.extend(np.int64(extent) for extent in value.shape[: param.ndim])  # none for a plain T *
        with self._lock:  # one kernel object per name: its arguments are set and enqueued together
            self._set_args(cl, entry.name, kernel, values, remember=not host_arrays)
            cl.enqueue_nd_range_kernel(queue, kernel, *_geometry(entry, grid))
        dev.launched(entry.name)
        if not host_arrays:
            return  # device arrays only: the launch runs while the caller goes on
        # numpy arrays: the results are in them, and their memory free again, on return.
        for host, buffer, shared in written:
            if shared:
                mapped, _ = cl.enqueue_map_buffer(queue, buffer, cl.map_flags.READ, 0, host.shape, host.dtype)
                mapped.base.release(queue)
            else:
                cl.enqueue_copy(queue, host, buffer)
        dev.synchronize()

    def _set_args(self, cl: Any, name: str, kernel: Any, values: list[Any], *, remember: bool) -> None:
        """Set the kernel's arguments, only those that changed since its last launch on device arrays.

        An OpenCL kernel keeps its arguments between launches, and setting them is most of a
        launch's cost on the host (about 20 us for saxpy's seven): a loop of launches on the same
        device arrays sets only its scalars. Launches on numpy arrays set everything and are not
        remembered (their buffers are the call's own).
        """
        last = self._last_args.pop(name, None)
        if last is None or len(last) != len(values):
            kernel.set_args(*values)
        else:
            for index, (old, new) in enumerate(zip(last, values, strict=True)):
                if old is not new and not (type(old) is type(new) and isinstance(new, np.generic) and old == new):
                    kernel.set_arg(index, new)
        if remember:
            self._last_args[name] = values


def _check_arguments(entry: KernelEntry, count: int) -> None:
    """Refuse a signature that passes another number of arguments than the kernel takes.

    Each array is a pointer and then one ``int64_t`` per dimension (kernpack's convention);
    pyopencl would fail at the launch with its own TypeError.
    """
    passed = sum(1 + p.ndim if p.pointer else 1 for p in entry.signature.params)
    if passed != count:
        raise ArgumentError(
            f"kernel {entry.name!r} takes {count} OpenCL arguments, but its signature {entry.signature} passes "
            f"{passed} (each array as a pointer then one int64_t per dimension); give the kernel's own signature"
        )


def _geometry(entry: KernelEntry, grid: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """(global size, local size) of a launch: the driver's choice, unless the kernel fixes a workgroup.

    A kernel with an epilogue knows its workgroup (``attrs["workgroup"]``): it is launched with
    whole workgroups, the extra work-items outside the grid.
    """
    ndim = len(grid)
    workgroup = entry.attrs.get("workgroup")
    if workgroup is None:
        return axis_extents(grid)[:ndim], None
    groups = group_counts(grid, workgroup)
    return tuple(g * w for g, w in zip(groups, workgroup, strict=True))[:ndim], tuple(workgroup[:ndim])


def opencl_module(
    spirv: bytes, functions: Iterable[dict[str, Any] | KernelEntry], *, validate: bool = True
) -> OpenCLModule:
    """Wrap a SPIR-V binary for OpenCL that you bring.

    Parameters
    ----------
    spirv : bytes
        The SPIR-V module (kernels with kernpack's convention: each array a global pointer
        followed by its ``int64`` extents).
    functions : iterable of dict or KernelEntry
        For each kernel: ``{"name": ..., "signature": "void k(float x[:], int64_t n)", "grid":
        ["x.shape[0]"]}``.
    validate : bool, default True
        Check the module with ``spirv-val`` (for its own SPIR-V version) where it is installed.

    Raises
    ------
    CompileError
        If spirv-val rejects the module: its message.
    """
    entries = [KernelEntry.of(f) for f in functions]
    if validate:
        complaint = validate_spirv(bytes(spirv))
        if complaint is not None:
            names = ", ".join(e.name for e in entries)
            raise CompileError(f"the SPIR-V of {names} is not valid SPIR-V (spirv-val): {complaint}")
    return OpenCLModule(bytes(spirv), entries)


@register_file_loader(".spv")
def _load_spv(path: str) -> DeviceModule:
    """A SPIR-V file: for OpenCL, or for the kind its side file names (``"target": "vulkan"``)."""
    return load_binary_file(path, "opencl")


@register_loader("opencl")
def _load(data: bytes | memoryview) -> OpenCLModule:
    module = OpenCLModule.from_bytes(data)
    if not is_spirv(module.binary):
        raise FormatError("opencl module: its binary is not SPIR-V")
    return module
