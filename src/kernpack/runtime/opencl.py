"""Kind ``opencl`` (BINARY_SERIALIZABLE | RUNNABLE): SPIR-V kernels run through pyopencl.

Any OpenCL platform whose device accepts SPIR-V IL runs it; on a machine without a GPU, Intel's
CPU runtime from PyPI does (``pip install kernpack[opencl]``, then an ICD file naming its
``libintelocl.so``; ``scripts/test`` writes one). The context and queue are created once per
process; a program is built once per module. A call copies the arrays to the device, launches
one work-item per grid point, and copies back the arrays the kernel writes.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..errors import DeviceUnavailableError, FormatError, LoadError
from .abi import axis_extents
from .device import DeviceModule, KernelEntry, is_spirv, load_binary_file, runtime_once
from .registry import register_file_loader, register_loader

__all__ = ["OpenCLModule", "opencl_module"]

_HOW = (
    "install pyopencl and an OpenCL runtime that takes SPIR-V, e.g. Intel's CPU runtime: "
    "pip install 'kernpack[opencl]', then write an .icd file naming libintelocl.so into a directory "
    "and point OCL_ICD_VENDORS at it (kernpack's scripts/_venv.sh shows how; docs/quickstart.md)"
)


@runtime_once
def _runtime() -> tuple[Any, Any, Any]:
    """(pyopencl, context, queue) for the first SPIR-V capable device."""
    try:
        import pyopencl as cl
    except ImportError:
        raise DeviceUnavailableError(f"pyopencl is not installed; {_HOW}") from None
    try:
        platforms = cl.get_platforms()
    except cl.Error as exc:
        raise DeviceUnavailableError(f"no OpenCL platform ({exc}); {_HOW}") from None
    for platform in platforms:
        for device in platform.get_devices():
            if "SPIR-V" in (getattr(device, "il_version", "") or ""):
                context = cl.Context([device])
                return cl, context, cl.CommandQueue(context)
    names = ", ".join(p.name for p in platforms) or "none"
    raise DeviceUnavailableError(f"no OpenCL device accepts SPIR-V (platforms: {names}); {_HOW}")


class OpenCLModule(DeviceModule):
    """SPIR-V kernels for OpenCL, with their function table."""

    kind = "opencl"
    binary_format = "spirv"
    _runtime = staticmethod(_runtime)

    @classmethod
    def from_binary(cls, binary: bytes, functions: list[Any], path: str) -> OpenCLModule:
        """An OpenCL module of a SPIR-V file's kernels."""
        if not is_spirv(binary):
            raise LoadError(f"cannot load {path!r}: not a SPIR-V module (no SPIR-V magic number and header)")
        return opencl_module(binary, functions)

    def _inspect_source(self, fmt: str | None) -> str:
        from .tools import disassemble_spirv

        return disassemble_spirv(bytes(self.binary))

    def _kernel(self, name: str) -> Any:
        cl, context, _ = _runtime()
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
                kernel = self._loaded[name] = cl.Kernel(self._loaded["program"], name)
            return kernel

    def _launch(self, entry: KernelEntry, args: list[Any], grid: tuple[int, ...]) -> None:
        cl, context, queue = _runtime()
        kernel = self._kernel(entry.name)
        flags = cl.mem_flags
        # A CPU device works on the host's memory in place (USE_HOST_PTR, then a map to
        # synchronize); elsewhere arrays are copied in, and outputs copied back.
        in_place = bool(queue.device.type & cl.device_type.CPU)
        values: list[Any] = []
        written: list[tuple[np.ndarray, Any, bool]] = []
        for param, value in zip(entry.signature.params, args, strict=True):
            if not param.pointer:
                values.append(value)
                continue
            if value.nbytes == 0:
                buffer = cl.Buffer(context, flags.READ_WRITE, size=1)
            else:
                access = flags.READ_WRITE if param.is_output else flags.READ_ONLY
                share = in_place and value.flags.writeable
                # Outputs are copied in too: a kernel may read what it updates (out[i] += ...).
                buffer = cl.Buffer(
                    context, access | (flags.USE_HOST_PTR if share else flags.COPY_HOST_PTR), hostbuf=value
                )
                if param.is_output:
                    written.append((value, buffer, share))
            values.append(buffer)
            values.extend(np.int64(extent) for extent in value.shape[: param.ndim])  # none for a plain T *
        with self._lock:  # one kernel object per name: its arguments are set and enqueued together
            kernel.set_args(*values)
            cl.enqueue_nd_range_kernel(queue, kernel, axis_extents(grid)[: len(grid)], None)
        for host, buffer, shared in written:
            if shared:
                mapped, _ = cl.enqueue_map_buffer(queue, buffer, cl.map_flags.READ, 0, host.shape, host.dtype)
                mapped.base.release(queue)
            else:
                cl.enqueue_copy(queue, host, buffer)
        queue.finish()


def opencl_module(spirv: bytes, functions: Iterable[dict[str, Any] | KernelEntry]) -> OpenCLModule:
    """Wrap a SPIR-V binary for OpenCL that you bring.

    Parameters
    ----------
    spirv : bytes
        The SPIR-V module (kernels with kernpack's convention: each array a global pointer
        followed by its ``int64`` extents).
    functions : iterable of dict or KernelEntry
        For each kernel: ``{"name": ..., "signature": "void k(float x[:], int64_t n)", "grid":
        ["x.shape[0]"]}``.
    """
    entries = [KernelEntry.of(f) for f in functions]
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
