"""The ``opencl`` target: kernel IR -> LLVM IR for ``spirv64v1.2`` -> SPIR-V 1.2.

Each kernel becomes a ``spir_kernel`` whose arrays are global pointers (address space 1), each
followed by its ``i64`` extents, as on the CPU. One work-item runs one grid point: grid
dimension d is ``get_global_id(device_axis(d, ndim))`` (the last is 0: ``kernpack.runtime.abi``),
and points outside the extents skip the body. A kernel with statements after its grid runs
in workgroups of ``abi.OPENCL_WORKGROUP`` (``KernelBody.device_epilogue``).
SPIR-V 1.2 because strict OpenCL consumers (``spirv-val --target-env opencl2.2``) refuse 1.4.
The package is an ``opencl`` module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import llvmlite.ir as ir

from ...runtime.abi import OPENCL_WORKGROUP, device_axis
from ...runtime.module import Module
from ...runtime.opencl import opencl_module
from ..isolate import triple_of
from ..lang import kir
from ..lang.types import ScalarType, i64, u32
from ..lower import KernelBody, check_narrow_atomics, declare, device_abi_types, device_attrs, device_kernel
from . import spirvbin
from .base import IRContract, Options, Stage, Target, Unit, emit, kernel_entries

__all__ = ["OPENCL_TRIPLE", "TARGET", "OpenCLOptions", "lower_opencl"]

OPENCL_TRIPLE = "spirv64v1.2-unknown-unknown"
# Float atomic_add is OpAtomicFAddEXT, which needs its extension declared.
_LLVM_OPTIONS = ("--spirv-ext=+SPV_EXT_shader_atomic_float_add",)
_GLOBAL = ir.PointerType(addrspace=1)
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)


class _OpenCLBody(KernelBody):
    minmax_intrinsics = False

    def barrier(self) -> None:
        # barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE), an OpControlBarrier: the epilogue
        # (after the last one) may read what any work-item of the group stored to an array.
        fn = declare(self.module, "_Z7barrierj", ir.VoidType(), [_I32])
        fn.calling_convention = "spir_func"
        fn.attributes.add("convergent")
        call = self.b.call(fn, [_I32(3)])
        call.calling_convention = "spir_func"

    def cast(self, v: ir.Value, src: ScalarType, dst: ScalarType) -> ir.Value:
        if src.is_float and src.bits == 32 and dst is u32:
            # Intel's runtime converts a float32 NaN to 0xFFFFFFFF under SaturatedConversion
            # (every other pair gives 0): saturate through i64, whose NaN is 0, then clamp.
            wide = super().cast(v, src, i64)
            low, high = _I64(0), _I64(0xFFFFFFFF)
            b = self.b
            wide = b.select(b.icmp_signed("<", wide, low), low, wide)
            return b.trunc(b.select(b.icmp_signed(">", wide, high), high, wide), _I32)
        return super().cast(v, src, dst)

    def atomic_add(self, ptr: ir.Value, value: ir.Value, dtype: ScalarType) -> None:
        if dtype.bits >= 32:
            return super().atomic_add(ptr, value, dtype)
        # OpenCL has no 8- or 16-bit atomics: compare-and-swap the 4-byte word holding the
        # element (what LLVM does for CUDA). Plain stores into such an array are refused.
        b = self.b
        address = b.ptrtoint(ptr, _I64)
        word = b.inttoptr(b.and_(address, _I64(-4)), _GLOBAL)
        shift = b.trunc(b.shl(b.and_(address, _I64(3)), _I64(3)), _I32)
        lane_mask = b.shl(_I32((1 << dtype.bits) - 1), shift)
        entry = b.block
        first = b.load(word, typ=_I32)
        loop = self.fn.append_basic_block("atomic.cas")
        done = self.fn.append_basic_block("atomic.done")
        b.branch(loop)
        b.position_at_end(loop)
        current = b.phi(_I32)
        current.add_incoming(first, entry)
        lane = b.trunc(b.lshr(current, shift), value.type)
        updated = b.shl(b.zext(b.add(lane, value), _I32), shift)
        new = b.or_(b.and_(current, b.not_(lane_mask)), updated)
        pair = b.cmpxchg(word, current, new, "monotonic", "monotonic")
        current.add_incoming(b.extract_value(pair, 0), loop)
        b.cbranch(b.extract_value(pair, 1), done, loop)
        b.position_at_end(done)
        return None


def lower_opencl(kernels: list[kir.Kernel], module_name: str, attrs: dict[str, Any] | None = None) -> ir.Module:
    """Build the LLVM module of OpenCL kernels (``attrs``: their function-table attributes)."""
    module = ir.Module(name=module_name)
    module.triple = OPENCL_TRIPLE
    get_global_id = declare(module, "_Z13get_global_idj", _I64, [_I32])
    get_global_id.calling_convention = "spir_func"

    for kernel in map(device_kernel, kernels):
        ndim = len(kernel.grid.vars)

        def global_id(b: ir.IRBuilder, d: int, ndim: int = ndim) -> ir.Value:
            call = b.call(get_global_id, [_I32(device_axis(d, ndim))])
            call.calling_convention = "spir_func"
            return call

        fn = ir.Function(module, ir.FunctionType(ir.VoidType(), device_abi_types(kernel, _GLOBAL)), name=kernel.name)
        fn.calling_convention = "spir_kernel"
        check_narrow_atomics(kernel, "opencl")
        body = _OpenCLBody(module, fn, kernel)
        body.emit_device(global_id, OPENCL_WORKGROUP[ndim])
        if attrs is not None:
            attrs[kernel.name] = device_attrs(kernel, OPENCL_WORKGROUP[ndim], body)
    return module


@dataclass(frozen=True)
class OpenCLOptions(Options):
    """Options of the ``opencl`` target (the IR pipeline's level; the driver optimizes again)."""

    opt_level: int = 2


def _lower(_: bytes, unit: Unit) -> bytes:
    unit.notes["attrs"] = {}
    return str(lower_opencl(unit.kernels, unit.label, unit.notes["attrs"])).encode()


def _spirv(src: bytes, unit: Unit) -> bytes:
    # Code generation at -O0 after the IR pipeline: the backend's own -O2 combines narrow
    # arithmetic to 8 bits and forgets to truncate an operand (an i64 in an i8 OpBitwiseAnd,
    # which spirv-val and Intel's runtime refuse). The driver optimizes the SPIR-V anyway.
    text = src.decode()
    triple = triple_of(text, OPENCL_TRIPLE)
    spirv = emit(text, triple, unit, opt_level=unit.options.opt_level, codegen_opt=0, options=_LLVM_OPTIONS)
    # The count of finished workgroups must order global memory (CrossWorkgroupMemory), and a
    # barrier make it visible at device scope (the epilogue, in another group, may read it).
    fixes = {
        spirvbin.ATOMIC_IADD_SEMANTICS: (spirvbin.ACQUIRE_RELEASE, 0x208),
        spirvbin.CONTROL_BARRIER_MEMORY_SCOPE: (spirvbin.WORKGROUP, spirvbin.DEVICE),
    }
    spirv = spirvbin.with_storage_semantics(spirv, fixes)
    # Bounds-checked kernels (a debugging build) run unvectorized: Intel's CPU runtime's
    # vectorizer crashed in the driver on one, with no way to catch it in this process.
    checked = {k.name for k in unit.kernels if k.boundscheck}
    return spirvbin.with_subgroup_size(spirv, checked, 1) if checked else spirv


def _package(units: list[Unit], name: str) -> Module:
    (unit,) = units
    return opencl_module(unit.artifacts["spirv"], kernel_entries(unit), validate=False)  # the tests validate it


TARGET = Target(
    name="opencl",
    options=OpenCLOptions,
    stages=(Stage("llir", ".ll", _lower), Stage("spirv", ".spv", _spirv)),
    package=_package,
    # OpenCL buffers are global (1) or constant (2); 0 would be private memory.
    ir=IRContract(
        OPENCL_TRIPLE, r"spirv64(v1\.\d)?(-(?!.*vulkan).*)?", "spirv64[v1.N]-unknown-unknown", "spir_kernel", (1, 2)
    ),
)
