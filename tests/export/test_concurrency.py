"""Many threads loading libraries, building and calling kernels at once give correct results."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import kernpack as kp
from tests.conftest import VADD_IR, require_device
from tests.export.kinds import BlobKind


def test_threads_load_the_same_and_different_libraries_and_call(tmp_path):
    root = kp.llvm_module(VADD_IR)
    root.import_module(BlobKind("value", 7))
    first = root.export_library(tmp_path / "a.so")
    copies = [first] + [shutil.copy(first, tmp_path / f"copy{i}.so") for i in range(3)]

    def work(i: int) -> bool:
        lib = kp.load_module(copies[i % len(copies)])
        a = np.full(1000, i, np.float32)
        out = np.empty_like(a)
        lib["vadd"](a, a, out, a.size)
        return bool((out == 2 * i).all()) and lib["value"]() == 7

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(work, range(200)))


def test_threads_compile_and_call_the_same_kernel():
    @kp.kernel
    def twice(x: kp.f64[:], out: kp.f64[:]):
        for i in kp.grid(x.shape[0]):
            out[i] = 2.0 * x[i]

    def work(i: int) -> bool:
        x = np.arange(100, dtype=np.float64) + i
        out = np.empty_like(x)
        twice(x, out)
        return bool((out == 2 * x).all())

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(work, range(100)))
    assert len(twice._modules) == 1  # built once, shared by every thread


@pytest.mark.parametrize("target", ["opencl", "vulkan"])
def test_threads_launch_device_kernels_at_once(target):
    from tests.lang import kernels_src as K

    module = require_device(kp.build([K.saxpy], target=target, name="threads"))

    def work(i: int) -> bool:
        x = np.arange(257, dtype=np.float32) + i
        y = np.full_like(x, i)
        out = np.empty_like(x)
        module["saxpy"](np.float32(2.0), x, y, out)
        return bool(np.allclose(out, 2 * x + y))

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(work, range(200)))
