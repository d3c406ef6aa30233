"""The ``vulkan`` target: kernel IR -> a GLCompute SPIR-V shader per kernel (Vulkan 1.3).

Resources, in descriptor set 0 (the layout of ``kernpack.runtime.abi``, which the runtime binds):

* binding 0: the extents of every array parameter, in signature order, as 64-bit integers;
* binding 1 + k: parameter k, a storage buffer of its element type: the array itself, or a
  one-element buffer holding the scalar (bool as a byte). Storage buffers rather than push
  constants, and one per type, because LLVM 22's SPIR-V backend mishandles push-constant blocks
  at -O2 and reinterpreting loaded bits (``shared/reference/spirv-kernels.md``, A2-A4).

Workgroups are ``abi.VULKAN_WORKGROUP``'s by grid rank; the grid's last dimension is invocation
axis x (``abi.device_axis``). Buffers are indexed with 32-bit indices, so an array holds fewer
than 2**31 elements. A small loop-free 1-D kernel computes several points per invocation
(``_tiles``), and may have a second entry point that accesses some arrays as vectors
(``vector_arrays``).
Float64 exp, log, sin, cos and tanh, which GLSL.std.450 lacks, and every fused multiply-add
(Vulkan's Fma may round twice) are computed in software by ``kernpack.driver.softmath`` (one
internal function per shader).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import llvmlite.ir as ir
import numpy as np

from ...errors import CompileError
from ...runtime.abi import (
    DESCRIPTOR_SET,
    EXTENTS_BINDING,
    LOOP_GUARD,
    LOOPS_PARAM,
    VULKAN_WORKGROUP,
    device_axis,
    parameter_binding,
)
from ...runtime.device import KernelEntry, with_hidden
from ...runtime.module import Module
from ...runtime.vulkan import vulkan_module
from .. import softmath
from ..isolate import triple_of
from ..lang import kir
from ..lang.types import ArrayType, ScalarType
from ..lower import KernelBody, declare, device_attrs, device_kernel, llvm_type, memory_type
from . import spirvbin
from .base import IRContract, Options, Stage, Target, Unit, emit, kernel_entries

__all__ = ["TARGET", "VULKAN_TRIPLE", "VulkanOptions", "float64_atomic_refusal", "lower_vulkan"]

VULKAN_TRIPLE = "spirv1.6-unknown-vulkan1.3-compute"
# Float atomic adds are OpAtomicFAddEXT, which needs its extension declared.
_LLVM_OPTIONS = ("--spirv-ext=+SPV_EXT_shader_atomic_float_add",)
# The IR passes run before code generation, instead of -O2: SROA promotes the kernel's locals
# and flags to registers, SCCP folds constants (the backend at -O0 emits zext of a constant
# with the wrong type). Nothing that rewrites the control flow: SimplifyCFG, jump threading and
# loop rotation re-create the unstructured branches, pointer selects/phis and
# usub.sat/copysign idioms the SPIR-V backend cannot handle (vulkan_*_invalid_spirv,
# vulkan_ptrcast_unreachable, vulkan_clamped_index_usubsat, vulkan_zero_times_x_copysign).
# The driver optimizes the shader again anyway.
VULKAN_PASSES = ("sroa", "sccp")
# Code generation at -O0: at -O2 the backend's own passes merge the empty blocks that keep
# each construct's merge block apart (OpSelectionMerge must immediately precede ...).
VULKAN_CODEGEN_OPT = 0
_I1, _I8, _I32, _I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
_F64 = ir.DoubleType()
_STORAGE = ir.PointerType(addrspace=11)
_INF_BITS = {32: 0x7F800000, 64: 0x7FF0000000000000}
_NAN_BITS = {32: 0x7FC00000, 64: 0x7FF8000000000000}
_OP_CAPABILITY = 17
_OP_EXECUTION_MODE = 16
_OP_FUNCTION = 54
# What a workgroup barrier and the count of finished workgroups must order, which LLVM leaves
# out: the barrier, workgroup memory and the storage buffers at device scope (GLSL's barrier()
# and memoryBarrierBuffer(): the epilogue, in another workgroup, may read what any work-item
# stored); the count, the storage buffers (Uniform memory).
_SEMANTICS = {
    spirvbin.CONTROL_BARRIER_MEMORY_SCOPE: (spirvbin.WORKGROUP, spirvbin.DEVICE),
    spirvbin.CONTROL_BARRIER_SEMANTICS: (spirvbin.SEQUENTIALLY_CONSISTENT, 0x148),
    spirvbin.ATOMIC_IADD_SEMANTICS: (spirvbin.ACQUIRE_RELEASE, 0x48),
}
_SIGNED_ZERO_INF_NAN_PRESERVE = 4466  # the capability
_SIGNED_ZERO_INF_NAN_PRESERVE_MODE = 4461  # the execution mode that needs it


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
    if isinstance(t, ir.VectorType):
        return f"v{t.count}{_mangle(t.element)}"
    return {"float": "f32", "double": "f64"}.get(str(t), str(t))


class _Builder(ir.IRBuilder):
    """An IRBuilder whose float division gives IEEE results for a zero divisor.

    SPIR-V leaves OpFDiv by zero undefined, and lavapipe drops the store of ``x / 0.0`` when the
    zero is a compile-time constant (vulkan_float_div_by_zero_store_dropped). The quotient is
    therefore replaced, where the divisor is +-0, by what IEEE 754 gives (+-inf, or NaN for
    0 / 0 and NaN / 0), computed on the bits: a divisor folded to a constant then folds to that.

    ``argument_slots`` are the kernel's slots that hold nothing but an argument, which no
    driver can fold (see :func:`_may_fold`).
    """

    argument_slots: set[ir.AllocaInstr] = frozenset()  # type: ignore[assignment]

    def fdiv(self, lhs: ir.Value, rhs: ir.Value, name: str = "", flags: tuple[str, ...] = ()) -> ir.Value:
        quotient = super().fdiv(lhs, rhs, name, flags)
        width = 32 if str(lhs.type) == "float" else 64
        ity = ir.IntType(width)
        sign, inf = ir.Constant(ity, 1 << (width - 1)), ir.Constant(ity, _INF_BITS[width])
        x, y = self.bitcast(lhs, ity), self.bitcast(rhs, ity)
        x_mag = self.and_(x, ir.Constant(ity, (1 << (width - 1)) - 1))
        y_zero = self.icmp_unsigned("==", self.and_(y, ir.Constant(ity, (1 << (width - 1)) - 1)), ir.Constant(ity, 0))
        no_inf = self.or_(self.icmp_unsigned("==", x_mag, ir.Constant(ity, 0)), self.icmp_unsigned(">", x_mag, inf))
        signed_inf = self.or_(self.and_(self.xor(x, y), sign), inf)
        special = self.select(no_inf, ir.Constant(ity, _NAN_BITS[width]), signed_inf)
        quotient = self.select(y_zero, self.bitcast(special, lhs.type), quotient)
        if _may_fold(lhs, self.argument_slots):
            # lavapipe also folds 0.0 / y to +0.0: a zero dividend gives a zero with the XOR of
            # the signs, or NaN for y = 0 or NaN.
            y_mag = self.and_(y, ir.Constant(ity, (1 << (width - 1)) - 1))
            no_zero = self.or_(y_zero, self.icmp_unsigned(">", y_mag, inf))
            zero = self.select(no_zero, ir.Constant(ity, _NAN_BITS[width]), self.and_(self.xor(x, y), sign))
            x_zero = self.icmp_unsigned("==", x_mag, ir.Constant(ity, 0))
            quotient = self.select(x_zero, self.bitcast(zero, lhs.type), quotient)
        return quotient

    def fmul(self, lhs: ir.Value, rhs: ir.Value, name: str = "", flags: tuple[str, ...] = ()) -> ir.Value:
        # lavapipe folds x * 0.0 to +0.0 (even under SignedZeroInfNanPreserve, which it claims):
        # wrong for x = NaN, inf (NaN) and for negative x (-0.0). Where a factor may become a
        # constant for the driver (a literal, or an integer converted: kp.f64(q - q) folds to
        # 0.0), a zero factor's product is computed on the bits: a zero with the XOR of the
        # signs, or NaN for an infinite or NaN x (vulkan_zero_times_x_copysign).
        product = super().fmul(lhs, rhs, name, flags)
        for zero, x in ((lhs, rhs), (rhs, lhs)):
            if _may_fold(zero, self.argument_slots):
                width = 32 if str(x.type) == "float" else 64
                ity = ir.IntType(width)
                sign_bit, magnitude_mask = ir.Constant(ity, 1 << (width - 1)), ir.Constant(ity, (1 << (width - 1)) - 1)
                z, bits = self.bitcast(zero, ity), self.bitcast(x, ity)
                sign = self.and_(self.xor(bits, z), sign_bit)
                finite = self.icmp_unsigned("<", self.and_(bits, magnitude_mask), ir.Constant(ity, _INF_BITS[width]))
                special = self.bitcast(self.select(finite, sign, ir.Constant(ity, _NAN_BITS[width])), x.type)
                is_zero = self.icmp_unsigned("==", self.and_(z, magnitude_mask), ir.Constant(ity, 0))
                product = self.select(is_zero, special, product)
        return product

    def fadd(self, lhs: ir.Value, rhs: ir.Value, name: str = "", flags: tuple[str, ...] = ()) -> ir.Value:
        # lavapipe folds x + 0.0 to x, which is wrong for x = -0.0 (the sum is +0.0): where a
        # term may become a constant for the driver, a +0.0 term gives x, or +0.0 for x = -0.0.
        total = super().fadd(lhs, rhs, name, flags)
        for zero, x in ((lhs, rhs), (rhs, lhs)):
            if _may_fold(zero, self.argument_slots):
                ity = ir.IntType(32 if str(x.type) == "float" else 64)
                z, bits = self.bitcast(zero, ity), self.bitcast(x, ity)
                negative_zero = self.icmp_unsigned("==", bits, ir.Constant(ity, 1 << (ity.width - 1)))
                plus_zero = self.icmp_unsigned("==", z, ir.Constant(ity, 0))
                fixed = self.select(negative_zero, ir.Constant(x.type, 0.0), x)
                total = self.select(plus_zero, fixed, total)
        return total

    def select(
        self, cond: ir.Value, lhs: ir.Value, rhs: ir.Value, name: str = "", flags: tuple[str, ...] = ()
    ) -> ir.Value:
        # A choice between floats is made on their bits, as b ^ ((a ^ b) & mask): lavapipe
        # rewrites a select of 0.0 and -1.0 as -(float)(!c), which gives -0.0 where 0.0 was
        # chosen (x // (0.0 if c else -1.0) came out as the wrong infinity:
        # vulkan_select_zero_sign), and an operand may become such a constant for it.
        if str(lhs.type) not in ("float", "double"):
            return super().select(cond, lhs, rhs, name, flags)
        ity = ir.IntType(32 if str(lhs.type) == "float" else 64)
        x, y = self.bitcast(lhs, ity), self.bitcast(rhs, ity)
        mask = self.sub(ir.Constant(ity, 0), self.zext(cond, ity))
        return self.bitcast(self.xor(y, self.and_(self.xor(x, y), mask)), lhs.type)

    def fsub(self, lhs: ir.Value, rhs: ir.Value, name: str = "", flags: tuple[str, ...] = ()) -> ir.Value:
        # The same folding seen through x - y = x + (-y): 0.0 - x becomes -x (wrong for x = +0.0)
        # and x - (-0.0) becomes x (wrong for x = -0.0); both exact sums are +0.0.
        difference = super().fsub(lhs, rhs, name, flags)
        ity = ir.IntType(32 if str(lhs.type) == "float" else 64)
        plus_zero, minus_zero = ir.Constant(ity, 0), ir.Constant(ity, 1 << (ity.width - 1))
        # (the operand that may fold, the bits that go wrong, the other operand, its bad bits)
        for zero, zero_bits, x, x_bits in ((lhs, plus_zero, rhs, plus_zero), (rhs, minus_zero, lhs, minus_zero)):
            if _may_fold(zero, self.argument_slots):
                both = self.and_(
                    self.icmp_unsigned("==", self.bitcast(zero, ity), zero_bits),
                    self.icmp_unsigned("==", self.bitcast(x, ity), x_bits),
                )
                difference = self.select(both, ir.Constant(x.type, 0.0), difference)
        return difference


def _may_fold(v: ir.Value, arguments: set[ir.AllocaInstr] | frozenset = frozenset()) -> bool:
    """True if the driver may see ``v`` as a constant.

    A literal; an integer converted (the integer may fold: ``kp.f64(q - q)``); a local (its
    slot may hold a constant after SROA: ``v = 0.0``), but not a parameter the kernel never
    assigns (its slot is one of ``arguments``: it holds what the launch passed); a choice
    between such values; a call of such values (``sqrt(0.0)``). Array elements and float
    arithmetic are computed at run time (a product of a literal zero is made on the bits above).
    """
    if isinstance(v, ir.Constant):
        return isinstance(v.constant, float)
    if isinstance(v, ir.CastInstr):
        # A bitcast of integer bits: a choice between floats is made on them (_Builder.select).
        return v.opname in ("sitofp", "uitofp", "bitcast") or (
            v.opname in ("fpext", "fptrunc") and _may_fold(v.operands[0], arguments)
        )
    if isinstance(v, ir.LoadInstr):
        return isinstance(v.operands[0], ir.AllocaInstr) and v.operands[0] not in arguments
    if isinstance(v, ir.CallInstr):  # a function of values that fold folds: sqrt(0.0) is 0.0
        return bool(v.args) and all(
            _may_fold(a, arguments) if str(a.type) in ("float", "double") else isinstance(a, ir.Constant)
            for a in v.args
        )
    return isinstance(v, (ir.SelectInstr, ir.PhiInstr))


class _Loop:
    """Flags of one serial loop (or of the grid body) in the structured lowering.

    ``skip`` is set by ``break`` and ``continue``: the rest of the iteration is skipped;
    ``broke`` is set by ``break`` alone: the loop test fails. Each is an i1 slot, or None
    where the body has no statement that sets it.
    """

    def __init__(self, skip: ir.Value | None, broke: ir.Value | None) -> None:
        self.skip = skip
        self.broke = broke


class _Point:
    """The grid body as one point's code, emitted (called) once per point of an invocation.

    ``start(index)`` readies the next point: the locals the body assigns get back the values
    the prologue left them (points are independent), and the grid variable becomes ``index``.
    """

    def __init__(self, body: _VulkanBody, flags: _Loop, start: list[tuple[ir.Value, ir.Value]]) -> None:
        self.body, self.flags, self.locals = body, flags, start

    def start(self, index: ir.Value) -> None:
        b = self.body.b
        for slot, value in self.locals:
            b.store(value, slot)
        b.store(index, self.body.vars[self.body.kernel.grid.vars[0]])

    def __call__(self) -> None:
        body = self.body
        if self.flags.skip is not None:
            body.b.store(_I1(0), self.flags.skip)
        body.flow.append(self.flags)
        body.block(body.kernel.grid.body)
        body.flow.pop()


def _exits(stmts: list[kir.Stmt], kinds: tuple[type, ...]) -> bool:
    """True if a statement of ``kinds`` leaves the loop these statements are the body of."""
    for s in stmts:
        if isinstance(s, kinds):
            return True
        if isinstance(s, kir.If) and (_exits(s.body, kinds) or _exits(s.orelse, kinds)):
            return True
    return False  # a break or continue inside an inner loop leaves that loop only


def _has_load(e: kir.Expr) -> bool:
    """True if evaluating ``e`` reads an array: it may then only run where its guard holds."""
    return any(isinstance(c, kir.Load) for c in kir.walk_expr(e))


class _VulkanBody(KernelBody):
    """The kernel as a compute shader, with control flow that Vulkan's structured rules allow.

    LLVM's SPIR-V structurizer produces invalid SPIR-V, or aborts, for branches that leave an
    ``if`` or a loop other than through its end ("not via a structured exit", "Is the graph
    reducible?"), and for selections sharing a merge block. So every construct here has one
    entry and one exit: each ``if`` (and each short-circuit step and conditional expression)
    is its own diamond with its own merge block, each loop has a single exit from its test,
    and ``break``/``continue`` set flags that guard the rest of the body instead of branching
    (kernel-bugs.md: vulkan_if_else_loop_invalid_spirv, vulkan_structured_exit_invalid_spirv,
    vulkan_irreducible_graph_abort).
    """

    def __init__(self, module: ir.Module, fn: ir.Function, kernel: kir.Kernel) -> None:
        self.flow: list[_Loop] = []
        # In the vector entry point (emit_vector), each of the tile's points reads and writes
        # its element of a vector array in a register of its own: tile -> array -> slot.
        self.tile: int | None = None
        self.registers: dict[str, list[ir.Value]] = {}
        self.looped = False  # whether the shader has a loop
        self.words: dict[str, ir.Value] = {}  # 64-bit integer arrays seen as 32-bit words, for atomics
        self.tiles = _tiles(kernel)
        super().__init__(module, fn, kernel)
        builder = _Builder(self.b.block)
        builder.position_at_end(self.b.block)
        builder.argument_slots = self.argument_slots
        self.b = builder
        self.iterations = self.b.alloca(_I32, name="vk.iterations")  # the work-item's loop iterations so far
        self.b.store(_I32(0), self.iterations)
        # A zero the driver cannot see: the top bit of the loop guard's word (0 or 1 only).
        # Only a shader with loops has the word, and only such a shader needs it (min_max).
        self.hidden_zero: ir.Value | None = None
        if LOOPS_PARAM in self.arrays:
            word = self.b.load(self.word(LOOPS_PARAM, _I64(0)), typ=_I32)
            self.hidden_zero = self.b.lshr(word, _I32(31))

    # ------------------------------------------------------------------ structured control flow
    # ------------------------------------------------------------------ the device epilogue's hooks
    minmax_intrinsics = False

    def barrier(self) -> None:
        # HLSL's GroupMemoryBarrierWithGroupSync: OpControlBarrier, workgroup scope.
        fn = declare(self.module, "llvm.spv.group.memory.barrier.with.group.sync", ir.VoidType(), [])
        fn.attributes.add("convergent")
        self.b.call(fn, [])

    def word(self, array: str, index: ir.Value) -> ir.Value:
        handle, _, _ = self.arrays[array]
        return self._pointer(handle, _I32, self.b.trunc(index, _I32))

    # Element 0 of a workgroup or private array is never used: where its address folds to the
    # variable itself (index 0 is a constant, or known to be 0 under a branch), LLVM's SPIR-V
    # backend aborts on the store ("Unsupported ptrcast use in store").
    def shared_array(self, name: str, element: ir.Type, count: int) -> Callable[[ir.Value], ir.Value]:
        address = super().shared_array(name, element, count + 1)
        return lambda k: address(self.b.add(k, _I32(1)))

    def private_array(self, name: str, element: ir.Type, count: int) -> Callable[[ir.Value], ir.Value]:
        array_type = ir.ArrayType(element, count + 1)
        storage = self.slot(array_type, f"{name}.local")

        def address(k: ir.Value) -> ir.Value:
            index = self.b.add(self.b.trunc(k, _I32), _I32(1))  # 32-bit indices, as for buffers
            pointer = self.b.gep(storage, [_I32(0), index], inbounds=True, source_etype=array_type)
            pointer.type = ir.PointerType()
            return pointer

        return address

    def when(self, cond: ir.Value, then: Callable[[], None]) -> None:
        self._if(cond, then)

    def repeat(self, count: ir.Value, body: Callable[[ir.Value], None]) -> None:
        b = self.b
        counter = self.slot(_I64, "vk.repeat")
        b.store(_I64(0), counter)

        def run() -> None:
            body(b.load(counter, typ=_I64))

        def test() -> ir.Value:
            return b.icmp_signed("<", b.load(counter, typ=_I64), count)

        self._loop(_Loop(None, None), test, run, lambda: b.store(b.add(b.load(counter, typ=_I64), _I64(1)), counter))

    def is_nan(self, v: ir.Value, t: ScalarType) -> ir.Value:
        # On the bits: an fcmp NaN test can become OpUnordered, which Vulkan does not allow.
        ity = ir.IntType(t.bits)
        magnitude = self.b.and_(self.b.bitcast(v, ity), ir.Constant(ity, (1 << (t.bits - 1)) - 1))
        return self.b.icmp_unsigned(">", magnitude, ir.Constant(ity, _INF_BITS[t.bits]))

    # ------------------------------------------------------------------ structured control flow
    def _if(self, cond: ir.Value, then: Callable[[], None], orelse: Callable[[], None] | None = None) -> None:
        """One diamond: ``cond`` branches to two arms that both end in the merge block."""
        b = self.b
        then_block = self.fn.append_basic_block("vk.then")
        else_block = self.fn.append_basic_block("vk.else")
        end = self.fn.append_basic_block("vk.end")
        b.cbranch(cond, then_block, else_block)
        for block, arm in ((then_block, then), (else_block, orelse)):
            b.position_at_end(block)
            if arm is not None:
                arm()
            b.branch(end)
        b.position_at_end(end)

    def _loop(
        self, flags: _Loop, test: Callable[[], ir.Value], body: Callable[[], None], step: Callable[[], None]
    ) -> None:
        """A loop with one exit: header -> test -> body -> latch -> header, or test -> end.

        Each iteration counts toward the work-item's loop iterations (see :meth:`loop_guard`).
        """
        b = self.b
        header = self.fn.append_basic_block("vk.loop")
        test_block = self.fn.append_basic_block("vk.test")
        body_block = self.fn.append_basic_block("vk.body")
        latch = self.fn.append_basic_block("vk.latch")
        end = self.fn.append_basic_block("vk.loop_end")
        if flags.broke is not None:
            b.store(_I1(0), flags.broke)
        self.looped = True
        b.branch(header)
        b.position_at_end(header)
        b.branch(test_block)  # the header holds only the loop merge: the test may be a diamond
        b.position_at_end(test_block)
        keep = test()
        b.cbranch(keep, body_block, end)
        b.position_at_end(body_block)
        if flags.skip is not None:
            b.store(_I1(0), flags.skip)
        self.flow.append(flags)
        body()
        self.flow.pop()
        b.branch(latch)
        b.position_at_end(latch)
        step()
        b.store(b.add(b.load(self.iterations, typ=_I32), _I32(1)), self.iterations)
        b.branch(header)
        b.position_at_end(end)

    def _flags(self, body: list[kir.Stmt]) -> _Loop:
        skip = self.slot(_I1, "vk.skip") if _exits(body, (kir.Break, kir.Continue)) else None
        broke = self.slot(_I1, "vk.broke") if _exits(body, (kir.Break,)) else None
        return _Loop(skip, broke)

    def _guarded_test(self, flags: _Loop, cond: Callable[[], ir.Value], safe: bool) -> ir.Value:
        """``not broke and cond``, evaluating ``cond`` only when needed unless it is ``safe``."""
        b = self.b
        if flags.broke is None:
            return cond()
        if safe:
            return b.and_(b.not_(b.load(flags.broke, typ=_I1)), cond())
        result = self.slot(_I1, "vk.test")
        b.store(_I1(0), result)
        self._if(b.not_(b.load(flags.broke, typ=_I1)), lambda: b.store(cond(), result))
        return b.load(result, typ=_I1)

    def block(self, stmts: list[kir.Stmt]) -> None:
        for index, stmt in enumerate(stmts):
            if isinstance(stmt, (kir.Break, kir.Continue)):
                flags = self.flow[-1]
                assert flags.skip is not None
                self.b.store(_I1(1), flags.skip)
                if isinstance(stmt, kir.Break):
                    assert flags.broke is not None
                    self.b.store(_I1(1), flags.broke)
                return  # the rest of this block never runs
            self.stmt(stmt)
            rest = stmts[index + 1 :]
            if rest and self.flow and self.flow[-1].skip is not None and _exits([stmt], (kir.Break, kir.Continue)):
                # The statement may have left the iteration: the rest runs only if it did not.
                skip = self.flow[-1].skip
                self._if(self.b.not_(self.b.load(skip, typ=_I1)), lambda rest=rest: self.block(rest))
                return

    def stmt(self, s: kir.Stmt) -> None:
        b = self.b
        self.line = s.line or self.line
        if isinstance(s, kir.If):
            cond = self.expr(s.cond)
            self._if(cond, lambda: self.block(s.body), lambda: self.block(s.orelse))
        elif isinstance(s, kir.While):
            flags = self._flags(s.body)
            self._loop(
                flags,
                lambda: self._guarded_test(flags, lambda: self.expr(s.cond), not _has_load(s.cond)),
                lambda: self.block(s.body),
                lambda: None,
            )
        elif isinstance(s, kir.ForRange):
            start, stop, step = self.expr(s.start), self.expr(s.stop), self.expr(s.step)
            positive = s.step.value > 0 if isinstance(s.step, kir.Const) else None
            # The loop runs on its own counter, so assigning the variable in the body does not
            # change the iteration, as in Python; as on the CPU, a step other than +-1 counts
            # Python's iterations first (no wrap-around near the ends of i64, none for step 0).
            unit = isinstance(s.step, kir.Const) and s.step.value in (1, -1)
            trips = None if unit else self._trip_count(start, stop, step, positive)
            counter = self.slot(_I64, f"{s.var}.vk.counter")
            b.store(start if trips is None else _I64(0), counter)
            flags = self._flags(s.body)

            def test() -> ir.Value:
                index = b.load(counter, typ=_I64)
                if trips is not None:
                    keep = b.icmp_unsigned("<", index, trips)
                else:
                    keep = b.icmp_signed("<" if positive else ">", index, stop)
                return self._guarded_test(flags, lambda: keep, True)

            def body() -> None:
                index = b.load(counter, typ=_I64)
                b.store(index if trips is None else b.add(start, b.mul(index, step)), self.vars[s.var])
                self.block(s.body)

            increment = step if trips is None else _I64(1)
            self._loop(flags, test, body, lambda: b.store(b.add(b.load(counter, typ=_I64), increment), counter))
        elif isinstance(s, kir.AtomicAdd) and s.array in self.words:
            self._atomic_add64(s)
        elif isinstance(s, (kir.Break, kir.Continue)):  # pragma: no cover - block() handles them
            raise AssertionError("break/continue outside a block")
        else:
            super().stmt(s)

    def emit_device(self, global_id: Callable[[ir.IRBuilder, int], ir.Value], workgroup: tuple[int, int, int]) -> None:
        b = self.b
        tiles, width = self.tiles, workgroup[0]
        inside = self.device_point(lambda b, d: self._tile_point(global_id(b, d), width, 0))
        point = self._point_body()
        self._if(inside, point)
        for tile in range(1, tiles):
            index = self._tile_point(global_id(b, 0), width, tile)
            point.start(index)
            self._if(b.icmp_signed("<", index, self.point[0][1]), point)
        self.device_epilogue(workgroup)
        self.loop_guard()
        b.ret_void()

    def emit_vector(self, global_id: Callable[[ir.IRBuilder, int], ir.Value], arrays: dict[str, bool]) -> None:
        """The vector entry point: ``self.tiles`` consecutive points per invocation, all inside the grid.

        Each array of ``arrays`` (``vector_arrays``) is read and written as one vector of the
        invocation's elements, loaded first where the flag says so: its points use registers in
        between. The runtime launches it on whole workgroups only, and only when no array the
        kernel writes shares memory with another argument (``VulkanModule``), so nothing else
        sees those elements while the points run.
        """
        b = self.b
        grid = self.kernel.grid
        self.block(self.kernel.prologue)
        invocation = global_id(b, 0)
        at = b.trunc(invocation, _I32)
        stores = []
        for index, (name, t) in enumerate(self.kernel.params):
            if name not in arrays:
                continue
            element = memory_type(t.dtype)
            vector, align = ir.VectorType(element, self.tiles), t.dtype.bits // 8 * self.tiles
            # A second view of the binding, under a name of its own (LLVM's backend merges views
            # of one name into one variable, of the first view's type).
            handle = self._buffer(parameter_binding(index), vector, f"{name}.vector", ".vector")
            pointer = self._pointer(handle, vector, at)
            slots = self.registers[name] = [self.slot(element, f"{name}.{k}") for k in range(self.tiles)]
            loaded = b.load(pointer, typ=vector, align=align) if arrays[name] else None
            for k, slot in enumerate(slots):
                b.store(ir.Constant(element, 0) if loaded is None else b.extract_element(loaded, _I32(k)), slot)
            if name in self.kernel.written:
                stores.append((pointer, vector, align, slots))
        point = self._point_body()
        for tile in range(self.tiles):
            index = b.add(b.mul(invocation, _I64(self.tiles)), _I64(tile))
            if tile:
                point.start(index)
            else:
                b.store(index, self.vars[grid.vars[0]])
            self.tile = tile
            point()
        self.tile = None
        for pointer, vector, align, slots in stores:
            value = ir.Constant(vector, None)
            for k, slot in enumerate(slots):
                value = b.insert_element(value, b.load(slot, typ=vector.element), _I32(k))
            b.store(value, pointer, align=align)
        b.ret_void()

    def _point_body(self) -> _Point:
        """The grid body as one point's code, to emit once per point of the invocation."""
        grid = self.kernel.grid
        # continue in the grid body ends this point: a skip flag, as in a loop body.
        flags = _Loop(self.slot(_I1, "vk.skip") if _exits(grid.body, (kir.Continue,)) else None, None)
        # Each point starts from the locals as the prologue left them (points are independent).
        changed = sorted(set(kir.assigned_names(grid.body)) - set(grid.vars)) if self.tiles > 1 else []
        start = [(self.vars[n], self.b.load(self.vars[n], typ=self.var_types[n])) for n in changed]
        return _Point(self, flags, start)

    def min_max(self, op: str, t: ScalarType, x: ir.Value, y: ir.Value) -> ir.Value:
        # lavapipe's loop analysis (Mesa's NIR) takes c as the limit of a loop that stops at
        # min(x, c), c a constant, even for a loop that counts down: range(4, min(x, 1), -1)
        # ran 3 iterations for x = -3, not 7 (vulkan_min_limit_loop_cut_short). With loops, the
        # constant operand of an integer min or max is computed from a zero it cannot see.
        if not t.is_float and self.hidden_zero is not None:
            x, y = (self._hidden(v) if isinstance(v, ir.Constant) else v for v in (x, y))
        return super().min_max(op, t, x, y)

    def _hidden(self, c: ir.Constant) -> ir.Value:
        """``c`` as a value the driver cannot fold (see :meth:`min_max`)."""
        assert self.hidden_zero is not None
        zero = self.hidden_zero
        width = c.type.width
        if width != 32:
            zero = self.b.zext(zero, c.type) if width > 32 else self.b.trunc(zero, c.type)
        return self.b.add(c, zero)

    def _tile_point(self, invocation: ir.Value, width: int, tile: int) -> ir.Value:
        """Grid point ``tile`` of an invocation, whose workgroup takes ``self.tiles`` rows of ``width`` points.

        Row ``group * tiles + tile`` of the grid, at the invocation's place in its group: each
        row is ``width`` neighbouring points, read and written together as without tiles.
        """
        if self.tiles == 1:
            return invocation
        b, shift = self.b, width.bit_length() - 1  # the workgroup's width is a power of two
        group, lane = b.lshr(invocation, _I64(shift)), b.and_(invocation, _I64(width - 1))
        row = b.add(b.mul(group, _I64(self.tiles)), _I64(tile))
        return b.add(b.shl(row, _I64(shift)), lane)

    def loop_guard(self) -> None:
        """Report a work-item that ran ``abi.LOOP_GUARD`` loop iterations or more (``LOOPS_PARAM``).

        lavapipe ends all the loops of a shader invocation once they have run 65535 iterations
        together (llvmpipe's guard against endless loops), without a word: a sum over 10**5
        elements stopped at 65535 of them. The launcher raises instead of returning such results.
        """
        if not self.looped or LOOPS_PARAM not in self.arrays:
            return
        b = self.b
        many = b.icmp_unsigned(">=", b.load(self.iterations, typ=_I32), _I32(LOOP_GUARD))
        self._if(many, lambda: b.store(_I32(1), self.word(LOOPS_PARAM, _I64(0))))

    def short_circuit(self, e: kir.BoolOp) -> ir.Value:
        b = self.b
        if not any(_has_load(v) for v in e.values[1:]):
            # Nothing to guard: evaluate every operand, no branches.
            result = self.expr(e.values[0])
            for v in e.values[1:]:
                result = (b.and_ if e.op == "and" else b.or_)(result, self.expr(v))
            return result
        # One diamond per operand, one after the other (not nested: nested selections sharing
        # a merge block are what the structurizer gets wrong).
        slot = self.slot(_I1, f"vk.{e.op}")
        b.store(self.expr(e.values[0]), slot)
        for v in e.values[1:]:
            current = b.load(slot, typ=_I1)
            self._if(current if e.op == "and" else b.not_(current), lambda v=v: b.store(self.expr(v), slot))
        return b.load(slot, typ=_I1)

    def call(self, e: kir.Call) -> ir.Value:
        # Float64 exp/log/sin/cos/tanh: GLSL.std.450 has them in 32 bits only, so they are
        # computed in software (softmath, fdlibm's algorithms on the bits), one internal function
        # per shader. Its plain IRBuilder skips _Builder's zero-constant fixes: softmath has no
        # constant zero operand, and picks its special results (inf, NaN, -0.0) from the bits.
        if e.func in softmath.FUNCTIONS and e.type.is_float and e.type.bits == 64:
            return softmath.call(self.b, self.module, e.func, self.expr(e.args[0]))
        if e.func in softmath.FUNCTIONS and e.type.is_float and e.type.bits == 32:
            return self._f32_via_f64(e.func, self.expr(e.args[0]))
        if e.func == "fma":
            # Vulkan's Fma may round twice (lavapipe's float64 one does, on a quarter of random
            # operands): kp.math.fma is computed on the integer bits, rounded once.
            return softmath.fma(self.b, self.module, *(self.expr(a) for a in e.args))
        return super().call(e)

    def _f32_via_f64(self, func: str, x: ir.Value) -> ir.Value:
        """A float32 exp/log/sin/cos/tanh computed by softmath on the exact float64 value of ``x``.

        Vulkan asks little of the 32-bit GLSL.std.450 functions (sin and cos only within 2**-11
        of the truth on [-pi, pi]), and lavapipe delivers little: its Log is wrong for subnormal
        x (log(1e-40) gave -88.02 for -92.10), its Tanh has an absolute, not relative, error near
        0 (tanh(1e-30) gave 2.98e-08), its Sin is far off for large x. So all five are computed
        in float64 and rounded once: slower where float64 is slow, but a few ulps everywhere.
        The widening is done on the bits (OpFConvert may flush a subnormal): a
        subnormal's mantissa is an integer, scaled by 2**-149 in float64, where it is normal.
        The float64 result rounds to float32; tanh(x) for |x| < 2**-13 is x itself (rounded).
        """
        b = self.b
        bits = b.bitcast(x, _I32)
        magnitude = b.and_(bits, _I32(0x7FFFFFFF))
        sign = b.shl(b.zext(b.lshr(bits, _I32(31)), _I64), _I64(63))
        wide = b.shl(b.zext(magnitude, _I64), _I64(29))
        normal = b.add(wide, _I64((1023 - 127) << 52))
        special = b.or_(wide, _I64(0x7FF << 52))  # inf and NaN (exponent 255)
        fraction = b.and_(magnitude, _I32(0x7FFFFF))
        scaled = b.bitcast(b.fmul(b.sitofp(fraction, _F64), ir.Constant(_F64, 2.0**-149)), _I64)
        exponent = b.lshr(magnitude, _I32(23))
        value = b.select(b.icmp_unsigned("==", exponent, _I32(255)), special, normal)
        value = b.select(b.icmp_unsigned("==", exponent, _I32(0)), scaled, value)
        wide_x = b.bitcast(b.or_(value, sign), _F64)
        result = b.fptrunc(softmath.call(b, self.module, func, wide_x), x.type)
        if func == "tanh":
            result = b.select(b.icmp_unsigned("<", magnitude, _I32(0x39000000)), x, result)
        return result

    def select(self, e: kir.Select) -> ir.Value:
        b = self.b
        cond = self.expr(e.cond)
        if not (_has_load(e.a) or _has_load(e.b)):
            return b.select(cond, self.expr(e.a), self.expr(e.b))
        slot = self.slot(llvm_type(e.type), "vk.sel")
        self._if(cond, lambda: b.store(self.expr(e.a), slot), lambda: b.store(self.expr(e.b), slot))
        return b.load(slot, typ=llvm_type(e.type))

    # ------------------------------------------------------------------ exact fmod
    def fmod(self, x: ir.Value, y: ir.Value, t: ScalarType) -> ir.Value:
        """C's ``fmod(x, y)``, exact, computed on the bits (lavapipe's OpFRem is not exact).

        As musl's fmod, with the long division done in 64-bit integer remainders: both
        mantissas are integers (subnormals normalized), and ``mx * 2**(ex - ey) mod my`` is
        reduced a few bits at a time, as many as fit beside ``my`` in 64 bits (11 for float64,
        40 for float32), so at most ~190 steps for float64 and 7 for float32.
        """
        b = self.b
        width = t.bits
        p = 23 if width == 32 else 52  # mantissa bits
        ity = ir.IntType(width)
        sign = ir.Constant(ity, 1 << (width - 1))
        xb, yb = b.bitcast(x, ity), b.bitcast(y, ity)
        ax, ay = b.and_(xb, b.not_(sign)), b.and_(yb, b.not_(sign))
        inf = ir.Constant(ity, _INF_BITS[width])
        # y == 0, y NaN, x inf or NaN: NaN. |x| < |y|: x. |x| == |y|: zero with x's sign.
        is_nan = b.or_(
            b.or_(b.icmp_unsigned("==", ay, ir.Constant(ity, 0)), b.icmp_unsigned(">", ay, inf)),
            b.icmp_unsigned(">=", ax, inf),
        )
        smaller = b.icmp_unsigned("<", ax, ay)
        general = b.not_(b.or_(is_nan, b.icmp_unsigned("<=", ax, ay)))
        mx, ex = self._mantissa(b.zext(ax, _I64), p)
        my, ey = self._mantissa(b.zext(ay, _I64), p)
        my = b.select(b.icmp_unsigned("==", my, _I64(0)), _I64(1), my)  # never 0 where it is used
        step = 63 - (p + 1)  # bits of the remainder (< my < 2**(p+1)) that fit into 64 bits
        rest = self.slot(_I64, "vk.fmod.r")
        todo = self.slot(_I64, "vk.fmod.d")
        b.store(b.urem(mx, my), rest)
        b.store(b.select(general, b.sub(ex, ey), _I64(0)), todo)

        def body() -> None:
            d = b.load(todo, typ=_I64)
            shift = b.select(b.icmp_signed("<", d, _I64(step)), d, _I64(step))
            b.store(b.urem(b.shl(b.load(rest, typ=_I64), shift), my), rest)
            b.store(b.sub(d, shift), todo)

        self._loop(_Loop(None, None), lambda: b.icmp_signed(">", b.load(todo, typ=_I64), _I64(0)), body, lambda: None)
        r = b.load(rest, typ=_I64)
        # The result is r * 2**(ey - p) in units of the smallest exponent: normalize it.
        shift = b.sub(self._clz64(r), _I64(63 - p))  # r < 2**(p+1), so shift >= 0
        mantissa = b.shl(r, shift)
        e = b.sub(ey, shift)
        normal = b.or_(b.and_(mantissa, _I64((1 << p) - 1)), b.shl(e, _I64(p)))
        down = b.sub(_I64(1), e)  # subnormal: the result is exact, the shifted-out bits are 0
        subnormal = b.lshr(mantissa, b.select(b.icmp_signed(">", down, _I64(63)), _I64(63), down))
        magnitude = b.select(b.icmp_signed(">=", e, _I64(1)), normal, subnormal)
        magnitude = b.select(b.icmp_unsigned("==", r, _I64(0)), _I64(0), magnitude)
        result = b.or_(b.trunc(magnitude, ity) if width == 32 else magnitude, b.and_(xb, sign))
        result = b.select(smaller, xb, b.select(general, result, b.and_(xb, sign)))
        result = b.select(is_nan, ir.Constant(ity, _NAN_BITS[width]), result)
        return b.bitcast(result, x.type)

    def _mantissa(self, magnitude: ir.Value, p: int) -> tuple[ir.Value, ir.Value]:
        """The integer mantissa (top bit at ``p``) and biased exponent of a float's magnitude bits."""
        b = self.b
        exponent = b.lshr(magnitude, _I64(p))
        fraction = b.and_(magnitude, _I64((1 << p) - 1))
        normal = b.or_(fraction, _I64(1 << p))
        shift = b.sub(self._clz64(fraction), _I64(63 - p))  # subnormal: shift the top bit up to p
        shift = b.select(b.icmp_signed(">", shift, _I64(63)), _I64(63), shift)
        is_normal = b.icmp_unsigned("!=", exponent, _I64(0))
        return (
            b.select(is_normal, normal, b.shl(fraction, shift)),
            b.select(is_normal, exponent, b.sub(_I64(1), shift)),
        )

    def _clz64(self, v: ir.Value) -> ir.Value:
        """Leading zeros of a 64-bit integer (64 for 0), branch-free (no llvm.ctlz in SPIR-V)."""
        b = self.b
        count = _I64(0)
        for width in (32, 16, 8, 4, 2, 1):
            empty = b.icmp_unsigned("==", b.lshr(v, _I64(64 - width)), _I64(0))
            count = b.select(empty, b.add(count, _I64(width)), count)
            v = b.select(empty, b.shl(v, _I64(width)), v)
        return b.select(b.icmp_unsigned("==", v, _I64(0)), _I64(64), count)

    # ------------------------------------------------------------------ resources
    def abi_values(self) -> list[ir.Value]:
        extents = self._buffer(EXTENTS_BINDING, _I64, "extents")
        values: list[ir.Value] = []
        slot = 0
        atomic64 = _int64_atomics(self.kernel.grid.body)
        for index, (name, t) in enumerate(self.kernel.params):
            binding = parameter_binding(index)
            element = memory_type(t.dtype if isinstance(t, ArrayType) else t)
            handle = self._buffer(binding, element, name)
            if name in atomic64:
                # A second view of the same binding, as 32-bit words: see _atomic_add64.
                self.words[name] = self._buffer(binding, _I32, name, ".words")
            if isinstance(t, ArrayType):
                values.append(handle)
                for _ in range(t.ndim):
                    values.append(self.b.load(self._pointer(extents, _I64, _I32(slot)), typ=_I64))
                    slot += 1
            else:
                values.append(self.b.load(self._pointer(handle, element, _I32(0)), typ=element))
        return values

    def _buffer(self, binding: int, element: ir.Type, name: str, view: str = "") -> ir.Value:
        kind = f'target("spirv.VulkanBuffer", [0 x {element}], 12, 1)'
        handle_type = _TargetType(kind)
        mangled = f"tspirv.VulkanBuffer_a0{_mangle(element)}_12_1t"
        create = declare(
            self.module,
            f"llvm.spv.resource.handlefrombinding.{mangled}",
            handle_type,
            [_I32, _I32, _I32, _I32, ir.PointerType()],
        )
        label_name = f".name.{self.kernel.name}.{binding}{view}"
        label = self.module.globals.get(label_name)  # both entry points of a shader bind it
        if label is None:
            label = ir.GlobalVariable(self.module, ir.ArrayType(_I8, len(name) + 1), name=label_name)
            label.initializer = ir.Constant(ir.ArrayType(_I8, len(name) + 1), bytearray(name.encode() + b"\0"))
            label.global_constant = True
            label.linkage = "private"
        return self.b.call(create, [_I32(DESCRIPTOR_SET), _I32(binding), _I32(1), _I32(0), label])

    def _pointer(self, handle: ir.Value, element: ir.Type, index: ir.Value) -> ir.Value:
        mangled = f"tspirv.VulkanBuffer_a0{_mangle(element)}_12_1t"
        get = declare(self.module, f"llvm.spv.resource.getpointer.p11.{mangled}", _STORAGE, [handle.type, _I32])
        return self.b.call(get, [handle, index])

    def cast(self, v: ir.Value, src: ScalarType, dst: ScalarType) -> ir.Value:
        if src.is_int and dst.is_int and dst.bits < min(32, src.bits):
            # LLVM's SPIR-V backend folds zext(trunc x), x wider than the result, into an `and`
            # of the result's width on the wide x, which spirv-val rejects (kp.u32(kp.u8(n))
            # with n an i64). An xor with 0 keeps the trunc out of the zext's sight.
            narrow = self.b.trunc(v, llvm_type(dst))
            return self.b.xor(narrow, ir.Constant(narrow.type, 0))
        if src.is_signed and dst.is_int and dst.bits > src.bits:
            # Sign extension as (zext(v) ^ s) - s, s the sign bit: lavapipe miscompiles
            # OpSConvert i32 -> i64 compared with a constant (kp.i64(x) > 2 always true).
            b = self.b
            to = llvm_type(dst)
            sign = ir.Constant(to, 1 << (src.bits - 1))
            return b.sub(b.xor(b.zext(v, to), sign), sign)
        if not (src.is_float and (dst.is_int or dst.kind == "b")) or dst.kind == "b":
            return super().cast(v, src, dst)
        # Saturating float -> int without llvm.fpto*i.sat: Vulkan has no SaturatedConversion.
        # Out-of-range values clamp; NaN gives 0 as on the other targets, tested on the bits
        # (an fcmp NaN test can become OpUnordered, which Vulkan does not allow).
        b = self.b
        info = np.iinfo(dst.dtype)
        ty = v.type
        low, high = ir.Constant(ty, float(info.min)), ir.Constant(ty, float(info.max))
        to = llvm_type(dst)
        convert = b.fptosi if dst.is_signed else b.fptoui
        clamped = b.select(b.fcmp_ordered(">=", v, high), ir.Constant(to, int(info.max)), convert(v, to))
        clamped = b.select(b.fcmp_ordered("<=", v, low), ir.Constant(to, int(info.min)), clamped)
        return b.select(self.is_nan(v, src), ir.Constant(to, 0), clamped)

    def element(self, array: str, values: list[ir.Value]) -> ir.Value:
        if self.tile is not None and array in self.registers:
            return self.registers[array][self.tile]  # the vector entry point's: only ever array[i]
        if array in self.private:
            return super().element(array, values)
        handle, _, dtype = self.arrays[array]
        return self._pointer(handle, memory_type(dtype), self.b.trunc(self.linear(array, values), _I32))

    def _atomic_add64(self, s: kir.AtomicAdd) -> None:
        """A 64-bit integer atomic add as two 32-bit ones: low word, then high word plus carry.

        LLVM's SPIR-V backend cannot declare Int64Atomics for Vulkan (it aborts "Unable to meet
        SPIR-V requirements"), though lavapipe has shaderBufferInt64Atomics. Each invocation's
        carry is exact (it comes from the old value its own low add returned), so once every add
        is done the 64-bit sum is exact; only a concurrent plain read could see the halves out
        of step. The word index is 2 * offset in 32 bits: such an array holds < 2**30 elements.
        """
        b = self.b
        words = self.words[s.array]
        values = [self.expr(i) for i in s.indices]
        value = self.expr(s.value)

        def add() -> None:
            low_index = b.trunc(b.shl(self.linear(s.array, values), _I64(1)), _I32)
            low, high = b.trunc(value, _I32), b.trunc(b.lshr(value, _I64(32)), _I32)
            old = b.atomic_rmw("add", self._pointer(words, _I32, low_index), low, "monotonic")
            carry = b.zext(b.icmp_unsigned("<", b.add(old, low), old), _I32)
            high_word = self._pointer(words, _I32, b.add(low_index, _I32(1)))
            b.atomic_rmw("add", high_word, b.add(high, carry), "monotonic")

        if self.kernel.boundscheck:
            self.when(self.in_bounds(s.array, values), add)
        else:
            add()


def lower_vulkan(kernel: kir.Kernel, attrs: dict[str, Any] | None = None, *, loop_guard: bool = False) -> str:
    """The LLVM IR text of one kernel as a compute shader (entry point ``main``).

    ``attrs``, if given, gets the kernel's function-table attributes (``lower.device_attrs``).
    A shader with loops takes one more buffer, its loop guard's (``_VulkanBody.loop_guard``).
    """
    source = kernel
    kernel = device_kernel(kernel, loop_guard=loop_guard)
    module = ir.Module(name=kernel.name)
    module.triple = VULKAN_TRIPLE
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), []), name="main")
    thread_id = declare(module, "llvm.spv.thread.id.i32", _I32, [_I32])

    ndim = len(kernel.grid.vars)

    def global_id(b: ir.IRBuilder, d: int) -> ir.Value:
        return b.zext(b.call(thread_id, [_I32(device_axis(d, ndim))]), _I64)

    x, y, z = VULKAN_WORKGROUP[ndim]
    body = _VulkanBody(module, fn, kernel)
    body.emit_device(global_id, (x, y, z))
    if body.looped and not loop_guard:
        # It has loops: lowered again with the buffer its loop guard reports into.
        return lower_vulkan(source, attrs, loop_guard=True)
    entries = ["main"]
    arrays = vector_arrays(kernel) if body.tiles > 1 else None
    if arrays:
        fn = ir.Function(module, ir.FunctionType(ir.VoidType(), []), name=VECTOR_ENTRY)
        _VulkanBody(module, fn, kernel).emit_vector(global_id, arrays)
        entries.append(VECTOR_ENTRY)
    if attrs is not None:
        attrs[kernel.name] = device_attrs(kernel, (x, y, z), body)
        if body.tiles > 1:
            attrs[kernel.name]["tiles"] = body.tiles
        if arrays:
            attrs[kernel.name]["vector"] = VECTOR_ENTRY
        if loop_guard:
            attrs[kernel.name]["loop_guard"] = LOOP_GUARD
    # llvmlite cannot spell string attributes or atomic scopes: the shader stage goes in as an
    # attribute group, and atomics get device scope (Vulkan forbids the default, cross-device).
    text = str(module)
    for entry in entries:
        text = text.replace(f'define void @"{entry}"()', f'define void @"{entry}"() #0', 1)
    text = re.sub(r"(atomicrmw (?:add|fadd) .*?) (monotonic|acq_rel|seq_cst)", r'\1 syncscope("device") \2', text)
    # SignedZeroInfNanPreserve (4461) for both float widths: without it the driver's optimizer
    # may treat -0.0 as 0.0 and assume no inf or NaN (1 / -0.0 came out +inf on lavapipe).
    mode = _SIGNED_ZERO_INF_NAN_PRESERVE_MODE
    modes = [f"ptr @{e}, i32 {mode}, i32 {w}" for e in entries for w in (32, 64)]
    refs = [f"!{90000 + k}" for k in range(len(modes))]
    return (
        text
        + f'\nattributes #0 = {{ "hlsl.numthreads"="{x},{y},{z}" "hlsl.shader"="compute" }}\n'
        + f"!spirv.ExecutionMode = !{{{', '.join(refs)}}}\n"
        + "".join(f"{ref} = !{{{value}}}\n" for ref, value in zip(refs, modes, strict=True))
    )


# Grid points per invocation of a 1-D kernel whose grid body is small and has no loop: a
# workgroup takes that many rows of its width. lavapipe pays per invocation and per workgroup,
# and saxpy on 10^6 points ran 12-15% faster with 4 (16 gained no more); a GPU reads each row as
# before. The body is emitted once per point: only a small one, whose per-point work is too
# little to hide that cost (a generated kernel of 2,000 operations took lavapipe 88 s to
# compile four times over, against 5 s once).
_TILES = 4
_TILED_BODY = 64  # the most statements and operations a body may have to be tiled


def _tiles(kernel: kir.Kernel) -> int:
    """How many grid points each invocation of ``kernel``'s shader computes (``attrs["tiles"]``).

    One where the grid has more dimensions, where the kernel combines its points after the grid
    (its epilogue counts the workgroup's invocations), where the body loops or has local
    arrays (lavapipe's limit on an invocation's loop iterations, see
    :meth:`_VulkanBody.loop_guard`, would then be reached sooner), or where it is large.
    """
    body = kernel.grid.body
    if len(kernel.grid.vars) != 1 or kernel.epilogue or kernel.reductions:
        return 1
    statements = list(kir.walk(body))
    if any(isinstance(s, (kir.ForRange, kir.While, kir.LocalArray)) for s in statements):
        return 1
    size = len(statements) + sum(len(list(kir.walk_expr(e))) for s in statements for e in kir.exprs_of(s))
    return _TILES if size <= _TILED_BODY else 1


# The vector entry point of a tiled kernel (attrs["vector"]): on lavapipe every access to a
# storage buffer is a loop over the SIMD lanes, whatever its width, so one 16-byte access in
# place of four 4-byte ones cut saxpy's time by a third. Arrays of other element sizes, and
# other accesses, stay as they are.
VECTOR_ENTRY = "main_vector"


def vector_arrays(kernel: kir.Kernel) -> dict[str, bool] | None:
    """The arrays the vector entry point accesses as vectors, each with whether it loads them first.

    A 1-D array of 4-byte elements qualifies where the grid body only ever accesses it at the
    grid point, ``a[i]``; it is loaded first unless the body never reads it and stores it on
    every path. None where the kernel gets no vector entry point: no array qualifies, the grid
    variable changes, an array is written anywhere but at the grid point (or read elsewhere
    while written, or in the prologue), the kernel checks its indices, prints or uses atomics.
    Asked of tiled kernels only (``_tiles``).
    """
    body, point = kernel.grid.body, kernel.grid.vars[0]
    statements = list(kir.walk(body))
    if (
        kernel.boundscheck
        or point in kir.assigned_names(body)
        or any(isinstance(s, (kir.Store, kir.AtomicAdd)) for s in kir.walk(kernel.prologue))
        or any(isinstance(s, (kir.AtomicAdd, kir.Print)) for s in statements)
    ):
        return None

    def at_point(indices: list[kir.Expr]) -> bool:
        return len(indices) == 1 and isinstance(indices[0], kir.Var) and indices[0].name == point

    loads = [e for s in statements for x in kir.exprs_of(s) for e in kir.walk_expr(x) if isinstance(e, kir.Load)]
    stores = [s for s in statements if isinstance(s, kir.Store)]
    elsewhere = {a.array for a in [*loads, *stores] if not at_point(a.indices)}
    if any(s.array in elsewhere for s in stores):
        return None
    # Stored on every path: a top-level store, in a body no continue can leave early.
    always = set() if _exits(body, (kir.Continue,)) else {s.array for s in body if isinstance(s, kir.Store)}
    read = {e.array for e in loads}
    arrays = {
        name: name in read or name not in always
        for name, t in kernel.params
        if isinstance(t, ArrayType)
        and t.ndim == 1
        and t.dtype.bits == 32
        and name not in elsewhere
        and (name in read or name in kernel.written)
    }
    return arrays or None


def _int64_atomics(stmts: list[kir.Stmt]) -> set[str]:
    """The arrays that get a 64-bit integer kp.atomic_add."""
    return {s.array for s in _atomics(stmts) if s.value.type.is_int and s.value.type.bits == 64}


def _atomics(stmts: list[kir.Stmt]) -> list[kir.AtomicAdd]:
    return [s for s in kir.walk(stmts) if isinstance(s, kir.AtomicAdd)]


@dataclass(frozen=True)
class VulkanOptions(Options):
    """Options of the ``vulkan`` target.

    There is one IR pipeline (``opt_level`` 1): SROA and SCCP, then code generation at -O0.
    LLVM's -O2 pipeline and the backend's own optimizations re-create unstructured control flow
    that the SPIR-V backend or the driver cannot take (see VULKAN_PASSES); the driver optimizes
    the shader itself.
    """

    opt_level: int = 1

    def __post_init__(self) -> None:
        if self.opt_level != 1:
            raise ValueError(
                f"vulkan has one optimization pipeline (opt_level=1), not opt_level={self.opt_level!r}: LLVM's others "
                "break the structured control flow a shader needs, and the driver optimizes the shader itself"
            )


def _lower(_: bytes, unit: Unit) -> bytes:
    (kernel,) = unit.kernels
    _check_supported(kernel)
    unit.notes["workgroup"] = list(VULKAN_WORKGROUP[len(kernel.grid.vars)])
    unit.notes["attrs"] = {}
    return lower_vulkan(kernel, unit.notes["attrs"]).encode()


def _spirv(src: bytes, unit: Unit) -> bytes:
    # A stage runs in a child process of its own for each shader, several at once: LLVM 22's
    # SPIR-V backend keeps state from one module to the next in a process, and a later shader
    # sometimes came out with a result id defined twice (spirv-val: "Id 4 is defined more than
    # once"), though it alone is valid.
    text = src.decode()
    triple = triple_of(text, VULKAN_TRIPLE)
    shader = emit(text, triple, unit, opt_level=VULKAN_CODEGEN_OPT, options=_LLVM_OPTIONS, passes=VULKAN_PASSES)
    if _has_execution_mode(shader, _SIGNED_ZERO_INF_NAN_PRESERVE_MODE):
        shader = _with_capability(shader, _SIGNED_ZERO_INF_NAN_PRESERVE)
    return spirvbin.with_storage_semantics(shader, _SEMANTICS)


def _package(units: list[Unit], name: str) -> Module:
    shaders = {unit.functions[0].name: unit.artifacts["spirv"] for unit in units}
    table = []
    for unit in units:
        for entry in kernel_entries(unit, {"workgroup": unit.notes["workgroup"]}):
            if entry.attrs.get("loop_guard"):  # its loop guard's buffer, last (lowering decides)
                signature = with_hidden(entry.signature, [LOOPS_PARAM])
                entry = KernelEntry(entry.name, signature, entry.grid, entry.attrs)
            table.append(entry)
    return vulkan_module(shaders, table)


TARGET = Target(
    name="vulkan",
    options=VulkanOptions,
    stages=(Stage("llir", ".ll", _lower), Stage("spirv", ".spv", _spirv)),
    package=_package,
    per_kernel=True,
    # A shader is entered at a plain @main; its buffers are resource bindings, not parameters.
    ir=IRContract(VULKAN_TRIPLE, r"spirv(1\.\d)?-[^-]*-vulkan.*", "spirv[1.N]-unknown-vulkan1.N-compute", "", ()),
)


def _has_execution_mode(shader: bytes, mode: int) -> bool:
    """True if the shader has an ``OpExecutionMode`` of ``mode`` (scanning the instructions)."""
    words = struct.unpack(f"<{len(shader) // 4}I", shader)
    position = 5
    while position < len(words):
        count, opcode = words[position] >> 16, words[position] & 0xFFFF
        if opcode == _OP_EXECUTION_MODE and position + 2 < len(words) and words[position + 2] == mode:
            return True
        if opcode == _OP_FUNCTION or count == 0:
            return False  # execution modes come before the first function
        position += count
    return False


def _with_capability(shader: bytes, capability: int) -> bytes:
    """The shader with ``OpCapability capability`` added after the header.

    LLVM emits the SignedZeroInfNanPreserve execution mode that lower_vulkan asks for, but not
    the capability it needs for a Vulkan target (spirv-val: "Operand 2 of ExecutionMode requires
    one of these capabilities"); capabilities come first, so it goes right after the header.
    """
    words = struct.unpack(f"<{len(shader) // 4}I", shader)
    position = 5
    while position < len(words):
        count, opcode = words[position] >> 16, words[position] & 0xFFFF
        if opcode != _OP_CAPABILITY:
            break
        if words[position + 1] == capability:
            return shader
        position += count
    return shader[:20] + struct.pack("<2I", (2 << 16) | _OP_CAPABILITY, capability) + shader[20:]


def _check_supported(kernel: kir.Kernel) -> None:
    atomic = next((s for s in _atomics(kernel.grid.body) if s.value.type.is_float and s.value.type.bits == 64), None)
    if atomic is not None:
        raise CompileError(float64_atomic_refusal(kernel.name, atomic.line))


def float64_atomic_refusal(kernel: str, line: int | None = None) -> str:
    """Why a float64 atomic add is refused on Vulkan (kp.build's kernels and user shaders alike).

    Mesa's lavapipe aborts the whole process compiling one (LLVM "Cannot select"), so such a
    shader is refused rather than handed to a driver.
    """
    where = f"kernel {kernel!r}" + (f", line {line}" if line is not None else "")
    return (
        f"{where}: kp.atomic_add on a float64 array is not supported on vulkan; use a float32 array, "
        "or run it on cpu, opencl or cuda"
    )
