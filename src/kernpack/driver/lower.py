"""Kernel IR -> LLVM IR, shared by every target: statements, expressions, the language's rules.

:class:`KernelBody` emits one kernel's statements into one LLVM function. It is target-neutral:
the function's parameter types decide the pointers' address space, and the target picks how the
grid is walked (:meth:`KernelBody.emit_range` loops over part of it on a CPU thread,
:meth:`KernelBody.emit_device` maps grid points to device work-items). A target changes what it
must by overriding a method (``call`` for its math library, ``atomic_add``, ``cast``, ...).

Semantics the language promises and this keeps: Python's floor division and modulo, integer
division by zero giving 0 (never a trap), float-to-int conversions that saturate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import llvmlite.ir as ir
import numpy as np

from ..errors import CompileError
from ..runtime.abi import CHECK_PARAM, PRINT_PARAM, SCALARS, SCRATCH_PARAM, device_axis
from .hidden import hidden_params
from .lang import kir
from .lang.kir import assigned_names
from .lang.types import ArrayType, ScalarType, bool_, i32, i64, u32

__all__ = [
    "KernelBody",
    "abi_types",
    "check_narrow_atomics",
    "declare",
    "device_abi_types",
    "device_attrs",
    "check_sites",
    "device_kernel",
    "gep",
    "llvm_type",
    "memory_type",
    "merge",
    "print_sites",
    "state_type",
]

# The IRBuilder method for each arithmetic op: (float, integer).
_ARITH = {"add": ("fadd", "add"), "sub": ("fsub", "sub"), "mul": ("fmul", "mul")}
_I1 = ir.IntType(1)
_I8 = ir.IntType(8)
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_PTR = ir.PointerType()


def llvm_type(t: ScalarType) -> ir.Type:
    """The LLVM type of a scalar as a value (bool is i1)."""
    if t is bool_:
        return _I1
    if t.is_float:
        return ir.FloatType() if t.bits == 32 else ir.DoubleType()
    return ir.IntType(t.bits)


def memory_type(t: ScalarType) -> ir.Type:
    """The LLVM type of a scalar in an array (bool is one byte, like numpy's)."""
    return _I8 if t is bool_ else llvm_type(t)


def abi_types(kernel: kir.Kernel, pointer: ir.Type = _PTR, boolean: ir.Type = _I1) -> list[ir.Type]:
    """The LLVM parameter types of kernpack's calling convention.

    Each array is a ``pointer`` followed by its ``i64`` extents; each scalar is its type, bool
    as ``boolean`` (the host's C ``_Bool``, an ``i1``, by default).
    """
    types: list[ir.Type] = []
    for _, t in kernel.params:
        if isinstance(t, ArrayType):
            types.extend([pointer] + [_I64] * t.ndim)
        else:
            types.append(boolean if t is bool_ else llvm_type(t))
    return types


def device_abi_types(kernel: kir.Kernel, pointer: ir.Type) -> list[ir.Type]:
    """:func:`abi_types` of a device kernel: scalars as ``kernpack.runtime.abi.SCALARS`` passes them."""
    return abi_types(kernel, pointer, _IR_TYPES[SCALARS["bool"].device_ir])


# The LLVM types ``kernpack.runtime.abi`` names, as llvmlite types.
_IR_TYPES = {
    "i8": _I8,
    "i16": ir.IntType(16),
    "i32": _I32,
    "i64": _I64,
    "float": ir.FloatType(),
    "double": ir.DoubleType(),
}


def merge(b: ir.IRBuilder, block: ir.Block, typ: ir.Type, incoming: list[tuple[ir.Value, ir.Block]]) -> ir.Value:
    """At the start of ``block``, the value each of its predecessors brings (a phi)."""
    b.position_at_end(block)
    phi = b.phi(typ)
    for value, predecessor in incoming:
        phi.add_incoming(value, predecessor)
    return phi


def gep(b: ir.IRBuilder, base: ir.Value, indices: list[ir.Value], etype: ir.Type) -> ir.Value:
    """The address of ``base[indices...]`` in an ``etype``, as an opaque pointer."""
    # llvmlite gives a GEP through a multi-level index a typed-pointer result and then checks
    # stores against its pointee (wrongly: the struct, not the field). In LLVM's IR every
    # pointer is opaque, so the result is retyped as one.
    address = b.gep(base, indices, source_etype=etype)
    address.type = _PTR
    return address


def declare(module: ir.Module, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
    """The function ``name`` of ``module``, declared with this type if it is not there yet."""
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    return ir.Function(module, ir.FunctionType(ret, args), name=name)


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


def device_kernel(kernel: kir.Kernel, *, loop_guard: bool = False) -> kir.Kernel:
    """The kernel as a device target lowers it, with its hidden last arrays (``driver.hidden``)."""
    hidden = hidden_params(kernel, loop_guard=loop_guard)
    if not hidden:
        return kernel
    params = [*kernel.params, *((name, ArrayType(u32, 1)) for name in hidden)]
    return dataclasses.replace(kernel, params=params, written=kernel.written | set(hidden))


def print_sites(sites: list[kir.Print]) -> list[dict[str, list[str]]]:
    """The table of a kernel's print() calls (``abi.PRINT_PARAM``): text around typed values."""
    table = []
    for site in sites:
        text, types = [""], []
        for part in site.parts:
            if isinstance(part, str):
                text[-1] += part
            else:
                types.append(part.type.name)
                text.append("")
        table.append({"text": text, "types": types})
    return table


def _wide(t: ScalarType) -> ScalarType:
    """The type a device combines a reduction of ``t`` in: 8- and 16-bit integers as 32-bit ones.

    (Integer sums wrap, and narrowing commutes with them; min and max of extended values are
    the extended min and max.) Workgroup memory and the scratch then hold 32 or 64 bits only.
    """
    if t.is_int and t.bits < 32:
        return i32 if t.is_signed else u32
    return t


def _words(t: ScalarType) -> int:
    """The 32-bit scratch words one partial of a reduction of ``t`` takes."""
    return _wide(t).bits // 32


def device_attrs(kernel: kir.Kernel, workgroup: tuple[int, int, int], body: KernelBody) -> dict[str, Any]:
    """What the function table says of a device kernel beyond its signature and grid.

    With an epilogue, its scratch per workgroup and its workgroup (``abi.scratch_words``);
    with bounds checks, its checked accesses (``"checks"``, see :func:`check_sites`).
    """
    attrs: dict[str, Any] = {}
    if kernel.epilogue:
        attrs["scratch"] = sum(_words(kernel.locals[r]) for r in kernel.reductions)
        attrs["workgroup"] = list(workgroup)
    if kernel.boundscheck:
        attrs["checks"] = check_sites(kernel, body.sites)
    if body.print_sites:
        attrs["prints"] = print_sites(body.print_sites)
    return attrs


def check_sites(kernel: kir.Kernel, sites: list[tuple[str, int]]) -> dict[str, Any]:
    """The table a bounds-check record's site indexes (``runtime.checks.index_error``)."""
    ranks = {name: t.ndim for name, t in kernel.params if isinstance(t, ArrayType)}
    ranks.update((a.name, len(a.shape)) for a in kir.local_arrays(kernel))
    return {"file": kernel.filename, "sites": [list(site) for site in sites], "ndim": ranks}


def _state_fields(kernel: kir.Kernel) -> list[tuple[str, ScalarType]]:
    """The scalars a CPU chunk hands the epilogue, as :class:`KernelBody` allocates them."""
    fields = [(name, t) for name, t in kernel.params if not isinstance(t, ArrayType)]
    given = {name for name, _ in fields}
    return fields + [(name, t) for name, t in kernel.locals.items() if name not in given]


def state_type(kernel: kir.Kernel) -> ir.LiteralStructType:
    """What each CPU chunk of a kernel with an epilogue leaves for it (``k.finish``).

    Every scalar as the prologue left it, then each reduction's partial over the chunk.
    """
    scalars = [llvm_type(t) for _, t in _state_fields(kernel)]
    return ir.LiteralStructType(scalars + [llvm_type(kernel.locals[r]) for r in kernel.reductions])


class KernelBody:
    """Emits a kernel's statements into one function.

    Target-neutral: the function's parameter types decide the pointers' address space, and
    the caller picks how the grid is walked (:meth:`emit_range` loops on a CPU thread,
    :meth:`emit_device` maps grid points to device work-items).
    """

    def __init__(self, module: ir.Module, fn: ir.Function, kernel: kir.Kernel) -> None:
        self.fn = fn
        self.kernel = kernel
        self.module = module
        entry = fn.append_basic_block("entry")
        self.b = ir.IRBuilder(entry)
        self.arrays: dict[str, tuple[ir.Value, list[ir.Value], ScalarType]] = {}
        self.vars: dict[str, ir.Value] = {}
        self.var_types: dict[str, ir.Type] = {}
        self.loops: list[tuple[ir.Block, ir.Block]] = []  # (continue target, break target)
        args = iter(self.abi_values())
        # Slots that only ever hold an argument: scalar parameters the kernel never assigns.
        # A driver cannot see their loads as constants (the Vulkan target's fixes need to know).
        assigned = set(kir.assigned_names([*kernel.prologue, *kernel.grid.body, *kernel.epilogue]))
        self.argument_slots: set[ir.AllocaInstr] = set()
        for name, t in kernel.params:
            if isinstance(t, ArrayType):
                ptr = next(args)
                ptr.name = name
                extents = [next(args) for _ in range(t.ndim)]
                for d, e in enumerate(extents):
                    e.name = f"{name}.shape{d}"
                self.arrays[name] = (ptr, extents, t.dtype)
            else:
                value = next(args)
                value.name = name
                if t is bool_ and value.type != _I1:  # devices pass bool as a byte
                    value = self.b.icmp_unsigned("!=", value, ir.Constant(value.type, 0))
                slot = self.b.alloca(llvm_type(t), name=f"{name}.addr")
                self.b.store(value, slot)
                if name not in assigned:
                    self.argument_slots.add(slot)
                self.vars[name] = slot
                self.var_types[name] = llvm_type(t)
        self.rest = list(args)
        self.point_start: list[tuple[ir.Value, ir.Value]] = []  # (slot, value) set at each grid point
        # Bounds checks: the record (the CPU's global; devices take kp_check), and the checked
        # accesses (array, line) in order; a CPU kernel's functions share one list.
        self.check_record: ir.GlobalVariable | None = None
        self.sites: list[tuple[str, int]] = []
        # print(): the calls in order (a CPU kernel's functions share one list), and on the CPU
        # the global holding the printer's address (abi.print_symbols).
        self.print_sites: list[kir.Print] = []
        self.printer: ir.GlobalVariable | None = None
        self.line = 0
        # kp.local arrays: element k's address, for each (storage in the entry block).
        self.private: dict[str, Callable[[ir.Value], ir.Value]] = {}
        for local in kir.local_arrays(kernel):
            count = int(np.prod(local.shape))
            self.private[local.name] = self.private_array(local.name, memory_type(local.dtype), count)
            self.arrays[local.name] = (ir.Constant(_PTR, None), [_I64(n) for n in local.shape], local.dtype)
        for name, t in kernel.locals.items():
            if name not in self.vars:
                slot = self.b.alloca(llvm_type(t), name=f"{name}.addr")
                self.b.store(ir.Constant(llvm_type(t), 0), slot)  # defined even on paths that skip it
                self.vars[name] = slot
                self.var_types[name] = llvm_type(t)

    def abi_values(self) -> list[ir.Value]:
        """The kernel's arguments in kernpack's convention (a target may load them from elsewhere)."""
        return list(self.fn.args)

    # ------------------------------------------------------------------ entry points
    def emit_range(self) -> None:
        """The grid's outer indices ``[lo, hi)`` on this thread (then ``state``, with an epilogue)."""
        lo, hi, *state = self.rest
        self.block(self.kernel.prologue)
        grid = self.kernel.grid
        extents = [self.expr(e) for e in grid.extents]
        if state:
            # The epilogue needs the prologue's locals; each reduction's partial over this
            # chunk starts from the operation's identity (the starting value joins once, later).
            self.save_state(state[0], scalars=True)
            for name, op in self.kernel.reductions.items():
                typ = self.var_types[name]
                self.b.store(ir.Constant(typ, kir.identity(op, self.kernel.locals[name])), self.vars[name])
        # Every grid point starts from the locals as the prologue left them (points are
        # independent): what one point assigns must not leak into the next on this thread.
        changed = sorted(set(assigned_names(grid.body)) - set(grid.vars))
        self.point_start = [(self.vars[n], self.b.load(self.vars[n], typ=self.var_types[n])) for n in changed]
        start = self._max(lo, _I64(0))
        stop = self._min(hi, extents[0])
        self.grid_loops(grid, [start, *[_I64(0)] * (len(extents) - 1)], [stop, *extents[1:]], 0)
        if state:
            self.save_state(state[0], scalars=False)
        self.b.ret_void()

    def save_state(self, state: ir.Value, scalars: bool) -> None:
        """Store the scalars (``scalars``) or the reductions' partials into a :func:`state_type`."""
        struct = state_type(self.kernel)
        fields = _state_fields(self.kernel)
        names = [n for n, _ in fields] if scalars else list(self.kernel.reductions)
        first = 0 if scalars else len(fields)
        for k, name in enumerate(names):
            value = self.b.load(self.vars[name], typ=self.var_types[name])
            self.b.store(value, gep(self.b, state, [_I32(0), _I32(first + k)], struct))

    def emit_finish(self) -> None:
        """The epilogue, after every chunk: ``states`` holds ``count`` :func:`state_type` records.

        Each reduction is its chunks' partials combined in chunk order, then its starting
        value: the same grouping whatever the threads' timing, so a run repeats exactly.
        """
        states, count = self.rest
        b = self.b
        struct = state_type(self.kernel)
        fields = _state_fields(self.kernel)
        for k, (name, _) in enumerate(fields):
            value = b.load(gep(b, states, [_I64(0), _I32(k)], struct), typ=self.var_types[name])
            b.store(value, self.vars[name])
        if self.kernel.reductions:
            reductions = [(name, op, self.kernel.locals[name]) for name, op in self.kernel.reductions.items()]
            units = [ir.Constant(self.var_types[name], kir.identity(op, t)) for name, op, t in reductions]
            entry = b.block
            loop = self.fn.append_basic_block("combine")
            done = self.fn.append_basic_block("combined")
            b.cbranch(b.icmp_signed(">", count, _I64(0)), loop, done)
            b.position_at_end(loop)
            chunk = b.phi(_I64, name="chunk")
            totals = [b.phi(unit.type, name=f"{r[0]}.total") for r, unit in zip(reductions, units, strict=True)]
            partials = [
                b.load(gep(b, states, [chunk, _I32(len(fields) + k)], struct), typ=unit.type)
                for k, unit in enumerate(units)
            ]
            combined = [
                self.combine(op, t, total, partial)
                for (_, op, t), total, partial in zip(reductions, totals, partials, strict=True)
            ]
            following = b.add(chunk, _I64(1))
            b.cbranch(b.icmp_signed("<", following, count), loop, done)
            b.position_at_end(done)
            results = [b.phi(unit.type) for unit in units]
            chunk.add_incoming(_I64(0), entry)
            chunk.add_incoming(following, loop)
            for phis in (totals, results):
                for phi, unit, value in zip(phis, units, combined, strict=True):
                    phi.add_incoming(unit, entry)
                    phi.add_incoming(value, loop)
            for (name, op, t), result in zip(reductions, results, strict=True):
                start = b.load(self.vars[name], typ=self.var_types[name])
                b.store(self.combine(op, t, start, result), self.vars[name])
        self.block(self.kernel.epilogue)
        if not b.block.is_terminated:
            b.ret_void()

    def device_point(self, global_id: Callable[[ir.IRBuilder, int], ir.Value]) -> ir.Value:
        """Run the prologue, set the grid variables to this work-item's point; True if inside.

        Each reduction's local then holds the operation's identity (this work-item's
        contribution so far), its starting value kept aside for the epilogue.
        """
        b = self.b
        self.block(self.kernel.prologue)
        grid = self.kernel.grid
        inside = None
        self.point: list[tuple[ir.Value, ir.Value]] = []  # (index, extent) per grid dimension
        for d, (var, extent) in enumerate(zip(grid.vars, grid.extents, strict=True)):
            index = global_id(b, d)
            b.store(index, self.vars[var])
            bound = self.expr(extent)
            self.point.append((index, bound))
            ok = b.icmp_signed("<", index, bound)
            inside = ok if inside is None else b.and_(inside, ok)
        self.starts: dict[str, ir.Value] = {}
        for name, op in self.kernel.reductions.items():
            typ = self.var_types[name]
            self.starts[name] = self.slot(typ, f"{name}.start")
            b.store(b.load(self.vars[name], typ=typ), self.starts[name])
            b.store(ir.Constant(typ, kir.identity(op, self.kernel.locals[name])), self.vars[name])
        return inside

    def emit_device(self, global_id: Callable[[ir.IRBuilder, int], ir.Value], workgroup: tuple[int, int, int]) -> None:
        """One work-item per grid point: ``global_id(builder, d)`` is its index in dimension d.

        ``workgroup`` is the launch's workgroup along x, y, z, which a kernel with an epilogue
        is launched with (see :meth:`device_epilogue`).
        """
        b = self.b
        grid = self.kernel.grid
        inside = self.device_point(global_id)
        body = self.fn.append_basic_block("grid.body")
        end = self.fn.append_basic_block("grid.end")
        b.cbranch(inside, body, end)
        b.position_at_end(body)
        self.loops.append((end, end))  # continue ends this work-item
        self.block(grid.body)
        self.loops.pop()
        if not b.block.is_terminated:
            b.branch(end)
        b.position_at_end(end)
        self.device_epilogue(workgroup)
        b.ret_void()

    # ------------------------------------------------------------------ device epilogue
    def device_epilogue(self, workgroup: tuple[int, int, int]) -> None:
        """After every work-item's point: the reductions and the epilogue (``abi.SCRATCH_PARAM``).

        Every work-item of a workgroup (those outside the grid too, with the identity) gets
        here; a tree in workgroup memory combines their contributions, and the first work-item
        writes the group's partial to the scratch and counts the group done. The last group to
        finish (an acquire-release count: it sees every partial) combines the partials, each of
        its work-items a strided share of them in group order and then a tree, adds the
        starting value and runs the epilogue in its first work-item: one grouping for a
        geometry, so a run repeats exactly. No atomic per point, no second launch.
        """
        kernel = self.kernel
        if not kernel.epilogue:
            return
        b = self.b
        local, group, groups = self._group_position(workgroup)
        size = workgroup[0] * workgroup[1] * workgroup[2]  # a power of two
        reductions = [(name, op, t, _wide(t)) for name, op in kernel.reductions.items() for t in [kernel.locals[name]]]
        shared = [self.shared_array(f"{name}.group", llvm_type(w), size) for name, _, _, w in reductions]
        last = self.shared_array("last", _I32, 1)
        local32 = b.trunc(local, _I32)
        for (name, _, t, w), array in zip(reductions, shared, strict=True):
            own = self._widen(b.load(self.vars[name], typ=self.var_types[name]), t, w)
            b.store(own, array(local32))
        self._tree(reductions, shared, local32, size)
        # Where reduction r's partial of group g lies: 1 + groups * (words before r) + g * words.
        words = [_words(t) for _, _, t, _ in reductions]
        offsets = [sum(words[:k]) for k in range(len(words))]

        def partial(k: int, g: ir.Value) -> ir.Value:
            return b.add(_I64(1), b.add(b.mul(groups, _I64(offsets[k])), b.mul(g, _I64(words[k]))))

        def leader() -> None:
            for k, ((*_, w), array) in enumerate(zip(reductions, shared, strict=True)):
                self._store_words(b.load(array(_I32(0)), typ=llvm_type(w)), partial(k, group))
            done = self.count_done(self.scratch_word(_I64(0)))
            b.store(b.zext(b.icmp_unsigned("==", b.zext(done, _I64), b.sub(groups, _I64(1))), _I32), last(_I32(0)))

        def finish() -> None:  # every work-item of the last group
            totals = []
            for name, op, _, w in reductions:
                total = self.slot(llvm_type(w), f"{name}.total")
                b.store(ir.Constant(llvm_type(w), kir.identity(op, w)), total)
                totals.append(total)

            def add(k: ir.Value) -> None:  # partial local + k * size
                g = b.add(local, b.mul(k, _I64(size)))
                for r, ((_, op, _, w), total) in enumerate(zip(reductions, totals, strict=True)):
                    value = self._load_words(w, partial(r, g))
                    b.store(self.combine(op, w, b.load(total, typ=llvm_type(w)), value), total)

            share = b.udiv(b.add(b.sub(groups, self._min(local, groups)), _I64(size - 1)), _I64(size))
            self.repeat(share, add)
            for total, (*_, w), array in zip(totals, reductions, shared, strict=True):
                b.store(b.load(total, typ=llvm_type(w)), array(local32))
            self._tree(reductions, shared, local32, size)

            def epilogue() -> None:
                for (name, op, t, w), array in zip(reductions, shared, strict=True):
                    start = self._widen(b.load(self.starts[name], typ=self.var_types[name]), t, w)
                    result = self.combine(op, w, start, b.load(array(_I32(0)), typ=llvm_type(w)))
                    b.store(self.cast(result, w, t) if w is not t else result, self.vars[name])
                self.block(kernel.epilogue)

            self.when(b.icmp_unsigned("==", local, _I64(0)), epilogue)

        self.when(b.icmp_unsigned("==", local, _I64(0)), leader)
        self.barrier()  # every work-item learns whether its group is the last
        self.when(b.icmp_unsigned("!=", b.load(last(_I32(0)), typ=_I32), _I32(0)), finish)

    def _tree(
        self, reductions: list[tuple[str, str, ScalarType, ScalarType]], shared: list[Any], local: ir.Value, size: int
    ) -> None:
        """Combine the workgroup's values in workgroup memory into element 0 (barriers between steps)."""
        b = self.b
        self.barrier()
        step = size // 2
        while step:

            def fold(step: int = step) -> None:
                for (_, op, _, w), array in zip(reductions, shared, strict=True):
                    mine, other = array(local), array(b.add(local, _I32(step)))
                    x, y = b.load(mine, typ=llvm_type(w)), b.load(other, typ=llvm_type(w))
                    b.store(self.combine(op, w, x, y), mine)

            self.when(b.icmp_unsigned("<", local, _I32(step)), fold)
            self.barrier()
            step //= 2

    def _group_position(self, workgroup: tuple[int, int, int]) -> tuple[ir.Value, ir.Value, ir.Value]:
        """The work-item's index in its group, its group's index, and the number of groups (i64).

        From the grid indices alone: the launch has ``abi.group_counts`` groups, at least one
        along each axis; the last grid dimension is axis x (``abi.device_axis``).
        """
        b = self.b
        ndim = len(self.point)
        along = [(_I64(0), _I64(1))] * 3  # (index, extent) along x, y, z
        for d, (index, extent) in enumerate(self.point):
            along[device_axis(d, ndim)] = (index, extent)
        local, group, groups = _I64(0), _I64(0), _I64(1)
        for (index, extent), width in reversed(list(zip(along, workgroup, strict=True))):
            count = b.udiv(b.add(self._max(extent, _I64(1)), _I64(width - 1)), _I64(width))
            local = b.add(b.mul(local, _I64(width)), b.urem(index, _I64(width)))
            group = b.add(b.mul(group, count), b.udiv(index, _I64(width)))
            groups = b.mul(groups, count)
        return local, group, groups

    def _widen(self, v: ir.Value, t: ScalarType, w: ScalarType) -> ir.Value:
        return v if w is t else self.cast(v, t, w)  # the target's conversion, with its workarounds

    def _store_words(self, v: ir.Value, at: ir.Value) -> None:
        """A 32- or 64-bit value into the scratch at word ``at`` (low word first)."""
        b = self.b
        bits = ir.IntType(v.type.width if isinstance(v.type, ir.IntType) else (32 if str(v.type) == "float" else 64))
        raw = b.bitcast(v, bits) if bits != v.type else v
        if bits.width == 64:
            self.store_halves(self.scratch_word, at, raw)
        else:
            b.store(raw, self.scratch_word(at))

    def _load_words(self, t: ScalarType, at: ir.Value) -> ir.Value:
        b = self.b
        low = b.load(self.scratch_word(at), typ=_I32)
        raw = low
        if t.bits == 64:
            high = b.load(self.scratch_word(b.add(at, _I64(1))), typ=_I32)
            raw = b.or_(b.zext(low, _I64), b.shl(b.zext(high, _I64), _I64(32)))
        return b.bitcast(raw, llvm_type(t)) if t.is_float else raw

    # The device hooks: a device target's body defines them (the CPU never calls them).
    def scratch_word(self, index: ir.Value) -> ir.Value:
        """The address of word ``index`` (i64) of the scratch."""
        return self.word(SCRATCH_PARAM, index)

    def shared_array(self, name: str, element: ir.Type, count: int) -> Callable[[ir.Value], ir.Value]:
        """An array in workgroup memory; the returned function gives element ``k``'s address (i32 k)."""
        array_type = ir.ArrayType(element, count)
        array = ir.GlobalVariable(self.module, array_type, f"kp.{self.kernel.name}.{name}", addrspace=3)
        array.linkage = "internal"
        array.initializer = ir.Constant(array_type, ir.Undefined)

        def element_address(k: ir.Value) -> ir.Value:
            address = self.b.gep(array, [_I32(0), k], inbounds=True, source_etype=array_type)
            address.type = ir.PointerType(addrspace=3)
            return address

        return element_address

    def count_done(self, counter: ir.Value) -> ir.Value:
        """Add 1 to the i32 at ``counter`` (the scratch's count of groups done); return the old value.

        Acquire-release at device scope: this group's partial is written before, and the last
        group reads every other group's after.
        """
        return self.b.atomic_rmw("add", counter, _I32(1), "acq_rel")

    def barrier(self) -> None:
        """Wait for every work-item of the workgroup; their workgroup-memory writes are then seen."""
        raise NotImplementedError(f"{type(self).__name__} has no workgroup barrier")

    def when(self, cond: ir.Value, then: Callable[[], None]) -> None:
        """Run what ``then`` emits where ``cond`` holds."""
        b = self.b
        body = self.fn.append_basic_block("when")
        end = self.fn.append_basic_block("when.end")
        b.cbranch(cond, body, end)
        b.position_at_end(body)
        then()
        if not b.block.is_terminated:
            b.branch(end)
        b.position_at_end(end)

    def repeat(self, count: ir.Value, body: Callable[[ir.Value], None]) -> None:
        """Run what ``body(k)`` emits for k = 0 .. count - 1 (i64)."""
        b = self.b
        counter = self.slot(_I64, "repeat")
        b.store(_I64(0), counter)
        test = self.fn.append_basic_block("repeat")
        inside = self.fn.append_basic_block("repeat.body")
        end = self.fn.append_basic_block("repeat.end")
        b.branch(test)
        b.position_at_end(test)
        k = b.load(counter, typ=_I64)
        b.cbranch(b.icmp_signed("<", k, count), inside, end)
        b.position_at_end(inside)
        body(k)
        b.store(b.add(b.load(counter, typ=_I64), _I64(1)), counter)
        b.branch(test)
        b.position_at_end(end)

    def slot(self, ty: ir.Type, name: str) -> ir.Value:
        """An alloca in the entry block (where SROA and the backends promote it to a register)."""
        entry = self.fn.entry_basic_block
        if self.b.block is entry:
            return self.b.alloca(ty, name=name)  # another builder would leave self.b's position stale
        b = ir.IRBuilder(entry)
        b.position_before(entry.instructions[0])
        return b.alloca(ty, name=name)

    def emit_extent(self) -> None:
        (outer,) = self.rest
        self.block(self.kernel.prologue)
        extents = [self.expr(e) for e in self.kernel.grid.extents]
        self.b.store(extents[0], outer)
        total = extents[0]
        for e in extents[1:]:
            total = self.b.mul(total, e)
        self.b.ret(total)

    # ------------------------------------------------------------------ loops
    def grid_loops(self, grid: kir.Grid, starts: list[ir.Value], stops: list[ir.Value], dim: int) -> None:
        def body(latch: ir.Block, exit_block: ir.Block) -> None:
            if dim + 1 < len(grid.vars):
                self.grid_loops(grid, starts, stops, dim + 1)
            else:
                # continue in the grid body moves to the next grid point; break is refused
                # by the front end.
                for slot, value in self.point_start:
                    self.b.store(value, slot)
                self.loops.append((latch, exit_block))
                self.block(grid.body)
                self.loops.pop()

        self.counted_loop(grid.vars[dim], starts[dim], stops[dim], _I64(1), True, body)

    def counted_loop(
        self,
        var: str,
        start: ir.Value,
        stop: ir.Value,
        step: ir.Value,
        positive: bool | None,
        body: Callable[[ir.Block, ir.Block], None],
    ) -> None:
        """Emit ``for var in range(start, stop, step)``; ``positive`` is the step's sign if known.

        The loop runs on its own counter (a phi), so an assignment to the variable in the body
        does not change the iteration, as in Python. A step of 1 (the grid, most loops)
        compares the index with ``stop``; any other step counts Python's number of iterations
        first, so an index near the ends of i64 cannot wrap around into more iterations, and
        a step that is zero at run time runs none.
        """
        b = self.b
        unit = isinstance(step, ir.Constant) and step.constant in (1, -1)
        trips = None if unit else self._trip_count(start, stop, step, positive)
        cond_block = self.fn.append_basic_block(f"{var}.cond")
        body_block = self.fn.append_basic_block(f"{var}.body")
        latch = self.fn.append_basic_block(f"{var}.next")
        exit_block = self.fn.append_basic_block(f"{var}.end")
        pred = b.block
        b.branch(cond_block)
        b.position_at_end(cond_block)
        counter = b.phi(_I64, name=var)
        if trips is None:
            counter.add_incoming(start, pred)
            index = counter
            keep = b.icmp_signed("<" if step.constant == 1 else ">", index, stop)
        else:
            counter.add_incoming(_I64(0), pred)
            keep = b.icmp_unsigned("<", counter, trips)
        b.cbranch(keep, body_block, exit_block)
        b.position_at_end(body_block)
        if trips is not None:
            index = b.add(start, b.mul(counter, step))
        b.store(index, self.vars[var])
        body(latch, exit_block)
        if not b.block.is_terminated:
            b.branch(latch)
        b.position_at_end(latch)
        counter.add_incoming(b.add(counter, step if trips is None else _I64(1)), latch)
        b.branch(cond_block)
        b.position_at_end(exit_block)

    def _trip_count(self, start: ir.Value, stop: ir.Value, step: ir.Value, positive: bool | None) -> ir.Value:
        """``len(range(start, stop, step))`` as an unsigned i64 (0 for a zero step)."""
        b = self.b
        up = b.and_(b.icmp_signed(">", step, _I64(0)), b.icmp_signed("<", start, stop))
        down = b.and_(b.icmp_signed("<", step, _I64(0)), b.icmp_signed(">", start, stop))
        if positive is True:
            down = ir.Constant(_I1, 0)
        elif positive is False:
            up = ir.Constant(_I1, 0)
        # Distances and magnitudes fit u64 exactly even where they overflow i64.
        distance = b.select(up, b.sub(stop, start), b.sub(start, stop))
        magnitude = b.select(b.icmp_signed(">", step, _I64(0)), step, b.sub(_I64(0), step))
        magnitude = b.select(b.icmp_signed("==", step, _I64(0)), _I64(1), magnitude)
        count = b.add(b.udiv(b.sub(distance, _I64(1)), magnitude), _I64(1))
        return b.select(b.or_(up, down), count, _I64(0))

    # ------------------------------------------------------------------ statements
    def block(self, stmts: list[kir.Stmt]) -> None:
        for stmt in stmts:
            if self.b.block.is_terminated:
                return  # code after break/continue is unreachable
            self.stmt(stmt)

    def stmt(self, s: kir.Stmt) -> None:
        b = self.b
        self.line = s.line or self.line
        if isinstance(s, kir.Assign):
            b.store(self.expr(s.value), self.vars[s.name])
        elif isinstance(s, kir.Store):
            dtype = self.arrays[s.array][2]
            value = self.expr(s.value)
            value = b.zext(value, _I8) if dtype is bool_ else value
            self.access(s.array, s.indices, lambda ptr: b.store(value, ptr))
        elif isinstance(s, kir.AtomicAdd):
            dtype = self.arrays[s.array][2]
            value = self.expr(s.value)
            self.access(s.array, s.indices, lambda ptr: self.atomic_add(ptr, value, dtype))
        elif isinstance(s, kir.Print):
            values = [self.print_word(self.expr(p), p.type) for p in s.parts if isinstance(p, kir.Expr)]
            self.print_sites.append(s)
            self.emit_print(len(self.print_sites) - 1, values)
        elif isinstance(s, kir.LocalArray):
            zero = ir.Constant(memory_type(s.dtype), 0)
            element = self.private[s.name]
            count = int(np.prod(s.shape))
            if count <= 16:
                for k in range(count):
                    b.store(zero, element(_I64(k)))
            else:
                self.repeat(_I64(count), lambda k: b.store(zero, element(k)))
        elif isinstance(s, kir.Reduce):
            slot, typ = self.vars[s.name], self.var_types[s.name]
            contribution = self.expr(s.value)
            b.store(self.combine(s.op, s.value.type, b.load(slot, typ=typ), contribution), slot)
        elif isinstance(s, kir.If):
            cond = self.expr(s.cond)
            then = self.fn.append_basic_block("if.then")
            orelse = self.fn.append_basic_block("if.else")
            end = self.fn.append_basic_block("if.end")
            b.cbranch(cond, then, orelse)
            for block, stmts in ((then, s.body), (orelse, s.orelse)):
                b.position_at_end(block)
                self.block(stmts)
                if not b.block.is_terminated:
                    b.branch(end)
            b.position_at_end(end)
        elif isinstance(s, kir.While):
            cond_block = self.fn.append_basic_block("while.cond")
            body = self.fn.append_basic_block("while.body")
            end = self.fn.append_basic_block("while.end")
            b.branch(cond_block)
            b.position_at_end(cond_block)
            b.cbranch(self.expr(s.cond), body, end)
            b.position_at_end(body)
            self.loops.append((cond_block, end))
            self.block(s.body)
            self.loops.pop()
            if not b.block.is_terminated:
                b.branch(cond_block)
            b.position_at_end(end)
        elif isinstance(s, kir.ForRange):
            start, stop, step = self.expr(s.start), self.expr(s.stop), self.expr(s.step)
            positive = s.step.value > 0 if isinstance(s.step, kir.Const) else None

            def body(latch: ir.Block, exit_block: ir.Block, s: kir.ForRange = s) -> None:
                self.loops.append((latch, exit_block))
                self.block(s.body)
                self.loops.pop()

            self.counted_loop(s.var, start, stop, step, positive, body)
        elif isinstance(s, kir.Break):
            b.branch(self.loops[-1][1])
        elif isinstance(s, kir.Continue):
            b.branch(self.loops[-1][0])
        else:  # pragma: no cover - the front end produces nothing else
            raise AssertionError(f"unexpected statement {s!r}")

    def combine(self, op: str, t: ScalarType, x: ir.Value, y: ir.Value) -> ir.Value:
        """Two values of a reduction combined (:func:`kernpack.driver.lang.interpret.combine`).

        A float sum may be reassociated (``reassoc``): that is what lets LLVM keep several
        partial sums in SIMD lanes, and why a float reduction's result is exact only up to
        rounding. ``min``/``max`` of floats are IEEE 754's ``minimum``/``maximum`` (LLVM's
        intrinsics): NaN if either operand is, -0.0 below 0.0.
        """
        b = self.b
        if op == "add":
            return b.fadd(x, y, flags=("reassoc",)) if t.is_float else b.add(x, y)
        if t.is_float and self.minmax_intrinsics:
            ty = llvm_type(t)
            name = f"llvm.{'minimum' if op == 'min' else 'maximum'}.{ty}"
            return b.call(declare(self.module, name, ty, [ty, ty]), [x, y])
        if t.is_float:  # spelled out where a backend may not have the intrinsics
            better = b.fcmp_ordered("<" if op == "min" else ">", y, x)
            # Equal: zeros of either sign (min takes the negative one) or the same value.
            tie = b.select(self.signbit(y, t), y, x) if op == "min" else b.select(self.signbit(y, t), x, y)
            pick = b.select(b.fcmp_ordered("==", x, y), tie, b.select(better, y, x))
            return b.select(self.is_nan(y, t), y, b.select(self.is_nan(x, t), x, pick))
        cmp = b.icmp_signed if t.is_signed else b.icmp_unsigned
        return b.select(cmp("<" if op == "min" else ">", x, y), x, y)

    #: Float min/max of reductions as LLVM's ``minimum``/``maximum`` (which the CPU's loop
    #: vectorizer knows); a device target spells them out instead.
    minmax_intrinsics = True

    def is_nan(self, v: ir.Value, t: ScalarType) -> ir.Value:
        """True if the float ``v`` is a NaN."""
        return self.b.fcmp_unordered("!=", v, v)

    def atomic_add(self, ptr: ir.Value, value: ir.Value, dtype: ScalarType) -> None:
        """``*ptr += value`` atomically; a target without atomics of some width overrides it."""
        self.b.atomic_rmw("fadd" if dtype.is_float else "add", ptr, value, "monotonic")

    # ------------------------------------------------------------------ expressions
    def access(self, array: str, indices: list[kir.Expr], use: Callable[[ir.Value], object]) -> None:
        """Emit ``use(address of array[indices])``; with bounds checks, only where it is in range."""
        values = [self.expr(i) for i in indices]
        if not self.kernel.boundscheck:
            use(self.element(array, values))
            return
        self.when(self.in_bounds(array, values), lambda: use(self.element(array, values)))

    def in_bounds(self, array: str, values: list[ir.Value]) -> ir.Value:
        """True if every index is within its extent; else the access is recorded (``abi.CHECK_WORDS``)."""
        b = self.b
        extents = self.arrays[array][1]
        ok = None
        for value, extent in zip(values, extents, strict=True):
            inside = b.icmp_unsigned("<", value, extent)  # a negative index is a huge unsigned one
            ok = inside if ok is None else b.and_(ok, inside)
        assert ok is not None
        site = len(self.sites)
        self.sites.append((array, self.line))

        def record() -> None:
            earlier = b.atomic_rmw("add", self.check_word(_I64(0)), _I32(1), "monotonic")

            def first() -> None:
                b.store(_I32(site), self.check_word(_I64(1)))
                for d in range(3):
                    index, extent = (values[d], extents[d]) if d < len(values) else (_I64(0), _I64(0))
                    self.store_halves(self.check_word, _I64(2 + 2 * d), index)
                    self.store_halves(self.check_word, _I64(8 + 2 * d), extent)

            self.when(b.icmp_unsigned("==", earlier, _I32(0)), first)

        self.when(b.not_(ok), record)
        return ok

    def check_word(self, index: ir.Value) -> ir.Value:
        """The address of word ``index`` of the bounds-check record (the CPU's global, or ``kp_check``)."""
        if self.check_record is not None:
            return gep(self.b, self.check_record, [_I32(0), index], self.check_record.value_type)
        return self.word(CHECK_PARAM, index)

    def store_halves(self, address: Callable[[ir.Value], ir.Value], at: ir.Value, value: ir.Value) -> None:
        """An i64 as two 32-bit words, low first, at ``address(at)`` and ``address(at + 1)``."""
        b = self.b
        b.store(b.trunc(value, _I32), address(at))
        b.store(b.trunc(b.lshr(value, _I64(32)), _I32), address(b.add(at, _I64(1))))

    def word(self, array: str, index: ir.Value) -> ir.Value:
        """The address of 32-bit word ``index`` (i64) of a hidden ``uint32_t`` array."""
        return self.b.gep(self.arrays[array][0], [index], source_etype=_I32)

    # ------------------------------------------------------------------ print
    def print_word(self, v: ir.Value, t: ScalarType) -> ir.Value:
        """A printed value as its 64-bit word (``abi.PRINT_PARAM``)."""
        b = self.b
        if t is bool_:
            return b.zext(v, _I64)
        if t.is_float:
            return b.bitcast(v, _I64) if t.bits == 64 else b.zext(b.bitcast(v, _I32), _I64)
        return self.cast(v, t, i64) if t.bits < 64 else v

    def emit_print(self, site: int, values: list[ir.Value]) -> None:
        """Send one print's site and values: to the printer on the CPU, else into ``kp_print``."""
        if self.printer is not None:
            self.cpu_print(site, values)
            return
        b = self.b
        need = 1 + 2 * len(values)
        at = b.zext(b.atomic_rmw("add", self.word(PRINT_PARAM, _I64(0)), _I32(need), "monotonic"), _I64)
        capacity = b.sub(self.arrays[PRINT_PARAM][1][0], _I64(2))

        def write() -> None:
            start = b.add(at, _I64(2))
            b.store(_I32(site + 1), self.word(PRINT_PARAM, start))
            for k, value in enumerate(values):
                self.store_halves(lambda i: self.word(PRINT_PARAM, i), b.add(start, _I64(1 + 2 * k)), value)

        fits = b.icmp_unsigned("<=", b.add(at, _I64(need)), capacity)
        self.when(fits, write)
        self.when(b.not_(fits), lambda: b.atomic_rmw("add", self.word(PRINT_PARAM, _I64(1)), _I32(1), "monotonic"))

    def cpu_print(self, site: int, values: list[ir.Value]) -> None:
        """Call the runtime's printer with the values; where there is none (C), C's printf."""
        b = self.b
        assert self.printer is not None
        words = self.slot(ir.ArrayType(_I64, max(1, len(values))), "print.values")
        for k, value in enumerate(values):
            b.store(value, gep(b, words, [_I32(0), _I32(k)], words.allocated_type))
        # The printer's type: void (int32_t site, const uint64_t *values).
        printer = b.load(self.printer, typ=ir.PointerType(ir.FunctionType(ir.VoidType(), [_I32, _PTR])))
        with b.if_else(b.icmp_unsigned("!=", printer, ir.Constant(printer.type, None))) as (runtime, plain):
            with runtime:
                b.call(printer, [_I32(site), gep(b, words, [_I32(0), _I32(0)], words.allocated_type)])
            with plain:
                self._printf(self.print_sites[site], values)

    def _printf(self, site: kir.Print, values: list[ir.Value]) -> None:
        """The print with C's printf (a program calling the exported kernel without kernpack)."""
        b = self.b
        pieces, args = [], []
        value = iter(values)
        for part in site.parts:
            if isinstance(part, str):
                pieces.append(part.replace("%", "%%"))
                continue
            word, t = next(value), part.type
            if t is bool_:
                true, false = (self._c_string(text) for text in ("True", "False"))
                pieces.append("%s")
                args.append(b.select(b.trunc(word, _I1), true, false))
            elif t.is_float:
                pieces.append("%.9g" if t.bits == 32 else "%.17g")
                bits = b.trunc(word, _I32) if t.bits == 32 else word
                as_float = b.bitcast(bits, llvm_type(t))
                args.append(b.fpext(as_float, ir.DoubleType()) if t.bits == 32 else as_float)
            else:
                pieces.append("%lld" if t.is_signed else "%llu")
                args.append(word)
        printf = self.module.globals.get("printf") or ir.Function(
            self.module, ir.FunctionType(_I32, [_PTR], var_arg=True), name="printf"
        )
        b.call(printf, [self._c_string("".join(pieces)), *args])

    def _c_string(self, text: str) -> ir.Value:
        """A NUL-terminated constant string of the module."""
        data = bytearray(text.encode() + b"\0")
        name = f"kp.str.{len(self.module.globals)}"
        string = ir.GlobalVariable(self.module, ir.ArrayType(_I8, len(data)), name)
        string.initializer = ir.Constant(ir.ArrayType(_I8, len(data)), data)
        string.global_constant, string.linkage = True, "internal"
        return gep(self.b, string, [_I32(0), _I32(0)], string.value_type)

    def element(self, array: str, values: list[ir.Value]) -> ir.Value:
        """The address of ``array[values]`` (i64 indices, not checked)."""
        _, _, dtype = self.arrays[array]
        offset = self.linear(array, values)
        if array in self.private:
            return self.private[array](offset)
        return self.b.gep(self.arrays[array][0], [offset], source_etype=memory_type(dtype))

    def linear(self, array: str, values: list[ir.Value]) -> ir.Value:
        """The offset of ``array[values]`` in elements, C order."""
        b = self.b
        extents = self.arrays[array][1]
        offset = values[0]
        for extent, index in zip(extents[1:], values[1:], strict=True):
            offset = b.add(b.mul(offset, extent), index)
        return offset

    def private_array(self, name: str, element: ir.Type, count: int) -> Callable[[ir.Value], ir.Value]:
        """Storage for a kp.local array; the returned function gives element ``k``'s address (i64 k)."""
        array_type = ir.ArrayType(element, count)
        storage = self.slot(array_type, f"{name}.local")
        return lambda k: gep(self.b, storage, [_I64(0), k], array_type)

    def expr(self, e: kir.Expr) -> ir.Value:
        b = self.b
        if isinstance(e, kir.Const):
            return ir.Constant(llvm_type(e.type), int(e.value) if not e.type.is_float else float(e.value))
        if isinstance(e, kir.Var):
            return b.load(self.vars[e.name], typ=self.var_types[e.name])
        if isinstance(e, kir.Shape):
            return self.arrays[e.array][1][e.dim]
        if isinstance(e, kir.Load):
            dtype = self.arrays[e.array][2]
            typ = memory_type(dtype)
            if not self.kernel.boundscheck:
                value = b.load(self.element(e.array, [self.expr(i) for i in e.indices]), typ=typ)
            else:  # a skipped load gives 0
                slot = self.slot(typ, f"{e.array}.checked")
                b.store(ir.Constant(typ, 0), slot)
                self.access(e.array, e.indices, lambda ptr: b.store(b.load(ptr, typ=typ), slot))
                value = b.load(slot, typ=typ)
            return b.icmp_unsigned("!=", value, _I8(0)) if dtype is bool_ else value
        if isinstance(e, kir.Cast):
            return self.cast(self.expr(e.operand), e.operand.type, e.type)
        if isinstance(e, kir.BinOp):
            return self.binop(e)
        if isinstance(e, kir.Compare):
            return self.compare(e)
        if isinstance(e, kir.Not):
            return b.not_(self.expr(e.operand))
        if isinstance(e, kir.BoolOp):
            return self.short_circuit(e)
        if isinstance(e, kir.Select):
            return self.select(e)
        if isinstance(e, kir.Call):
            return self.call(e)
        raise AssertionError(f"unexpected expression {e!r}")  # pragma: no cover

    def cast(self, v: ir.Value, src: ScalarType, dst: ScalarType) -> ir.Value:
        b = self.b
        to = llvm_type(dst)
        if src.is_float and dst.is_float:
            return b.fpext(v, to) if dst.bits > src.bits else b.fptrunc(v, to)
        if src.is_float:  # saturating, so out-of-range values are defined
            name = f"llvm.fpto{'s' if dst.is_signed else 'u'}i.sat.{to}.{llvm_type(src)}"
            return b.call(declare(self.module, name, to, [llvm_type(src)]), [v])
        if dst.is_float:
            return b.sitofp(v, to) if src.is_signed else b.uitofp(v, to)
        if dst.bits == src.bits:
            return v
        if dst.bits < src.bits:
            return b.trunc(v, to)
        return b.sext(v, to) if src.is_signed else b.zext(v, to)

    def min_max(self, op: str, t: ScalarType, x: ir.Value, y: ir.Value) -> ir.Value:
        """The kernel language's ``min(x, y)`` or ``max(x, y)`` (``op``): y where it is smaller (larger)."""
        b = self.b
        if t.is_float:
            less = b.fcmp_ordered("<", y, x) if op == "min" else b.fcmp_ordered(">", y, x)
        else:
            cmp = b.icmp_signed if t.is_signed else b.icmp_unsigned
            less = cmp("<", y, x) if op == "min" else cmp(">", y, x)
        return b.select(less, y, x)

    def binop(self, e: kir.BinOp) -> ir.Value:
        b = self.b
        t = e.type
        x = self.expr(e.lhs)
        y = self.expr(e.rhs)
        if e.op == "pow":
            return b.call(self.ipow(t, e.rhs.type), [x, y])
        if e.op in ("min", "max"):
            return self.min_max(e.op, t, x, y)
        if e.op in _ARITH:
            return getattr(b, _ARITH[e.op][0 if t.is_float else 1])(x, y)
        if t.is_float:
            if e.op == "div":
                return b.fdiv(x, y)
            return self.float_division(e.op, t, x, y)
        return self.int_division(e.op, t, x, y)

    def fmod(self, x: ir.Value, y: ir.Value, t: ScalarType) -> ir.Value:
        """C's ``fmod(x, y)`` (exact); a target whose ``frem`` is not exact overrides it."""
        return self.b.frem(x, y)

    def signbit(self, v: ir.Value, t: ScalarType) -> ir.Value:
        """The sign bit of a float, read from its bits (so -0.0 and -NaN count as negative)."""
        return self.b.icmp_signed("<", self.b.bitcast(v, ir.IntType(t.bits)), ir.Constant(ir.IntType(t.bits), 0))

    def float_division(self, op: str, t: ScalarType, x: ir.Value, y: ir.Value) -> ir.Value:
        """Python's float ``//`` and ``%`` (its ``float_divmod``); by zero ``x / 0.0`` and NaN.

        The remainder is exact and takes the divisor's sign; the quotient is the floor of the
        exact quotient, which ``floor(x / y)`` is not (``1.0 // 0.1`` is 9.0, not 10.0).
        """
        b = self.b
        ty = llvm_type(t)
        zero, one, half = (ir.Constant(ty, v) for v in (0.0, 1.0, 0.5))
        minus_zero = ir.Constant(ty, -0.0)
        mod = self.fmod(x, y, t)
        by_zero = b.fcmp_ordered("==", y, zero)
        nonzero = b.fcmp_unordered("!=", mod, zero)
        # A remainder whose sign differs from the divisor's moves by one divisor.
        fix = b.and_(nonzero, b.xor(b.fcmp_ordered("<", y, zero), b.fcmp_ordered("<", mod, zero)))
        if op == "mod":
            signed_zero = b.select(b.fcmp_ordered("<", y, zero), minus_zero, zero)
            result = b.select(fix, b.fadd(mod, y), b.select(nonzero, mod, signed_zero))
            return b.select(by_zero, mod, result)
        quotient = b.fdiv(x, y)
        div = b.fdiv(b.fsub(x, mod), y)
        div = b.select(fix, b.fsub(div, one), div)
        floor = b.call(declare(self.module, f"llvm.floor.{ty}", ty, [ty]), [div])
        floor = b.select(b.fcmp_ordered(">", b.fsub(div, floor), half), b.fadd(floor, one), floor)
        signed_zero = b.select(self.signbit(quotient, t), minus_zero, zero)
        result = b.select(b.fcmp_unordered("!=", div, zero), floor, signed_zero)
        return b.select(by_zero, quotient, result)

    def int_division(self, op: str, t: ScalarType, x: ir.Value, y: ir.Value) -> ir.Value:
        """Python's // and % on integers, with x // 0 == x % 0 == 0 and no overflow trap."""
        b = self.b
        ty = llvm_type(t)
        zero, one = ir.Constant(ty, 0), ir.Constant(ty, 1)
        by_zero = b.icmp_unsigned("==", y, zero)
        if not t.is_signed:
            safe = b.select(by_zero, one, y)
            result = b.udiv(x, safe) if op == "floordiv" else b.urem(x, safe)
            return b.select(by_zero, zero, result)
        minus_one = b.icmp_signed("==", y, ir.Constant(ty, -1))
        safe = b.select(b.or_(by_zero, minus_one), one, y)
        q = b.sdiv(x, safe)
        r = b.srem(x, safe)
        # Round toward minus infinity: adjust when the remainder's sign differs from y's.
        adjust = b.and_(b.icmp_signed("!=", r, zero), b.xor(b.icmp_signed("<", r, zero), b.icmp_signed("<", y, zero)))
        q = b.select(adjust, b.sub(q, one), q)
        r = b.select(adjust, b.add(r, y), r)
        q = b.select(minus_one, b.sub(zero, x), q)
        r = b.select(minus_one, zero, r)
        result = q if op == "floordiv" else r
        return b.select(by_zero, zero, result)

    def ipow(self, t: ScalarType, exponent: ScalarType) -> ir.Function:
        """Compute x ** n by squaring, for an integer n (an internal function per type).

        For a float x a negative n gives 1 / x ** -n. For an integer x a negative n gives 0,
        or 1 when x is 1. (LLVM's powi would do for floats, but with a runtime exponent it
        calls __powidf2 from libgcc, which a JIT process may not have loaded.)
        """
        name = f"kernpack.pow.{t.name}.{exponent.name}"
        existing = self.module.globals.get(name)
        if existing is not None:
            return existing
        ty, ety = llvm_type(t), llvm_type(exponent)
        fn = ir.Function(self.module, ir.FunctionType(ty, [ty, ety]), name=name)
        fn.linkage = "internal"
        x, n = fn.args
        entry, loop, done = (fn.append_basic_block(s) for s in ("entry", "loop", "done"))
        b = ir.IRBuilder(entry)
        ezero = ir.Constant(ety, 0)
        negative = b.icmp_signed("<", n, ezero) if exponent.is_signed else ir.Constant(_I1, 0)
        magnitude = b.select(negative, b.sub(ezero, n), n)
        one = ir.Constant(ty, 1.0 if t.is_float else 1)
        b.cbranch(b.icmp_unsigned("==", magnitude, ezero), done, loop)
        b = ir.IRBuilder(loop)
        acc, base, k = b.phi(ty), b.phi(ty), b.phi(ety)
        mul = b.fmul if t.is_float else b.mul
        acc.add_incoming(one, entry)
        base.add_incoming(x, entry)
        k.add_incoming(magnitude, entry)
        acc2 = b.select(b.trunc(k, _I1), mul(acc, base), acc)
        k2 = b.lshr(k, ir.Constant(ety, 1))
        acc.add_incoming(acc2, loop)
        base.add_incoming(mul(base, base), loop)
        k.add_incoming(k2, loop)
        b.cbranch(b.icmp_unsigned("==", k2, ezero), done, loop)
        b = ir.IRBuilder(done)
        result = b.phi(ty)
        result.add_incoming(one, entry)
        result.add_incoming(acc2, loop)
        if t.is_float:
            b.ret(b.select(negative, b.fdiv(one, result), result))
        else:
            x_is_one = b.icmp_signed("==", x, one)
            b.ret(b.select(negative, b.select(x_is_one, one, ir.Constant(ty, 0)), result))
        return fn

    def compare(self, e: kir.Compare) -> ir.Value:
        b = self.b
        ops = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}
        x, y = self.expr(e.lhs), self.expr(e.rhs)
        t = e.lhs.type
        if t.is_float:
            return b.fcmp_unordered("!=", x, y) if e.op == "ne" else b.fcmp_ordered(ops[e.op], x, y)
        if t.is_signed:
            return b.icmp_signed(ops[e.op], x, y)
        return b.icmp_unsigned(ops[e.op], x, y)

    def short_circuit(self, e: kir.BoolOp) -> ir.Value:
        b = self.b
        end = self.fn.append_basic_block(f"{e.op}.end")
        incoming = []
        for value in e.values[:-1]:
            v = self.expr(value)
            nxt = self.fn.append_basic_block(f"{e.op}.next")
            incoming.append((_I1(0 if e.op == "and" else 1), b.block))
            if e.op == "and":
                b.cbranch(v, nxt, end)
            else:
                b.cbranch(v, end, nxt)
            b.position_at_end(nxt)
        last = self.expr(e.values[-1])
        incoming.append((last, b.block))
        b.branch(end)
        return merge(b, end, _I1, incoming)

    def select(self, e: kir.Select) -> ir.Value:
        b = self.b
        cond = self.expr(e.cond)
        then = self.fn.append_basic_block("sel.then")
        orelse = self.fn.append_basic_block("sel.else")
        end = self.fn.append_basic_block("sel.end")
        b.cbranch(cond, then, orelse)
        b.position_at_end(then)
        a = self.expr(e.a)
        a_block = b.block
        b.branch(end)
        b.position_at_end(orelse)
        c = self.expr(e.b)
        c_block = b.block
        b.branch(end)
        return merge(b, end, llvm_type(e.type), [(a, a_block), (c, c_block)])

    def call(self, e: kir.Call) -> ir.Value:
        b = self.b
        t = e.type
        ty = llvm_type(t)
        args = [self.expr(a) for a in e.args]
        if e.func == "neg":
            return b.fneg(args[0]) if t.is_float else b.sub(ir.Constant(ty, 0), args[0])
        if e.func == "abs":
            if t.is_float:
                return b.call(declare(self.module, f"llvm.fabs.{ty}", ty, [ty]), args)
            if not t.is_signed:
                return args[0]
            return b.call(declare(self.module, f"llvm.abs.{ty}", ty, [ty, _I1]), [args[0], _I1(0)])
        name = {"sqrt": "sqrt", "exp": "exp", "log": "log", "sin": "sin", "cos": "cos", "tanh": "tanh",
                "floor": "floor", "ceil": "ceil", "fma": "fma"}[e.func]  # fmt: skip
        fn = declare(self.module, f"llvm.{name}.{ty}", ty, [ty] * len(args))
        return b.call(fn, args)

    def _max(self, a: ir.Value, c: ir.Value) -> ir.Value:
        return self.b.select(self.b.icmp_signed(">", a, c), a, c)

    def _min(self, a: ir.Value, c: ir.Value) -> ir.Value:
        return self.b.select(self.b.icmp_signed("<", a, c), a, c)
