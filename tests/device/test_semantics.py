"""The defined semantics on every device: the bug classes of the differential campaign, each
checked against the reference interpreter (OpenCL and Vulkan run here; CUDA's PTX goes
through ptxas)."""

import importlib
import math

import numpy as np
import pytest

import kernpack as kp
from kernpack.driver.targets.cuda import assemble_cubin, find_ptxas
from tests.conftest import require_device, require_tool, spirv_val
from tests.lang import semantics_src as S

DEVICES = ("opencl", "vulkan")
opencl_target = importlib.import_module("kernpack.driver.targets.opencl")

# (kernel, arguments): each runs on the device and in the interpreter, and all arrays must agree.
CASES = {
    "float_divmod": (
        S.float_divmod,
        lambda: [
            np.array([1.0, math.inf, -2.0, 7.5, -7.5, 126.0, 0.0, -0.0, 5.0, 0.0]),
            np.array([0.1, 2.0, math.inf, -2.0, 2.0, 0.1, -3.0, 3.0, 0.0, 0.0]),
            np.zeros(10),
            np.zeros(10),
        ],
    ),
    "float32_divmod": (
        S.float32_divmod,
        lambda: (
            [np.array([1e10, 1.0, -1.0], np.float32), np.array([3.0, 0.1, 0.1], np.float32)]
            + [np.zeros(3, np.float32) for _ in range(2)]
        ),
    ),
    "power_i64": (S.power_i64, lambda: [np.array([0.5, 3.0]), 2**32 + 1, np.zeros(2)]),
    "unfit_literals": (
        S.unfit_literals,
        lambda: (
            [np.array([5, 0], np.uint32), np.array([1, -3], np.int8), np.array([1, 200], np.uint8)]
            + [np.zeros(2, t) for t in (np.uint32, np.int8, np.uint8)]
        ),
    ),
    "locals_per_point": (S.locals_per_point, lambda: [np.arange(70, dtype=np.int64), np.zeros(70, np.int64)]),
    "ranges": (S.ranges, lambda: [-3, np.zeros(3, np.int64)]),
    "grid_cast": (S.grid_cast, lambda: [0, np.zeros(4, np.int32)]),
    "grid_negative_literal": (S.grid_negative_literal, lambda: [np.zeros(4, np.int32)]),
    "grid_wrapping": (
        S.grid_wrapping,
        lambda: [2**32, 14801965848254440725, np.zeros(4, np.int32), np.zeros((11, 3), np.int32)],
    ),
    "grid_param_reassigned": (S.grid_param_reassigned, lambda: [3, np.zeros(4, np.int32)]),
    "narrowed_arithmetic": (S.narrowed_arithmetic, lambda: [np.zeros(23, np.uint16)]),
    "nan_to_u32": (S.nan_to_u32, lambda: [np.array([np.nan, -1.0, 1e20, 3.5], np.float32), np.zeros(4, np.uint32)]),
    "narrow_atomics": (
        S.narrow_atomics,
        lambda: [np.ones(101, np.int8), np.zeros(4, np.int8), np.full(101, 3, np.uint16), np.zeros(3, np.uint16)],
    ),
}
KERNELS = [kernel for kernel, _ in CASES.values()]


@pytest.fixture(scope="module", params=DEVICES)
def device(request):
    return require_device(kp.build(KERNELS, target=request.param, name="semantics"))


@pytest.mark.parametrize("name", list(CASES))
def test_device_matches_the_interpreter(device, name):
    kernel, make = CASES[name]
    expected, got = make(), make()
    with np.errstate(all="ignore"):
        kernel.interpret(*expected)
    device[name](*got)
    for want, have in zip(expected, got, strict=True):
        if isinstance(want, np.ndarray):
            np.testing.assert_array_equal(have, want)


def test_spirv_of_every_case_validates(tmp_path):
    opencl = kp.build(KERNELS, target="opencl", name="semantics")
    assert spirv_val(bytes(opencl.binary), "opencl2.2", tmp_path) == ""
    vulkan = kp.build(KERNELS, target="vulkan", name="semantics")
    for kernel in KERNELS:
        assert spirv_val(vulkan.shader(kernel.name), "vulkan1.3", tmp_path) == "", kernel.name


def test_ptx_of_every_case_passes_ptxas():
    ptxas = require_tool(find_ptxas(), "ptxas", "pip install nvidia-cuda-nvcc")
    assert ptxas
    module = kp.build(KERNELS, target="cuda", name="semantics")
    assert assemble_cubin(module.inspect_source(), "sm_80", "semantics") is not None


@pytest.mark.parametrize("target", ["opencl", "cuda"])
def test_narrow_atomic_beside_a_plain_store_is_refused(target):
    with pytest.raises(
        kp.CompileError, match=r"narrow_atomic_and_store' at .*semantics_src.py:\d+: a8 \(i8\[:\]\) is written both"
    ):
        kp.build([S.narrow_atomic_and_store], target=target)


def test_a_failing_kernel_of_a_build_is_named(monkeypatch):
    real = opencl_target.emit

    def crash_on_one(text, triple, unit, **keywords):
        if '@"grid_cast"' in text:
            raise kp.CompileError(f"LLVM crashed (SIGABRT) generating code for {unit.label}")
        return real(text, triple, unit, **keywords)

    monkeypatch.setattr(opencl_target, "emit", crash_on_one)
    with pytest.raises(kp.CompileError) as info:
        kp.build([S.nan_to_u32, S.grid_cast, S.ranges], target="opencl", cache=False)
    message = str(info.value)
    assert message.startswith("kernel 'grid_cast' (")
    assert "semantics_src.py:" in message and "could not be compiled for opencl" in message
    assert "nan_to_u32" not in message


@pytest.mark.parametrize("target", ["opencl", "vulkan", "cuda"])
def test_a_grid_that_depends_on_a_branch_is_refused(target):
    # It once launched the argument's grid: p reassigned under an if was read as the argument.
    with pytest.raises(
        kp.CompileError, match=r"grid_param_reassigned_in_if' at .*semantics_src.py:\d+: on device targets"
    ):
        kp.build([S.grid_param_reassigned_in_if], target=target)
