"""Taichi peer measurements for the kernpack benchmarks (its Vulkan backend, on lavapipe here).

Run with the peer venv's python (``PY=$(benchmarks/peers/setup_taichi.sh | tail -n1)``)::

    $PY benchmarks/peers/taichi_peer.py saxpy N REPEAT

prints one JSON object on its last stdout line: ``saxpy`` (``out[i] = a * x[i] + y[i]``,
float32, ``N`` elements) launched and synchronized, the median over ``REPEAT`` launches, on
arrays resident on the device (``ti.ndarray``, ``resident_s``) and on numpy arrays
(``numpy_s``), after a first launch of each that compiles.
"""

# No `from __future__ import annotations`: Taichi reads a kernel's annotations as objects.
import json
import statistics
import sys
import time


def saxpy(n: int, repeat: int) -> dict:
    import numpy as np
    import taichi as ti

    ti.init(arch=ti.vulkan, log_level=ti.ERROR)

    @ti.kernel
    def kernel(
        a: ti.f32,
        x: ti.types.ndarray(dtype=ti.f32, ndim=1),
        y: ti.types.ndarray(dtype=ti.f32, ndim=1),
        out: ti.types.ndarray(dtype=ti.f32, ndim=1),
    ):
        for i in range(out.shape[0]):
            out[i] = a * x[i] + y[i]

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


def main() -> None:
    command, *args = sys.argv[1:]
    if command != "saxpy":
        raise SystemExit(f"unknown subcommand {command!r}")
    print(json.dumps(saxpy(int(args[0]), int(args[1]))))


if __name__ == "__main__":
    main()
