"""The quickstart, runnable: write a kernel, run it, ship it, load it elsewhere.

docs/quickstart.md walks through this file; tests/test_examples.py runs it.
"""

import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

import kernpack as kp


# 1. A kernel: typed parameters, one parallel loop over the output.
@kp.kernel
def saxpy(a: kp.f32, x: kp.f32[:], y: kp.f32[:], out: kp.f32[:]):
    for i in kp.grid(out.shape[0]):
        out[i] = a * x[i] + y[i]


# 2. Run it: compiled for this CPU on the first call, then reused (and cached on disk).
x = np.arange(10, dtype=np.float32)
y = np.ones_like(x)
out = np.empty_like(x)
saxpy(2.0, x, y, out)
assert np.array_equal(out, 2 * x + y)
print("saxpy on the CPU:", out)

# 3. Ship it: one .so with code for the CPU and blobs for the devices. cpu="generic": portable
# code for any CPU of this architecture; the default tunes for this one.
module = kp.build([saxpy], cpu="generic", devices=("opencl", "vulkan"))
print("module:", module, "imports:", module.imports)
workdir = tempfile.TemporaryDirectory()
library = module.export_library(Path(workdir.name) / "saxpy.so")
print("exported", library, "and its C header saxpy.h")

# 4. Load it in another process that has numpy and cffi but no compiler.
child = textwrap.dedent(
    f"""
    import numpy as np
    from kernpack.runtime import load_module

    lib = load_module({library!r})
    x = np.arange(10, dtype=np.float32); y = np.ones_like(x); out = np.empty_like(x)
    lib["saxpy"](2.0, x, y, out)
    print("saxpy from the library:", out)
    for device in lib.imports:
        if device.is_available():
            device["saxpy"](2.0, x, y, out)
            print(f"saxpy on {{device.kind}}:", out)
        else:
            print(f"{{device.kind}} is not available here:", device.unavailable_reason())

    # A library named like a module imports as one: its functions, and the tree as .module.
    import sys
    sys.path.insert(0, {workdir.name!r})
    import saxpy as shipped
    shipped.saxpy(3.0, x, y, out)
    print("saxpy through `import saxpy`:", out, "tree:", shipped.module)
    """
)
subprocess.run([sys.executable, "-c", child], check=True)
workdir.cleanup()
