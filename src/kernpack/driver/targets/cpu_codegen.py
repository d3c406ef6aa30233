"""The ``cpu`` target's code generation: kernel IR -> LLVM IR for the host (see :mod:`.cpu`).

For a kernel ``k`` the module defines:

* ``k`` (exported): the kernel with kernpack's C convention, every array as a pointer followed
  by one ``int64_t`` extent per dimension. It splits the outer grid dimension among
  ``threads`` POSIX threads when the grid is large enough, else runs it on the caller's thread;
* ``k.range`` (internal): the kernel over outer-grid indices ``[lo, hi)``; the part every
  thread runs. Its inner loop is plain, unit-stride code that LLVM's loop vectorizer turns
  into SIMD code;
* ``k.extent`` (internal): the prologue plus the grid's extents, which the launcher needs to
  split the work; ``k.worker`` (internal): the ``pthread_create`` entry.

A module of its own so that :mod:`.cpu` (options, stages) imports no llvmlite: a build found in
the compile cache runs without it.
"""

from __future__ import annotations

import llvmlite.ir as ir

from ..lang import kir
from ..lang.types import ArrayType
from ..lower import KernelBody, abi_types, declare, gep

__all__ = ["MIN_PARALLEL_WORK", "lower_kernels"]

#: Grids of straight-line points with fewer points than this run on the calling thread:
#: starting threads costs more. A grid whose points loop is split whenever it has two rows.
MIN_PARALLEL_WORK = 1 << 15

_I1 = ir.IntType(1)
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_PTR = ir.PointerType()
_VOID = ir.VoidType()


def lower_kernels(kernels: list[kir.Kernel], module_name: str, threads: int) -> ir.Module:
    """Build one LLVM module defining every kernel (see the module docstring)."""
    module = ir.Module(name=module_name)
    for kernel in kernels:
        _KernelCodegen(module, kernel, threads).emit()
    return module


class _KernelCodegen:
    def __init__(self, module: ir.Module, kernel: kir.Kernel, threads: int) -> None:
        self.module = module
        self.kernel = kernel
        self.threads = max(1, threads)
        self.abi = abi_types(kernel)

    def emit(self) -> None:
        name = self.kernel.name
        range_fn = self._function(f"{name}.range", _VOID, [*self.abi, _I64, _I64], internal=True)
        if self.threads > 1:
            # The launcher calls it from several places (serial path, each chunk, the worker);
            # inlined into each, its vectorized loop was optimized and JIT-compiled 3-4 times
            # over (3x the compile time) to save one call per chunk.
            range_fn.attributes.add("noinline")
        KernelBody(self.module, range_fn, self.kernel).emit_range()
        extent_fn = self._function(f"{name}.extent", _I64, [*self.abi, _PTR], internal=True)
        KernelBody(self.module, extent_fn, self.kernel).emit_extent()
        worker = self._worker(range_fn)
        self._launcher(range_fn, extent_fn, worker)

    def _function(self, name: str, ret: ir.Type, args: list[ir.Type], internal: bool) -> ir.Function:
        fn = ir.Function(self.module, ir.FunctionType(ret, args), name=name)
        if internal:
            fn.linkage = "internal"
        fn.attributes.add("nounwind")
        return fn

    def _closure_type(self) -> ir.LiteralStructType:
        return ir.LiteralStructType([*self.abi, _I64, _I64])

    def _worker(self, range_fn: ir.Function) -> ir.Function:
        worker = self._function(f"{self.kernel.name}.worker", _PTR, [_PTR], internal=True)
        b = ir.IRBuilder(worker.append_basic_block("entry"))
        closure = self._closure_type()
        fields = closure.elements
        args = [
            b.load(b.gep(worker.args[0], [_I32(0), _I32(k)], source_etype=closure), typ=fields[k])
            for k in range(len(fields))
        ]
        b.call(range_fn, args)
        b.ret(ir.Constant(_PTR, None))
        return worker

    def _launcher(self, range_fn: ir.Function, extent_fn: ir.Function, worker: ir.Function) -> None:
        fn = self._function(self.kernel.name, _VOID, self.abi, internal=False)
        params = list(fn.args)
        for arg, name in zip(params, _arg_names(self.kernel), strict=True):
            arg.name = name
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        serial = fn.append_basic_block("serial")
        if self.threads == 1:
            b.branch(serial)
            b.position_at_end(serial)
            b.call(range_fn, [*params, _I64(0), _I64(2**63 - 1)])
            b.ret_void()
            return
        outer = b.alloca(_I64, name="outer")
        work = b.call(extent_fn, [*params, outer])
        n0 = b.load(outer, typ=_I64)
        parallel = fn.append_basic_block("parallel")
        threshold = 2 if _has_loop(self.kernel.grid.body) else MIN_PARALLEL_WORK
        big = b.and_(b.icmp_signed(">=", work, _I64(threshold)), b.icmp_signed(">", n0, _I64(1)))
        b.cbranch(big, parallel, serial)
        b.position_at_end(serial)
        b.call(range_fn, [*params, _I64(0), _I64(2**63 - 1)])
        b.ret_void()

        b.position_at_end(parallel)
        t = self.threads
        closure = self._closure_type()
        closures = b.alloca(closure, size=_I32(t), name="closures")
        tids = b.alloca(_I64, size=_I32(t), name="tids")
        started = b.alloca(_I1, size=_I32(t), name="started")
        chunk = b.sdiv(b.add(n0, _I64(t - 1)), _I64(t))
        pthread_create = declare(self.module, "pthread_create", _I32, [_PTR, _PTR, _PTR, _PTR])
        pthread_join = declare(self.module, "pthread_join", _I32, [_I64, _PTR])
        for k in range(1, t):
            lo = b.mul(chunk, _I64(k))
            hi = b.add(lo, chunk)
            slot = gep(b, closures, [_I32(k)], closure)
            for index, value in enumerate([*params, lo, hi]):
                b.store(value, gep(b, closures, [_I32(k), _I32(index)], closure))
            tid = gep(b, tids, [_I32(k)], _I64)
            rc = b.call(pthread_create, [tid, ir.Constant(_PTR, None), worker, slot])
            ok = b.icmp_signed("==", rc, _I32(0))
            b.store(ok, gep(b, started, [_I32(k)], _I1))
            # A thread that could not start: its chunk runs here instead.
            with b.if_then(b.not_(ok)):
                b.call(range_fn, [*params, lo, hi])
        b.call(range_fn, [*params, _I64(0), chunk])
        for k in range(1, t):
            ok = b.load(gep(b, started, [_I32(k)], _I1), typ=_I1)
            with b.if_then(ok):
                tid = b.load(gep(b, tids, [_I32(k)], _I64), typ=_I64)
                b.call(pthread_join, [tid, ir.Constant(_PTR, None)])
        b.ret_void()


def _has_loop(stmts: list[kir.Stmt]) -> bool:
    """True if the statements contain a serial loop (so each grid point does real work)."""
    return any(isinstance(s, (kir.ForRange, kir.While)) for s in kir.walk(stmts))


def _arg_names(kernel: kir.Kernel) -> list[str]:
    names: list[str] = []
    for name, t in kernel.params:
        names.append(name)
        if isinstance(t, ArrayType):
            names.extend(f"{name}.shape{d}" for d in range(t.ndim))
    return names
