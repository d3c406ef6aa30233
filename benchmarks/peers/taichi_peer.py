"""Taichi peer measurements for the kernpack benchmarks (its Vulkan backend, on lavapipe here).

Run with the peer venv's python (``PY=$(benchmarks/peers/setup_taichi.sh | tail -n1)``)::

    $PY benchmarks/peers/taichi_peer.py saxpy N REPEAT
    $PY benchmarks/peers/taichi_peer.py sweep REPEAT N...
    $PY benchmarks/peers/taichi_peer.py call CALLS BATCHES
    $PY benchmarks/peers/taichi_peer.py compile REPEAT

prints one JSON object on its last stdout line: ``saxpy`` (``out[i] = a * x[i] + y[i]``,
float32, ``N`` elements) launched and synchronized, the median over ``REPEAT`` launches, on
arrays resident on the device (``ti.ndarray``, ``resident_s``) and on numpy arrays
(``numpy_s``), after a first launch of each that compiles.

``sweep`` is the same kernel on Taichi's CPU backend (``ti.cpu``) on numpy arrays of each length
``N``: the median, min and max over ``REPEAT`` launches per length, after one that compiles.
``call`` times one launch on arrays of length 1 on ``ti.cpu`` (the median over ``BATCHES`` of
the mean of ``CALLS``); ``compile``, ``REPEAT`` times a new saxpy kernel from its definition
to its first result on ``ti.cpu`` with Taichi's offline cache off (``total_s_median``).
"""

# No `from __future__ import annotations`: Taichi reads a kernel's annotations as objects.
import json
import statistics
import sys
import time


def _saxpy_kernel(ti, scale: float = 1.0):
    """``out[i] = a * x[i] + y[i] * scale`` as a new Taichi kernel (after ``ti.init``).

    ``scale`` is baked in as a constant: each call defines a kernel Taichi has not compiled.
    """

    @ti.kernel
    def kernel(
        a: ti.f32,
        x: ti.types.ndarray(dtype=ti.f32, ndim=1),
        y: ti.types.ndarray(dtype=ti.f32, ndim=1),
        out: ti.types.ndarray(dtype=ti.f32, ndim=1),
    ):
        for i in range(out.shape[0]):
            out[i] = a * x[i] + y[i] * scale

    return kernel


def saxpy(n: int, repeat: int) -> dict:
    import numpy as np
    import taichi as ti

    ti.init(arch=ti.vulkan, log_level=ti.ERROR)
    kernel = _saxpy_kernel(ti)

    rng = np.random.default_rng(0)
    x, y = rng.random(n, np.float32), rng.random(n, np.float32)
    out = np.empty_like(x)
    dx, dy, dout = (ti.ndarray(ti.f32, n) for _ in range(3))
    dx.from_numpy(x)
    dy.from_numpy(y)

    def median(launch) -> float:
        launch()
        ti.sync()
        samples = []
        for _ in range(repeat):
            start = time.perf_counter()
            launch()
            ti.sync()
            samples.append(time.perf_counter() - start)
        return statistics.median(samples)

    resident = median(lambda: kernel(2.0, dx, dy, dout))
    on_numpy = median(lambda: kernel(2.0, x, y, out))
    assert np.allclose(out, 2 * x + y) and np.allclose(dout.to_numpy(), out)
    return {"resident_s": resident, "numpy_s": on_numpy, "taichi": ".".join(map(str, ti.__version__))}


def sweep(repeat: int, sizes: list) -> dict:
    import numpy as np
    import taichi as ti

    ti.init(arch=ti.cpu, log_level=ti.ERROR)
    kernel = _saxpy_kernel(ti)

    result = {"sizes": sizes, "median": [], "min": [], "max": []}
    rng = np.random.default_rng(0)
    for n in sizes:
        x, y = rng.random(n, np.float32), rng.random(n, np.float32)
        out = np.empty_like(x)
        samples = []
        for i in range(repeat + 1):
            start = time.perf_counter()
            kernel(2.0, x, y, out)
            ti.sync()
            if i:  # the first compiles
                samples.append(time.perf_counter() - start)
        assert np.allclose(out, 2 * x + y)
        result["median"].append(statistics.median(samples))
        result["min"].append(min(samples))
        result["max"].append(max(samples))
    return result


def call(calls: int, batches: int) -> dict:
    import numpy as np
    import taichi as ti

    ti.init(arch=ti.cpu, log_level=ti.ERROR)
    kernel = _saxpy_kernel(ti)
    x, y, out = (np.ones(1, np.float32) for _ in range(3))
    kernel(2.0, x, y, out)
    samples = []
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(calls):
            kernel(2.0, x, y, out)
        samples.append((time.perf_counter() - start) / calls)
    assert out[0] == 3.0
    return {"launch_s": statistics.median(samples)}


def compile_runs(repeat: int) -> dict:
    import numpy as np
    import taichi as ti

    ti.init(arch=ti.cpu, log_level=ti.ERROR, offline_cache=False)
    x, y, out = (np.ones(16, np.float32) for _ in range(3))
    runs = []
    for k in range(repeat + 1):  # the first is a warm-up (Taichi's own start), not counted
        scale = float(k + 2)
        start = time.perf_counter()
        fresh = _saxpy_kernel(ti, scale)
        fresh(2.0, x, y, out)
        ti.sync()
        runs.append(time.perf_counter() - start)
        assert out[0] == 2.0 + scale
    return {"total_s_median": statistics.median(runs[1:]), "runs": runs[1:], "first": runs[0]}


def main() -> None:
    command, *args = sys.argv[1:]
    if command == "saxpy":
        print(json.dumps(saxpy(int(args[0]), int(args[1]))))
    elif command == "sweep":
        print(json.dumps(sweep(int(args[0]), [int(a) for a in args[1:]])))
    elif command == "call":
        print(json.dumps(call(int(args[0]), int(args[1]))))
    elif command == "compile":
        print(json.dumps(compile_runs(int(args[0]))))
    else:
        raise SystemExit(f"unknown subcommand {command!r}")


if __name__ == "__main__":
    main()
