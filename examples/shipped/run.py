"""Run a library built from examples/kernels.py on every device this machine has, with the runtime alone.

Usage: ``python examples/shipped/run.py kernels.so [--runtime-only]``

With ``--runtime-only`` the compiler cannot be imported in this process (llvmlite and
``kernpack.driver`` are blocked), as where only ``kernpack-runtime`` is installed. Prints one
row per device: what it is, whether each kernel matches numpy, and its time per call.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable


def median_ms(call: Callable[[], object], repeats: int) -> float:
    """The median wall time of ``call`` in milliseconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("library")
    parser.add_argument("--runtime-only", action="store_true", help="block the compiler in this process")
    args = parser.parse_args()
    if args.runtime_only:
        for name in ("llvmlite", "kernpack.driver"):
            sys.modules[name] = None  # any import of it now fails

    import numpy as np

    import kernpack as kp
    from kernpack.runtime.cpufeatures import host_model

    start = time.perf_counter()
    lib = kp.load_module(args.library)
    print(f"  load_module: {(time.perf_counter() - start) * 1e3:.2f} ms\n")

    rng = np.random.default_rng(0)
    x, y = rng.random(1_000_000, dtype=np.float32), rng.random(1_000_000, dtype=np.float32)
    image = rng.random((1024, 1024), dtype=np.float32)
    padded = np.pad(image, 1, mode="edge")
    want_saxpy = np.float32(2) * x + y
    want_blur = sum(padded[i : i + 1024, j : j + 1024] for i in range(3) for j in range(3)) / np.float32(9)

    rows = [("device", "matches numpy", "first call", "saxpy 10^6", "on device", "blur 1024^2", "what runs it")]
    cpu = f"{host_model() or 'this CPU'}, {os.cpu_count()} cores"
    places: list[tuple[str, str, object, object]] = [("cpu", cpu, lib, None)]
    for kind in ("opencl", "vulkan", "cuda"):
        module = lib.device_module(kind)
        reason = module.unavailable_reason()
        if reason:  # its first clause: what is missing
            places.append((kind, f"not available here: {reason.split(';')[0].split(' (')[0]}", None, None))
        else:
            device = kp.device(kind)
            places.append((kind, device.runtime, module, device))
    for kind, what, module, device in places:
        if module is None:
            rows.append((kind, "", "", "", "", "", what))
            continue
        out, blurred = np.empty_like(x), np.empty_like(image)
        start = time.perf_counter()
        module["saxpy"](np.float32(2), x, y, out)
        first = (time.perf_counter() - start) * 1e3
        module["blur"](image, blurred)
        ok = np.allclose(out, want_saxpy, rtol=1e-6) and np.allclose(blurred, want_blur, atol=1e-5)
        saxpy_ms = median_ms(lambda m=module, o=out: m["saxpy"](np.float32(2), x, y, o), 10)
        blur_ms = median_ms(lambda m=module, b=blurred: m["blur"](image, b), 5)
        resident = ""
        if device is not None:  # arrays that stay on the device: the launch alone
            dx, dy, dout = device.asarray(x), device.asarray(y), device.empty(x.shape, x.dtype)
            saxpy = module["saxpy"]

            def launch(f=saxpy, d=device, a=dx, b=dy, o=dout) -> None:
                f(np.float32(2), a, b, o)
                d.synchronize()

            launch()
            resident = f"{median_ms(launch, 10):.2f} ms"
            ok = ok and np.allclose(dout.numpy(), want_saxpy, rtol=1e-6)
        rows.append((kind, "yes" if ok else "NO", f"{first:.1f} ms", f"{saxpy_ms:.2f} ms", resident,
                     f"{blur_ms:.2f} ms", what))  # fmt: skip
        if not ok:
            print(f"  {kind}: results differ from numpy", file=sys.stderr)
    numpy_saxpy = median_ms(lambda: np.add(np.multiply(np.float32(2), x), y), 10)
    rows.append(("numpy", "", "", f"{numpy_saxpy:.2f} ms", "", "", "a * x + y, for comparison"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    if args.runtime_only:
        assert "llvmlite" not in sys.modules or sys.modules["llvmlite"] is None
        print("\n  this process imported no compiler: llvmlite and kernpack.driver were blocked")
    return 0 if all(r[1] != "NO" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
