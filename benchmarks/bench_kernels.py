"""Kernels written in the kernpack kernel language, beside numpy doing the same work, in one run.

Run: ``.venv/bin/python benchmarks/bench_kernels.py [--quick] [--no-tvm]`` (``--quick``: vectors of
10**6 instead of 10**7 and fewer samples, for a smoke test; ``--no-tvm``: leave out the Apache TVM
rows). Writes ``results/kernels.{json,md,png}``.
Every figure is a median over repeated runs in this one process, after warm-up runs; the runs
of kernpack and of its baseline alternate in rounds (see ``medians``), so that other work on
the machine slows both alike.

* **vadd**: ``out[i] = a[i] + b[i]`` over float32 vectors of 10**7, built with
  ``kp.build([vadd], threads=1)`` and with ``threads=2``, against ``np.add(a, b, out=c)``
  (numpy runs elementwise ufuncs on one thread).
* **saxpy over n**: one call at a time at n = 10**3 .. 10**7, beside numpy, numba's parallel
  loop, Warp and Taichi on the CPU: ``results/kernels_curves.png``.
* **saxpy**: ``out[i] = alpha * x[i] + y[i]`` over float32 vectors of 10**7, 1 and 2 threads,
  against the faster of two numpy forms that write into preallocated memory:
  ``np.multiply(x, alpha, out=out); np.add(out, y, out=out)`` and the same through a
  preallocated temporary.
* **matmul**: 512x512 float32 ``C = A @ B``. Three kernpack forms, each built with
  ``threads=1`` and ``threads=2``: a 2-D grid over (i, j) with a serial dot product over k; a
  1-D grid over rows i that zeroes row i and then runs
  ``for k: a_ik = A[i, k]; for j: C[i, j] += a_ik * B[k, j]`` (the inner loop is contiguous in
  B and C, so it vectorizes); and the same over blocks of 4 rows, so that each load of
  ``B[k, j]`` feeds four rows. The row shows the fastest of the six and names it; all six are
  in the JSON. (kernpack runs a grid of fewer than 32768 points on the calling thread whatever
  ``threads`` says, so the two row forms, grids of 512 and 128 points, run serially even when
  built with ``threads=2``.) The baseline is ``np.matmul(A, B, out=C)`` (OpenBLAS, all cores),
  measured twice: in this process with the environment as it is, and in a child process
  without ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` (set on some machines because old
  OpenBLAS builds crash on their CPU; they slow a current OpenBLAS). The faster of the two is
  the baseline; both are in the JSON.
* **reductions**: a dot product of two float32 vectors of 2**20 (``acc += x[i] * y[i]`` over
  the grid, then ``out[0] = acc``), built with ``threads=1`` and ``threads=2``, against
  ``np.dot(x, y)`` (BLAS's sdot); and the largest element of one (``top = max(top, x[i])``,
  2 threads) against ``np.max(x)``.
* **boundscheck**: what checking every index costs: saxpy (10**7, 2 threads), the dot product
  (2**20, 2 threads) and the row-form matmul (512, 1 thread), each built with
  ``boundscheck=True`` against the same kernel built without checks.
* **compile**: vadd and saxpy from source to their first call with nothing cached, beside
  Warp (CPU; a new module each time, its kernel cache empty) and Taichi (``ti.cpu``, offline
  cache off) for saxpy, from their peer venvs when present, and Apache TVM 0.27 compiling the
  same kernel for "llvm": the median of 9 runs (``--quick``: 3),
  each a new kernel, taken in 3 rounds that alternate kernpack and TVM, after a warm-up run
  (one per TVM process). kernpack: ``kp.kernel`` on the same Python function again
  (front end), ``kp.build([k], cpu="generic", cache=False)``, the function lookup (the JIT)
  and one call on 16 floats. TVM (``peers/tvm_peer.py compile``, in ``benchmarks/.venv-tvm``,
  made by ``peers/setup_tvm.sh``): a TE compute over a symbolic length, ``create_prim_func``,
  ``tvm.compile(..., target="llvm")`` (generic CPU, as kernpack's ``cpu="generic"``), the
  lookup (its JIT) and one call. kernpack with ``threads=1`` faces TVM's plain serial loop;
  with ``threads=2`` (grid code that splits across threads) a TVM schedule with the loop marked
  parallel. Both processes are warm (imports, LLVM initialised); each side's first run is in
  the JSON, as is the split of each median into its steps. Without the TVM venv those rows are
  left out (with a line saying how to make it).

The JSON also holds the compile time of each kernel: its first call (which JITs it for the host
CPU; the first kernel's also pays for initialising LLVM, and kernpack's on-disk compile cache
serves it when an earlier run compiled the same kernel) and ``kp.build([k], cache=False)`` plus
a first call (always a real compile); the time of each ``kp.build`` the rows use; the BLAS that
threadpoolctl reports for numpy (when threadpoolctl is installed); the CPU count; and the load
average before and after, since other work on the machine skews the figures.
"""

# No ``from __future__ import annotations`` here: the kernels' parameter annotations
# (``kp.f32[:]``) are meant to be evaluated, as in user code.

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import kernpack as kp  # noqa: E402
from benchmarks._common import (  # noqa: E402
    ROOT,
    fmt_time,
    median_seconds,
    peer_python,
    plot_curves,
    report,
    run_json,
    sample_seconds,
    tvm_peer,
    tvm_python,
)

OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
MATMUL_N = 512
REDUCTION_N = 2**20


@kp.kernel
def vadd(a: kp.f32[:], b: kp.f32[:], out: kp.f32[:]):
    for i in kp.grid(out.shape[0]):
        out[i] = a[i] + b[i]


@kp.kernel
def saxpy(alpha: kp.f32, x: kp.f32[:], y: kp.f32[:], out: kp.f32[:]):
    for i in kp.grid(out.shape[0]):
        out[i] = alpha * x[i] + y[i]


@kp.kernel
def matmul_dot(A: kp.f32[:, :], B: kp.f32[:, :], C: kp.f32[:, :]):
    K = A.shape[1]
    for i, j in kp.grid(C.shape[0], C.shape[1]):
        acc = kp.f32(0)
        for k in range(K):
            acc += A[i, k] * B[k, j]
        C[i, j] = acc


@kp.kernel
def matmul_rows(A: kp.f32[:, :], B: kp.f32[:, :], C: kp.f32[:, :]):
    K = A.shape[1]
    N = C.shape[1]
    for i in kp.grid(C.shape[0]):
        for j in range(N):
            C[i, j] = 0.0
        for k in range(K):
            a_ik = A[i, k]
            for j in range(N):
                C[i, j] += a_ik * B[k, j]


@kp.kernel
def matmul_rows4(A: kp.f32[:, :], B: kp.f32[:, :], C: kp.f32[:, :]):
    # Rows in blocks of 4: the caller makes sure that the row count is a multiple of 4.
    K = A.shape[1]
    N = C.shape[1]
    for ib in kp.grid(C.shape[0] // 4):
        i = ib * 4
        for j in range(N):
            C[i, j] = 0.0
            C[i + 1, j] = 0.0
            C[i + 2, j] = 0.0
            C[i + 3, j] = 0.0
        for k in range(K):
            a0 = A[i, k]
            a1 = A[i + 1, k]
            a2 = A[i + 2, k]
            a3 = A[i + 3, k]
            for j in range(N):
                b = B[k, j]
                C[i, j] += a0 * b
                C[i + 1, j] += a1 * b
                C[i + 2, j] += a2 * b
                C[i + 3, j] += a3 * b


@kp.kernel
def dot(x: kp.f32[:], y: kp.f32[:], out: kp.f32[:]):
    acc = kp.f32(0.0)
    for i in kp.grid(x.shape[0]):
        acc += x[i] * y[i]
    out[0] = acc


@kp.kernel
def vmax(x: kp.f32[:], out: kp.f32[:]):
    top = x[0]
    for i in kp.grid(x.shape[0]):
        top = max(top, x[i])
    out[0] = top


MATMULS = {
    "2-D grid i,j, dot over k": ("matmul_dot", matmul_dot),
    "grid over rows, i-k-j": ("matmul_rows", matmul_rows),
    "grid over 4-row blocks, i-k-j": ("matmul_rows4", matmul_rows4),
}

MATMUL_CHILD = """
import json, os, sys
import numpy as np
from benchmarks._common import median_seconds
n, repeat = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
A, B = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
C = np.empty((n, n), np.float32)
t = median_seconds(lambda: np.matmul(A, B, out=C), repeat, warmup=5)
print(json.dumps({"median_s": t, "env": {k: os.environ.get(k) for k in sys.argv[3:]}}))
"""


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def compile_times(build_threads: list[int]) -> tuple[dict[str, dict], dict[str, float], dict[tuple, object]]:
    """Compile times of each kernel, and the modules the benchmarks run, built for each thread count."""
    tiny = [np.ones(16, np.float32) for _ in range(3)]
    small = [np.ones((4, 4), np.float32) for _ in range(3)]
    kernels = [("vadd", vadd, tiny), ("saxpy", saxpy, [2.0, *tiny])]
    kernels += [(name, kernel, small) for name, kernel in MATMULS.values()]
    kernels += [("dot", dot, tiny), ("vmax", vmax, tiny[:2])]
    compiles = {}
    for name, kernel, args in kernels:
        first = timed(kernel, *args)
        start = time.perf_counter()
        fn = kp.build([kernel], cache=False)[name]
        fn(*args)
        compiles[name] = {"first_call_s": first, "uncached_build_and_call_s": time.perf_counter() - start}
    builds, funcs = {}, {}
    for name, kernel, args in kernels:
        for threads in build_threads:
            start = time.perf_counter()
            funcs[name, threads] = fn = kp.build([kernel], threads=threads)[name]
            fn(*args)
            builds[f"{name}, threads={threads}"] = time.perf_counter() - start
    return compiles, builds, funcs


def medians(fns: dict[str, object], repeat: int, rounds: int = 5) -> dict[str, float]:
    """Median time of each function, its runs taken in rounds that cycle through all of them.

    Each round times every function with ``median_seconds`` (one warm-up, ``repeat // rounds``
    runs); a function's figure is the median of its rounds. A burst of other work on the
    machine then hits kernpack and its baseline alike instead of whichever ran during it.
    """
    per_round = max(1, repeat // rounds)
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            samples[name].append(median_seconds(fn, per_round))
    return {name: statistics.median(values) for name, values in samples.items()}


def threads_label(threads: int) -> str:
    return f"{threads} thread{'s' * (threads > 1)}"


def row(what: str, kernpack_s: float, baseline_s: float, baseline_name: str) -> dict:
    return {"what": what, "kernpack_s": kernpack_s, "baseline_s": baseline_s, "baseline_name": baseline_name}


def bench_vectors(funcs: dict, n: int, repeat: int, extra: dict) -> list[dict]:
    size = f"10^{len(str(n)) - 1}" if str(n).strip("0") == "1" else str(n)
    rng = np.random.default_rng(0)
    a, b = rng.random(n, dtype=np.float32), rng.random(n, dtype=np.float32)
    out, tmp = np.zeros(n, np.float32), np.zeros(n, np.float32)
    alpha = 2.5
    alpha32 = np.float32(alpha)

    for threads in (1, 2):
        out.fill(0)
        funcs["vadd", threads](a, b, out)
        np.testing.assert_array_equal(out, a + b)
        out.fill(0)
        funcs["saxpy", threads](alpha, a, b, out)
        np.testing.assert_allclose(out, alpha32 * a + b, rtol=1e-6)

    def np_saxpy_inplace():
        np.multiply(a, alpha32, out=out)
        np.add(out, b, out=out)

    def np_saxpy_tmp():
        np.add(np.multiply(a, alpha32, out=tmp), b, out=out)

    fns = {"np.add out=": lambda: np.add(a, b, out=out)}
    for threads in (1, 2):
        fns[f"vadd {threads}"] = lambda fn=funcs["vadd", threads]: fn(a, b, out)
    t = medians(fns, repeat)
    rows = [
        row(f"vadd f32 n={size}, {threads_label(threads)}", t[f"vadd {threads}"], t["np.add out="], "np.add out=")
        for threads in (1, 2)
    ]

    numpy_forms = {"np.multiply+np.add, out=": np_saxpy_inplace, "np.add(np.multiply(tmp)), out=": np_saxpy_tmp}
    fns = dict(numpy_forms)
    for threads in (1, 2):
        fns[f"saxpy {threads}"] = lambda fn=funcs["saxpy", threads]: fn(alpha, a, b, out)
    t = medians(fns, repeat)
    extra["numpy_saxpy_s"] = {name: t[name] for name in numpy_forms}
    best = min(numpy_forms, key=t.get)
    rows += [
        row(f"saxpy f32 n={size}, {threads_label(threads)}", t[f"saxpy {threads}"], t[best], best) for threads in (1, 2)
    ]
    return rows


def bench_numba(funcs: dict, n: int, repeat: int, extra: dict) -> list[dict]:
    """vadd and saxpy (1 thread) beside numba's @njit loops, when numba is installed."""
    try:
        import numba
    except ImportError:
        extra["numba"] = None
        return []

    @numba.njit(cache=False)
    def nb_vadd(a, b, out):
        for i in range(out.shape[0]):
            out[i] = a[i] + b[i]

    @numba.njit(cache=False)
    def nb_saxpy(alpha, x, y, out):
        for i in range(out.shape[0]):
            out[i] = alpha * x[i] + y[i]

    rng = np.random.default_rng(0)
    a, b = rng.random(n, dtype=np.float32), rng.random(n, dtype=np.float32)
    out = np.zeros(n, np.float32)
    alpha = np.float32(2.5)
    start = time.perf_counter()
    nb_vadd(a, b, out)
    nb_saxpy(alpha, a, b, out)
    extra["numba"] = {"version": numba.__version__, "first_calls_s": time.perf_counter() - start}
    fns = {
        "numba vadd": lambda: nb_vadd(a, b, out),
        "kernpack vadd": lambda: funcs["vadd", 1](a, b, out),
        "numba saxpy": lambda: nb_saxpy(alpha, a, b, out),
        "kernpack saxpy": lambda: funcs["saxpy", 1](alpha, a, b, out),
    }
    t = medians(fns, repeat)
    size = f"10^{len(str(n)) - 1}"
    return [
        row(f"vadd f32 n={size}, 1 thread vs numba", t["kernpack vadd"], t["numba vadd"], "numba @njit loop"),
        row(f"saxpy f32 n={size}, 1 thread vs numba", t["kernpack saxpy"], t["numba saxpy"], "numba @njit loop"),
    ]


SWEEP = [10**3, 10**4, 10**5, 10**6, 10**7]


def bench_sweep(funcs: dict, repeat: int, sizes: list[int], extra: dict) -> None:
    """saxpy over n, one call at a time: kernpack (all threads), numpy, numba, Warp and Taichi (CPU)."""
    curves: dict[str, dict[str, list[float]]] = {}

    def add(name: str, times: list[list[float]]) -> None:
        curves[name] = {
            "median": [statistics.median(t) for t in times],
            "min": [min(t) for t in times],
            "max": [max(t) for t in times],
        }

    def samples(fn: Callable[[], object]) -> list[float]:
        return sample_seconds(fn, repeat)  # one untimed call first

    rng = np.random.default_rng(0)
    data = {n: (rng.random(n, dtype=np.float32), rng.random(n, dtype=np.float32)) for n in sizes}
    outs = {n: np.empty(n, np.float32) for n in sizes}
    alpha = np.float32(2.0)
    add(
        f"kernpack ({threads_label(2)})",
        [samples(lambda n=n: funcs["saxpy", 2](alpha, *data[n], outs[n])) for n in sizes],
    )
    tmp = {n: np.empty(n, np.float32) for n in sizes}

    def numpy_saxpy(n: int) -> None:
        np.add(np.multiply(alpha, data[n][0], out=tmp[n]), data[n][1], out=outs[n])

    add("numpy (multiply, add; out=)", [samples(lambda n=n: numpy_saxpy(n)) for n in sizes])
    try:
        import numba

        @numba.njit(parallel=True, cache=False)
        def nb_saxpy(a, x, y, out):
            for i in numba.prange(out.shape[0]):
                out[i] = a * x[i] + y[i]

        add("numba (@njit parallel)", [samples(lambda n=n: nb_saxpy(alpha, *data[n], outs[n])) for n in sizes])
    except ImportError:
        print("(numba curve skipped: pip install numba, in kernpack's bench extra)")
    for peer in ("warp", "taichi"):
        python = peer_python(peer, setup=False)
        if python is not None:
            theirs = run_json([python, str(ROOT / "benchmarks" / "peers" / f"{peer}_peer.py"), "sweep", str(repeat),
                               *map(str, sizes)])  # fmt: skip
            label = {"warp": "Warp (CPU)", "taichi": "Taichi (ti.cpu)"}[peer]
            curves[label] = {k: theirs[k] for k in ("median", "min", "max")}
    extra["curves"] = {"saxpy_vs_n": {"x": sizes, "series": curves}}
    plot_curves(
        "kernels_curves",
        [
            {
                "title": "saxpy, float32: time per call against n",
                "xlabel": "n (elements)",
                "x": sizes,
                "xticks": [f"10^{len(str(n)) - 1}" for n in sizes],
                "series": curves,
            }
        ],
        "Kernel speed on the CPU",
    )


def bench_reductions(funcs: dict, repeat: int) -> list[dict]:
    n = REDUCTION_N
    rng = np.random.default_rng(0)
    x, y = rng.random(n, dtype=np.float32), rng.random(n, dtype=np.float32)
    out = np.zeros(1, np.float32)
    for threads in (1, 2):
        funcs["dot", threads](x, y, out)
        np.testing.assert_allclose(out[0], np.dot(x.astype(np.float64), y), rtol=1e-5)
    funcs["vmax", 2](x, out)
    assert out[0] == x.max()
    fns = {"np.dot": lambda: np.dot(x, y), "np.max": lambda: np.max(x)}
    for threads in (1, 2):
        fns[f"dot {threads}"] = lambda fn=funcs["dot", threads]: fn(x, y, out)
    fns["vmax 2"] = lambda: funcs["vmax", 2](x, out)
    t = medians(fns, repeat)
    rows = [
        row(f"dot f32 n=2^20, {threads_label(threads)}", t[f"dot {threads}"], t["np.dot"], "np.dot")
        for threads in (1, 2)
    ]
    return [*rows, row("max f32 n=2^20, 2 threads", t["vmax 2"], t["np.max"], "np.max")]


def bench_boundscheck(n: int, repeat: int) -> list[dict]:
    rng = np.random.default_rng(0)
    x, y, out = rng.random(n, dtype=np.float32), rng.random(n, dtype=np.float32), np.zeros(n, np.float32)
    dx, dy, one = x[:REDUCTION_N].copy(), y[:REDUCTION_N].copy(), np.zeros(1, np.float32)
    a, b = rng.random((MATMUL_N, MATMUL_N), dtype=np.float32), rng.random((MATMUL_N, MATMUL_N), dtype=np.float32)
    c = np.zeros((MATMUL_N, MATMUL_N), np.float32)
    cases = {
        f"saxpy f32 n=10^{len(str(n)) - 1}, 2 threads": (saxpy, 2, (2.5, x, y, out)),
        "dot f32 n=2^20, 2 threads": (dot, 2, (dx, dy, one)),
        f"matmul {MATMUL_N}² f32, grid over rows, i-k-j, 1 thread": (matmul_rows, 1, (a, b, c)),
    }
    fns, rows = {}, []
    for what, (kernel, threads, args) in cases.items():
        for checked in (False, True):
            fn = kp.build([kernel], threads=threads, boundscheck=checked)[kernel.__name__]
            fn(*args)
            fns[what, checked] = lambda fn=fn, args=args: fn(*args)
    t = medians(fns, repeat)
    for what in cases:
        rows.append(row(f"{what}, boundscheck", t[what, True], t[what, False], "the same kernel unchecked"))
    return rows


def numpy_matmul_child(n: int, repeat: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in OPENBLAS_VARS}
    argv = [sys.executable, "-c", MATMUL_CHILD, str(n), str(repeat), *OPENBLAS_VARS]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=ROOT, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def bench_matmul(funcs: dict, repeat: int, extra: dict) -> list[dict]:
    n = MATMUL_N
    assert n % 4 == 0, "matmul_rows4 handles row counts that are multiples of 4"
    rng = np.random.default_rng(0)
    A, B = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    C = np.empty((n, n), np.float32)
    expected = np.matmul(A, B)

    fns = {}
    for label, (name, _) in MATMULS.items():
        for threads in (1, 2):
            fn = funcs[name, threads]
            C.fill(np.nan)
            fn(A, B, C)
            np.testing.assert_allclose(C, expected, rtol=1e-4)
            fns[f"{label}, threads={threads}"] = lambda fn=fn: fn(A, B, C)
    fns["numpy"] = lambda: np.matmul(A, B, out=C)
    t = medians(fns, repeat)
    in_process = t.pop("numpy")
    variants = t
    best = min(variants, key=variants.get)
    child = numpy_matmul_child(n, repeat)
    extra["matmul_kernpack_s"] = variants
    extra["numpy_matmul"] = {
        "in_process_s": in_process,
        "in_process_env": {k: os.environ.get(k) for k in OPENBLAS_VARS},
        "child_without_openblas_vars_s": child["median_s"],
        "child_env": child["env"],
    }
    if child["median_s"] < in_process and any(k in os.environ for k in OPENBLAS_VARS):
        baseline, name = child["median_s"], "np.matmul out=, no OPENBLAS_* vars"
    else:  # without the variables set, both measure the same thing: take the faster
        baseline, name = min(in_process, child["median_s"]), "np.matmul out="
    return [row(f"matmul {n}² f32, {best}", variants[best], baseline, name)]


def cold_compile(kernel, args: list, threads: int) -> dict[str, float]:
    """One run of ``kernel`` from source to its first call, nothing cached; seconds per step."""
    t0 = time.perf_counter()
    fresh = kp.kernel(kernel.py_func)  # a new Kernel: the front end runs again, no module kept in memory
    t1 = time.perf_counter()
    module = kp.build([fresh], cpu="generic", threads=threads, cache=False)
    t2 = time.perf_counter()
    fn = module[fresh.name]  # the JIT happens here, as TVM's does on lookup
    t3 = time.perf_counter()
    fn(*args)
    t4 = time.perf_counter()
    return {"define_s": t1 - t0, "compile_s": t2 - t1, "lookup_s": t3 - t2, "call_s": t4 - t3}


def summarize(first: dict[str, float], runs: list[dict[str, float]]) -> dict[str, float]:
    """Median total and median of each step over ``runs``; the warm-up run's total beside them."""
    return {
        "total_s_median": statistics.median(sum(r.values()) for r in runs),
        "first_s": sum(first.values()),
        "runs": len(runs),
        **{f"{k}_median": statistics.median(r[k] for r in runs) for k in first},
    }


def bench_compile(tvm: str | None, rounds: int, per_round: int, extra: dict) -> list[dict]:
    """vadd and saxpy compiled from scratch by kernpack and by TVM 0.27, serial and threaded.

    The runs go in rounds that alternate between kernpack (in this process) and TVM (one peer
    process per round, with its own warm-up run), so other work on the machine slows both alike.
    """
    rows, record = [], {}
    for kernel in (vadd, saxpy):
        tiny = [np.full(16, 1.5, np.float32) for _ in range(3)]
        args = [2.0, *tiny] if kernel is saxpy else tiny
        for threads in (1, 2):
            flags = ["--parallel"] if threads > 1 else []
            first = cold_compile(kernel, args, threads)
            mine: list[dict[str, float]] = []
            peers: list[dict] = []
            for _ in range(rounds):
                mine += [cold_compile(kernel, args, threads) for _ in range(per_round)]
                if tvm:
                    try:
                        peers.append(tvm_peer(tvm, "compile", kernel.name, str(per_round), *flags))
                    except subprocess.CalledProcessError as exc:
                        print(f"(TVM compile of {kernel.name} failed, TVM rows left out: {exc.stderr.strip()[-300:]})")
                        tvm, peers = None, []
            assert tiny[2][0] == (4.5 if kernel is saxpy else 3.0)
            entry = record[f"{kernel.name}, threads={threads}"] = {"kernpack": summarize(first, mine), "tvm": None}
            if peers:
                entry["tvm"] = summarize(peers[0]["first"], [run for peer in peers for run in peer["runs"]])
                peer_name = "TVM 0.27, parallel loop" if threads > 1 else "TVM 0.27 tvm.compile"
                what = f"compile {kernel.name}, source to first call, no cache, {threads_label(threads)}"
                rows.append(row(what, entry["kernpack"]["total_s_median"], entry["tvm"]["total_s_median"], peer_name))
    extra["cold_compile"] = {"rounds": rounds, "per_round": per_round, "runs": record}
    mine = record["saxpy, threads=1"]["kernpack"]["total_s_median"]
    for peer, label in (("warp", "Warp (CPU), new module"), ("taichi", "Taichi ti.cpu, no offline cache")):
        python = peer_python(peer, setup=False)
        if python is not None:
            theirs = run_json([python, str(ROOT / "benchmarks" / "peers" / f"{peer}_peer.py"), "compile",
                               str(rounds * per_round)])  # fmt: skip
            extra["cold_compile"][peer] = theirs
            rows.append(row("compile saxpy, source to first call, no cache, 1 thread", mine,
                            theirs["total_s_median"], label))  # fmt: skip
    return rows


def blas_info() -> object:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    return [info for info in threadpool_info() if info.get("user_api") == "blas"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="vectors of 10**6, fewer samples")
    parser.add_argument("--no-tvm", action="store_true", help="leave out the Apache TVM compile-time rows")
    args = parser.parse_args()
    n = 10**6 if args.quick else 10**7
    repeat = 5 if args.quick else 25
    matmul_repeat = 3 if args.quick else 20
    compile_rounds, compile_per_round = (1, 3) if args.quick else (3, 3)
    tvm = None if args.no_tvm else tvm_python(setup=False)

    load_before = os.getloadavg()
    compiles, builds, funcs = compile_times([1, 2])
    extra = {
        "quick": args.quick,
        "n": n,
        "repeat": repeat,
        "matmul_repeat": matmul_repeat,
        "cpu_count": os.cpu_count(),
        "sched_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "numpy": np.__version__,
        "numpy_blas": blas_info(),
        "compile_s": compiles,
        "build_and_first_call_s": builds,
    }
    rows = (
        bench_vectors(funcs, n, repeat, extra)
        + bench_numba(funcs, n, repeat, extra)
        + bench_matmul(funcs, matmul_repeat, extra)
        + bench_reductions(funcs, repeat * 4)
        + bench_boundscheck(n, max(5, repeat // 2))
        + bench_compile(tvm, compile_rounds, compile_per_round, extra)
    )
    extra["loadavg_1_5_15"] = {"before": load_before, "after": os.getloadavg()}
    bench_sweep(funcs, repeat, SWEEP, extra)
    report("kernels", rows, extra)
    print(
        "compile, first call (uncached build + call): "
        + ", ".join(
            f"{k} {fmt_time(v['first_call_s'])} ({fmt_time(v['uncached_build_and_call_s'])})"
            for k, v in compiles.items()
        )
    )
    mm = extra["numpy_matmul"]
    print(
        f"np.matmul: in process {fmt_time(mm['in_process_s'])} (env {mm['in_process_env']}), "
        f"child without OPENBLAS_* vars {fmt_time(mm['child_without_openblas_vars_s'])}"
    )
    print("matmul variants: " + ", ".join(f"{k} {fmt_time(v)}" for k, v in extra["matmul_kernpack_s"].items()))
    print(f"load average before/after: {load_before[0]:.2f} / {extra['loadavg_1_5_15']['after'][0]:.2f}")


if __name__ == "__main__":
    main()
