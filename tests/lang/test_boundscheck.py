"""Bounds checks on request: the first out-of-range access of a call is an IndexError naming it."""

from __future__ import annotations

import numpy as np
import pytest

import kernpack as kp
from tests.conftest import require_device
from tests.lang.helpers import import_source as _import
from tests.lang.helpers import run_documented_example

KERNELS = """
import kernpack as kp

@kp.kernel(boundscheck=True)
def shift(x: kp.f32[:], out: kp.f32[:]):
    for i in kp.grid(out.shape[0]):
        out[i] = x[i + 1]  # LINE:shift

@kp.kernel
def column(m: kp.i64[:, :], j: kp.i64, out: kp.i64[:]):
    for i in kp.grid(out.shape[0]):
        out[i] = m[i, j]  # LINE:column

@kp.kernel
def scatter(idx: kp.i32[:], out: kp.i32[:], hits: kp.u32[:]):
    for i in kp.grid(idx.shape[0]):
        out[idx[i]] = i  # LINE:scatter
        kp.atomic_add(hits, idx[i], kp.u32(1))

@kp.kernel
def window(x: kp.f64[:], k: kp.i64, out: kp.f64[:]):
    for i in kp.grid(out.shape[0]):
        w = kp.local(kp.f64, 3)
        w[k] = x[i]  # LINE:window
        out[i] = w[0] + w[1] + w[2]

@kp.kernel
def first_and_total(x: kp.f32[:], n: kp.i64, out: kp.f32[:]):
    start = x[n]  # LINE:prologue
    total = kp.f32(0.0)
    for i in kp.grid(x.shape[0]):
        total += x[i]
    out[n] = total + start  # LINE:epilogue
"""


def _line(source: str, tag: str) -> int:
    return next(n for n, text in enumerate(source.splitlines(), 1) if f"LINE:{tag}" in text)


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    return _import(tmp_path_factory.mktemp("boundscheck"), KERNELS, "checked_kernels")


def _raises(call, kernel: str, array: str, index: str, shape: str, tag: str, kernels) -> kp.KernelIndexError:
    with pytest.raises(IndexError) as info:
        call()
    error = info.value
    assert isinstance(error, kp.KernelIndexError) and isinstance(error, kp.KernpackError)
    message = str(error)
    line = _line(KERNELS, tag)
    assert f"kernel {kernel!r} at {kernels.__file__}:{line}:" in message, message
    assert f"index [{index}] is out of range for {array} of shape ({shape})" in message, message
    return error


def test_the_documented_example_runs(tmp_path):
    run_documented_example(tmp_path, "Bounds checks")


@pytest.mark.parametrize("threads", [1, 2])
def test_the_cpu_raises_for_the_first_access_and_skips_it(kernels, threads):
    shift = kp.build([kernels.shift], threads=threads)["shift"]
    assert shift.native_entry is None  # checked in the Python path, after the call
    x = np.arange(40_000, dtype=np.float32)
    out = np.zeros_like(x)
    _raises(lambda: shift(x, out), "shift", "x", "40000", "40000,", "shift", kernels)
    assert np.array_equal(out[:-1], x[1:]) and out[-1] == 0  # the others ran; the bad load gave 0
    shift(x[:5], out[:4].copy())  # a call without a bad index raises nothing: the record was cleared


def test_calling_the_decorated_kernel_checks(kernels):
    x = np.arange(4, dtype=np.float32)
    _raises(lambda: kernels.shift(x, np.zeros(4, np.float32)), "shift", "x", "4", "4,", "shift", kernels)


def test_a_build_turns_checks_on_and_off(kernels):
    m = np.arange(12).reshape(3, 4)
    out = np.zeros(3, np.int64)
    checked = kp.build([kernels.column], boundscheck=True)["column"]
    _raises(lambda: checked(m, -1, out), "column", "m", "0, -1", "3, 4", "column", kernels)
    checked(m, 3, out)
    assert out.tolist() == [3, 7, 11]
    unchecked = kp.build([kernels.shift], boundscheck=False)["shift"]
    unchecked(np.arange(6, dtype=np.float32), np.zeros(5, np.float32))  # in range: runs


def test_stores_atomics_local_arrays_prologue_and_epilogue_are_checked(kernels):
    lib = kp.build([kernels.scatter, kernels.window, kernels.first_and_total], boundscheck=True)
    out, hits = np.full(4, -1, np.int32), np.zeros(4, np.uint32)
    error = _raises(
        lambda: lib["scatter"](np.array([0, 9, 2], np.int32), out, hits),
        "scatter",
        "out",
        "9",
        "4,",
        "scatter",
        kernels,
    )
    assert "2 out-of-range accesses" in str(error)  # the store, then the atomic add
    assert out.tolist() == [0, -1, 2, -1] and hits.tolist() == [1, 0, 1, 0]
    _raises(lambda: lib["window"](np.ones(3), 3, np.zeros(3)), "window", "w", "3", "3,", "window", kernels)
    x = np.ones(5, np.float32)
    _raises(
        lambda: lib["first_and_total"](x, 5, np.zeros(5, np.float32)),
        "first_and_total",
        "x",
        "5",
        "5,",
        "prologue",
        kernels,
    )
    got = np.zeros(8, np.float32)
    lib["first_and_total"](np.ones(8, np.float32), 7, got)
    assert got[7] == 9.0


def test_the_check_survives_export_and_load(kernels, tmp_path):
    path = tmp_path / "checked.so"
    kp.build([kernels.shift, kernels.column]).export_library(str(path))
    lib = kp.load_module(str(path))
    x = np.arange(3, dtype=np.float32)
    _raises(lambda: lib["shift"](x, np.zeros(3, np.float32)), "shift", "x", "3", "3,", "shift", kernels)
    lib["column"](np.zeros((2, 2), np.int64), 5, np.zeros(2, np.int64))  # built unchecked: no check


def test_the_environment_turns_checks_on(tmp_path, monkeypatch):
    monkeypatch.setenv("KERNPACK_BOUNDSCHECK", "1")
    source = "import kernpack as kp\n\n@kp.kernel\ndef k(x: kp.f32[:], out: kp.f32[:]):\n"
    source += "    for i in kp.grid(out.shape[0]):\n        out[i] = x[i * 2]\n"
    module = _import(tmp_path, source, "env_checked")
    assert module.k.boundscheck
    with pytest.raises(kp.KernelIndexError, match=r"index \[4\] is out of range for x of shape \(4,\)"):
        module.k(np.ones(4, np.float32), np.zeros(4, np.float32))


@pytest.mark.parametrize("kind", ["opencl", "vulkan"])
def test_devices_raise_the_same_error(kernels, kind):
    host = kp.build([kernels.shift, kernels.scatter, kernels.window], devices=[kind], boundscheck=True)
    device = require_device(host.device_module(kind))
    assert str(device["shift"].signature) == "void shift(const float x[:], float out[:])"
    x = np.arange(100, dtype=np.float32)
    out = np.zeros_like(x)
    _raises(lambda: device["shift"](x, out), "shift", "x", "100", "100,", "shift", kernels)
    assert np.array_equal(out[:-1], x[1:]) and out[-1] == 0
    out, hits = np.full(4, -1, np.int32), np.zeros(4, np.uint32)
    _raises(
        lambda: device["scatter"](np.array([3, 1, -2], np.int32), out, hits),
        "scatter",
        "out",
        "-2",
        "4,",
        "scatter",
        kernels,
    )
    assert out.tolist() == [-1, 1, -1, 0] and hits.tolist() == [0, 1, 0, 1]
    _raises(lambda: device["window"](np.ones(3), -1, np.zeros(3)), "window", "w", "-1", "3,", "window", kernels)
    device["shift"](x, np.zeros(99, np.float32))


def test_checks_compile_for_cuda(kernels):
    module = kp.build([kernels.shift, kernels.first_and_total], "cuda", boundscheck=True)
    assert str(module["shift"].signature) == "void shift(const float x[:], float out[:])"
