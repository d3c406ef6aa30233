"""The ``cpu`` target's code generation: kernel IR -> LLVM IR for the host (see :mod:`.cpu`).

For a kernel ``k`` the module defines:

* ``k`` (exported): the kernel with kernpack's C convention, every array as a pointer followed
  by one ``int64_t`` extent per dimension. It splits the outer grid dimension among
  ``threads`` POSIX threads when the grid is large enough, else runs it on the caller's thread;
* ``k.range`` (internal): the kernel over outer-grid indices ``[lo, hi)``; the part every
  thread runs. Its inner loop is plain, unit-stride code that LLVM's loop vectorizer turns
  into SIMD code;
* ``k.extent`` (internal): the prologue plus the grid's extents, which the launcher needs to
  split the work; ``k.worker`` (internal): the ``pthread_create`` entry;
* ``k.finish`` (internal, for a kernel with statements after its grid): the epilogue. Each
  chunk's ``k.range`` then also fills a state (``lower.state_type``) with the prologue's
  locals and its partial of every reduction; ``k.finish`` combines the partials in chunk
  order and runs the epilogue once, after every thread has joined.

A module of its own so that :mod:`.cpu` (options, stages) imports no llvmlite: a build found in
the compile cache runs without it.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import llvmlite.ir as ir

from ...runtime import abi
from ..lang import kir
from ..lang.types import ArrayType, ScalarType, bool_
from ..lower import KernelBody, abi_types, check_sites, declare, gep, llvm_type, merge, print_sites, state_type

__all__ = ["MIN_PARALLEL_WORK", "lower_kernels"]

#: Grids of straight-line points with fewer points than this run on the calling thread:
#: starting threads costs more. A grid whose points loop is split whenever it has two rows.
MIN_PARALLEL_WORK = 1 << 15

_I1 = ir.IntType(1)
_I8 = ir.IntType(8)
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
        # With bounds checks: the record of the first out-of-range access (abi.CHECK_WORDS),
        # cleared by each call, and the checked accesses of all the kernel's functions.
        self.record: ir.GlobalVariable | None = None
        self.sites: list[tuple[str, int]] = []
        # With print(): the global the runtime stores its printer's address in, and the calls.
        self.printer: ir.GlobalVariable | None = None
        self.print_sites: list[kir.Print] = []
        if kir.prints(kernel):
            self.printer = ir.GlobalVariable(module, _PTR, abi.print_symbols(kernel.name)[0])
            self.printer.initializer = ir.Constant(_PTR, None)
        if kernel.boundscheck:
            record_type = ir.ArrayType(_I32, abi.CHECK_WORDS)
            self.record = ir.GlobalVariable(module, record_type, abi.check_symbols(kernel.name)[0])
            self.record.initializer = ir.Constant(record_type, None)
        # With an epilogue each chunk's range also takes the state it fills for k.finish.
        self.chunk_args = [_I64, _I64, _PTR] if kernel.epilogue else [_I64, _I64]

    def emit(self) -> None:
        name = self.kernel.name
        range_fn = self._function(f"{name}.range", _VOID, [*self.abi, *self.chunk_args], internal=True)
        if self.threads > 1:
            # The launcher calls it from several places (serial path, each chunk, the worker);
            # inlined into each, its vectorized loop was optimized and JIT-compiled 3-4 times
            # over (3x the compile time) to save one call per chunk.
            range_fn.attributes.add("noinline")
        self._body(range_fn).emit_range()
        extent_fn = self._function(f"{name}.extent", _I64, [*self.abi, _PTR], internal=True)
        self._body(extent_fn).emit_extent()
        finish_fn = None
        if self.kernel.epilogue:
            finish_fn = self._function(f"{name}.finish", _VOID, [*self.abi, _PTR, _I64], internal=True)
            self._body(finish_fn).emit_finish()
        worker = self._worker(range_fn)
        launcher = self._launcher(range_fn, extent_fn, worker, finish_fn)
        if self.printer is not None:
            self._text(abi.print_symbols(name)[1], print_sites(self.print_sites))
        if self.record is not None:
            # The runtime reads the record after each call, in the Python path: no native entry.
            self._text(abi.check_symbols(name)[1], check_sites(self.kernel, self.sites))
        else:
            _fast_entry(self.module, self.kernel, launcher)

    def _text(self, symbol: str, table: object) -> None:
        """A table the runtime reads, as NUL-terminated JSON text under ``symbol``."""
        data = json.dumps(table).encode() + b"\0"
        text = ir.GlobalVariable(self.module, ir.ArrayType(_I8, len(data)), symbol)
        text.initializer = ir.Constant(ir.ArrayType(_I8, len(data)), bytearray(data))
        text.global_constant = True

    def _body(self, fn: ir.Function) -> KernelBody:
        """A body for one of the kernel's functions, sharing their bounds-check record and print sites."""
        body = KernelBody(self.module, fn, self.kernel)
        body.check_record = self.record
        body.sites = self.sites
        body.printer = self.printer
        body.print_sites = self.print_sites
        return body

    def _function(self, name: str, ret: ir.Type, args: list[ir.Type], internal: bool) -> ir.Function:
        fn = ir.Function(self.module, ir.FunctionType(ret, args), name=name)
        if internal:
            fn.linkage = "internal"
        fn.attributes.add("nounwind")
        return fn

    def _closure_type(self) -> ir.LiteralStructType:
        return ir.LiteralStructType([*self.abi, *self.chunk_args])

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

    def _launcher(
        self, range_fn: ir.Function, extent_fn: ir.Function, worker: ir.Function, finish_fn: ir.Function | None
    ) -> ir.Function:
        fn = self._function(self.kernel.name, _VOID, self.abi, internal=False)
        params = list(fn.args)
        for arg, name in zip(params, _arg_names(self.kernel), strict=True):
            arg.name = name
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        serial = fn.append_basic_block("serial")
        if self.record is not None:
            b.store(_I32(0), gep(b, self.record, [_I32(0), _I32(0)], self.record.value_type))
        t = self.threads
        states = b.alloca(state_type(self.kernel), size=_I32(t), name="states") if finish_fn else None

        def run(lo: ir.Value, hi: ir.Value, chunk: int) -> None:
            """Chunk ``chunk``'s range, on this thread."""
            state = [gep(b, states, [_I32(chunk)], state_type(self.kernel))] if states is not None else []
            b.call(range_fn, [*params, lo, hi, *state])

        def finish(chunks: int) -> None:
            if finish_fn is not None:
                b.call(finish_fn, [*params, states, _I64(chunks)])
            b.ret_void()

        if t == 1:
            b.branch(serial)
            b.position_at_end(serial)
            run(_I64(0), _I64(2**63 - 1), 0)
            finish(1)
            return fn
        outer = b.alloca(_I64, name="outer")
        work = b.call(extent_fn, [*params, outer])
        n0 = b.load(outer, typ=_I64)
        parallel = fn.append_basic_block("parallel")
        threshold = 2 if _has_loop(self.kernel.grid.body) else MIN_PARALLEL_WORK
        big = b.and_(b.icmp_signed(">=", work, _I64(threshold)), b.icmp_signed(">", n0, _I64(1)))
        b.cbranch(big, parallel, serial)
        b.position_at_end(serial)
        run(_I64(0), _I64(2**63 - 1), 0)
        finish(1)

        b.position_at_end(parallel)
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
            state = [gep(b, states, [_I32(k)], state_type(self.kernel))] if states is not None else []
            for index, value in enumerate([*params, lo, hi, *state]):
                b.store(value, gep(b, closures, [_I32(k), _I32(index)], closure))
            tid = gep(b, tids, [_I32(k)], _I64)
            rc = b.call(pthread_create, [tid, ir.Constant(_PTR, None), worker, slot])
            ok = b.icmp_signed("==", rc, _I32(0))
            b.store(ok, gep(b, started, [_I32(k)], _I1))
            # A thread that could not start: its chunk runs here instead.
            with b.if_then(b.not_(ok)):
                run(lo, hi, k)
        run(_I64(0), chunk, 0)
        for k in range(1, t):
            ok = b.load(gep(b, started, [_I32(k)], _I1), typ=_I1)
            with b.if_then(ok):
                tid = b.load(gep(b, tids, [_I32(k)], _I64), typ=_I64)
                b.call(pthread_join, [tid, ir.Constant(_PTR, None)])
        finish(t)
        return fn


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


# ------------------------------------------------------------------------------ native entry point
def _fast_entry(module: ir.Module, kernel: kir.Kernel, launcher: ir.Function) -> None:
    """``<k>.kp.fast``: a CPython METH_FASTCALL function that checks and calls the kernel.

    Each argument is taken only in its exact fast form (see :mod:`kernpack.runtime.fastcall`):
    an ``ndarray`` of exactly the dtype object, rank, C-contiguous (and writeable for an
    output); a Python float, int, bool, or a numpy scalar of exactly the parameter's type, an
    int in range. Anything else, a wrong count or keywords, calls ``self`` (the Python call path)
    with the same arguments, which converts or raises its usual ArgumentError. The GIL is released
    around the kernel, as cffi does. Python is reached only through the table.
    """
    fast_name, def_name, table_name = abi.fast_symbols(kernel.name)
    slots = {name: i for i, name in enumerate(abi.FAST_TABLE)}
    table_type = ir.ArrayType(_PTR, len(abi.FAST_TABLE) + len(kernel.params))
    table = ir.GlobalVariable(module, table_type, table_name)
    table.initializer = ir.Constant(table_type, None)
    # METH_FASTCALL | METH_KEYWORDS: (self, args, nargs, kwnames); a call with keywords is the
    # Python path's, which binds them by name.
    fn = ir.Function(module, ir.FunctionType(_PTR, [_PTR, _PTR, _I64, _PTR]), fast_name)
    fn.linkage = "internal"
    self_, args, nargs, kwnames = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    fallback = fn.append_basic_block("fallback")

    def slot(index: int, typ: ir.Type = _PTR) -> ir.Value:
        return b.load(b.gep(table, [_I32(0), _I32(index)], source_etype=table_type), typ=typ)

    def at(obj: ir.Value, offset: int, typ: ir.Type) -> ir.Value:
        return b.load(b.gep(obj, [_I64(offset)], source_etype=_I8), typ=typ)

    def require(ok: ir.Value) -> None:
        passed = fn.append_basic_block("ok")
        b.cbranch(ok, passed, fallback)
        b.position_at_end(passed)

    def call(name: str, ret: ir.Type, argtypes: list[ir.Type], values: list[ir.Value]) -> ir.Value:
        return b.call(slot(slots[name], ir.PointerType(ir.FunctionType(ret, argtypes))), values)

    require(b.icmp_unsigned("==", kwnames, ir.Constant(_PTR, None)))
    require(b.icmp_signed("==", nargs, _I64(len(kernel.params))))
    values: list[ir.Value] = []
    for index, (name, t) in enumerate(kernel.params):
        obj = b.load(b.gep(args, [_I64(index)], source_etype=_PTR), typ=_PTR)
        expected = slot(len(abi.FAST_TABLE) + index)  # the dtype object, or the numpy scalar type
        kind = at(obj, abi.OBJECT_TYPE, _PTR)
        if isinstance(t, ArrayType):
            require(b.icmp_unsigned("==", kind, slot(slots["ndarray_type"])))
            require(b.icmp_unsigned("==", at(obj, abi.ARRAY_DESCR, _PTR), expected))
            require(b.icmp_signed("==", at(obj, abi.ARRAY_NDIM, _I32), _I32(t.ndim)))
            need = abi.ARRAY_C_CONTIGUOUS | (abi.ARRAY_WRITEABLE if name in kernel.written else 0)
            flags = at(obj, abi.ARRAY_FLAGS, _I32)
            require(b.icmp_unsigned("==", b.and_(flags, _I32(need)), _I32(need)))
            values.append(at(obj, abi.ARRAY_DATA, _PTR))
            dims = at(obj, abi.ARRAY_DIMENSIONS, _PTR)
            values.extend(b.load(b.gep(dims, [_I64(d)], source_etype=_I64), typ=_I64) for d in range(t.ndim))
        else:
            values.append(_scalar(b, fn, obj, kind, expected, t, slot, slots, call, fallback))
    state = call("save_thread", _PTR, [], [])
    b.call(launcher, values)
    call("restore_thread", _VOID, [_PTR], [state])
    none = slot(slots["none"])
    call("incref", _VOID, [_PTR], [none])
    b.ret(none)

    b.position_at_end(fallback)
    b.ret(call("vectorcall", _PTR, [_PTR, _PTR, _I64, _PTR], [self_, args, nargs, kwnames]))

    method = ir.LiteralStructType([_PTR, _PTR, _I32, _PTR])  # PyMethodDef: name, function, flags, doc
    label = bytearray(kernel.name.encode() + b"\0")
    name_global = ir.GlobalVariable(module, ir.ArrayType(_I8, len(label)), f"{kernel.name}.kp.name")
    name_global.initializer = ir.Constant(ir.ArrayType(_I8, len(label)), label)
    name_global.linkage, name_global.global_constant = "internal", True
    definition = ir.GlobalVariable(module, method, def_name)
    definition.initializer = ir.Constant(
        method, [name_global, fn, _I32(abi.METH_FASTCALL | abi.METH_KEYWORDS), ir.Constant(_PTR, None)]
    )


def _scalar(
    b: ir.IRBuilder,
    fn: ir.Function,
    obj: ir.Value,
    kind: ir.Value,
    expected: ir.Value,
    t: ScalarType,
    slot: Callable[..., ir.Value],
    slots: dict[str, int],
    call: Callable[..., ir.Value],
    fallback: ir.Block,
) -> ir.Value:
    """The value of a scalar argument in its fast forms, else a branch to ``fallback``."""
    value_type = llvm_type(t)
    done = fn.append_basic_block("scalar.done")
    numpy_scalar = fn.append_basic_block("scalar.numpy")
    results: list[tuple[ir.Value, ir.Block]] = []
    if t is bool_:
        is_true = b.icmp_unsigned("==", obj, slot(slots["true"]))
        is_false = b.icmp_unsigned("==", obj, slot(slots["false"]))
        python = fn.append_basic_block("scalar.python")
        b.cbranch(b.or_(is_true, is_false), python, numpy_scalar)
        b.position_at_end(python)
        results.append((is_true, b.block))
        b.branch(done)
    elif t.is_float:
        python = fn.append_basic_block("scalar.python")
        b.cbranch(b.icmp_unsigned("==", kind, slot(slots["float_type"])), python, numpy_scalar)
        b.position_at_end(python)
        wide = b.load(b.gep(obj, [_I64(abi.SCALAR_VALUE)], source_etype=_I8), typ=ir.DoubleType())
        results.append((b.fptrunc(wide, value_type) if t.bits == 32 else wide, b.block))
        b.branch(done)
    else:
        python = fn.append_basic_block("scalar.python")
        b.cbranch(b.icmp_unsigned("==", kind, slot(slots["long_type"])), python, numpy_scalar)
        b.position_at_end(python)
        wide = call("long_as_long_long", _I64, [_PTR], [obj])
        failed = fn.append_basic_block("scalar.failed")
        check = fn.append_basic_block("scalar.range")
        b.cbranch(b.icmp_signed("==", wide, _I64(-1)), failed, check)
        b.position_at_end(failed)  # -1, or an error (too large): the Python path says which
        error = call("err_occurred", _PTR, [], [])
        cleared = fn.append_basic_block("scalar.cleared")
        b.cbranch(b.icmp_unsigned("!=", error, ir.Constant(_PTR, None)), cleared, check)
        b.position_at_end(cleared)
        call("err_clear", _VOID, [], [])
        b.branch(fallback)
        b.position_at_end(check)
        low, high = (0, 2**t.bits - 1) if t.kind == "u" else (-(2 ** (t.bits - 1)), 2 ** (t.bits - 1) - 1)
        high = min(high, 2**63 - 1)
        fits = b.and_(b.icmp_signed(">=", wide, _I64(low)), b.icmp_signed("<=", wide, _I64(high)))
        inside = fn.append_basic_block("scalar.inside")
        b.cbranch(fits, inside, fallback)
        b.position_at_end(inside)
        results.append((b.trunc(wide, value_type) if t.bits < 64 else wide, b.block))
        b.branch(done)
    # A numpy scalar of exactly the parameter's type: its value, at a fixed offset.
    b.position_at_end(numpy_scalar)
    exact = fn.append_basic_block("scalar.exact")
    b.cbranch(b.icmp_unsigned("==", kind, expected), exact, fallback)
    b.position_at_end(exact)
    stored = b.load(b.gep(obj, [_I64(abi.SCALAR_VALUE)], source_etype=_I8), typ=_I8 if t is bool_ else value_type)
    results.append((b.icmp_unsigned("!=", stored, _I8(0)) if t is bool_ else stored, b.block))
    b.branch(done)
    return merge(b, done, value_type, results)
