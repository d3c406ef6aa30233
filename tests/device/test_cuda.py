"""CUDA: PTX for every kernel of the test set, checked by ptxas; launches only where a GPU is.

ptxas comes from the nvidia-cuda-nvcc wheel (the test extra), so PTX is validated on every
machine; where ``KERNPACK_REQUIRE_DEVICES`` names cuda, launch tests must run.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

import kernpack as kp
from kernpack.driver.targets.cuda import find_ptxas
from tests.conftest import require_device, require_tool
from tests.device.cases import CASES, assert_same
from tests.lang import kernels_src as K


@pytest.fixture(scope="module")
def module():
    return kp.build([kernel for kernel, _ in CASES.values()], target="cuda", name="lang_set")


def test_every_kernel_compiles_to_ptx_that_ptxas_accepts(module, tmp_path):
    ptxas = require_tool(find_ptxas(), "ptxas", "pip install nvidia-cuda-nvcc")
    ptx = module.inspect_source()
    assert ".target sm_80" in ptx
    for name in CASES:
        assert f".entry {name}(" in ptx
    path = tmp_path / "k.ptx"
    path.write_text(ptx)
    result = subprocess.run([ptxas, "-arch=sm_80", str(path), "-o", str(tmp_path / "k.cubin")], capture_output=True)
    assert result.returncode == 0, result.stderr.decode()
    assert (tmp_path / "k.cubin").read_bytes()[:4] == b"\x7fELF"


def test_math_functions_come_from_libdevice(module):
    # softmax calls exp: libdevice's code is linked in and inlined, nothing is left external,
    # and the hundreds of libdevice functions nobody calls are gone.
    ptx = module.inspect_source()
    assert ".extern" not in ptx
    assert "__nv_" not in ptx
    assert len(ptx) < 200_000


def test_cuda_module_round_trips_and_refuses_write_to_file():
    module = kp.build([K.saxpy], target="cuda")
    assert module.kind == "cuda"
    assert module.property_mask == kp.ModulePropertyMask.BINARY_SERIALIZABLE | kp.ModulePropertyMask.RUNNABLE
    again = kp.load_from_bytes("cuda", module.save_to_bytes())
    assert again.inspect_source() == module.inspect_source()
    assert again.functions["saxpy"].grid == ("out.shape[0]",)
    with pytest.raises(kp.UnsupportedOperationError, match=r"Module\[cuda\] does not support write_to_file"):
        module.write_to_file("x.o")


def test_without_a_gpu_a_call_says_what_is_missing(module):
    if module.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(kp.DeviceUnavailableError, match="cannot run saxpy on cuda"):
        module["saxpy"](np.float32(1), np.ones(3, np.float32), np.ones(3, np.float32), np.zeros(3, np.float32))


@pytest.mark.parametrize("name", sorted(CASES))
def test_kernel_on_cuda_matches_the_cpu(module, name):
    require_device(module)
    kernel, make = CASES[name]
    on_cpu, on_device = make(), make()
    kernel(*on_cpu)
    module[name](*on_device)
    assert_same(on_cpu, on_device)


def test_cubin_is_assembled_beside_the_ptx_and_the_architecture_is_configurable():
    require_tool(find_ptxas(), "ptxas", "pip install nvidia-cuda-nvcc")
    module = kp.build([K.saxpy], target="cuda", arch="sm_90")
    assert ".target sm_90" in module.inspect_source()
    assert bytes(module.sections["cubin"][:4]) == b"\x7fELF"
    again = kp.load_from_bytes("cuda", module.save_to_bytes())
    assert bytes(again.sections["cubin"]) == bytes(module.sections["cubin"])
    with pytest.raises(ValueError, match="not a name like 'sm_80'"):
        kp.build([K.saxpy], target="cuda", arch="ampere")
    with pytest.raises(ValueError, match=r"not cpu \(the GPU architecture is arch="):
        kp.build([K.saxpy], target="cuda", cpu="sm_90")


SAXPY_ENTRY = {
    "name": "saxpy",
    "signature": "void saxpy(float a, const float x[:], const float y[:], float out[:])",
    "grid": ["out.shape[0]"],
}


def test_user_ptx_is_assembled_by_ptxas_and_packed_with_its_cubin(tmp_path):
    require_tool(find_ptxas(), "ptxas", "pip install nvidia-cuda-nvcc")
    ptx = kp.build([K.saxpy], target="cuda", arch="sm_90").inspect_source()
    module = kp.cuda_module(ptx, [SAXPY_ENTRY])  # PTX as a user brings it: no cubin given
    assert bytes(module.sections["cubin"][:4]) == b"\x7fELF"
    again = kp.load_from_bytes("cuda", module.save_to_bytes())
    assert bytes(again.sections["cubin"]) == bytes(module.sections["cubin"])


def test_user_ptx_that_ptxas_rejects_is_a_compile_error_with_its_log_and_a_repro():
    require_tool(find_ptxas(), "ptxas", "pip install nvidia-cuda-nvcc")
    ptx = kp.build([K.saxpy], target="cuda").inspect_source().replace("ld.param", "ld.parm", 1)
    with pytest.raises(kp.CompileError, match=r"(?s)ptxas rejected the PTX of saxpy \(exit \d+\):.*repro: .*ptxas"):
        kp.cuda_module(ptx, [SAXPY_ENTRY])
    assert "cubin" not in kp.cuda_module(ptx, [SAXPY_ENTRY], assemble=False).sections  # when asked not to
