"""Kind ``opencl`` (BINARY_SERIALIZABLE | RUNNABLE): SPIR-V kernels run through pyopencl.

Any OpenCL platform whose device accepts SPIR-V IL runs it; on a machine without a GPU, Intel's
CPU runtime from PyPI does (``pip install kernpack[opencl]``: :mod:`.oclsetup` points the ICD
loader at it before the first OpenCL call). The context and queue are created once per
process (:class:`OpenCLDevice`, ``kp.device("opencl")``); a program is built once per module.
A launch takes device arrays as they are and returns at once; numpy arguments are used in
place on a CPU device (copied to and from the device elsewhere), and such a launch waits.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..errors import ArgumentError, CompileError, DeviceUnavailableError, FormatError, LoadError
from . import oclsetup
from .abi import axis_extents, group_counts
from .device import (
    DeviceModule,
    KernelEntry,
    decode_payload,
    is_spirv,
    load_binary_file,
    read_side_file,
    runtime_once,
)
from .devices import Device, DeviceArray, LaunchError, register_device_kind
from .registry import register_file_loader, register_loader
from .tools import disassemble_spirv, validate_spirv

__all__ = ["OpenCLDevice", "OpenCLModule", "opencl_module"]

_HOW = "pip install 'kernpack[opencl]' brings pyopencl and Intel's OpenCL CPU runtime (docs/quickstart.md)"


_PAGE = 4096
_SOURCE = "opencl-c"  # the binary format of a module of OpenCL C source


class OpenCLDevice(Device):
    """An OpenCL device that takes SPIR-V: its context and one in-order queue."""

    kind = "opencl"

    def __init__(self, cl: Any, device: Any, index: int) -> None:
        on_cpu = ", on the CPU" if device.type & cl.device_type.CPU else ""
        runtime = f"{device.platform.name.strip()} {device.driver_version.strip()}{on_cpu}"
        super().__init__(device.name.strip(), index, int(device.global_mem_size), runtime)
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
        self.local_memory = int(device.local_mem_size)

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
    # Before pyopencl's ICD loader first looks for platforms: it reads OCL_ICD_VENDORS once.
    oclsetup.configure()
    try:
        import pyopencl as cl
    except ImportError:
        raise DeviceUnavailableError(f"pyopencl is not installed; {_HOW}") from None
    try:
        platforms = cl.get_platforms()
    except cl.Error as exc:
        raise DeviceUnavailableError(f"no OpenCL platform ({exc}); {oclsetup.unavailable_hint()}") from None
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
    """OpenCL kernels, as SPIR-V or as OpenCL C built at first use, with their function table.

    A module of OpenCL C holds the source as its binary and the build options as a section
    (``binary_format`` ``"opencl-c"``): the driver of the machine that runs it compiles it.
    """

    kind = "opencl"
    binary_format = "spirv"
    _runtime = staticmethod(_runtime)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._last_args: dict[str, list[Any]] = {}  # per kernel, what its launch on device arrays set
        if "options" in self.sections:
            self.binary_format = _SOURCE

    @classmethod
    def from_bytes(cls, data: bytes | memoryview) -> OpenCLModule:
        """Rebuild a module of SPIR-V or of OpenCL C from :meth:`save_to_bytes` output."""
        fmt, functions, binary, sections = decode_payload(data)
        if fmt not in (cls.binary_format, _SOURCE):
            raise FormatError(f"an opencl module holds spirv or {_SOURCE}, not {fmt}")
        if fmt == _SOURCE:
            sections.setdefault("options", memoryview(b""))
        return cls(binary, functions, sections)

    def _device(self) -> Device:
        return _runtime()

    @classmethod
    def from_binary(cls, binary: bytes, functions: list[Any], path: str) -> OpenCLModule:
        """An OpenCL module of a SPIR-V file's kernels."""
        if not is_spirv(binary):
            raise LoadError(f"cannot load {path!r}: not a SPIR-V module (no SPIR-V magic number and header)")
        return opencl_module(binary, functions, validate=False)

    def _inspect_source(self, fmt: str | None) -> str:
        if self.binary_format == _SOURCE:
            return bytes(self.binary).decode(errors="replace")
        return disassemble_spirv(bytes(self.binary))

    def _program(self, dev: OpenCLDevice) -> Any:
        """The module's program, built once (under the module's lock)."""
        cl = dev.cl
        if "program" not in self._loaded:
            names = ", ".join(self.functions)
            try:
                with warnings.catch_warnings():
                    # The driver's build log ("Kernel was 16-way vectorized") is not a problem.
                    warnings.simplefilter("ignore", cl.CompilerWarning)
                    if self.binary_format == _SOURCE:
                        options = bytes(self.sections["options"]).decode()
                        program = cl.Program(dev.context, bytes(self.binary).decode()).build(options=options)
                    else:
                        program = cl.Program(dev.context, bytes(self.binary)).build()
            except cl.Error as exc:
                if self.binary_format == _SOURCE:
                    raise CompileError(
                        f"the OpenCL C of {names} does not build on {dev.name} (options {options!r}):\n{exc}"
                    ) from None
                raise DeviceUnavailableError(f"the OpenCL driver refused this module's SPIR-V: {exc}") from None
            self._loaded["program"] = program
        return self._loaded["program"]

    def _kernel(self, entry: KernelEntry) -> tuple[Any, tuple[int, ...] | None]:
        """The kernel object, and the workgroup to launch it in (None: the driver's choice)."""
        dev = _runtime()
        cl = dev.cl
        workgroup = entry.attrs.get("workgroup")
        key = (entry.name, tuple(workgroup or ()))
        with self._lock:
            found = self._loaded.get(key)
            if found is not None:
                return found
            kernel = self._loaded.get(entry.name)
            if kernel is None:
                program = self._program(dev)
                try:
                    kernel = cl.Kernel(program, entry.name)
                except cl.Error:
                    raise ArgumentError(
                        f"the OpenCL program has no kernel {entry.name!r} (it has: "
                        f"{', '.join(k.function_name for k in program.all_kernels()) or 'none'})"
                    ) from None
                _check_arguments(entry, kernel.get_info(cl.kernel_info.NUM_ARGS))
                self._loaded[entry.name] = kernel
            if "scratch" not in entry.attrs:  # kernpack's own workgroups are its choice
                workgroup = _check_workgroup(dev, entry, kernel)
            found = self._loaded[key] = (kernel, None if workgroup is None else tuple(workgroup))
            return found

    def _configure(self, entry: KernelEntry, options: dict[str, Any]) -> KernelEntry:
        workgroup, local = options.pop("workgroup", None), options.pop("local", None)
        super()._configure(entry, options)  # refuses what is left
        local = None if local is None else {**entry.attrs.get("local", {}), **local}
        return _checked(entry.reconfigured(workgroup, local=local))

    def _launch(self, entry: KernelEntry, args: list[Any], grid: tuple[int, ...]) -> None:
        dev = _runtime()
        cl, context, queue = dev.cl, dev.context, dev.queue
        kernel, workgroup = self._kernel(entry)
        flags = cl.mem_flags
        values: list[Any] = []
        written: list[tuple[np.ndarray, Any, bool]] = []
        host_arrays = False
        local = entry.attrs.get("local") or {}
        for param, value in zip(entry.signature.params, args, strict=True):
            if param.name in local:
                values.append(cl.LocalMemory(max(entry.evaluate(local[param.name], args), 1)))
                continue
            if not param.pointer:
                values.append(value)  # a numpy scalar, or a vector's or struct's bytes (np.void)
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
            geometry = _geometry(entry, grid, workgroup)
            try:
                cl.enqueue_nd_range_kernel(queue, kernel, *geometry)
            except cl.Error as exc:
                raise LaunchError(
                    f"kernel {entry.name!r} on {dev.name}: the driver refused a launch of {list(geometry[0])} "
                    f"work-items in workgroups of {list(geometry[1] or ['its choice'])} ({exc}); an OpenCL 1.2 "
                    "kernel needs a grid that is a multiple of its workgroup (write the grid so: "
                    '"(n + 63) // 64 * 64"), and its __local arguments must fit the device\'s local memory '
                    f"({dev.local_memory} bytes)"
                ) from None
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


def _check_workgroup(dev: OpenCLDevice, entry: KernelEntry, kernel: Any) -> tuple[int, ...] | None:
    """The workgroup a kernel runs in: the given one, checked, else the one it requires, if any.

    A given one over the kernel's limit or not the one it requires (``reqd_work_group_size``)
    is refused: the driver would refuse the launch with a bare code.
    """
    cl, device = dev.cl, dev.context.devices[0]
    info = cl.kernel_work_group_info
    required = [int(n) for n in kernel.get_work_group_info(info.COMPILE_WORK_GROUP_SIZE, device)]
    workgroup = entry.attrs.get("workgroup")
    if workgroup is None:
        return tuple(required) if any(required) else None
    workgroup = list(workgroup)
    if any(required) and [*workgroup, 1, 1][:3] != required:
        raise ArgumentError(
            f"kernel {entry.name!r}: workgroup {workgroup} was given, but the kernel requires "
            f"{required} (reqd_work_group_size); give that one"
        )
    limit = int(kernel.get_work_group_info(info.WORK_GROUP_SIZE, device))
    if math.prod(workgroup) > limit:
        raise ArgumentError(
            f"kernel {entry.name!r}: workgroup {workgroup} has {math.prod(workgroup)} work-items; on {dev.name} this "
            f"kernel takes at most {limit}"
        )
    return tuple(workgroup)


def _geometry(
    entry: KernelEntry, grid: tuple[int, ...], workgroup: tuple[int, ...] | None
) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """(global size, local size) of a launch in ``workgroup`` (None: the driver's choice).

    A kernel with an epilogue is launched with whole workgroups, the extra work-items outside
    the grid. Any other gets exactly its grid (OpenCL 2's last workgroup may be smaller):
    its author wrote the grid it wants.
    """
    ndim = len(grid)
    if workgroup is None:
        return axis_extents(grid)[:ndim], None
    workgroup = (*workgroup, 1, 1)[:3]
    if "scratch" not in entry.attrs:
        return axis_extents(grid)[:ndim], workgroup[:ndim]
    groups = group_counts(grid, workgroup)
    return tuple(g * w for g, w in zip(groups, workgroup, strict=True))[:ndim], workgroup[:ndim]


def _checked(entry: KernelEntry) -> KernelEntry:
    """Refuse a malformed workgroup or ``__local`` description of a kernel."""
    entry.check_workgroup()
    local = entry.attrs.get("local") or {}
    if not isinstance(local, dict):
        raise ArgumentError(f'kernel {entry.name!r}: "local" maps __local parameters to their bytes, not {local!r}')
    params = {p.name: p for p in entry.signature.params}
    for name, size in local.items():
        param = params.get(name)
        if param is None or not param.pointer or param.ndim:
            raise ArgumentError(
                f"kernel {entry.name!r}: __local parameter {name!r} must be a plain pointer of its signature "
                f"({entry.signature}), such as float *{name}"
            )
        entry.check_size(f"__local {name!r}", size)
    return entry


def opencl_module(
    spirv: bytes | None = None,
    functions: Iterable[dict[str, Any] | KernelEntry] = (),
    *,
    source: str | None = None,
    options: str = "",
    validate: bool = True,
) -> OpenCLModule:
    """Wrap OpenCL kernels that you bring: SPIR-V, or OpenCL C source.

    Parameters
    ----------
    spirv : bytes, optional
        A SPIR-V module of OpenCL kernels (not with ``source``).
    functions : iterable of dict or KernelEntry
        For each kernel: ``{"name": ..., "signature": "void k(float x[:], int64_t n)", "grid":
        ["x.shape[0]"]}``. An array ``T x[:]`` is passed as a global pointer followed by its
        ``int64`` extents (kernpack's convention), a ``T *x`` as the pointer alone. Optional:

        - ``"workgroup"``: ``[x, y, z]`` work-items per workgroup (the local size; else the
          driver's choice). A call may give another (``f.configure(workgroup=...)``).
        - ``"local"``: ``{"tile": 1024}``: the bytes of each ``__local`` parameter, an
          integer or an extent expression (``"4 * n"``); the caller does not pass it.
        - ``"types"``: the structs the kernel takes by value (``{"params": [["scale",
          "float"], ["n", "int"]]}``) for ``struct params p``; vectors (``float4``) need none.
          A caller passes a tuple, a dict, a numpy structured scalar, or the bytes.
    source : str, optional
        OpenCL C source, built by the OpenCL driver on first use (with ``options``, such as
        ``"-cl-std=CL2.0 -DTILE=16"``); build errors raise :class:`CompileError` with the log.
    options : str
        Build options for ``source``.
    validate : bool, default True
        Check SPIR-V with ``spirv-val`` (for its own SPIR-V version) where it is installed.

    Raises
    ------
    CompileError
        If spirv-val rejects the module: its message.
    ArgumentError
        If a kernel's description is malformed, or neither or both of ``spirv`` and ``source``
        are given.
    """
    entries = [_checked(KernelEntry.of(f, ("workgroup", "local"))) for f in functions]
    if (spirv is None) == (source is None):
        raise ArgumentError("opencl_module takes SPIR-V or OpenCL C source (source=...): one of them")
    if source is not None:
        return OpenCLModule(source.encode(), entries, {"options": options.encode()})
    if not is_spirv(spirv):
        raise ArgumentError(
            "opencl_module: the binary is not SPIR-V (no SPIR-V magic number); for OpenCL C, pass source="
        )
    if validate:
        complaint = validate_spirv(bytes(spirv))
        if complaint is not None:
            names = ", ".join(e.name for e in entries)
            raise CompileError(f"the SPIR-V of {names} is not valid SPIR-V (spirv-val): {complaint}")
    return OpenCLModule(bytes(spirv), entries)


@register_file_loader(".cl")
def _load_cl(path: str) -> OpenCLModule:
    """An OpenCL C file and its JSON side file (``"functions"``, optional ``"options"``)."""
    doc = read_side_file(path)
    with open(path, encoding="utf-8") as f:
        source = f.read()
    return opencl_module(source=source, functions=doc["functions"], options=str(doc.get("options", "")))


@register_file_loader(".spv")
def _load_spv(path: str) -> DeviceModule:
    """A SPIR-V file: for OpenCL, or for the kind its side file names (``"target": "vulkan"``)."""
    return load_binary_file(path, "opencl")


@register_loader("opencl")
def _load(data: bytes | memoryview) -> OpenCLModule:
    module = OpenCLModule.from_bytes(data)
    if module.binary_format != _SOURCE and not is_spirv(module.binary):
        raise FormatError("opencl module: its binary is not SPIR-V")
    for entry in module.functions.values():
        try:
            _checked(entry)
        except ArgumentError as exc:
            raise FormatError(f"opencl module: {exc}") from None
    return module
