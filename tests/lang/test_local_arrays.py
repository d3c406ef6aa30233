"""Local arrays: kp.local(dtype, shape), private to a grid point, on every target."""

from __future__ import annotations

import numpy as np
import pytest

import kernpack as kp
from tests.conftest import require_device
from tests.lang.helpers import compile_error, run_documented_example
from tests.lang.helpers import import_source as _import

KERNELS = """
import kernpack as kp

SIDE = 3

@kp.kernel
def box(x: kp.f64[:, :], out: kp.f64[:, :]):
    for i, j in kp.grid(out.shape[0], out.shape[1]):
        w = kp.local(kp.f64, (SIDE, SIDE))
        for a in range(w.shape[0]):
            for b in range(w.shape[1]):
                w[a, b] = x[min(max(i + a - 1, 0), x.shape[0] - 1), min(max(j + b - 1, 0), x.shape[1] - 1)]
        s = 0.0
        for a in range(SIDE):
            for b in range(SIDE):
                s += w[a, b]
        out[i, j] = s

@kp.kernel
def fresh(n: kp.i64, out: kp.i32[:]):
    for i in kp.grid(out.shape[0]):
        seen = kp.local(kp.bool_, 40)
        count = kp.local(kp.i32, 1)
        for k in range(i % n):
            seen[k] = True
        for k in range(seen.shape[0]):
            if seen[k]:
                count[0] += 1
        out[i] = count[0]

@kp.kernel
def big(out: kp.u16[:]):
    for i in kp.grid(out.shape[0]):
        h = kp.local(kp.u16, 100)
        for k in range(100):
            h[k] = kp.u16(i + k)
        total = kp.u16(0)
        for k in range(100):
            total += h[k]
        out[i] = total
"""


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    return _import(tmp_path_factory.mktemp("local_arrays"), KERNELS, "local_kernels")


def test_the_documented_example_runs(tmp_path):
    run_documented_example(tmp_path, "Local arrays")


def _expected(kernels):
    x = np.random.default_rng(0).random((13, 17))
    box = np.zeros_like(x)
    kernels.box.interpret(x, box)
    padded = np.pad(x, 1, mode="edge")
    assert np.allclose(box, np.lib.stride_tricks.sliding_window_view(padded, (3, 3)).sum(axis=(2, 3)))
    fresh = np.zeros(90, np.int32)
    kernels.fresh.interpret(7, fresh)
    assert fresh.tolist() == [i % 7 for i in range(90)]  # zeroed for every point
    big = np.zeros(70, np.uint16)
    kernels.big.interpret(big)
    return x, box, fresh, big


def _check(module, kernels):
    x, box, fresh, big = _expected(kernels)
    got = np.zeros_like(box)
    module["box"](x, got)
    assert np.array_equal(got, box)
    got = np.zeros_like(fresh)
    module["fresh"](7, got)
    assert np.array_equal(got, fresh)
    got = np.zeros_like(big)
    module["big"](got)
    assert np.array_equal(got, big)


@pytest.mark.parametrize("threads", [1, 2])
def test_local_arrays_on_the_cpu_match_the_interpreter(kernels, threads):
    _check(kp.build([kernels.box, kernels.fresh, kernels.big], threads=threads), kernels)


@pytest.mark.parametrize("kind", ["opencl", "vulkan"])
def test_local_arrays_on_devices_match_the_interpreter(kernels, kind):
    host = kp.build([kernels.box, kernels.fresh, kernels.big], devices=[kind])
    _check(require_device(host.device_module(kind)), kernels)


def test_local_arrays_compile_for_cuda(kernels):
    kp.build([kernels.box, kernels.fresh, kernels.big], "cuda")


def test_local_arrays_export_and_load(kernels, tmp_path):
    path = tmp_path / "local.so"
    kp.build([kernels.box, kernels.fresh, kernels.big]).export_library(str(path))
    _check(kp.load_module(str(path)), kernels)


def test_in_plain_python_it_is_a_zeroed_numpy_array():
    assert np.array_equal(kp.local(kp.f32, (2, 3)), np.zeros((2, 3), np.float32))


@pytest.mark.parametrize(
    ("body", "line", "words"),
    [
        ("    w = kp.local(kp.f32, 4)\n    for i in kp.grid(out.shape[0]):\n        out[i] = 1.0\n", 5, "top level"),
        (
            "    for i in kp.grid(out.shape[0]):\n        if i > 0:\n            w = kp.local(kp.f32, 4)\n"
            "        out[i] = 1.0\n",
            7,
            "top level",
        ),
        ("    for i in kp.grid(out.shape[0]):\n        w = kp.local(kp.f32, x.shape[0])\n", 6, "integer constants"),
        ("    for i in kp.grid(out.shape[0]):\n        w = kp.local(kp.f32, (40, 40))\n", 6, "at most 1024"),
        ("    for i in kp.grid(out.shape[0]):\n        w = kp.local(kp.f32, 0)\n", 6, "each at least 1"),
        ("    for i in kp.grid(out.shape[0]):\n        w = kp.local(3, 2)\n", 6, "scalar type"),
        (
            "    for i in kp.grid(out.shape[0]):\n        w = kp.local(kp.f32, 2)\n        kp.atomic_add(w, 0, 1.0)\n",
            7,
            "is a local array",
        ),
        (
            "    for i in kp.grid(out.shape[0]):\n        w = kp.local(kp.f32, 2)\n        w = 1.0\n",
            7,
            "cannot rebind local array 'w'",
        ),
        (
            "    for i in kp.grid(out.shape[0]):\n        w = kp.local(kp.f32, 2)\n    out[0] = w[0]\n",
            7,
            "no value after the grid loop",
        ),
        ("    for i in kp.grid(out.shape[0]):\n        t = kp.local(kp.f32, 2) + 1.0\n", 6, "assign it to a name"),
    ],
)
def test_errors_name_the_line_and_what_to_write(tmp_path, body, line, words):
    compile_error(tmp_path, "x: kp.f32[:], out: kp.f32[:]", body, line, words)
