"""Apache TVM 0.27 peer measurements for the kernpack benchmarks.

Run with the peer venv's python (``PY=$(benchmarks/peers/setup_tvm.sh | tail -n1)``)::

    $PY benchmarks/peers/tvm_peer.py export-vadd OUT.so
    $PY benchmarks/peers/tvm_peer.py cold-call LIB.so FUNC N
    $PY benchmarks/peers/tvm_peer.py export-const OUT.so MIB
    $PY benchmarks/peers/tvm_peer.py load-const LIB.so
    $PY benchmarks/peers/tvm_peer.py load-sweep DIR RUNS BYTES...
    $PY benchmarks/peers/tvm_peer.py load-count DIR RUNS COUNTS...
    $PY benchmarks/peers/tvm_peer.py compile vadd|saxpy REPEAT [--parallel]

Every subcommand prints one JSON object on its last stdout line; a failed check exits non-zero.

- ``export-vadd``: TE float32 ``c[i] = a[i] + b[i]`` over a symbolic length, ``tvm.compile`` for "llvm", then
  ``export_library``. ``seconds`` = compile + export (``build_s`` / ``export_library_s`` split it).
- ``cold-call``: what a cold process does: ``import tvm_ffi`` (``import_s``, which includes numpy, that tvm_ffi
  imports itself), ``tvm_ffi.load_module`` + function lookup (``load_s``), one call on numpy arrays passed via
  ``tvm_ffi.from_dlpack`` (``call_s``), then a correctness check. No TVM compiler module is imported.
- ``export-const``: a Relax ``main(x) = x + C`` with ``C`` a baked-in float32 constant of MIB MiB, compiled with
  ``tvm.compile``; times only ``exe.export_library`` (3 runs, each to a fresh file) and checks the .so holds C.
- ``load-const``: ``tvm_ffi.load_module`` of such a library, each of 5 runs in a fresh subprocess. A Relax VM
  library needs the loader registered by libtvm_runtime.so, so the child first dlopens that (untimed) without
  importing the ``tvm`` Python package; after timing it runs ``main`` once to check the constant.
- ``load-sweep``: for each payload size in bytes, a library as ``export-const`` makes, loaded as ``load-const``
  does in RUNS fresh processes; the median, min and max load times per size.
- ``load-count``: for each module count N, a library of N binary-serialized modules (a VM executable importing
  N - 1 more, each deserialized when the library loads), its load time and its load + first call (the VM made,
  ``main`` run once), in RUNS fresh processes: median, min and max of each.
- ``compile``: from nothing to a first call, ``REPEAT`` times plus one untimed warm-up, each time a new kernel (so
  nothing is cached): define the TE compute over a symbolic length (``define_s``), ``create_prim_func`` (with
  ``--parallel``, a schedule that marks the loop parallel), ``tvm.compile`` for "llvm" (``compile_s``), look the
  function up, which JITs the machine code (``lookup_s``), and call it once on 16 floats (``call_s``).
  ``runs`` holds each run's steps, ``first`` the warm-up's, ``total_s_median`` the median of the runs' sums.
  Kernels: ``vadd`` is ``c[i] = a[i] + b[i]``, ``saxpy`` is ``out[i] = alpha * x[i] + y[i]``, float32, ``alpha``
  a scalar parameter.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any


def _emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def _const_pattern(n: int) -> Any:
    import numpy as np

    return (np.arange(n, dtype=np.int64) % 1024).astype(np.float32)


def export_vadd(out: str) -> dict[str, Any]:
    import tvm
    from tvm import te

    t0 = time.perf_counter()
    n = te.var("n")
    a = te.placeholder((n,), "float32", name="a")
    b = te.placeholder((n,), "float32", name="b")
    c = te.compute((n,), lambda i: a[i] + b[i], name="c")
    func = te.create_prim_func([a, b, c]).with_attr("global_symbol", "vadd")
    exe = tvm.compile(tvm.IRModule({"vadd": func}), target="llvm")
    t1 = time.perf_counter()
    exe.export_library(out)
    t2 = time.perf_counter()
    return {
        "path": os.path.abspath(out),
        "function": "vadd",
        "seconds": t2 - t0,
        "build_s": t1 - t0,
        "export_library_s": t2 - t1,
    }


def cold_call(lib: str, func: str, n: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        import tvm_ffi

        load = tvm_ffi.load_module
        wrap = tvm_ffi.from_dlpack
    except ImportError:  # pragma: no cover - tvm_ffi ships with apache-tvm 0.27
        import tvm

        load = tvm.runtime.load_module
        wrap = tvm.runtime.from_dlpack
    t1 = time.perf_counter()
    fn = load(lib)[func]
    t2 = time.perf_counter()
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.random(n, dtype=np.float32)
    b = rng.random(n, dtype=np.float32)
    c = np.zeros(n, dtype=np.float32)
    t3 = time.perf_counter()
    fn(wrap(a), wrap(b), wrap(c))
    t4 = time.perf_counter()
    ok = bool(np.array_equal(c, a + b))
    return {"ok": ok, "import_s": t1 - t0, "load_s": t2 - t1, "call_s": t4 - t3}


def _const_executable(n: int) -> Any:
    """A Relax VM executable of ``main(x) = x + C``, ``C`` a float32 constant of ``n`` elements."""
    import tvm
    from tvm import relax

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((n,), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit_output(bb.emit(relax.op.add(x, relax.const(_const_pattern(n)))))
        bb.emit_func_output(y)
    with bb.function("const_shape", []):  # lets load-const check main() without knowing MIB
        bb.emit_func_output(relax.ShapeExpr([n]))
    return tvm.compile(bb.get(), target="llvm")


def export_const(out: str, mib: int, nbytes: int | None = None, reps: int = 3) -> dict[str, Any]:
    n = max(1, (nbytes if nbytes is not None else mib * (1 << 20)) // 4)
    exe = _const_executable(n)
    times = []
    for _ in range(reps):
        if os.path.exists(out):
            os.remove(out)
        t0 = time.perf_counter()
        exe.export_library(out)
        times.append(time.perf_counter() - t0)
    size = os.path.getsize(out)
    return {
        "ok": size >= 4 * n,
        "export_s_median": statistics.median(times),
        "export_s_all": times,
        "so_bytes": size,
    }


def _te_kernel(kernel: str) -> list[Any]:
    """The TE arguments (scalars, inputs, output last) of ``kernel``, with a fresh symbolic length."""
    from tvm import te

    n = te.var("n", "int64")
    a = te.placeholder((n,), "float32", name="a")
    b = te.placeholder((n,), "float32", name="b")
    if kernel == "vadd":
        return [a, b, te.compute((n,), lambda i: a[i] + b[i], name="out")]
    alpha = te.var("alpha", "float32")
    return [alpha, a, b, te.compute((n,), lambda i: alpha * a[i] + b[i], name="out")]


def compile_kernel(kernel: str, repeat: int, parallel: bool) -> dict[str, Any]:
    import numpy as np
    import tvm
    from tvm import te

    def once() -> tuple[dict[str, float], bool]:
        t0 = time.perf_counter()
        args = _te_kernel(kernel)
        func = te.create_prim_func(args).with_attr("global_symbol", kernel)
        if parallel:  # what kernpack's kp.grid does with threads > 1
            from tvm import s_tir

            sch = s_tir.Schedule(func)
            sch.parallel(sch.get_loops(sch.get_sblock("out"))[0])
            mod = sch.mod
        else:
            mod = tvm.IRModule({kernel: func})
        t1 = time.perf_counter()
        exe = tvm.compile(mod, target="llvm")
        t2 = time.perf_counter()
        fn = exe[kernel]
        t3 = time.perf_counter()
        # tvm.runtime.tensor copies: from_dlpack wants 64-byte aligned data, numpy gives 16.
        arrays = [tvm.runtime.tensor(np.full(16, 1.5, np.float32)) for _ in range(3)]
        scalars = [2.0] if kernel == "saxpy" else []
        t4 = time.perf_counter()
        fn(*scalars, *arrays)
        t5 = time.perf_counter()
        want = 4.5 if kernel == "saxpy" else 3.0
        ok = bool(np.all(arrays[2].numpy() == want))
        parts = {"define_s": t1 - t0, "compile_s": t2 - t1, "lookup_s": t3 - t2, "call_s": t5 - t4}
        return parts, ok

    first, ok = once()
    runs = []
    for _ in range(repeat):
        parts, good = once()
        runs.append(parts)
        ok = ok and good
    return {
        "ok": ok,
        "kernel": kernel,
        "parallel": parallel,
        "tvm": tvm.__version__,
        "total_s_median": statistics.median(sum(r.values()) for r in runs),
        "first": first,
        "runs": runs,
    }


def export_count(out: str, count: int) -> dict[str, Any]:
    """A library of ``count`` binary-serialized modules: a VM executable importing ``count - 1`` more.

    The first is ``export-const``'s executable with 16 floats (its compiled kernel beside it);
    each other is a VM executable of its own, without its kernel's code (every copy of that
    code defines the same symbol), which TVM deserializes when it loads the library, as it does
    every module a library carries.
    """
    host = _const_executable(16)
    for _ in range(count - 1):
        extra = _const_executable(16).mod
        extra.clear_imports()
        host.mod.import_module(extra)
    host.export_library(out)
    return {"so_bytes": os.path.getsize(out)}


def load_count(directory: str, counts: list[int], runs: int) -> dict[str, Any]:
    """For each module count: a library as ``export_count`` makes, its load and load + first call, fresh processes."""
    out: dict[str, Any] = {"counts": counts, "so_bytes": []}
    for key in ("load", "first_call"):
        out[key] = {"median": [], "min": [], "max": []}
    for count in counts:
        lib = os.path.join(directory, f"tvm_count_{count}.so")
        out["so_bytes"].append(export_count(lib, count)["so_bytes"])
        samples = [_load_fresh(lib, 16) for _ in range(runs)]
        os.remove(lib)
        assert all(s["ok"] and s["modules"] == count + 1 for s in samples), samples  # and the kernel's code
        for key, values in (("load", [s["load_s"] for s in samples]),
                            ("first_call", [s["load_s"] + s["first_call_s"] for s in samples])):  # fmt: skip
            out[key]["median"].append(statistics.median(values))
            out[key]["min"].append(min(values))
            out[key]["max"].append(max(values))
    return out


def _load_fresh(lib: str, length: int | None = None) -> dict[str, Any]:
    """``load_one`` in a fresh process."""
    argv = [sys.executable, os.path.abspath(__file__), "_load-one", lib, *([str(length)] if length else [])]
    proc = subprocess.run(argv, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def load_one(lib: str, length: int | None = None) -> dict[str, Any]:
    """Load ``lib`` (timed), then run its ``main`` once: timed as the first call where ``length`` is given."""
    import ctypes
    import importlib.util

    import numpy as np
    import tvm_ffi

    spec = importlib.util.find_spec("tvm")  # locates the package without importing it
    assert spec is not None and spec.submodule_search_locations
    ctypes.CDLL(os.path.join(spec.submodule_search_locations[0], "lib", "libtvm_runtime.so"), ctypes.RTLD_GLOBAL)
    zeros = None if length is None else tvm_ffi.from_dlpack(np.zeros(length, dtype=np.float32))
    t0 = time.perf_counter()
    mod = tvm_ffi.load_module(lib)
    t1 = time.perf_counter()
    vm = mod["vm_load_executable"]()
    vm["vm_initialization"](1, 0, 2)  # kDLCPU, device 0, pooled allocator
    if zeros is None:  # the constant's length from the library itself
        zeros = tvm_ffi.from_dlpack(np.zeros(int(vm["const_shape"]()[0]), dtype=np.float32))
    got = np.from_dlpack(vm["main"](zeros))
    t2 = time.perf_counter()
    return {"ok": bool(np.array_equal(got, _const_pattern(got.size))), "load_s": t1 - t0,
            "first_call_s": t2 - t1, "modules": _count_modules(mod)}  # fmt: skip


def _count_modules(mod: Any) -> int:
    return 1 + sum(_count_modules(m) for m in mod.imports)


def load_const(lib: str, runs: int = 5) -> dict[str, Any]:
    times = [_load_fresh(lib)["load_s"] for _ in range(runs)]
    return {"load_s_median": statistics.median(times), "load_s_all": times}


def load_sweep(directory: str, sizes: list[int], runs: int) -> dict[str, Any]:
    """For each payload size in bytes: a library carrying that constant, and its load times (fresh processes)."""
    out: dict[str, Any] = {"sizes": sizes, "median": [], "min": [], "max": [], "so_bytes": []}
    for size in sizes:
        lib = os.path.join(directory, f"tvm_sweep_{size}.so")
        out["so_bytes"].append(export_const(lib, 0, nbytes=size, reps=1)["so_bytes"])
        times = load_const(lib, runs)["load_s_all"]
        os.remove(lib)
        out["median"].append(statistics.median(times))
        out["min"].append(min(times))
        out["max"].append(max(times))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("export-vadd").add_argument("out")
    p = sub.add_parser("cold-call")
    p.add_argument("lib")
    p.add_argument("func")
    p.add_argument("n", type=int)
    p = sub.add_parser("export-const")
    p.add_argument("out")
    p.add_argument("mib", type=int)
    sub.add_parser("load-const").add_argument("lib")
    p = sub.add_parser("load-sweep")
    p.add_argument("directory")
    p.add_argument("runs", type=int)
    p.add_argument("sizes", type=int, nargs="+")
    p = sub.add_parser("load-count")
    p.add_argument("directory")
    p.add_argument("runs", type=int)
    p.add_argument("counts", type=int, nargs="+")
    p = sub.add_parser("_load-one")
    p.add_argument("lib")
    p.add_argument("length", type=int, nargs="?")
    p = sub.add_parser("compile")
    p.add_argument("kernel", choices=["vadd", "saxpy"])
    p.add_argument("repeat", type=int)
    p.add_argument("--parallel", action="store_true")
    args = parser.parse_args()
    if args.cmd == "export-vadd":
        result = export_vadd(args.out)
    elif args.cmd == "cold-call":
        result = cold_call(args.lib, args.func, args.n)
    elif args.cmd == "export-const":
        result = export_const(args.out, args.mib)
    elif args.cmd == "load-const":
        result = load_const(args.lib)
    elif args.cmd == "load-sweep":
        result = load_sweep(args.directory, args.sizes, args.runs)
    elif args.cmd == "load-count":
        result = load_count(args.directory, args.counts, args.runs)
    elif args.cmd == "compile":
        result = compile_kernel(args.kernel, args.repeat, args.parallel)
    else:
        result = load_one(args.lib, args.length)
    _emit(result)
    sys.exit(0 if result.get("ok", True) else 1)


if __name__ == "__main__":
    main()
