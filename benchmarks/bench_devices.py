"""Device targets: code generation time, OpenCL launch cost, and loading a many-kernel .so.

Run: ``scripts/test`` once (it installs the OpenCL CPU runtime and ptxas), then
``.venv/bin/python benchmarks/bench_devices.py``. Writes ``results/devices.{json,md,png}``.

* **codegen**: one kernel, kernel IR to machine code, per target: ``cpu`` (LLVM O3 + JIT
  object, no cache), ``opencl`` (SPIR-V), ``cuda`` (PTX) and ``vulkan`` (shader), the device
  ones generated in a child process (the price of surviving LLVM's assertion aborts), beside
  numba's first call.
* **OpenCL device arrays**: saxpy n=10^6 on arrays made by ``kp.device("opencl")`` and on numpy
  arrays (which a CPU device with system SVM uses in place), each launch waited for, beside
  plain pyopencl launching the same SPIR-V on buffers made once.
* **CUDA device arrays** (only where a GPU is present): the same, beside cuda-bindings
  launching the same PTX on buffers made once.
* **Vulkan device arrays**: the same on lavapipe, device arrays and numpy arrays, beside Taichi
  1.7's Vulkan backend on the same lavapipe (``ti.ndarray`` and numpy arguments; the peer venv
  ``peers/setup_taichi.sh`` makes, on the first run), each in fresh processes taking turns.
* **blur**: a 3x3 blur of a 1024x1024 float32 image, ten launches on device arrays, per launch,
  on OpenCL, Vulkan and CUDA (where a GPU is present), beside the same kernel on the CPU.
* **saxpy n=10^6 on OpenCL and Vulkan** (Intel's CPU runtime, Mesa's lavapipe): the first
  launch of a fresh module (program or pipeline creation included) and steady-state launches
  (copies in and out included), beside numpy.
* **load_module** of a .so carrying 256 kernels for cpu, opencl, cuda and vulkan, beside
  ctypes.CDLL, each in a fresh process.
"""

from __future__ import annotations

import functools
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from tests.lang import kernels_src as K  # noqa: E402

import kernpack as kp  # noqa: E402
from benchmarks._common import median_seconds, medians_per_call, peer_python, report, run_json  # noqa: E402

LOAD_CHILD = """
import sys, time, json, ctypes
from kernpack.runtime import load_module
a, b, first = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
def cdll():
    t = time.perf_counter(); ctypes.CDLL(a); return time.perf_counter() - t
def mine():
    t = time.perf_counter(); m = load_module(b); t = time.perf_counter() - t
    assert len(m.imports) == 3
    return t
k, c = (mine(), cdll()) if first else (cdll(), mine())[::-1]
print(json.dumps({"cdll": c, "kernpack": k}))
"""


def row(what: str, mine: float, base: float, base_name: str) -> dict:
    return {"what": what, "kernpack_s": mine, "baseline_s": base, "baseline_name": base_name}


def codegen_rows() -> list[dict]:
    kernel = K.softmax
    # Every target's whole pipeline, the cache off: kernel IR to a module.
    cpu, opencl, cuda, vulkan = (
        median_seconds(lambda target=target: kp.build([kernel], target, cache=False), 3)
        for target in ("cpu", "opencl", "cuda", "vulkan")
    )
    numba_first = _numba_first_call()
    name = "numba first call" if numba_first else "cpu codegen (numba not installed)"
    base = numba_first or cpu
    return [
        row("codegen softmax: cpu (O3 + object)", cpu, base, name),
        row("codegen softmax: opencl (SPIR-V, child process)", opencl, base, name),
        row("codegen softmax: cuda (PTX + libdevice, child; cubin by ptxas)", cuda, base, name),
        row("codegen softmax: vulkan (compute shader, child)", vulkan, base, name),
    ]


def _numba_first_call() -> float | None:
    if importlib.util.find_spec("numba") is None:
        return None
    code = (
        "import time, numpy as np, numba\n"
        "@numba.njit\n"
        "def softmax(x, out):\n"
        "    for i in range(x.shape[0]):\n"
        "        m = x[i].max(); e = np.exp(x[i] - m); out[i] = e / e.sum()\n"
        "x = np.ones((4, 8), np.float32); o = np.empty_like(x)\n"
        "t = time.perf_counter(); softmax(x, o); print(time.perf_counter() - t)\n"
    )
    runs = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
            for _ in range(3)]  # fmt: skip
    return statistics.median(runs)


def launch_rows() -> list[dict]:
    rows = []
    n = 10**6
    x, y = np.random.default_rng(0).random(n, np.float32), np.random.default_rng(1).random(n, np.float32)
    out, tmp = np.empty_like(x), np.empty_like(x)

    def numpy_saxpy() -> None:
        np.multiply(x, np.float32(2.0), out=tmp)
        np.add(tmp, y, out=tmp)

    base = median_seconds(numpy_saxpy, 20)
    for target in ("opencl", "vulkan"):
        module = kp.build([K.saxpy], target=target)
        reason = module.unavailable_reason()
        if reason:
            print(f"({target} not measured: {reason})")
            continue
        start = time.perf_counter()
        module["saxpy"](np.float32(2.0), x, y, out)
        first = time.perf_counter() - start
        steady = median_seconds(lambda module=module: module["saxpy"](np.float32(2.0), x, y, out), 20)
        rows += [
            row(f"{target} saxpy 1e6: first launch", first, base, "numpy saxpy"),
            row(f"{target} saxpy 1e6: steady state", steady, base, "numpy saxpy"),
        ]
    return rows


class _Saxpy:
    """saxpy 10^6 on ``kind``: the arrays (numpy and on the device), and its rows beside a raw launch."""

    def __init__(self, module: kp.Module) -> None:
        self.kind, self.n, self.a = module.kind, 10**6, np.float32(2.0)
        self.dev, self.saxpy = kp.device(module.kind), module["saxpy"]
        self.x, self.y = (np.random.default_rng(seed).random(self.n, np.float32) for seed in (0, 1))
        self.out = np.empty_like(self.x)
        self.dx, self.dy, self.dout = self.dev.asarray(self.x), self.dev.asarray(self.y), self.dev.empty(self.n)

    def rows(self, plain: Callable[[], None], base: str, numpy_what: str) -> list[dict]:
        """Each launch waited for, so each figure is a whole launch; the three take turns batch by batch."""
        saxpy, a, dev = self.saxpy, self.a, self.dev

        def on_device() -> None:
            saxpy(a, self.dx, self.dy, self.dout)
            dev.synchronize()

        on_numpy = functools.partial(saxpy, a, self.x, self.y, self.out)
        t = medians_per_call({"plain": plain, "device": on_device, "numpy": on_numpy}, 5, 21)
        assert np.allclose(self.out, 2 * self.x + self.y) and np.allclose(self.dout.numpy(), self.out)
        return [
            row(f"{self.kind} saxpy 1e6: device arrays", t["device"], t["plain"], base),
            row(f"{self.kind} saxpy 1e6: numpy arrays ({numpy_what})", t["numpy"], t["plain"], base),
        ]


def opencl_array_rows() -> list[dict]:
    """saxpy 10^6 on device arrays and on numpy arrays, beside plain pyopencl on buffers made once."""
    module = kp.build([K.saxpy], target="opencl")
    if module.unavailable_reason():
        print(f"(opencl device arrays not measured: {module.unavailable_reason()})")
        return []
    import pyopencl as cl

    run = _Saxpy(module)
    dev, n = run.dev, run.n
    # The baseline: the same SPIR-V as kernpack's, launched by pyopencl itself.
    kernel = cl.Kernel(cl.Program(dev.context, bytes(module.binary)).build(), "saxpy")
    flags = cl.mem_flags
    bx, by = (cl.Buffer(dev.context, flags.READ_WRITE | flags.COPY_HOST_PTR, hostbuf=v) for v in (run.x, run.y))
    bout, extent = cl.Buffer(dev.context, flags.READ_WRITE, size=run.out.nbytes), np.int64(n)

    def plain() -> None:
        kernel(dev.queue, (n,), None, run.a, bx, extent, by, extent, bout, extent)
        dev.queue.finish()

    return run.rows(plain, "pyopencl, same SPIR-V, buffers made once", "shared with the CPU device")


def cuda_array_rows() -> list[dict]:
    """saxpy 10^6 on CUDA device arrays and on numpy arrays, beside the same PTX launched by cuda-bindings.

    Only where a GPU is present. The baseline is the driver API itself: the module loaded once,
    buffers made once, one launch and one stream synchronize per call.
    """
    module = kp.build([K.saxpy], target="cuda")
    if module.unavailable_reason():
        print(f"(cuda device arrays not measured: {module.unavailable_reason()})")
        return []
    import ctypes

    from cuda.bindings import driver

    run = _Saxpy(module)
    n = run.n
    _, raw_module = driver.cuModuleLoadData(bytes(module.binary) + b"\0")
    _, function = driver.cuModuleGetFunction(raw_module, b"saxpy")
    _, stream = driver.cuStreamCreate(0)
    values = [ctypes.c_float(run.a)]
    for array in (run.dx, run.dy, run.dout):
        values += [ctypes.c_uint64(array.buffer.pointer), ctypes.c_int64(n)]
    params = (ctypes.c_void_p * len(values))(*(ctypes.addressof(v) for v in values))

    def plain() -> None:
        driver.cuLaunchKernel(function, -(-n // 256), 1, 1, 256, 1, 1, 0, stream, ctypes.addressof(params), 0)
        driver.cuStreamSynchronize(stream)

    return run.rows(plain, "cuda-bindings, same PTX, buffers made once", "copied in and out")


VULKAN_CHILD = """
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import kernpack as kp
from benchmarks._common import median_seconds
from tests.lang import kernels_src as K

n, repeat = int(sys.argv[2]), int(sys.argv[3])
saxpy, dev, a = kp.build([K.saxpy], target="vulkan")["saxpy"], kp.device("vulkan"), np.float32(2.0)
rng = np.random.default_rng(0)
x, y = rng.random(n, np.float32), rng.random(n, np.float32)
out = np.empty_like(x)
dx, dy, dout = dev.asarray(x), dev.asarray(y), dev.empty(n, np.float32)

device = median_seconds(lambda: (saxpy(a, dx, dy, dout), dev.synchronize()), repeat)
on_numpy = median_seconds(lambda: saxpy(a, x, y, out), repeat)
assert np.allclose(out, 2 * x + y) and np.allclose(dout.numpy(), out)
print(json.dumps({"device_s": device, "numpy_s": on_numpy}))
"""


def vulkan_array_rows(rounds: int = 7) -> list[dict]:
    """saxpy 10^6 on Vulkan, device arrays and numpy arrays, beside Taichi's Vulkan backend.

    Each launch is waited for. Both run in fresh processes of their own (Taichi's in its venv,
    ``peers/setup_taichi.sh``), taking turns, so that neither shares the CPU with another
    runtime's threads and a busy spell of the machine falls on both; each figure is the median
    over the rounds of a process's median over 15 launches.
    """
    module = kp.build([K.saxpy], target="vulkan")
    if module.unavailable_reason():
        print(f"(vulkan not measured: {module.unavailable_reason()})")
        return []
    taichi = peer_python("taichi", setup=True)
    n, repeat = str(10**6), "15"
    mine: dict[str, list[float]] = {"device_s": [], "numpy_s": []}
    theirs: dict[str, list[float]] = {"resident_s": [], "numpy_s": []}
    for _ in range(rounds):
        if taichi:
            peer = run_json([taichi, str(ROOT / "benchmarks" / "peers" / "taichi_peer.py"), "saxpy", n, repeat])
            for key in theirs:
                theirs[key].append(peer[key])
        ours = run_json([sys.executable, "-c", VULKAN_CHILD, str(ROOT), n, repeat])
        for key in mine:
            mine[key].append(ours[key])
    device, numpy_args = statistics.median(mine["device_s"]), statistics.median(mine["numpy_s"])
    if not taichi:
        return [row("vulkan saxpy 1e6: device arrays", device, numpy_args, "kernpack, numpy arrays")]
    return [
        row("vulkan saxpy 1e6: device arrays", device, statistics.median(theirs["resident_s"]), "Taichi ti.ndarray"),
        row("vulkan saxpy 1e6: numpy arrays", numpy_args, statistics.median(theirs["numpy_s"]), "Taichi, numpy args"),
    ]


def _demo_kernels() -> Any:
    """``examples/kernels.py``, the demo's saxpy and blur, as a module."""
    spec = importlib.util.spec_from_file_location("demo_kernels", ROOT / "examples" / "kernels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def blur_rows(launches: int = 10) -> list[dict]:
    """A 3x3 blur of a 1024x1024 float32 image, ten launches on device arrays, per launch."""
    blur = _demo_kernels().blur  # the demo's own kernel (examples/kernels.py)
    image = np.random.default_rng(2).random((1024, 1024), np.float32)
    out = np.empty_like(image)
    blur(image, out)  # built before timing

    def on_cpu() -> None:
        for _ in range(launches):
            blur(image, out)

    cpu = median_seconds(on_cpu, 5) / launches
    rows = []
    for target in ("opencl", "vulkan", "cuda"):
        module = kp.build([blur], target=target)
        if module.unavailable_reason():
            continue
        dev = kp.device(target)
        src, dst = dev.asarray(image), dev.empty(image.shape, np.float32)
        kernel = module["blur"]

        def on_device(kernel=kernel, src=src, dst=dst, dev=dev) -> None:
            for _ in range(launches):
                kernel(src, dst)
            dev.synchronize()

        on_device()
        assert np.allclose(dst.numpy(), out, rtol=1e-5)
        per_launch = median_seconds(on_device, 5) / launches
        rows.append(row(f"{target} blur 1024x1024, 10 launches on device arrays", per_launch, cpu, "cpu kernel"))
    return rows


def load_rows(procs: int = 5) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="kernpack-devbench-") as tmp:
        source = Path(tmp) / "many.py"
        lines = ["import kernpack as kp", ""]
        for i in range(256):
            lines += [
                "@kp.kernel",
                f"def k{i}(a: kp.f32, x: kp.f32[:], out: kp.f32[:]):",
                "    for i in kp.grid(out.shape[0]):",
                f"        out[i] = a * x[i] + {i}.0",
                "",
            ]
        source.write_text("\n".join(lines))
        spec = importlib.util.spec_from_file_location("many", source)
        many = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(many)
        kernels = [getattr(many, f"k{i}") for i in range(256)]
        start = time.perf_counter()
        host = kp.build(kernels, cpu="generic", devices=("opencl", "cuda", "vulkan"), name="many")
        lib = Path(tmp) / "many.so"
        host.export_library(lib)
        build_s = time.perf_counter() - start
        copy = Path(tmp) / "copy.so"
        copy.write_bytes(lib.read_bytes())
        samples = [
            subprocess.run(
                [sys.executable, "-c", LOAD_CHILD, str(copy), str(lib), str(i % 2)],
                capture_output=True, text=True, check=True, cwd=ROOT,
            ).stdout
            for i in range(2 * procs + 1)
        ][1:]  # fmt: skip
        import json

        parsed = [json.loads(s.strip().splitlines()[-1]) for s in samples]
        size = lib.stat().st_size
    return [
        row(
            f"load_module, 256 kernels x cpu+3 devices ({size // 1024} KiB; built in {build_s:.0f} s)",
            statistics.median(p["kernpack"] for p in parsed),
            statistics.median(p["cdll"] for p in parsed),
            "ctypes.CDLL",
        )
    ]


def main() -> None:
    # Vulkan's rows first: their processes share the 2 cores with this one, in which Intel's
    # OpenCL runtime, once it has run, keeps worker threads that took about a fifth off lavapipe's.
    rows = codegen_rows() + vulkan_array_rows() + opencl_array_rows() + cuda_array_rows()
    rows += blur_rows() + launch_rows() + load_rows()
    report("devices", rows, {})


if __name__ == "__main__":
    main()
