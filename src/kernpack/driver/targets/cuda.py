"""The ``cuda`` target: kernel IR -> LLVM IR for ``nvptx64-nvidia-cuda`` -> PTX -> cubin.

Each kernel is a ``ptx_kernel`` with kernpack's convention (arrays as global pointers followed
by their ``i64`` extents). One thread runs one grid point; the last grid dimension maps to the
x axis so that neighbouring threads touch neighbouring elements. Transcendental functions come
from NVIDIA's libdevice (``__nv_expf`` ...), which the ``nvidia-cuda-nvcc`` wheel ships with
``ptxas``; NVPTX has no instructions for them. The cubin stage runs ``ptxas`` where it is
installed (it also checks the PTX); the package is a ``cuda`` module with both.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import llvmlite.ir as ir

from ...errors import CompileError
from ...runtime.abi import CUDA_BLOCK, device_axis
from ...runtime.cuda import cuda_module
from ...runtime.module import Module
from ...runtime.ptxas import assemble_cubin, find_ptxas, nvidia_dirs
from ..isolate import triple_of
from ..lang import kir
from ..lower import KernelBody, check_narrow_atomics, declare, device_abi_types, device_attrs, device_kernel, llvm_type
from .base import IRContract, Options, Stage, Target, Unit, emit, kernel_entries

__all__ = ["CUDA_TRIPLE", "DEFAULT_ARCH", "TARGET", "CUDAOptions", "assemble_cubin", "find_libdevice", "find_ptxas"]

CUDA_TRIPLE = "nvptx64-nvidia-cuda"
DEFAULT_ARCH = "sm_80"
_GLOBAL = ir.PointerType(addrspace=1)
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_LIBDEVICE = ("exp", "log", "sin", "cos", "tanh")


def find_libdevice() -> str | None:
    """libdevice.10.bc from the ``nvidia-cuda-nvcc`` wheel or a CUDA toolkit."""
    for base in nvidia_dirs():
        path = os.path.join(base, "nvvm", "libdevice", "libdevice.10.bc")
        if os.path.exists(path):
            return path
    return None


class _CudaBody(KernelBody):
    minmax_intrinsics = False

    def barrier(self) -> None:
        fn = declare(self.module, "llvm.nvvm.barrier0", ir.VoidType(), [])
        self.b.call(fn, [])

    def count_done(self, counter: ir.Value) -> ir.Value:
        # NVPTX emits an acquire-release atomicrmw as a relaxed atom.add: fences around it,
        # as CUDA's __threadfence() before the count (the threadFenceReduction pattern).
        self.b.fence("release")
        old = self.b.atomic_rmw("add", counter, ir.Constant(ir.IntType(32), 1), "monotonic")
        self.b.fence("acquire")
        return old

    def call(self, e: kir.Call) -> ir.Value:
        if e.func not in _LIBDEVICE:
            return super().call(e)
        ty = llvm_type(e.type)
        name = f"__nv_{e.func}{'f' if e.type.bits == 32 else ''}"
        return self.b.call(declare(self.module, name, ty, [ty]), [self.expr(e.args[0])])


def lower_cuda(kernels: list[kir.Kernel], module_name: str, attrs: dict[str, Any] | None = None) -> ir.Module:
    """Build the LLVM module of CUDA kernels (``attrs``: their function-table attributes)."""
    module = ir.Module(name=module_name)
    module.triple = CUDA_TRIPLE
    for kernel in map(device_kernel, kernels):
        abi = device_abi_types(kernel, _GLOBAL)
        fn = ir.Function(module, ir.FunctionType(ir.VoidType(), abi), name=kernel.name)
        fn.calling_convention = "ptx_kernel"
        ndim = len(kernel.grid.vars)

        def global_id(b: ir.IRBuilder, d: int, ndim: int = ndim) -> ir.Value:
            axis = "xyz"[device_axis(d, ndim)]
            read = [
                b.call(declare(module, f"llvm.nvvm.read.ptx.sreg.{reg}.{axis}", _I32, []), [])
                for reg in ("ctaid", "ntid", "tid")
            ]
            block, size, thread = (b.zext(v, _I64) for v in read)
            return b.add(b.mul(block, size), thread)

        check_narrow_atomics(kernel, "cuda")
        body = _CudaBody(module, fn, kernel)
        body.emit_device(global_id, CUDA_BLOCK[ndim])
        if attrs is not None:
            attrs[kernel.name] = device_attrs(kernel, CUDA_BLOCK[ndim], body)
    return module


@dataclass(frozen=True)
class CUDAOptions(Options):
    """Options of the ``cuda`` target: ``arch`` is the GPU architecture (``"sm_90"``, ``"sm_90a"``)."""

    arch: str = DEFAULT_ARCH
    hints: ClassVar[Mapping[str, str]] = {"cpu": "the GPU architecture is arch=, e.g. arch='sm_90'"}

    def __post_init__(self) -> None:
        super().__post_init__()
        if not re.fullmatch(r"sm_\d+[af]?", self.arch):
            raise ValueError(f"CUDA architecture {self.arch!r} is not a name like 'sm_80' or 'sm_90a'")


def _lower(_: bytes, unit: Unit) -> bytes:
    unit.notes["attrs"] = {}
    return str(lower_cuda(unit.kernels, unit.label, unit.notes["attrs"])).encode()


def _ptx(src: bytes, unit: Unit) -> bytes:
    """PTX, libdevice linked if the IR calls it; for user IR, which arrays LLVM finds read-only."""
    assert isinstance(unit.options, CUDAOptions)
    text = src.decode()
    uses_libdevice = re.search(r'^declare .*@"?__nv_', text, re.M) is not None
    options = _ptx_options(unit.label, unit.options.arch, uses_libdevice)
    return emit(text, triple_of(text, CUDA_TRIPLE), unit, opt_level=unit.options.opt_level, **options)


def _cubin(src: bytes, unit: Unit) -> bytes:
    assert isinstance(unit.options, CUDAOptions)
    return assemble_cubin(src.decode(), unit.options.arch, unit.label) or b""  # empty: no ptxas here


def _package(units: list[Unit], name: str) -> Module:
    (unit,) = units
    # The cubin stage assembled it already (or found no ptxas): not again.
    cubin = unit.artifacts["cubin"] or None
    return cuda_module(unit.artifacts["ptx"].decode(), kernel_entries(unit), cubin=cubin, assemble=False)


TARGET = Target(
    name="cuda",
    options=CUDAOptions,
    stages=(Stage("llir", ".ll", _lower), Stage("ptx", ".ptx", _ptx), Stage("cubin", ".cubin", _cubin)),
    package=_package,
    # Generic (0) and global (1) pointers both reach device memory on CUDA; the driver API wants
    # CUDA's ABI whatever the vendor field of a fitting triple says.
    ir=IRContract(CUDA_TRIPLE, r"nvptx64(-.*)?", "nvptx64-nvidia-cuda", "ptx_kernel", (0, 1), CUDA_TRIPLE),
)


def _ptx_options(label: str, arch: str, uses_libdevice: bool) -> dict[str, Any]:
    """The :func:`~kernpack.driver.isolate.emit` keywords that make PTX for ``arch``, libdevice linked if used.

    Raises
    ------
    CompileError
        If libdevice is needed and not installed.
    """
    link: tuple[str, ...] = ()
    if uses_libdevice:
        libdevice = find_libdevice()
        if libdevice is None:
            raise CompileError(
                f"{label}: exp/log/sin/cos/tanh (__nv_* functions) on CUDA need NVIDIA's libdevice; "
                "pip install nvidia-cuda-nvcc (or install a CUDA toolkit)"
            )
        link = (libdevice,)
    return {"kind": "assembly", "cpu": arch, "link": link}
