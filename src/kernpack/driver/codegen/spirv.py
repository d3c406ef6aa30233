"""OpenCL code generation: kernel IR -> LLVM IR for ``spirv64v1.2`` -> SPIR-V 1.2.

Each kernel becomes a ``spir_kernel`` whose arrays are global pointers (address space 1), each
followed by its ``i64`` extents, as on the CPU. One work-item runs one grid point: grid
dimension d is ``get_global_id(d)``, and points outside the extents return at once.
SPIR-V 1.2 because strict OpenCL consumers (``spirv-val --target-env opencl2.2``) refuse 1.4.
"""

from __future__ import annotations

import llvmlite.ir as ir

from ..lang import kir
from .cpu import KernelBody, abi_types, declare
from .isolate import emit

__all__ = ["OPENCL_OPTIONS", "OPENCL_TRIPLE", "compile_opencl", "lower_opencl"]

OPENCL_TRIPLE = "spirv64v1.2-unknown-unknown"
# Float atomic_add is OpAtomicFAddEXT, which needs its extension declared.
OPENCL_OPTIONS = ("--spirv-ext=+SPV_EXT_shader_atomic_float_add",)
_GLOBAL = ir.PointerType(addrspace=1)
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)


def lower_opencl(kernels: list[kir.Kernel], module_name: str) -> ir.Module:
    """Build the LLVM module of OpenCL kernels."""
    module = ir.Module(name=module_name)
    module.triple = OPENCL_TRIPLE
    get_global_id = declare(module, "_Z13get_global_idj", _I64, [_I32])
    get_global_id.calling_convention = "spir_func"

    def global_id(b: ir.IRBuilder, d: int) -> ir.Value:
        call = b.call(get_global_id, [_I32(d)])
        call.calling_convention = "spir_func"
        return call

    for kernel in kernels:
        abi = abi_types(kernel, _GLOBAL, ir.IntType(8))  # OpenCL and CUDA take no bool arguments
        fn = ir.Function(module, ir.FunctionType(ir.VoidType(), abi), name=kernel.name)
        fn.calling_convention = "spir_kernel"
        KernelBody(module, fn, kernel).emit_device(global_id)
    return module


def compile_opencl(kernels: list[kir.Kernel], module_name: str, opt_level: int = 2) -> bytes:
    """Return the SPIR-V binary of the kernels (generated in a child process)."""
    module = lower_opencl(kernels, module_name)
    return emit(str(module), OPENCL_TRIPLE, opt_level=opt_level, label=module_name, options=OPENCL_OPTIONS)
