"""Vulkan code generation: kernel IR -> a GLCompute SPIR-V shader per kernel (Vulkan 1.3).

Resources, in descriptor set 0:

* binding 0: the extents of every array parameter, in signature order, as 64-bit integers;
* binding 1 + k: parameter k, a storage buffer of its element type: the array itself, or a
  one-element buffer holding the scalar (bool as a byte). Storage buffers rather than push
  constants, and one per type, because LLVM 22's SPIR-V backend mishandles push-constant blocks
  at -O2 and reinterpreting loaded bits (``shared/reference/spirv-kernels.md``, A2-A4).

Workgroups are 64 x 1 x 1, 8 x 8 x 1 or 4 x 4 x 4 by grid rank; grid dimension d is invocation
axis d. Buffers are indexed with 32-bit indices, so an array holds fewer than 2**31 elements.
"""

from __future__ import annotations

import re

import llvmlite.ir as ir
import numpy as np

from ...errors import CompileError
from ..lang import kir
from ..lang.types import ArrayType, ScalarType
from .cpu import KernelBody, declare, llvm_type, memory_type
from .isolate import emit

__all__ = ["VULKAN_OPTIONS", "VULKAN_TRIPLE", "WORKGROUP", "compile_vulkan", "compile_vulkan_all", "lower_vulkan"]

VULKAN_TRIPLE = "spirv1.6-unknown-vulkan1.3-compute"
# Float atomic adds are OpAtomicFAddEXT, which needs its extension declared.
VULKAN_OPTIONS = ("--spirv-ext=+SPV_EXT_shader_atomic_float_add",)
WORKGROUP = {1: (64, 1, 1), 2: (8, 8, 1), 3: (4, 4, 4)}
_I8, _I32, _I64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
_STORAGE = ir.PointerType(addrspace=11)


class _TargetType(ir.Type):
    """An LLVM target extension type, written out as given (llvmlite has no class for them)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def _to_string(self) -> str:
        return self.text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _TargetType) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


def _mangle(t: ir.Type) -> str:
    return {"float": "f32", "double": "f64"}.get(str(t), str(t))


class _VulkanBody(KernelBody):
    def abi_values(self) -> list[ir.Value]:
        extents = self._buffer(0, _I64, "extents")
        values: list[ir.Value] = []
        slot = 0
        for binding, (name, t) in enumerate(self.kernel.params, start=1):
            element = memory_type(t.dtype if isinstance(t, ArrayType) else t)
            handle = self._buffer(binding, element, name)
            if isinstance(t, ArrayType):
                values.append(handle)
                for _ in range(t.ndim):
                    values.append(self.b.load(self._pointer(extents, _I64, _I32(slot)), typ=_I64))
                    slot += 1
            else:
                values.append(self.b.load(self._pointer(handle, element, _I32(0)), typ=element))
        return values

    def _buffer(self, binding: int, element: ir.Type, name: str) -> ir.Value:
        kind = f'target("spirv.VulkanBuffer", [0 x {element}], 12, 1)'
        handle_type = _TargetType(kind)
        mangled = f"tspirv.VulkanBuffer_a0{_mangle(element)}_12_1t"
        create = declare(
            self.module,
            f"llvm.spv.resource.handlefrombinding.{mangled}",
            handle_type,
            [_I32, _I32, _I32, _I32, ir.PointerType()],
        )
        label = ir.GlobalVariable(
            self.module, ir.ArrayType(_I8, len(name) + 1), name=f".name.{self.kernel.name}.{binding}"
        )
        label.initializer = ir.Constant(ir.ArrayType(_I8, len(name) + 1), bytearray(name.encode() + b"\0"))
        label.global_constant = True
        label.linkage = "private"
        return self.b.call(create, [_I32(0), _I32(binding), _I32(1), _I32(0), label])

    def _pointer(self, handle: ir.Value, element: ir.Type, index: ir.Value) -> ir.Value:
        mangled = f"tspirv.VulkanBuffer_a0{_mangle(element)}_12_1t"
        get = declare(self.module, f"llvm.spv.resource.getpointer.p11.{mangled}", _STORAGE, [handle.type, _I32])
        return self.b.call(get, [handle, index])

    def cast(self, v: ir.Value, src: ScalarType, dst: ScalarType) -> ir.Value:
        if not (src.is_float and (dst.is_int or dst.kind == "b")) or dst.kind == "b":
            return super().cast(v, src, dst)
        # Saturating float -> int without llvm.fpto*i.sat: Vulkan has no SaturatedConversion,
        # and no NaN test the optimizer would not turn into Kernel-only OpUnordered. Out-of-range
        # values clamp; NaN converts to an unspecified integer (documented).
        b = self.b
        info = np.iinfo(dst.dtype)
        ty = v.type
        low, high = ir.Constant(ty, float(info.min)), ir.Constant(ty, float(info.max))
        to = llvm_type(dst)
        convert = b.fptosi if dst.is_signed else b.fptoui
        clamped = b.select(b.fcmp_ordered(">=", v, high), ir.Constant(to, int(info.max)), convert(v, to))
        return b.select(b.fcmp_ordered("<=", v, low), ir.Constant(to, int(info.min)), clamped)

    def address(self, array: str, indices: list[kir.Expr]) -> tuple[ir.Value, ScalarType]:
        handle, extents, dtype = self.arrays[array]
        b = self.b
        offset = self.expr(indices[0])
        for extent, index in zip(extents[1:], indices[1:], strict=True):
            offset = b.add(b.mul(offset, extent), self.expr(index))
        return self._pointer(handle, memory_type(dtype), b.trunc(offset, _I32)), dtype


def lower_vulkan(kernel: kir.Kernel) -> str:
    """The LLVM IR text of one kernel as a compute shader (entry point ``main``)."""
    module = ir.Module(name=kernel.name)
    module.triple = VULKAN_TRIPLE
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), []), name="main")
    thread_id = declare(module, "llvm.spv.thread.id.i32", _I32, [_I32])

    def global_id(b: ir.IRBuilder, d: int) -> ir.Value:
        return b.zext(b.call(thread_id, [_I32(d)]), _I64)

    _VulkanBody(module, fn, kernel).emit_device(global_id)
    x, y, z = WORKGROUP[len(kernel.grid.vars)]
    # llvmlite cannot spell string attributes or atomic scopes: the shader stage goes in as an
    # attribute group, and atomics get device scope (Vulkan forbids the default, cross-device).
    text = str(module).replace('define void @"main"()', 'define void @"main"() #0', 1)
    text = re.sub(r"(atomicrmw (?:add|fadd) .*?) (monotonic|seq_cst)", r'\1 syncscope("device") \2', text)
    return text + f'\nattributes #0 = {{ "hlsl.numthreads"="{x},{y},{z}" "hlsl.shader"="compute" }}\n'


def _float64_atomics(stmts: list[kir.Stmt]) -> bool:
    for s in stmts:
        if isinstance(s, kir.AtomicAdd) and s.value.type.is_float and s.value.type.bits == 64:
            return True
        if any(_float64_atomics(getattr(s, attr, [])) for attr in ("body", "orelse")):
            return True
    return False


def compile_vulkan(kernel: kir.Kernel) -> bytes:
    """The SPIR-V shader of one kernel (generated in a child process)."""
    return compile_vulkan_all([kernel])[0]


def compile_vulkan_all(kernels: list[kir.Kernel]) -> list[bytes]:
    """The SPIR-V shader of each kernel, all generated in one child process."""
    for kernel in kernels:
        _check_supported(kernel)
    label = "+".join(k.name for k in kernels)
    return emit([lower_vulkan(k) for k in kernels], VULKAN_TRIPLE, opt_level=2, label=label, options=VULKAN_OPTIONS)


def _check_supported(kernel: kir.Kernel) -> None:
    if _float64_atomics(kernel.grid.body):
        # Mesa's lavapipe aborts the whole process compiling a float64 atomic add (LLVM
        # "Cannot select"), so such a shader is refused here rather than handed to a driver.
        raise CompileError(
            f"kernel {kernel.name!r}: kp.atomic_add on a float64 array is not supported on vulkan; "
            "use a float32 array, or run it on cpu, opencl or cuda"
        )
