"""A library of many distinct kernels, written as a kernel file: what a build at scale compiles.

``write(path, count)`` writes ``count`` kernels made from a few templates (elementwise with
math, a 2-D stencil, a reduction, a loop), each with its own constants, so that no two share
compiled code and every one builds for cpu, opencl, vulkan and cuda.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

_TEMPLATES = (
    """
@kp.kernel
def ew_{i}(a: kp.f32, x: kp.f32[:], y: kp.f32[:], out: kp.f32[:]):
    for i in kp.grid(out.shape[0]):
        out[i] = a * x[i] + kp.math.sin(y[i] * kp.f32({c}))
""",
    """
@kp.kernel
def stencil_{i}(x: kp.f64[:, :], out: kp.f64[:, :]):
    n = x.shape[0]
    m = x.shape[1]
    for i, j in kp.grid(n, m):
        acc = 0.0
        for d in range(-1, 2):
            acc += x[min(max(i + d, 0), n - 1), j] * {c}
        out[i, j] = acc + x[i, min(j + 1, m - 1)]
""",
    """
@kp.kernel
def total_{i}(x: kp.f32[:], out: kp.f32[:]):
    acc = kp.f32(0.0)
    for i in kp.grid(x.shape[0]):
        acc += x[i] * kp.f32({c})
    out[0] = acc
""",
    """
@kp.kernel
def steps_{i}(x: kp.i64[:], out: kp.i64[:]):
    for i in kp.grid(x.shape[0]):
        v = x[i]
        n = 0
        while v > 1 and n < {k}:
            if v % 2 == 0:
                v = v // 2
            else:
                v = 3 * v + 1
            n += 1
        out[i] = n
""",
)


def source(count: int) -> str:
    """The kernel file's text: ``count`` kernels, the templates in turn."""
    parts = ["import kernpack as kp\n"]
    for i in range(count):
        template = _TEMPLATES[i % len(_TEMPLATES)]
        parts.append(template.format(i=i, c=1.0 + i / 1000, k=100 + i))
    return "".join(parts)


def write(path: Path, count: int) -> Path:
    """Write the kernel file of ``count`` kernels to ``path``."""
    path.write_text(source(count))
    return path


def kernels(directory: Path, count: int, name: str = "many") -> list[Any]:
    """Write the file of ``count`` kernels as ``directory/<name>.py``, import it, return its kernels by name."""
    path = write(directory / f"{name}.py", count)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found = {n: v for n, v in vars(module).items() if hasattr(v, "kir")}  # the @kp.kernel functions
    return [found[n] for n in sorted(found)]
