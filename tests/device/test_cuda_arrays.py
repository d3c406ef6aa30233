"""CUDA device arrays and asynchronous launches, against the stand-in driver of ``fake_cuda``.

What runs for real here is kernpack's side: the PTX it generates, how a launch packs its
arguments (checked against the PTX entry's parameter list), when it allocates, copies, frees and
waits, DLPack and ``__cuda_array_interface__``. The stand-in runs the kernels' Python versions
late (at the next wait), so an order kernpack got wrong shows as a wrong answer. The same
behaviour on a real GPU is ``test_device_arrays.py``'s, where one is present.
"""

from __future__ import annotations

import numpy as np
import pytest

import kernpack as kp
from kernpack.runtime import dlpack
from kernpack.runtime.cuda import CUDADevice, CUDAModule
from kernpack.runtime.devices import _KINDS, DeviceKind
from tests.device.fake_cuda import FakeDriver, FakeError
from tests.lang import kernels_src as K


def _saxpy(drv, a, x, nx, y, ny, out, nout):
    f32 = np.float32
    drv.view(out, nout, f32)[:] = f32(a) * drv.view(x, nx, f32) + drv.view(y, ny, f32)


def _vadd(drv, a, na, b, nb, out, nout):
    drv.view(out, nout, np.float32)[:] = drv.view(a, na, np.float32) + drv.view(b, nb, np.float32)


def _fault(drv, *args):
    raise FakeError(drv.CUresult.CUDA_ERROR_ILLEGAL_ADDRESS)


@pytest.fixture(scope="module")
def built():
    return kp.build([K.saxpy, K.vadd_f32], target="cuda")


@pytest.fixture(params=[True, False], ids=["stream-ordered-memory", "plain-memory"])
def gpu(request, monkeypatch, built):
    driver = FakeDriver({"saxpy": _saxpy, "vadd_f32": _vadd}, pools=request.param)
    dev = CUDADevice(driver, 0)
    monkeypatch.setattr(CUDAModule, "_runtime", staticmethod(lambda: dev))
    monkeypatch.setitem(_KINDS, "cuda", DeviceKind("cuda", lambda: [dev]))
    return driver, dev, built


def test_the_device_is_found_by_kind_and_says_what_it_is(gpu):
    dev = gpu[1]
    assert kp.device("cuda") is dev and dev in kp.devices()
    assert (dev.name, dev.memory, dev.architecture) == ("Fake GPU", 1 << 34, "sm_90")
    assert dev.runtime == "NVIDIA CUDA driver 12.4, compute capability 9.0"
    assert repr(dev) == "<kernpack device cuda:0 'Fake GPU', 16.0 GiB>"


def test_arrays_round_trip(gpu):
    dev = gpu[1]
    x = np.arange(12, dtype=np.float64).reshape(3, 4)
    d = dev.asarray(x)
    assert (d.shape, d.dtype, d.device) == ((3, 4), x.dtype, dev)
    assert np.array_equal(d.numpy(), x) and np.array_equal(np.asarray(d), x)
    assert np.array_equal(dev.zeros(5, np.int32).numpy(), np.zeros(5, np.int32))
    assert dev.empty(0).numpy().shape == (0,)


def test_launches_on_device_arrays_are_queued_and_run_in_order(gpu):
    driver, dev, module = gpu
    n = 1000
    rng = np.random.default_rng(1)
    x, y = rng.random(n, np.float32), rng.random(n, np.float32)
    dx, dy, dout = dev.asarray(x), dev.asarray(y), dev.empty(n, np.float32)
    before = driver.launches
    module["saxpy"](np.float32(2.0), dx, dy, dout)  # out = 2x + y
    module["vadd_f32"](dout, dx, dy)  # y = 3x + y
    module["saxpy"](np.float32(-1.0), dy, dx, dout)  # out = -(3x + y) + x
    assert driver.launches == before + 3 and len(driver.queue) == 3  # enqueued, none run yet
    expected_y = np.float32(3) * x + y
    assert np.allclose(dy.numpy(), expected_y, rtol=1e-6)  # the read waited for all three
    assert np.allclose(dout.numpy(), -expected_y + x, rtol=1e-5)


def test_numpy_arguments_are_copied_and_the_launch_waits(gpu):
    driver, dev, module = gpu
    n = 300
    x = np.linspace(0, 1, n, dtype=np.float32)
    dx, dout = dev.asarray(x), dev.empty(n, np.float32)
    host = np.ones(n, np.float32)
    module["saxpy"](np.float32(2.0), dx, host, dout)  # a numpy input
    assert not driver.queue
    host[:] = 100  # changes nothing now
    out = np.zeros(n, np.float32)
    module["saxpy"](np.float32(1.0), dout, dx, out)  # a numpy output: written on return
    assert np.allclose(out, 3 * x + 1)
    module["saxpy"](np.float32(1.0), x, x, out)  # numpy only
    assert np.allclose(out, 2 * x)


def test_arguments_reach_the_kernel_as_its_ptx_declares_them(gpu):
    # The stand-in reads each parameter by the size its .param line gives: a float, then a
    # pointer and an extent for each array. A wrong count or size gives a wrong answer.
    dev, module = gpu[1:]
    ptx = bytes(module.binary).decode()
    assert ".entry saxpy(" in ptx
    out = dev.empty(3, np.float32)
    module["saxpy"](np.float32(0.5), np.array([2, 4, 6], np.float32), np.ones(3, np.float32), out)
    assert np.array_equal(out.numpy(), [2, 3, 4])


def test_temporary_and_dropped_memory_is_freed_after_the_launches_that_use_it(gpu):
    driver, dev, module = gpu
    x = dev.asarray(np.ones(64, np.float32))
    baseline = len(driver.allocations)
    for _ in range(200):
        out = dev.empty(64, np.float32)
        module["saxpy"](np.float32(2.0), x, x, out)
        del out  # dropped while its launch is queued: freed after it, not before
    host = np.ones(64, np.float32)
    for _ in range(2000):
        module["saxpy"](np.float32(0.0), host, x, host)  # numpy arguments: temporaries
    dev.synchronize()
    assert driver.error is None  # no launch read freed memory
    assert len(driver.allocations) == baseline
    assert np.array_equal(host, np.ones(64, np.float32))


def test_a_failed_launch_is_reported_at_the_next_wait_by_name(gpu, monkeypatch):
    driver, dev, module = gpu
    monkeypatch.setitem(driver.kernels, "vadd_f32", _fault)
    x = dev.asarray(np.ones(8, np.float32))
    module["saxpy"](np.float32(1.0), x, x, x)
    module["vadd_f32"](x, x, x)
    with pytest.raises(kp.LaunchError, match=r"kernels launched: saxpy, vadd_f32\): cuStreamSynchronize failed: "):
        x.numpy()


def test_dlpack_hands_out_the_gpu_memory_in_place(gpu):
    dev = gpu[1]
    x = dev.asarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    assert x.__dlpack_device__() == (dlpack.KDL_CUDA, 0)
    for max_version in (None, (1, 0)):
        taken = dlpack.borrow(x.__dlpack__(max_version=max_version))
        assert (taken.pointer, taken.shape, taken.dtype, taken.device) == (x.buffer.pointer, (2, 3), x.dtype, (2, 0))
        taken.release()
    with pytest.raises(BufferError, match="in place on its own device only"):
        x.__dlpack__(dl_device=(1, 0))
    interface = x.__cuda_array_interface__
    pointer = x.buffer.pointer
    assert interface == {"shape": (2, 3), "typestr": "<f4", "data": (pointer, False), "strides": None, "version": 3}


class _OtherLibraryArray:
    """What CuPy or PyTorch hands over: its own GPU memory, written on a stream of its own."""

    def __init__(self, driver, host, stream=5, dlpack_only=False, readonly=False):
        self.pointer = driver.allocate(host.nbytes)
        driver.view(self.pointer, host.size, host.dtype)[:] = host.reshape(-1)
        self.shape, self.dtype, self.stream, self.readonly = host.shape, host.dtype, stream, readonly
        if not dlpack_only:
            self.__cuda_array_interface__ = {
                "shape": host.shape,
                "typestr": host.dtype.str,
                "data": (self.pointer, readonly),
                "version": 3,
                "stream": stream,
            }

    def __dlpack_device__(self):
        return (dlpack.KDL_CUDA, 0)

    def __dlpack__(self, stream=None, max_version=None, **kwargs):
        device = (dlpack.KDL_CUDA, 0)
        return dlpack.export(self.pointer, self.shape, self.dtype, device, self, max_version, self.readonly)


class _OlderLibraryArray(_OtherLibraryArray):
    """A producer from before DLPack 1.0: ``__dlpack__`` takes no ``max_version``."""

    def __dlpack__(self, stream=None):
        return dlpack.export(self.pointer, self.shape, self.dtype, (dlpack.KDL_CUDA, 0), self)


@pytest.mark.parametrize("protocol", ["cuda_array_interface", "dlpack", "dlpack before 1.0"])
def test_other_libraries_arrays_are_used_in_place(gpu, protocol):
    driver, dev, module = gpu
    n = 50
    x = np.arange(n, dtype=np.float32)
    kind = _OlderLibraryArray if protocol == "dlpack before 1.0" else _OtherLibraryArray
    theirs = kind(driver, x, dlpack_only=protocol != "cuda_array_interface")
    out = kind(driver, np.zeros(n, np.float32), dlpack_only=protocol != "cuda_array_interface")
    mine = dev.asarray(np.ones(n, np.float32))
    module["saxpy"](np.float32(2.0), theirs, mine, out)
    assert not driver.queue  # done on return: their next operation sees the results
    assert np.array_equal(driver.view(out.pointer, n, np.float32), 2 * x + 1)  # written in place
    assert (driver.waited == [5, 5]) == (protocol == "cuda_array_interface")  # their stream, first
    with pytest.raises(kp.ArgumentError, match=r"argument 'x'.*not C-contiguous"):
        strided = _OtherLibraryArray(driver, np.ones(8, np.float32))  # every other element of it
        strided.__cuda_array_interface__.update(shape=(4,), strides=(8,))
        module["saxpy"](np.float32(1.0), strided, mine, out)


def test_kernels_of_other_kinds_refuse_cuda_arrays(gpu):
    dev = gpu[1]
    x = dev.asarray(np.ones(4, np.float32))
    with pytest.raises(kp.ArgumentError, match="lives on a device, and this function runs on the host"):
        K.saxpy(1.0, x, x, x)


@pytest.mark.parametrize("protocol", ["cuda_array_interface", "dlpack"])
def test_an_array_lent_read_only_is_read_but_never_written(gpu, protocol):
    # __cuda_array_interface__'s data = (pointer, True), or DLPack 1.0's read-only flag: the
    # array may be a kernel's const input, and a parameter the kernel may write refuses it.
    driver, dev, module = gpu
    n = 8
    x = _OtherLibraryArray(driver, np.arange(n, dtype=np.float32), dlpack_only=protocol == "dlpack", readonly=True)
    out = dev.empty(n, np.float32)
    module["saxpy"](np.float32(2.0), x, x, out)
    assert np.array_equal(out.numpy(), 3 * np.arange(n, dtype=np.float32))
    with pytest.raises(kp.ArgumentError, match=r"argument 'out'.*_OtherLibraryArray is read-only"):
        module["saxpy"](np.float32(2.0), out, out, x)
    assert np.array_equal(driver.view(x.pointer, n, np.float32), np.arange(n, dtype=np.float32))  # untouched
