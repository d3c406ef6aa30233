"""kernpack demo: one kernel file built for every device as one .so, run where only the runtime is.

First the headline: ``kernpack build examples/kernels.py`` for the CPU, OpenCL, Vulkan and CUDA,
then ``examples/shipped/run.py`` loads that one library in a fresh process that cannot import
the compiler and runs both kernels on every device present. Then how it works: modules of every
kind, their masks, JIT, export and load.

Run with ``scripts/demo`` (which sets up ``.venv``), or ``python examples/demo.py``.
Each step prints what it did; any failure ends the demo with a non-zero exit status.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

import kernpack as kp
from kernpack.runtime.module import mask_name

EXAMPLES = Path(__file__).resolve().parent

VADD = r"""
define void @vadd(ptr noalias %a, ptr noalias %b, ptr noalias %out, i64 %n) {
entry:
  %empty = icmp sle i64 %n, 0
  br i1 %empty, label %done, label %loop
loop:
  %i = phi i64 [0, %entry], [%next, %loop]
  %pa = getelementptr float, ptr %a, i64 %i
  %pb = getelementptr float, ptr %b, i64 %i
  %po = getelementptr float, ptr %out, i64 %i
  %x = load float, ptr %pa
  %y = load float, ptr %pb
  %s = fadd float %x, %y
  store float %s, ptr %po
  %next = add i64 %i, 1
  %more = icmp slt i64 %next, %n
  br i1 %more, label %loop, label %done
done:
  ret void
}
"""

SCALE_C = """
#include <stdint.h>
void scale(float *x, float factor, int64_t n) {
    for (int64_t i = 0; i < n; ++i) x[i] *= factor;
}
"""


@kp.kernel
def saxpy(a: kp.f32, x: kp.f32[:], y: kp.f32[:], out: kp.f32[:]):
    """out = a * x + y, one grid point per element."""
    for i in kp.grid(out.shape[0]):
        out[i] = a * x[i] + y[i]


def step(title: str) -> None:
    print(f"\n== {title}")


def show(module: kp.Module) -> None:
    print(f"   {module!r}: kind={module.kind!r} mask={mask_name(module.property_mask)} ({int(module.property_mask)})")


def headline() -> None:
    """One kernel file, every device, one .so; run in a fresh process with the runtime alone."""
    print("kernpack: write a kernel once, run it at once on the CPU, ship one .so for every device")
    with tempfile.TemporaryDirectory(prefix="kernpack-demo-") as tmp:
        lib = Path(tmp) / "kernels.so"
        build = [sys.executable, "-m", "kernpack.cli", "build", str(EXAMPLES / "kernels.py"),
                 "--devices", "opencl,vulkan,cuda", "-o", str(lib)]  # fmt: skip
        step("kernpack build examples/kernels.py --devices opencl,vulkan,cuda -o kernels.so")
        start = time.perf_counter()
        subprocess.run(build, check=True, stdout=subprocess.DEVNULL)
        print(
            f"   {lib.name}, {lib.stat().st_size // 1024} KiB, built in {time.perf_counter() - start:.1f} s: saxpy and"
            " blur as machine code for any x86-64 CPU, SPIR-V for OpenCL, SPIR-V for Vulkan, PTX for CUDA"
        )
        step("python examples/shipped/run.py kernels.so --runtime-only  (a fresh process, the compiler blocked)")
        subprocess.run([sys.executable, str(EXAMPLES / "shipped" / "run.py"), str(lib), "--runtime-only"], check=True)
    if not any(d.kind == "cuda" for d in kp.devices()):
        print(
            "\n   No GPU here: OpenCL and Vulkan ran on CPU implementations of those APIs (Intel's OpenCL\n"
            "   runtime for CPUs, Mesa's lavapipe); the same .so runs its CUDA code where an NVIDIA GPU is."
        )


def main() -> int:
    headline()
    print("\n\nHow it works: runtime modules, their property masks, export and load")
    step("Build an llvm module from hand-written IR and JIT it")
    start = time.perf_counter()
    host = kp.llvm_module(VADD, name="vadd")
    vadd = host["vadd"]
    print(
        f"   parsed, verified, optimized (O3) and JIT-compiled in {(time.perf_counter() - start) * 1e3:.1f} ms"
        " (the first build also loads LLVM)"
    )
    print(f"   signature read from the IR: {vadd.signature}")
    show(host)
    a = np.arange(1_000_000, dtype=np.float32)
    b = np.full_like(a, 0.5)
    out = np.empty_like(a)
    vadd(a, b, out, a.size)
    assert np.array_equal(out, a + b)
    print(f"   vadd on 10^6 float32 matches numpy: out[:4] = {out[:4]}")

    step("A kernel written in Python, JIT-compiled on its first call")
    print(f"   signature: {saxpy.signature}")
    print("   kernel IR:")
    for line in str(saxpy.kir).splitlines():
        print(f"     {line}")
    start = time.perf_counter()
    saxpy(2.0, a, b, out)
    print(
        f"   first call (compile or cache hit, then run on 10^6 elements): {(time.perf_counter() - start) * 1e3:.1f} ms"
    )
    assert np.allclose(out, 2 * a + b)
    start = time.perf_counter()
    saxpy(2.0, a, b, out)
    print(f"   second call: {(time.perf_counter() - start) * 1e3:.2f} ms, matches numpy")

    step("Bad arguments are refused with the parameter named")
    try:
        vadd(a.astype(np.float64), b, out, a.size)
    except kp.ArgumentError as err:
        print(f"   ArgumentError: {err}")

    step("A C source module: serializable and exportable, not runnable")
    csrc = kp.c_source_module(SCALE_C, ["scale"], signatures=["void scale(float *x, float factor, int64_t n)"])
    show(csrc)
    blob = csrc.save_to_bytes()
    again = kp.load_from_bytes("c", blob)
    print(f"   save_to_bytes -> {len(blob)} bytes -> load_from_bytes('c') -> {again!r}")
    try:
        csrc["scale"]
    except kp.UnsupportedOperationError as err:
        print(f"   get_function: {err}")

    step("A python module: runnable only, the mask export must refuse")
    py = kp.python_module({"norm": lambda x: float(np.linalg.norm(x))})
    show(py)
    try:
        py.save_to_bytes()
    except kp.UnsupportedOperationError as err:
        print(f"   save_to_bytes: {err}")

    step("A module tree: lookup searches the root, then its imports depth-first")
    py.import_module(host)
    py.import_module(csrc)
    for path, module in py.walk():
        print(f"   {path}: {mask_name(module.property_mask)}")
    print(f"   py['vadd'] is the JIT-compiled function: {py['vadd'] is vadd}")
    try:
        host.import_module(py)
    except kp.ImportCycleError as err:
        print(f"   ImportCycleError: {err}")

    step("Export refuses, up front, a tree it could not load back")
    try:
        py.export_library(Path(tempfile.gettempdir()) / "never-written.so")
    except kp.ExportError as err:
        print(f"   ExportError: {err}")

    step("Export a pipeline over the llvm and C modules as one .so")
    pipe = kp.pipeline_module([("vadd", ["a", "b", "out", "n"]), ("scale", ["out", 0.5, "n"])], name="average")
    lowered = kp.llvm_module(VADD, name="vadd")
    lowered.import_module(
        kp.c_source_module(SCALE_C, ["scale"], signatures=["void scale(float *x, float factor, int64_t n)"])
    )
    # The kernel for the CPU (merged into the host library) and for OpenCL, CUDA and Vulkan
    # (packed as SPIR-V, PTX and a compute shader).
    lowered.import_module(kp.build([saxpy], cpu="generic", devices=("opencl", "cuda", "vulkan")))
    pipe.import_module(lowered)
    with tempfile.TemporaryDirectory() as tmp:
        lib = Path(tmp) / "demo.so"
        start = time.perf_counter()
        pipe.export_library(lib)
        print(f"   exported {lib.name} ({lib.stat().st_size} bytes) in {(time.perf_counter() - start) * 1e3:.0f} ms")
        print("   its C header, demo.h, declares:")
        for line in (Path(tmp) / "demo.h").read_text().splitlines():
            if line.endswith(");"):
                print(f"     {line}")

        step("Load it in a fresh process with the runtime alone (numpy + cffi, no LLVM) and run it")
        child = textwrap.dedent(
            f"""
            import sys, time, numpy as np
            from kernpack.runtime import load_module, mask_name
            start = time.perf_counter()
            root = load_module({str(lib)!r})
            took = (time.perf_counter() - start) * 1e6
            print(f"   load_module took {{took:.0f}} us; tree:")
            for path, m in root.walk():
                print(f"     {{path}}: mask {{mask_name(m.property_mask)}}")
            a = np.arange(6, dtype=np.float32); b = np.full(6, 4, np.float32); out = np.empty_like(a)
            root["average"](a=a, b=b, out=out, n=6)
            assert np.allclose(out, (a + b) / 2)
            print("   average(a, b) on the CPU:", out, "matches numpy")
            root["saxpy"](3.0, a, b, out)
            assert np.allclose(out, 3 * a + b)
            print("   the saxpy kernel from the library:", out, "matches numpy")
            for _, m in root.walk():
                if m.kind in ("cuda", "opencl", "vulkan"):
                    reason = m.unavailable_reason()
                    if reason:
                        print(f"   {{m.kind}}: not available here: {{reason}}")
                        continue
                    dev_out = np.zeros_like(out)
                    m["saxpy"](3.0, a, b, dev_out)
                    assert np.allclose(dev_out, out)
                    print(f"   saxpy on {{m.kind}} (from the same .so):", dev_out, "matches the CPU")
            print("   llvmlite imported:", "llvmlite" in sys.modules)
            """
        )
        subprocess.run([sys.executable, "-c", child], check=True)

    print("\ndemo finished: every step ran")
    return 0


if __name__ == "__main__":
    sys.exit(main())
