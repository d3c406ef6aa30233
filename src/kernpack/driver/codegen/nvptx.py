"""CUDA code generation: kernel IR -> LLVM IR for ``nvptx64-nvidia-cuda`` -> PTX.

Each kernel is a ``ptx_kernel`` with kernpack's convention (arrays as global pointers followed
by their ``i64`` extents). One thread runs one grid point; the last grid dimension maps to the
x axis so that neighbouring threads touch neighbouring elements. Transcendental functions come
from NVIDIA's libdevice (``__nv_expf`` ...), which the ``nvidia-cuda-nvcc`` wheel ships with
``ptxas``; NVPTX has no instructions for them.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import subprocess
import sys
import tempfile
from typing import Any

import llvmlite.ir as ir

from ...errors import CompileError
from ..lang import kir
from .cpu import KernelBody, abi_types, declare, llvm_type
from .isolate import emit
from .spirv import check_narrow_atomics

__all__ = [
    "CUDA_TRIPLE",
    "DEFAULT_ARCH",
    "assemble_cubin",
    "compile_cuda",
    "find_libdevice",
    "find_ptxas",
    "lower_cuda",
    "ptx_options",
]

CUDA_TRIPLE = "nvptx64-nvidia-cuda"
DEFAULT_ARCH = "sm_80"
_GLOBAL = ir.PointerType(addrspace=1)
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_LIBDEVICE = ("exp", "log", "sin", "cos", "tanh")


def _nvidia_dirs() -> list[str]:
    roots = [os.path.join(p, "nvidia") for p in sys.path if os.path.isdir(os.path.join(p, "nvidia"))]
    return [d for root in roots for d in sorted(glob.glob(os.path.join(root, "cu*")))] + ["/usr/local/cuda"]


def find_ptxas() -> str | None:
    """Find ptxas: the ``nvidia-cuda-nvcc`` wheel's, a CUDA toolkit's, or one on PATH."""
    import shutil

    for base in _nvidia_dirs():
        path = os.path.join(base, "bin", "ptxas")
        if os.access(path, os.X_OK):
            return path
    return shutil.which("ptxas")


def find_libdevice() -> str | None:
    """libdevice.10.bc from the ``nvidia-cuda-nvcc`` wheel or a CUDA toolkit."""
    for base in _nvidia_dirs():
        path = os.path.join(base, "nvvm", "libdevice", "libdevice.10.bc")
        if os.path.exists(path):
            return path
    return None


class _CudaBody(KernelBody):
    def call(self, e: kir.Call) -> ir.Value:
        if e.func not in _LIBDEVICE:
            return super().call(e)
        ty = llvm_type(e.type)
        name = f"__nv_{e.func}{'f' if e.type.bits == 32 else ''}"
        return self.b.call(declare(self.module, name, ty, [ty]), [self.expr(e.args[0])])


def lower_cuda(kernels: list[kir.Kernel], module_name: str) -> ir.Module:
    """Build the LLVM module of CUDA kernels."""
    module = ir.Module(name=module_name)
    module.triple = CUDA_TRIPLE
    for kernel in kernels:
        abi = abi_types(kernel, _GLOBAL, ir.IntType(8))  # OpenCL and CUDA take no bool arguments
        fn = ir.Function(module, ir.FunctionType(ir.VoidType(), abi), name=kernel.name)
        fn.calling_convention = "ptx_kernel"
        ndim = len(kernel.grid.vars)

        def global_id(b: ir.IRBuilder, d: int, ndim: int = ndim) -> ir.Value:
            axis = "xyz"[ndim - 1 - d]
            read = [
                b.call(declare(module, f"llvm.nvvm.read.ptx.sreg.{reg}.{axis}", _I32, []), [])
                for reg in ("ctaid", "ntid", "tid")
            ]
            block, size, thread = (b.zext(v, _I64) for v in read)
            return b.add(b.mul(block, size), thread)

        check_narrow_atomics(kernel, "cuda")
        _CudaBody(module, fn, kernel).emit_device(global_id)
    return module


def compile_cuda(kernels: list[kir.Kernel], module_name: str, arch: str = DEFAULT_ARCH, opt_level: int = 3) -> str:
    """Return the PTX of the kernels for ``arch`` (generated in a child process)."""
    module = lower_cuda(kernels, module_name)
    uses_libdevice = any(f.name.startswith("__nv_") for f in module.functions)
    options = ptx_options(module_name, arch, uses_libdevice)
    ptx = emit(str(module), CUDA_TRIPLE, opt_level=opt_level, label=module_name, **options)
    return ptx.decode()


def ptx_options(label: str, arch: str, uses_libdevice: bool) -> dict[str, Any]:
    """The :func:`~.isolate.emit` keywords that make PTX for ``arch``, libdevice linked if used.

    Raises
    ------
    CompileError
        If ``arch`` is not an architecture name, or libdevice is needed and not installed.
    """
    if not re.fullmatch(r"sm_\d+[af]?", arch):
        raise CompileError(f"CUDA architecture {arch!r} is not a name like 'sm_80' or 'sm_90a'")
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


def assemble_cubin(ptx: str, arch: str, label: str) -> bytes | None:
    """The cubin of ``ptx`` for ``arch`` from ptxas, or None when ptxas is not installed.

    Raises
    ------
    CompileError
        If ptxas rejects the PTX; the message gives ptxas's exit code, its output and a
        command that reproduces it.
    """
    ptxas = find_ptxas()
    if ptxas is None:
        return None
    with tempfile.TemporaryDirectory(prefix="kernpack-ptxas-") as tmp:
        source, target = os.path.join(tmp, f"{label}.ptx"), os.path.join(tmp, f"{label}.cubin")
        with open(source, "w") as f:
            f.write(ptx)
        command = [ptxas, f"-arch={arch}", "-O3", source, "-o", target]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise CompileError(
                f"ptxas rejected the PTX of {label} (exit {result.returncode}):\n{result.stderr.strip()}\n"
                f"repro: {shlex.join(command)} (the PTX is the module's inspect_source())"
            )
        with open(target, "rb") as f:
            return f.read()
