"""Reductions: a prologue local combined over the grid (+=, min, max) and read after it."""

from __future__ import annotations

import math

import numpy as np
import pytest

import kernpack as kp
from tests.conftest import require_device
from tests.lang.helpers import compile_error, run_documented_example
from tests.lang.helpers import import_source as _import

KERNELS = """
import kernpack as kp

@kp.kernel
def dot(x: kp.f32[:], y: kp.f32[:], out: kp.f32[:]):
    acc = kp.f32(0.0)
    for i in kp.grid(x.shape[0]):
        acc += x[i] * y[i]
    out[0] = acc

@kp.kernel
def stats(x: kp.i32[:, :], start: kp.i64, out: kp.i64[:]):
    total = start
    lo = kp.i32(2147483647)
    hi = kp.i32(-2147483648)
    count = 0
    for i, j in kp.grid(x.shape[0], x.shape[1]):
        v = x[i, j]
        total = total + v
        lo = min(lo, v)
        hi = max(v, hi)
        if v % 2 == 0:
            count += 1
            continue
        for k in range(2):
            count += 0
    out[0] = total
    out[1] = lo
    out[2] = hi
    out[3] = count

@kp.kernel
def fmin(x: kp.f64[:], out: kp.f64[:]):
    lo = 1e300
    hi = -1e300
    for i in kp.grid(x.shape[0]):
        lo = min(lo, x[i])
        hi = max(hi, x[i])
    out[0] = lo
    out[1] = hi

@kp.kernel
def wraps(x: kp.u8[:], out: kp.u8[:]):
    s = kp.u8(250)
    for i in kp.grid(x.shape[0]):
        s += x[i]
    out[0] = s

@kp.kernel
def epilogue_only(n: kp.i64, out: kp.f64[:]):
    half = n // 2
    for i in kp.grid(n):
        out[i] = 1.0
    if half > 0:
        for k in range(half):
            out[k] = out[k] + half
    out[0] = out[0] * 2.0

@kp.kernel
def cube(x: kp.f64[:, :, :], out: kp.f64[:]):
    total = 0.0
    top = -1e300
    for i, j, k in kp.grid(x.shape[0], x.shape[1], x.shape[2]):
        total += x[i, j, k]
        top = max(top, x[i, j, k])
    out[0] = total
    out[1] = top
"""


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    return _import(tmp_path_factory.mktemp("reductions"), KERNELS, "reduction_kernels")


def test_the_documented_example_runs(tmp_path):
    run_documented_example(tmp_path, "Reductions")


def _check_sum(got: float, terms: np.ndarray) -> None:
    """``got`` is within the documented bound of the exact sum: (n - 1) * eps * sum(|terms|)."""
    exact = math.fsum(terms.astype(np.float64))
    eps = float(np.finfo(terms.dtype).eps) / 2  # 2**-24 for f32: the unit roundoff
    bound = max(len(terms) - 1, 0) * eps * math.fsum(np.abs(terms.astype(np.float64)))
    assert abs(got - exact) <= bound, (got, exact, bound)


@pytest.mark.parametrize("n", [0, 1, 7, 1000, 1 << 16, (1 << 20) + 3])
@pytest.mark.parametrize("threads", [1, 2])
def test_dot_matches_numpy_within_the_documented_tolerance(kernels, n, threads):
    rng = np.random.default_rng(n)
    x = rng.standard_normal(n).astype(np.float32)
    y = rng.standard_normal(n).astype(np.float32)
    out = np.full(1, np.nan, np.float32)
    dot = kp.build([kernels.dot], threads=threads)["dot"]
    dot(x, y, out)
    _check_sum(float(out[0]), x * y)  # the kernel's terms: float32 products, as numpy's
    again = np.zeros_like(out)
    dot(x, y, again)
    assert again[0] == out[0]  # the same grouping on every run


def test_integer_reductions_are_exact_and_agree_with_the_interpreter(kernels):
    rng = np.random.default_rng(1)
    x = rng.integers(-(2**31), 2**31, size=(301, 257), dtype=np.int32)
    out = np.zeros(4, np.int64)
    kernels.stats(x, 5, out)
    expected = [5 + int(x.astype(np.int64).sum()), x.min(), x.max(), int((x % 2 == 0).sum())]
    assert out.tolist() == expected
    ref = np.zeros(4, np.int64)
    small = x[:20, :30].copy()
    kernels.stats.interpret(small, 5, ref)
    kernels.stats(small, 5, out)
    assert out.tolist() == ref.tolist()


def test_an_empty_grid_leaves_the_starting_values(kernels):
    out = np.zeros(4, np.int64)
    kernels.stats(np.zeros((0, 3), np.int32), 9, out)
    assert out.tolist() == [9, 2**31 - 1, -(2**31), 0]
    lohi = np.zeros(2)
    kernels.fmin(np.zeros(0), lohi)
    assert lohi.tolist() == [1e300, -1e300]


def test_float_min_max_are_ieee_minimum_and_maximum(kernels):
    out = np.zeros(2)
    kernels.fmin(np.array([0.0, -0.0, 0.0]), out)
    assert np.signbit(out[0]) and not np.signbit(out[1])
    kernels.fmin(np.array([-0.0, 0.0, -0.0]), out)
    assert np.signbit(out[0]) and not np.signbit(out[1])


def test_float_min_max_propagate_nan_whatever_the_order(kernels):
    x = np.random.default_rng(2).random(100_000)
    for where in (0, 1, 50_000, 99_999):
        y = x.copy()
        y[where] = np.nan
        out = np.zeros(2)
        kernels.fmin(y, out)
        assert np.isnan(out).all(), where
        ref = np.zeros(2)
        kernels.fmin.interpret(y[:100] if where < 100 else y[where - 50 : where + 50], ref)
        assert np.isnan(ref).all()
    out = np.zeros(2)
    kernels.fmin(x, out)
    assert out.tolist() == [x.min(), x.max()]


def test_integer_sums_wrap_in_the_local_type(kernels):
    x = np.full(1000, 3, np.uint8)
    out = np.zeros(1, np.uint8)
    kernels.wraps(x, out)
    assert out[0] == (250 + 3000) % 256


def test_statements_after_the_grid_run_once_after_every_point(kernels):
    for n in (0, 1, 6, 100_001):
        out = np.zeros(max(n, 1))
        kernels.epilogue_only(n, out)
        ref = np.zeros(max(n, 1))
        if n < 1000:
            kernels.epilogue_only.interpret(n, ref)
        else:
            ref[:n] = 1.0
            ref[: n // 2] += n // 2
            ref[0] *= 2.0
        assert out.tolist() == ref.tolist(), n


def test_reductions_export_and_load(kernels, tmp_path):
    path = tmp_path / "dot.so"
    kp.build([kernels.dot, kernels.stats]).export_library(str(path))
    lib = kp.load_module(str(path))
    x = np.arange(100, dtype=np.float32)
    out = np.zeros(1, np.float32)
    lib["dot"](x, x, out)
    assert out[0] == float((np.arange(100) ** 2).sum())


DEVICES = ("opencl", "vulkan")


@pytest.fixture(scope="module")
def on_devices(kernels):
    every = [kernels.dot, kernels.stats, kernels.fmin, kernels.wraps, kernels.epilogue_only, kernels.cube]
    return kp.build(every, devices=DEVICES)


@pytest.mark.parametrize("kind", DEVICES)
def test_reductions_on_devices_match_the_cpu(kernels, on_devices, kind):
    device = require_device(on_devices.device_module(kind))
    for n in (0, 1, 63, 64, 65, 4097, 100_003):  # around the workgroup sizes, and many groups
        rng = np.random.default_rng(n)
        x, y = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
        out = np.full(1, np.nan, np.float32)
        device["dot"](x, y, out)
        _check_sum(float(out[0]), x * y)
    rng = np.random.default_rng(3)
    for shape in ((0, 5), (1, 1), (9, 70), (130, 33)):
        x = rng.integers(-(2**31), 2**31, size=shape, dtype=np.int32)
        got, want = np.zeros(4, np.int64), np.zeros(4, np.int64)
        device["stats"](x, -4, got)
        kernels.stats(x, -4, want)
        assert got.tolist() == want.tolist(), shape
    x = rng.random(5000)
    for where in (None, 0, 4999):
        y = x.copy()
        if where is not None:
            y[where] = np.nan
        got = np.zeros(2)
        device["fmin"](y, got)
        assert np.isnan(got).all() if where is not None else got.tolist() == [x.min(), x.max()]
    got = np.zeros(1, np.uint8)
    device["wraps"](np.full(1000, 3, np.uint8), got)
    assert got[0] == (250 + 3000) % 256
    for n in (0, 1, 6, 1001):
        got, want = np.zeros(max(n, 1)), np.zeros(max(n, 1))
        device["epilogue_only"](n, got)
        kernels.epilogue_only(n, want)
        assert got.tolist() == want.tolist(), n
    c = rng.integers(-50, 50, size=(7, 9, 11)).astype(np.float64)
    got, want = np.zeros(2), np.zeros(2)
    device["cube"](c, got)
    kernels.cube(c, want)
    assert got.tolist() == want.tolist() == [c.sum(), c.max()]


def test_reductions_compile_for_cuda_and_hide_the_scratch(kernels):
    module = kp.build([kernels.dot, kernels.stats, kernels.cube], "cuda")
    assert str(module["dot"].signature) == "void dot(const float x[:], const float y[:], float out[:])"
    assert "bar.sync" in module.inspect_source() and "fence.acq_rel" in module.inspect_source()


def test_device_reductions_export_and_load(kernels, on_devices, tmp_path):
    path = tmp_path / "reductions.so"
    on_devices.export_library(str(path))
    lib = kp.load_module(str(path))
    for kind in DEVICES:
        device = require_device(lib.device_module(kind))
        out = np.zeros(1, np.float32)
        device["dot"](np.arange(100, dtype=np.float32), np.ones(100, np.float32), out)
        assert out[0] == 4950.0


# ---------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("body", "line", "words"),
    [
        (
            "    s = 0.0\n    for i in kp.grid(x.shape[0]):\n        s += x[i]\n        out[i] = s\n    out[0] = s\n",
            8,
            "grid points cannot read reduction 's'",
        ),
        (
            "    s = 0.0\n    for i in kp.grid(x.shape[0]):\n        s = x[i]\n    out[0] = s\n",
            7,
            "'s' is read after the grid loop",
        ),
        (
            "    s = 0.0\n    for i in kp.grid(x.shape[0]):\n        s *= x[i]\n    out[0] = s\n",
            7,
            "s += v, s = min(s, v) or s = max(s, v)",
        ),
        (
            "    s = 0.0\n    for i in kp.grid(x.shape[0]):\n        s += x[i]\n        s = min(s, x[i])\n"
            "    out[0] = s\n",
            8,
            "combines with add on line 7",
        ),
        (
            "    for i in kp.grid(x.shape[0]):\n        s += x[i]\n    out[0] = s\n",
            6,
            "needs a starting value before the grid loop",
        ),
        (
            "    s = kp.f32(0.0)\n    for i in kp.grid(x.shape[0]):\n        s = max(s, kp.f64(x[i]))\n"
            "    out[0] = s\n",
            7,
            "s = max(s, kp.f32(...))",
        ),
        (
            "    s = False\n    for i in kp.grid(x.shape[0]):\n        s += x[i] > 0\n    out[0] = 1.0\n"
            "    if s:\n        out[0] = 2.0\n",
            7,
            "reduce numbers",
        ),
        (
            "    for i in kp.grid(x.shape[0]):\n        out[i] = x[i]\n    out[i] = 0.0\n",
            7,
            "grid variable 'i' has no value after the grid loop",
        ),
        (
            "    s = 0\n    for i in kp.grid(x.shape[0]):\n        s += x[i]\n    out[0] = s\n",
            7,
            "cannot store f32 into i64",
        ),
    ],
)
def test_errors_name_the_line_and_what_to_write(tmp_path, body, line, words):
    compile_error(tmp_path, "x: kp.f32[:], out: kp.f32[:]", body, line, words)
