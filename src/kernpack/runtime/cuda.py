"""Kind ``cuda`` (BINARY_SERIALIZABLE | RUNNABLE): PTX kernels run through the CUDA driver API.

Running needs an NVIDIA GPU, its driver and ``cuda-bindings`` (``pip install kernpack[cuda]``);
without them a call raises :class:`DeviceUnavailableError` saying which is missing. The driver
JIT-compiles the PTX for the GPU when the module is first launched. A call copies the arrays to
the device, launches one thread per grid point (the last grid dimension on the x axis), and
copies back the arrays the kernel writes.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..errors import ArgumentError, DeviceUnavailableError, FormatError
from .abi import CUDA_BLOCK, SCALARS, axis_extents
from .device import DeviceModule, KernelEntry, load_binary_file, runtime_once
from .devices import register_device_kind
from .ptxas import assemble_cubin, ptx_target
from .registry import register_file_loader, register_loader

__all__ = ["CUDAModule", "cuda_module"]


_DEFAULT_SHARED = 48 * 1024  # dynamic shared memory a kernel gets without opting in to more


def _check(result: tuple[Any, ...], what: str) -> Any:
    from cuda.bindings import driver

    err, *values = result if isinstance(result, tuple) else (result,)
    if err != driver.CUresult.CUDA_SUCCESS:
        raise DeviceUnavailableError(f"CUDA {what} failed: {err!r}")
    return values[0] if len(values) == 1 else values


@runtime_once
def _context() -> Any:
    """The primary context of GPU 0, retained once per process."""
    try:
        from cuda.bindings import driver
    except ImportError:
        raise DeviceUnavailableError("cuda-bindings is not installed; pip install 'kernpack[cuda]'") from None
    try:
        _check(driver.cuInit(0), "cuInit")
        device = _check(driver.cuDeviceGet(0), "cuDeviceGet")
        return _check(driver.cuDevicePrimaryCtxRetain(device), "cuDevicePrimaryCtxRetain")
    except (RuntimeError, OSError, DeviceUnavailableError) as exc:
        raise DeviceUnavailableError(f"no usable NVIDIA GPU and driver ({exc}); CUDA kernels need one") from None


def _devices() -> list[Any]:
    _context()  # no GPU, driver or binding: the reason
    raise DeviceUnavailableError(
        "CUDA has no device arrays in this version: its kernels take numpy arrays "
        "(module['kernel'](...)), copied to the GPU and back on each call"
    )


register_device_kind("cuda", _devices)


class CUDAModule(DeviceModule):
    """PTX kernels for CUDA, with their function table."""

    kind = "cuda"
    binary_format = "ptx"
    _runtime = staticmethod(_context)

    @classmethod
    def from_binary(cls, binary: bytes, functions: list[Any], path: str) -> CUDAModule:
        """A CUDA module of a PTX file's kernels (the driver checks the PTX when it loads it).

        Not assembled here: loading a file stays as cheap as reading it.
        """
        return cuda_module(binary, functions, assemble=False)

    def _inspect_source(self, fmt: str | None) -> str:
        return bytes(self.binary).decode()

    @staticmethod
    def _release(loaded: dict[str, Any]) -> None:
        module = loaded.pop("module", None)
        if module is not None:
            from cuda.bindings import driver

            driver.cuCtxSetCurrent(_context())
            driver.cuModuleUnload(module)

    def _configure(self, entry: KernelEntry, options: dict[str, Any]) -> KernelEntry:
        block, shared = options.pop("workgroup", None), options.pop("shared", None)
        super()._configure(entry, options)  # refuses what is left
        return _checked(entry.reconfigured(block, shared=shared))

    def _function(self, name: str) -> Any:
        from cuda.bindings import driver

        _check(driver.cuCtxSetCurrent(_context()), "cuCtxSetCurrent")
        with self._lock:
            if "module" not in self._loaded:
                # The cubin when it was built for this GPU's architecture, else the driver JITs
                # the PTX.
                cubin = self.sections.get("cubin")
                loaded = driver.cuModuleLoadData(bytes(cubin)) if cubin is not None else None
                if loaded is None or loaded[0] != driver.CUresult.CUDA_SUCCESS:
                    loaded = driver.cuModuleLoadData(bytes(self.binary) + b"\0")
                self._loaded["module"] = _check(loaded, "cuModuleLoadData")
        return _check(driver.cuModuleGetFunction(self._loaded["module"], name.encode()), "cuModuleGetFunction")

    def _launch(self, entry: KernelEntry, args: list[Any], grid: tuple[int, ...]) -> None:
        from cuda.bindings import driver

        function = self._function(entry.name)
        values: list[Any] = []
        types: list[Any] = []
        allocations: list[Any] = []
        written: list[tuple[np.ndarray, Any]] = []
        try:
            for param, value in zip(entry.signature.params, args, strict=True):
                if not param.pointer:
                    values.append(value.item())
                    types.append(SCALARS[param.ctype].argument)
                    continue
                pointer = _check(driver.cuMemAlloc(max(value.nbytes, 1)), "cuMemAlloc")
                allocations.append(pointer)
                if value.nbytes:
                    _check(driver.cuMemcpyHtoD(pointer, value.ctypes.data, value.nbytes), "cuMemcpyHtoD")
                if param.is_output:
                    written.append((value, pointer))
                values.append(pointer)
                types.append(None)  # a driver object: cuda-bindings passes it as a device pointer
                for extent in value.shape[: param.ndim]:  # none for a plain T *
                    values.append(extent)
                    types.append(ctypes.c_int64)
            block = (*entry.attrs.get("workgroup", CUDA_BLOCK[len(grid)]), 1, 1)[:3]
            blocks = [-(-n // b) for n, b in zip(axis_extents(grid), block, strict=True)]
            shared = entry.evaluate(entry.attrs.get("shared", 0), args)
            if shared > _DEFAULT_SHARED:  # more than 48 KiB of dynamic shared memory is asked for
                attribute = driver.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
                _check(driver.cuFuncSetAttribute(function, attribute, shared), "cuFuncSetAttribute")
            _check(
                driver.cuLaunchKernel(function, *blocks, *block, shared, 0, (tuple(values), tuple(types)), None),
                "cuLaunchKernel",
            )
            _check(driver.cuCtxSynchronize(), "cuCtxSynchronize")
            for host, pointer in written:
                if host.nbytes:
                    _check(driver.cuMemcpyDtoH(host.ctypes.data, pointer, host.nbytes), "cuMemcpyDtoH")
        finally:
            for pointer in allocations:
                driver.cuMemFree(pointer)


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
