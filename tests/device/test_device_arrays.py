"""Devices by name and arrays that stay on them: no copies, asynchronous launches, the same results.

OpenCL (Intel's CPU runtime) and Vulkan (lavapipe) run for real here, CUDA where a GPU is present
(elsewhere ``test_cuda_arrays.py`` runs the CUDA path against a stand-in for the driver).
"""

from __future__ import annotations

import resource

import numpy as np
import pytest

import kernpack as kp
from tests.conftest import require_device
from tests.lang import kernels_src as K


@pytest.fixture(scope="module", params=["opencl", "vulkan", "cuda"])
def opencl(request):
    # Named for the first kind; every test here runs on each device kind with device arrays.
    return require_device(kp.build([K.saxpy, K.vadd_f32, K.matmul, K.bincount], target=request.param))


@pytest.fixture(scope="module")
def dev(opencl):
    return kp.device(opencl.kind)


def test_devices_are_listed_and_found_by_kind(dev):
    assert dev in kp.devices()
    assert dev.index == 0 and dev.name and dev.memory > 0
    # What implements it, in the driver's words: for OpenCL and Vulkan on this suite's
    # machines, a CPU implementation.
    known = {"opencl": "Intel(R) OpenCL", "vulkan": "llvmpipe (Mesa", "cuda": "NVIDIA CUDA driver "}
    assert dev.runtime.startswith(known[dev.kind]), dev.runtime
    assert dev.runtime.endswith(", on the CPU") != (dev.kind == "cuda")
    assert kp.device(dev.kind) is dev
    with pytest.raises(kp.DeviceUnavailableError, match=f"no {dev.kind} device 3"):
        kp.device(dev.kind, 3)
    with pytest.raises(ValueError, match="unknown device kind 'tpu'"):
        kp.device("tpu")


def test_arrays_round_trip(dev):
    x = np.arange(12, dtype=np.float64).reshape(3, 4)
    d = dev.asarray(x)
    assert (d.shape, d.dtype, d.device, d.ndim, d.size, d.nbytes, len(d)) == ((3, 4), x.dtype, dev, 2, 12, 96, 3)
    assert np.array_equal(d.numpy(), x) and np.array_equal(np.asarray(d), x)
    assert np.array_equal(dev.zeros((2, 5), np.int32).numpy(), np.zeros((2, 5), np.int32))
    back = np.empty_like(x)
    d.copy_from(x * 2)
    d.copy_to(back)
    assert np.array_equal(back, x * 2)
    assert dev.asarray(d) is d
    assert dev.empty(0).numpy().shape == (0,)
    with pytest.raises(kp.ArgumentError, match="differ"):
        d.copy_to(np.empty((4, 3)))
    with pytest.raises(kp.ArgumentError, match="device arrays hold"):
        dev.empty(3, np.complex64)


def test_kernels_take_device_arrays_without_copies_and_run_in_order(opencl, dev):
    n = 10_000
    rng = np.random.default_rng(0)
    x, y = rng.random(n, np.float32), rng.random(n, np.float32)
    dx, dy, dout = dev.asarray(x), dev.asarray(y), dev.empty(n, np.float32)
    saxpy, vadd = opencl["saxpy"], opencl["vadd_f32"]
    # Launches return at once; each reads what the one before wrote (one in-order queue).
    saxpy(np.float32(2.0), dx, dy, dout)  # out = 2x + y
    vadd(dout, dx, dy)  # y = out + x = 3x + y
    saxpy(np.float32(-1.0), dy, dx, dout)  # out = -(3x + y) + x
    expected_y = (np.float32(3) * x + y).astype(np.float32)
    assert np.allclose(dy.numpy(), expected_y, rtol=1e-6)
    assert np.allclose(dout.numpy(), -expected_y + x, rtol=1e-5)
    dev.synchronize()


def test_numpy_and_device_arguments_mix_across_launches(opencl, dev):
    n = 4096
    x = np.linspace(0, 1, n, dtype=np.float32)
    dx, dout = dev.asarray(x), dev.empty(n, np.float32)
    host = np.ones(n, np.float32)
    saxpy = opencl["saxpy"]
    saxpy(np.float32(2.0), dx, host, dout)  # a numpy input: the launch waits
    host[:] = 100  # so changing it now changes nothing
    out = np.empty(n, np.float32)
    saxpy(np.float32(1.0), dout, dx, out)  # a numpy output: written when the call returns
    assert np.allclose(out, 3 * x + 1)
    opencl["vadd_f32"](out, host, dout)  # device output from numpy inputs
    assert np.allclose(dout.numpy(), 3 * x + 101)
    a, b = np.arange(6, dtype=np.float32).reshape(2, 3), np.ones((3, 2), np.float32)
    c = dev.zeros((2, 2), np.float32)
    opencl["matmul"](dev.asarray(a), b, c)
    assert np.allclose(c.numpy(), a @ b)


def test_wrong_device_arrays_are_refused_by_name(opencl, dev):
    saxpy = opencl["saxpy"]
    x = dev.asarray(np.ones(4, np.float64))
    with pytest.raises(kp.ArgumentError, match=r"argument 'x' .*expected float with 1 dimensions"):
        saxpy(np.float32(1), x, x, x)
    with pytest.raises(kp.ArgumentError, match="lives on a device, and this function runs on the host"):
        K.saxpy(1.0, dev.asarray(np.ones(4, np.float32)), np.ones(4, np.float32), np.ones(4, np.float32))
    f32 = dev.asarray(np.ones(4, np.float32))
    other = kp.build([K.saxpy], target="vulkan" if dev.kind != "vulkan" else "opencl")
    with pytest.raises(kp.ArgumentError, match="lives on another device than <kernpack device"):
        other["saxpy"](np.float32(1), f32, f32, f32)


def test_device_module_is_found_by_kind(opencl):
    host = kp.build([K.saxpy], devices=("cuda", "opencl"))
    assert host.device_module("opencl").kind == "opencl"
    assert host.device_module("cuda").kind == "cuda"
    assert host.device_module("llvm") is host
    with pytest.raises(kp.ModuleKindNotFoundError, match=r"no 'vulkan' module .*kinds: llvm, cuda, opencl"):
        host.device_module("vulkan")


def test_device_arrays_free_their_memory(dev):
    # Vulkan frees nothing by itself: a dropped array's buffer goes once no launch can use it.
    for _ in range(200):
        dev.asarray(np.ones(1 << 18, np.float32))  # 1 MiB each, dropped at once
    assert np.array_equal(dev.asarray(np.arange(3.0)).numpy(), np.arange(3.0))


def test_ten_thousand_launches_leak_nothing(opencl, dev):
    n = 1029  # on Vulkan, a whole workgroup for the vector entry point and a rest for main
    x = dev.asarray(np.ones(n, np.float32))
    out = dev.empty(n, np.float32)
    host = np.ones(n, np.float32)
    saxpy = opencl["saxpy"]

    def launches(count: int) -> None:
        for i in range(count):
            if i % 2:
                saxpy(np.float32(2.0), x, x, out)
            else:
                saxpy(np.float32(2.0), host, x, host)  # numpy arguments: buffers made and freed
        dev.synchronize()

    launches(2_000)  # the driver's caches and pools reach their size
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    launches(10_000)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 8 * 1024, f"10,000 launches grew the peak memory by {grown_kib} KiB"
    assert np.allclose(out.numpy(), 3.0)


def test_dlpack_hands_the_memory_to_the_cpu_without_a_copy(opencl, dev):
    # Both devices here keep their arrays in host memory (Intel's runtime through system SVM,
    # lavapipe's host-visible memory): DLPack gives numpy the device's own bytes.
    if dev.kind == "cuda":
        with pytest.raises((BufferError, RuntimeError)):  # GPU memory: numpy cannot take it
            np.from_dlpack(dev.zeros(3))
        return
    n = 1000
    x = dev.asarray(np.arange(n, dtype=np.float32))
    out = dev.zeros(n, np.float32)
    opencl["saxpy"](np.float32(2.0), x, x, out)  # in flight: __dlpack__ waits for it
    assert out.__dlpack_device__() == (1, 0)
    view = np.from_dlpack(out)
    assert np.array_equal(view, 3 * np.arange(n, dtype=np.float32))
    view[:] = 1.0  # written by the CPU, read by the next launch
    opencl["vadd_f32"](out, out, x)
    assert np.array_equal(x.numpy(), np.full(n, 2.0, np.float32))
    del out  # the view keeps the memory alive
    assert view.sum() == n


def test_a_failed_launch_is_reported_at_the_next_wait_by_name():
    class Failing(kp.Device):
        kind = "test"

        def _wait(self):
            raise RuntimeError("CL_OUT_OF_RESOURCES")

    dev = Failing("failing", 0, 0)
    for name in ("saxpy", "blur", "saxpy"):
        dev.launched(name)
    with pytest.raises(kp.LaunchError, match=r"kernels launched: saxpy, blur\): CL_OUT_OF_RESOURCES"):
        dev.synchronize()
    with pytest.raises(kp.LaunchError, match="none since the last synchronization"):
        dev.synchronize()


def test_a_grid_beyond_the_workgroup_count_limit_is_dispatched_in_pieces(monkeypatch):
    # Many GPUs dispatch at most 65535 workgroups per axis (4 million points of a 1-D grid):
    # a larger grid goes in pieces. Here the limit is made small to see every point computed.
    module = require_device(kp.build([K.saxpy, K.matmul], target="vulkan"))
    dev = kp.device("vulkan")
    monkeypatch.setattr(dev, "max_groups", (7, 3, 65535))
    n = 256 * 7 * 5 + 13  # six pieces of at most 7 workgroups of 256
    x = np.arange(n, dtype=np.float32)
    out = np.zeros(n, np.float32)
    module["saxpy"](np.float32(2.0), x, x, out)
    assert np.array_equal(out, 3 * x)
    a, b = np.ones((70, 5), np.float32), np.ones((5, 90), np.float32)  # 2-D: 16x16 workgroups, 6x5 of them
    c = np.zeros((70, 90), np.float32)
    module["matmul"](a, b, c)
    assert np.array_equal(c, a @ b)


def test_cuda_says_why_it_has_no_device_here():
    if kp.build([K.saxpy], target="cuda").is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(kp.DeviceUnavailableError, match="CUDA kernels need one"):
        kp.device("cuda")
    assert all(d.kind != "cuda" for d in kp.devices())


@pytest.mark.parametrize("library", ["cupy", "torch"])
def test_cuda_takes_cupy_and_torch_arrays_in_place_and_hands_its_own_back(library):
    # Only where a GPU (and the library) is present; test_cuda_arrays checks the same path here.
    module = require_device(kp.build([K.saxpy], target="cuda"))
    lib = pytest.importorskip(library)
    dev = kp.device("cuda")
    n = 1 << 16
    if library == "cupy":
        x, out = lib.arange(n, dtype=lib.float32), lib.zeros(n, dtype=lib.float32)
    else:
        x, out = lib.arange(n, dtype=lib.float32, device="cuda"), lib.zeros(n, dtype=lib.float32, device="cuda")
    ones = dev.asarray(np.ones(n, np.float32))
    module["saxpy"](np.float32(2.0), x, ones, out)  # theirs, mine, theirs
    expected = 2 * np.arange(n, dtype=np.float32) + 1
    assert np.array_equal(out.get() if library == "cupy" else out.cpu().numpy(), expected)
    mine = lib.from_dlpack(ones) if library == "torch" else lib.asarray(ones)  # DLPack / CUDA array interface
    mine += 1  # their kernel, on kernpack's memory, on their stream: wait for it as for any of theirs
    (lib.cuda.Device().synchronize if library == "cupy" else lib.cuda.synchronize)()
    assert np.array_equal(ones.numpy(), np.full(n, 2.0, np.float32))
