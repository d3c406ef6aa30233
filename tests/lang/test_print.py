"""print() in kernels: as Python prints, one whole line per call, on every target."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

import kernpack as kp
from kernpack.runtime.abi import PRINT_WORDS, print_symbols
from tests.conftest import require_device
from tests.lang.helpers import compile_error, run_documented_example
from tests.lang.helpers import import_source as _import

KERNELS = """
import kernpack as kp

@kp.kernel
def show(x: kp.f32[:], flags: kp.bool_[:], out: kp.f32[:]):
    total = kp.f32(0.0)
    for i in kp.grid(x.shape[0]):
        print("point", i, "value", x[i], flags[i])
        total += x[i]
    print(f"total {total} of {x.shape[0]} points", kp.u8(255), kp.i8(-3), 1.0 / 3.0, sep=", ")
    out[0] = total

@kp.kernel
def many(n: kp.i64, out: kp.i64[:]):
    for i in kp.grid(n):
        print("line", i, end=";\\n")
        out[i] = i

@kp.kernel
def plain(x: kp.f64[:]):
    for i in kp.grid(x.shape[0]):
        print("x =", x[i], "at", i)
"""

X = np.array([0.5, 0.1, 3.0, -0.0, np.inf, np.nan], np.float32)
FLAGS = np.array([True, False, True, False, True, True])


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    return _import(tmp_path_factory.mktemp("printing"), KERNELS, "print_kernels")


def _python(kernels, capsys) -> str:
    """What the kernel's plain Python function prints: the reference for the text."""
    kernels.show.py_func(X, FLAGS, np.zeros(1, np.float32))
    return capsys.readouterr().out


def test_the_documented_example_runs(tmp_path, capsys):
    run_documented_example(tmp_path, "Printing")
    assert "point 3 value 0.5" in capsys.readouterr().out


def test_the_cpu_prints_what_python_prints(kernels, capsys):
    want = _python(kernels, capsys)
    assert want.splitlines()[:2] == ["point 0 value 0.5 True", "point 1 value 0.1 False"]
    assert want.splitlines()[-1] == "total nan of 6 points, 255, -3, 0.3333333333333333"
    kernels.show(X, FLAGS, np.zeros(1, np.float32))
    assert capsys.readouterr().out == want
    kernels.show.interpret(X, FLAGS, np.zeros(1, np.float32))
    assert capsys.readouterr().out == want


def test_lines_from_threads_are_never_interleaved(kernels, capsys):
    many = kp.build([kernels.many], threads=2)["many"]
    n = 40_000
    many(n, np.zeros(n, np.int64))
    lines = capsys.readouterr().out.splitlines()
    assert sorted(lines, key=lambda s: int(s[5:-1])) == [f"line {i};" for i in range(n)]


@pytest.mark.parametrize("kind", ["opencl", "vulkan"])
def test_devices_print_the_same_lines(kernels, capsys, kind):
    want = _python(kernels, capsys)
    host = kp.build([kernels.show, kernels.many], devices=[kind])
    device = require_device(host.device_module(kind))
    assert str(device["show"].signature) == "void show(const float x[:], const bool flags[:], float out[:])"
    device["show"](X, FLAGS, np.zeros(1, np.float32))
    got = capsys.readouterr().out
    # Points print in any order; the epilogue's line comes after them all.
    assert sorted(got.splitlines()[:-1]) == sorted(want.splitlines()[:-1])
    assert got.splitlines()[-1] == want.splitlines()[-1]


def test_a_device_print_buffer_that_overflows_says_how_many_were_lost(kernels, capsys):
    device = require_device(kp.build([kernels.many], devices=["opencl"]).device_module("opencl"))
    n = 100_000  # each print takes 3 words
    device["many"](n, np.zeros(n, np.int64))
    captured = capsys.readouterr()
    kept = (PRINT_WORDS - 2) // 3
    assert len(captured.out.splitlines()) == kept
    assert f"{n - kept} print() calls of kernel 'many' did not fit" in captured.err


def test_prints_compile_for_cuda(kernels):
    kp.build([kernels.show, kernels.many], "cuda")


def test_an_exported_kernel_prints_through_python_and_through_c_without_it(kernels, tmp_path, capfd):
    path = tmp_path / "prints.so"
    kp.build([kernels.plain]).export_library(str(path))
    lib = kp.load_module(str(path))
    lib["plain"](np.array([0.5, 2.0]))
    assert capfd.readouterr().out == "x = 0.5 at 0\nx = 2.0 at 1\n"
    # A C program has no printer: the kernel uses C's printf.
    printer = ctypes.c_void_p.in_dll(ctypes.CDLL(str(path)), print_symbols("plain")[0])
    printer.value = None
    lib["plain"](np.array([0.5, 2.0]))
    ctypes.CDLL(None).fflush(None)
    assert capfd.readouterr().out == "x = 0.5 at 0\nx = 2 at 1\n"


@pytest.mark.parametrize(
    ("body", "line", "words"),
    [
        ("    print(x[0])\n    for i in kp.grid(x.shape[0]):\n        x[i] = 0.0\n", 5, "prologue"),
        ("    for i in kp.grid(x.shape[0]):\n        print(x[i], file=None)\n", 6, "sep= and end="),
        ("    for i in kp.grid(x.shape[0]):\n        print(f'{x[i]:.3f}')\n", 6, "no !r, !s or :spec"),
        ("    for i in kp.grid(x.shape[0]):\n        print('a', sep=x[i])\n", 6, "string literals"),
    ],
)
def test_errors_name_the_line_and_what_to_write(tmp_path, body, line, words):
    compile_error(tmp_path, "x: kp.f32[:]", body, line, words)
