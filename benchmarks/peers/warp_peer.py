"""NVIDIA Warp peer measurements for the kernpack benchmarks (Warp's CPU backend; no GPU needed).

Run with the peer venv's python (``PY=$(benchmarks/peers/setup_warp.sh | tail -n1)``)::

    $PY benchmarks/peers/warp_peer.py call CALLS BATCHES
    $PY benchmarks/peers/warp_peer.py first-call DIRECTORY
    $PY benchmarks/peers/warp_peer.py sweep REPEAT N...
    $PY benchmarks/peers/warp_peer.py compile REPEAT

Every subcommand prints one JSON object on its last stdout line.

- ``call``: ``saxpy`` (``out[i] = a * x[i] + y[i]``, float32) launched on arrays of length 1 on the
  CPU, per launch: ``wp.launch`` (``launch_s``) and a recorded launch, ``cmd.launch()``
  (``recorded_s``), each the median over ``BATCHES`` batches of the mean of ``CALLS`` launches.
- ``first-call``: in this (fresh) process, after ``import warp`` and ``wp.init()``: import the
  kernel's module from ``DIRECTORY``, launch it once and synchronize (``s``). Run it twice: the
  first run fills Warp's kernel cache, the second is the cached first launch.
- ``sweep``: ``saxpy`` on the CPU on arrays of each length ``N``, launched and synchronized:
  the median, min and max over ``REPEAT`` launches per length, after one that compiles.
- ``compile``: ``REPEAT`` times a new saxpy kernel (its own module file, so Warp's kernel cache,
  in a fresh directory, never has it) from import to its first result on the CPU
  (``total_s_median``); a first one, which also starts Warp's compiler, is not counted.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

KERNEL = """
import warp as wp

@wp.kernel
def saxpy(a: float, x: wp.array(dtype=float), y: wp.array(dtype=float), out: wp.array(dtype=float)):
    i = wp.tid()
    out[i] = a * x[i] + y[i]
"""


def call(calls: int, batches: int) -> dict:
    import numpy as np
    import warp as wp

    wp.config.quiet = True
    wp.init()
    saxpy = _kernel(tempfile.mkdtemp(prefix="warp-peer-"))
    x, y, out = (wp.array(np.ones(1, np.float32), device="cpu") for _ in range(3))
    wp.launch(saxpy, dim=1, inputs=[2.0, x, y, out], device="cpu")
    wp.synchronize()

    def per_call(fn) -> float:
        samples = []
        for _ in range(batches):
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            samples.append((time.perf_counter() - start) / calls)
        return statistics.median(samples)

    launch = per_call(lambda: wp.launch(saxpy, dim=1, inputs=[2.0, x, y, out], device="cpu"))
    command = wp.launch(saxpy, dim=1, inputs=[2.0, x, y, out], device="cpu", record_cmd=True)
    recorded = per_call(command.launch)
    wp.synchronize()
    assert out.numpy()[0] == 3.0
    return {"launch_s": launch, "recorded_s": recorded, "warp": wp.config.version}


def first_call(directory: str) -> dict:
    import numpy as np
    import warp as wp

    wp.config.quiet = True
    wp.init()
    start = time.perf_counter()
    saxpy = _kernel(directory)
    x, y, out = (wp.array(np.ones(1, np.float32), device="cpu") for _ in range(3))
    wp.launch(saxpy, dim=1, inputs=[2.0, x, y, out], device="cpu")
    wp.synchronize()
    seconds = time.perf_counter() - start
    assert out.numpy()[0] == 3.0
    return {"s": seconds}


def sweep(repeat: int, sizes: list[int]) -> dict:
    import numpy as np
    import warp as wp

    wp.config.quiet = True
    wp.init()
    saxpy = _kernel(tempfile.mkdtemp(prefix="warp-peer-"))
    out = {"sizes": sizes, "median": [], "min": [], "max": [], "warp": wp.config.version}
    rng = np.random.default_rng(0)
    for n in sizes:
        x, y = (wp.array(rng.random(n, np.float32), device="cpu") for _ in range(2))
        res = wp.zeros(n, dtype=float, device="cpu")
        samples = []
        for i in range(repeat + 1):
            start = time.perf_counter()
            wp.launch(saxpy, dim=n, inputs=[2.0, x, y, res], device="cpu")
            wp.synchronize()
            if i:  # the first compiles
                samples.append(time.perf_counter() - start)
        assert np.allclose(res.numpy(), 2 * x.numpy() + y.numpy())
        out["median"].append(statistics.median(samples))
        out["min"].append(min(samples))
        out["max"].append(max(samples))
    return out


def compile_runs(repeat: int) -> dict:
    import importlib

    import numpy as np
    import warp as wp

    wp.config.quiet = True
    wp.config.kernel_cache_dir = tempfile.mkdtemp(prefix="warp-cache-")
    wp.init()
    directory = tempfile.mkdtemp(prefix="warp-compile-")
    sys.path.insert(0, directory)
    x, y, out = (wp.array(np.ones(16, np.float32), device="cpu") for _ in range(3))
    runs = []
    for k in range(repeat + 1):
        source = KERNEL.replace("a * x[i] + y[i]", f"a * x[i] + y[i] * {float(k + 2)}")
        Path(directory, f"warp_fresh_{k}.py").write_text(textwrap.dedent(source))
        start = time.perf_counter()
        module = importlib.import_module(f"warp_fresh_{k}")
        wp.launch(module.saxpy, dim=16, inputs=[2.0, x, y, out], device="cpu")
        wp.synchronize()
        runs.append(time.perf_counter() - start)
        assert out.numpy()[0] == 2.0 + (k + 2)
    return {"total_s_median": statistics.median(runs[1:]), "runs": runs[1:], "first": runs[0]}


def _kernel(directory: str):
    """The saxpy kernel, from a file in ``directory`` (Warp reads a kernel's source from its file)."""
    path = Path(directory) / "warp_kernel.py"
    if not path.exists():
        path.write_text(textwrap.dedent(KERNEL))
    sys.path.insert(0, directory)
    from warp_kernel import saxpy

    return saxpy


def main() -> None:
    command, *args = sys.argv[1:]
    if command == "call":
        result = call(int(args[0]), int(args[1]))
    elif command == "first-call":
        result = first_call(args[0])
    elif command == "sweep":
        result = sweep(int(args[0]), [int(a) for a in args[1:]])
    elif command == "compile":
        result = compile_runs(int(args[0]))
    else:
        raise SystemExit(f"unknown subcommand {command!r}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
