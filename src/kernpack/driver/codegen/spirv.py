"""OpenCL code generation: kernel IR -> LLVM IR for ``spirv64v1.2`` -> SPIR-V 1.2.

Each kernel becomes a ``spir_kernel`` whose arrays are global pointers (address space 1), each
followed by its ``i64`` extents, as on the CPU. One work-item runs one grid point: grid
dimension d is ``get_global_id(d)``, and points outside the extents return at once.
SPIR-V 1.2 because strict OpenCL consumers (``spirv-val --target-env opencl2.2``) refuse 1.4.
"""

from __future__ import annotations

import llvmlite.ir as ir

from ...errors import CompileError
from ..lang import kir
from ..lang.types import ScalarType, i64, u32
from .cpu import KernelBody, abi_types, declare
from .isolate import emit

__all__ = ["OPENCL_OPTIONS", "OPENCL_TRIPLE", "check_narrow_atomics", "compile_opencl", "lower_opencl"]

OPENCL_TRIPLE = "spirv64v1.2-unknown-unknown"
# Float atomic_add is OpAtomicFAddEXT, which needs its extension declared.
OPENCL_OPTIONS = ("--spirv-ext=+SPV_EXT_shader_atomic_float_add",)
_GLOBAL = ir.PointerType(addrspace=1)
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)


class _OpenCLBody(KernelBody):
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


def check_narrow_atomics(kernel: kir.Kernel, target: str) -> None:
    """Refuse plain stores into an 8- or 16-bit array that the kernel also updates atomically.

    Such atomics update the whole 4-byte word around the element, so a plain store to a
    neighbour in the same launch could be lost: a wrong result, which is refused instead.
    """
    atomic: dict[str, int] = {}
    stores: dict[str, int] = {}
    for s in kir.walk(kernel.grid.body):
        if isinstance(s, (kir.AtomicAdd, kir.Store)):
            (atomic if isinstance(s, kir.AtomicAdd) else stores).setdefault(s.array, s.line)
    params = dict(kernel.params)
    for name, line in stores.items():
        if name in atomic and params[name].dtype.bits < 32:
            raise CompileError(
                f"kernel {kernel.name!r}, line {line}: {name} ({params[name]}) is written both with kp.atomic_add "
                f"(line {atomic[name]}) and with a plain store; on {target} an 8- or 16-bit atomic add updates the "
                "4-byte word around the element, so the plain store could be lost. Write it only with "
                "kp.atomic_add, or use a 32-bit array"
            )


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
        check_narrow_atomics(kernel, "opencl")
        _OpenCLBody(module, fn, kernel).emit_device(global_id)
    return module


def compile_opencl(kernels: list[kir.Kernel], module_name: str, opt_level: int = 2) -> bytes:
    """Return the SPIR-V binary of the kernels (generated in a child process)."""
    module = lower_opencl(kernels, module_name)
    # Code generation at -O0 after the -O2 IR pipeline: the backend's own -O2 combines narrow
    # arithmetic to 8 bits and forget to truncate an operand (an i64 in an i8 OpBitwiseAnd,
    # which spirv-val and Intel's runtime refuse). The driver optimizes the SPIR-V anyway.
    return emit(
        str(module), OPENCL_TRIPLE, opt_level=opt_level, codegen_opt=0, label=module_name, options=OPENCL_OPTIONS
    )
